//! The firmware on QEMU's emulated Cortex-M4: its decoded log, its result and its exit status.

use mote_host::firmware::{self, Board};
use mote_host::qemu::{run_elf, QemuRun};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Builds share one output path; each test builds and copies its ELF under this lock.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn build_qemu_firmware(fault: Option<&str>) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let envs: Vec<(&str, &str)> = fault
        .map(|f| ("MOTE_FIRMWARE_FAULT", f))
        .into_iter()
        .collect();
    let elf = firmware::build(Board::Qemu, &envs).expect("firmware builds");
    let copy = std::env::temp_dir().join(format!(
        "mote-firmware-{}-{}.elf",
        fault.unwrap_or("ok"),
        std::process::id()
    ));
    std::fs::copy(&elf, &copy).expect("copy the ELF");
    copy
}

fn run(elf: &Path) -> QemuRun {
    run_elf(elf, Duration::from_secs(60), |_| {}).expect("QEMU runs the firmware")
}

/// The same vectors the firmware builds in `demo_vector`.
fn demo_vector(step: usize, start: usize) -> Vec<i8> {
    (0..1024)
        .map(|i| ((i * step + start) % 256) as u8 as i8)
        .collect()
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn firmware_computes_the_host_result_and_counts_instructions() {
    let elf = build_qemu_firmware(None);
    let run = run(&elf);
    assert!(run.success(), "exit {}; log: {:?}", run.exit_code, run.log);

    let texts: Vec<&str> = run.log.iter().map(|l| l.text.as_str()).collect();
    assert!(texts[0].starts_with("mote-firmware ") && texts[0].ends_with(" on qemu-mps2-an386"));

    let dot = texts
        .iter()
        .find(|t| t.starts_with("dot_i8 "))
        .expect("a dot_i8 line");
    let expected =
        mote_core::quant::dot_i8(&demo_vector(7, 3), 3, &demo_vector(13, 5), -5).unwrap();
    assert_eq!(field(dot, "n"), Some("1024"));
    assert_eq!(field(dot, "result"), Some(expected.to_string().as_str()));

    let cost = texts
        .iter()
        .find(|t| t.starts_with("cost "))
        .expect("a cost line");
    let words: Vec<&str> = cost.split_whitespace().collect();
    assert_eq!(words[2], "instructions");
    let instructions: u64 = words[1].parse().unwrap();
    // SysTick x 40: a multiple of 40; at least one instruction per element and far below 20
    // per element for a 1024-long int8 dot product.
    assert_eq!(instructions % 40, 0);
    assert!(
        (1024..20 * 1024).contains(&instructions),
        "{instructions} instructions"
    );
}

#[test]
fn a_panic_ends_the_run_with_failure_and_says_why() {
    let elf = build_qemu_firmware(Some("panic"));
    let run = run(&elf);
    assert_eq!(run.exit_code, 1);
    let last = run.log.last().expect("a log line");
    assert_eq!(last.level.as_deref(), Some("ERROR"));
    assert!(last.text.contains("deliberate panic"), "{last:?}");
}

#[test]
fn a_hardfault_ends_the_run_with_failure() {
    let elf = build_qemu_firmware(Some("hardfault"));
    let run = run(&elf);
    assert_eq!(run.exit_code, 1);
    let last = run.log.last().expect("a log line");
    assert!(last.text.starts_with("HardFault at pc="), "{last:?}");
}
