//! `mote export`'s generated Rust file states the model's real figures and compiles in a crate
//! with the mote-core features it names, and not without one of them.

use mote_core::Model;
use mote_host::AlignedBytes;
use std::path::Path;
use std::process::Command;

/// Builds and runs a crate in `dir/check` whose main.rs includes `dir/model.rs` and depends on
/// mote-core with only `features`: (whether it built and ran, cargo's messages).
fn firmware_crate(dir: &Path, features: &[String], main: &str) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let krate = dir.join("check");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let list: Vec<String> = features.iter().map(|f| format!("{f:?}")).collect();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"model-check\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             [dependencies]\nmote-core = {{ path = {:?}, default-features = false, features = [{}] }}\n\
             [workspace]\n",
            root.join("core"),
            list.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(
        krate.join("src/main.rs"),
        format!("include!(\"../../model.rs\");\n{main}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO"))
        .args(["run", "--offline", "--quiet"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", root.join("target/model-check"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn generated_rust_compiles_and_matches_the_model() {
    let demo = mote_tests::digits_demo::build();
    let dir = std::env::temp_dir().join(format!("mote-export-{}", std::process::id()));
    demo.write(&dir).unwrap();
    let code = std::fs::read_to_string(dir.join("model.rs")).unwrap();
    let blob = AlignedBytes::new(&demo.quantized.built.bytes);
    let model = Model::parse(blob.as_slice()).unwrap();
    assert!(code.contains(&format!(
        "pub const ARENA_SIZE: usize = {};",
        model.arena_size()
    )));
    let (in_scale, in_zero) = demo.quantized.input;
    assert!(code.contains(&format!(
        "pub const INPUTS: [MoteEdge; 1] = [\n    MoteEdge {{ element: MoteElement::I8, \
         shape: [1, 1, 1, 64], scale: {in_scale:?}, zero_point: {in_zero}, bytes: 64 }},\n];"
    )));
    assert!(code.contains("pub const OUTPUTS: [MoteEdge; 1]"));
    assert!(code.contains("shape: [1, 1, 1, 10]"));
    assert!(code.contains(
        r#"pub const CLASS_NAMES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];"#
    ));
    for file in [
        "model.mote",
        "test_inputs.i8",
        "test_labels.u8",
        "finetune_inputs.i8",
        "finetune_test_labels.u8",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }

    // The features it names, and a firmware crate that includes it compiles with them and
    // fails to without one of them, naming it.
    let features: Vec<String> = model
        .requirements()
        .unwrap()
        .map(|r| r.feature().to_string())
        .collect();
    assert!(
        features.contains(&"op-fully-connected".to_string()),
        "{features:?}"
    );
    assert!(code.contains("pub const MOTE_CORE_FEATURES"));
    let main =
        "fn main() { assert_eq!(MODEL.0.len(), std::fs::read(\"../model.mote\").unwrap().len()); \
                assert_eq!(CLASS_NAMES.len(), 10); assert_eq!(INPUTS[0].bytes, 64); \
                assert_eq!(OUTPUTS[0].element, MoteElement::I8); let _ = ARENA_SIZE; \
                assert!(!MOTE_CORE_FEATURES.is_empty()); }\n";
    let (ok, _) = firmware_crate(&dir, &features, main);
    assert!(
        ok,
        "the generated model.rs does not compile with the features it names"
    );
    let (ok, errors) = firmware_crate(&dir, &features[1..], main);
    assert!(!ok);
    assert!(
        errors.contains(&format!("enable mote-core's cargo feature {}", features[0])),
        "{errors}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
