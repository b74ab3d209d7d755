//! `mote import model.tflite --dir DIR` writes a model directory like `mote export`'s: the
//! blob, and a model.rs naming the mote-core features the model needs.

use std::path::Path;
use std::process::Command;

#[test]
fn import_writes_a_model_directory_with_its_features() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("mote-import-dir-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args([
            "import",
            "tests/real-models/tflm_person_detect.tflite",
            "--dir",
        ])
        .arg(&dir)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = std::fs::read_to_string(dir.join("model.rs")).unwrap();
    let blob = std::fs::read(dir.join("model.mote")).unwrap();
    assert!(code.contains(&format!("MoteAligned<[u8; {}]>", blob.len())));
    let features = code
        .lines()
        .find(|l| l.starts_with("pub const MOTE_CORE_FEATURES"))
        .expect("the features constant");
    for feature in ["op-conv2d", "op-depthwise", "op-avg-pool", "op-softmax"] {
        assert!(features.contains(&format!("\"{feature}\"")), "{features}");
    }
    assert!(code.contains("enable mote-core's cargo feature op-depthwise"));
    // Neither -o nor --dir: a clear error.
    let bare = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(["import", "tests/real-models/tflm_person_detect.tflite"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(!bare.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
