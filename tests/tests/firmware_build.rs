//! Building the firmware around a model that cannot fit the board fails early, with a message
//! that says why and by how much.

use mote_host::firmware::{workspace_root, FIRMWARE_TARGET};
use std::process::Command;

#[test]
fn a_model_too_big_for_the_nrf52840_fails_the_build_with_a_clear_message() {
    // 100x100x16 activations, two of them live at once: ~320 KB of arena, more than 256 KiB.
    let built = mote_tests::synth::ds_cnn(3, 200, 200, 16, 1, 4)
        .build()
        .unwrap();
    assert!(built.arena_size > 256 * 1024);
    let dir = std::env::temp_dir().join(format!("mote-too-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.mote"), &built.bytes).unwrap();
    std::fs::write(dir.join("test_inputs.i8"), vec![0u8; 200 * 200]).unwrap();
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "mote-firmware",
            "--target",
            FIRMWARE_TARGET,
        ])
        .args(["--no-default-features", "--features", "nrf52840"])
        .env("MOTE_MODEL_DIR", &dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("does not fit the nRF52840's 256 KiB of RAM")
            && stderr.contains(&format!("{} B of arena", built.arena_size)),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
