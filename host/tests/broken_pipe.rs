//! `mote ... | head`: a reader that goes away ends mote quietly, never with a panic.

use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_ends_mote_without_a_panic() {
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware/models/demo/model.mote"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(["inspect", demo])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mote runs");
    // Close the reading end before mote writes: its first print meets a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("mote ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

#[test]
fn a_non_finite_finetune_shift_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(["export", "none.ckpt", "--finetune-shift", "nan,0"])
        .output()
        .expect("mote runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not a finite number"), "{stderr}");
}
