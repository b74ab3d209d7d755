//! `mote export`'s generated Rust file compiles and states the model's real figures.

use mote_core::Model;
use mote_host::AlignedBytes;
use std::process::Command;

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

    // The file compiles as it is (include_bytes! finds model.mote beside it) and its MODEL is
    // the blob.
    let check = dir.join("check.rs");
    std::fs::write(
        &check,
        "include!(\"model.rs\");\nfn main() { assert_eq!(MODEL.0.len(), std::fs::read(\"model.mote\").unwrap().len()); \
         assert_eq!(CLASS_NAMES.len(), 10); assert_eq!(INPUTS[0].bytes, 64); assert_eq!(OUTPUTS[0].element, MoteElement::I8); let _ = ARENA_SIZE; }\n",
    )
    .unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .current_dir(&dir)
        .args(["--edition", "2021", "-o", "check", "check.rs"])
        .status()
        .unwrap();
    assert!(status.success(), "the generated model.rs does not compile");
    assert!(Command::new(dir.join("check"))
        .current_dir(&dir)
        .status()
        .unwrap()
        .success());
    let _ = std::fs::remove_dir_all(&dir);
}
