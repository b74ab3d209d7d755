//! The README's model update, as a user types it: `mote deploy` builds a firmware with model
//! slots and runs it in QEMU; `mote deploy --model-only` writes a model into that image's slots
//! and runs it again, without a build; mistakes get clear errors.

use std::path::Path;
use std::process::{Command, Output};

fn mote(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(args)
        .current_dir(root)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn deploy_model_only_writes_a_slot_and_the_device_runs_it() {
    let built = mote(&[
        "deploy",
        "firmware/models/demo",
        "--model-slot-bytes",
        "16384",
        "--timeout",
        "60",
    ]);
    assert!(built.status.success(), "{}", text(&built));
    assert!(text(&built).contains("built-in model: running it"));
    let elf = text(&built)
        .lines()
        .find_map(|l| l.strip_prefix("deploy: firmware "))
        .expect("deploy names the firmware it built")
        .to_string();
    let dir = std::env::temp_dir().join(format!("mote-model-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("firmware.elf");
    std::fs::copy(&elf, &image).unwrap();
    let image = image.to_str().unwrap();

    let swapped = mote(&[
        "deploy",
        "firmware/models/demo/model.mote",
        "--model-only",
        "--elf",
        image,
        "--timeout",
        "60",
    ]);
    assert!(swapped.status.success(), "{}", text(&swapped));
    let log = text(&swapped);
    assert!(
        log.contains("written to model slot A (sequence 1)"),
        "{log}"
    );
    assert!(log.contains("slot A sequence=1 bytes="), "{log}");
    assert!(log.contains(": running it"), "{log}");
    assert!(!log.contains("Compiling"), "no build: {log}");

    // Not a model: refused, the image untouched. No --elf: a clear error.
    let before = std::fs::read(image).unwrap();
    let junk = dir.join("junk.mote");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    let refused = mote(&[
        "deploy",
        junk.to_str().unwrap(),
        "--model-only",
        "--elf",
        image,
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("not a valid model"),
        "{}",
        text(&refused)
    );
    assert_eq!(std::fs::read(image).unwrap(), before);
    let no_elf = mote(&["deploy", "firmware/models/demo", "--model-only"]);
    assert!(!no_elf.status.success());
    assert!(text(&no_elf).contains("--elf"), "{}", text(&no_elf));
    let _ = std::fs::remove_dir_all(&dir);
}
