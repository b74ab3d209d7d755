//! `mote deploy` and `mote bench` stage a model in a temporary directory for the firmware
//! build; it goes away when the command ends, whether it succeeded or failed. The commands run
//! with a private temporary root (`TMPDIR`) and a `cargo` that fails at once (`CARGO`), so
//! each stages its model, fails to build, and must leave the root as it found it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn private_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("mote-temp-dirs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/real-models/tflm_hello_world_int8.tflite")
}

/// Runs `mote <args> <model>` under `root`; its standard error (it must fail).
fn run_failing_build(root: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(args)
        .arg(model())
        .env("TMPDIR", root)
        .env("CARGO", "false")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("building the firmware"), "{stderr}");
    stderr
}

fn left_behind(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn deploy_leaves_no_temporary_directory_when_the_build_fails() {
    let root = private_root("deploy");
    run_failing_build(&root, &["deploy"]);
    assert_eq!(left_behind(&root), Vec::<String>::new());
    std::fs::remove_dir(&root).unwrap();
}

#[test]
fn bench_leaves_no_temporary_directory_when_the_build_fails() {
    let root = private_root("bench");
    run_failing_build(&root, &["bench"]);
    assert_eq!(left_behind(&root), Vec::<String>::new());
    std::fs::remove_dir(&root).unwrap();
}
