//! `mote demo` on a machine without qemu-system-arm: it says how to install it and runs the
//! device steps (int8 inference, head fine-tuning) on the host instead.

use std::process::Command;

#[test]
fn demo_falls_back_to_the_host_and_says_so() {
    let out = std::env::temp_dir().join(format!("mote-demo-noqemu-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(["demo", "--epochs", "3", "--out"])
        .arg(&out)
        // No PATH: qemu-system-arm cannot be found.
        .env("PATH", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("qemu-system-arm is not installed (Debian/Ubuntu: `sudo apt-get install qemu-system-arm`)"), "{stdout}");
    assert!(stdout.contains("== 4/4 summary (host path)"), "{stdout}");
    let line = stdout.lines().find(|l| l.contains("new sensor:")).unwrap();
    // "new sensor: 24.51% before, 70.47% after head-only fine-tuning (...)"
    let pct: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('%').and_then(|v| v.parse().ok()))
        .collect();
    assert_eq!(pct.len(), 2, "{line}");
    assert!(pct[1] > pct[0], "fine-tuning did not help: {line}");
    assert!(out.join("model/model.mote").exists() && out.join("train/training.svg").exists());
    let _ = std::fs::remove_dir_all(&out);
}
