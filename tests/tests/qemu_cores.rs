//! The firmware on every core QEMU emulates: the demo model, built once per core (Cortex-M3
//! with mote-core's portable kernels, the M7, the M33 and M55 with the DSP extension, the M0 of
//! the micro:bit), must give exactly the Cortex-M4F's output bytes, and report its cost in
//! instructions. And the micro:bit's 16 KiB of RAM refuses a model that needs more, with figures.

use mote_host::firmware::{self, Board};
use mote_host::qemu::run_elf_on;
use mote_host::report::FirmwareReport;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Boards of one target share an output path: one build (and the copy of its ELF) at a time.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn build(board: Board) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let elf = firmware::build(board, &[])
        .unwrap_or_else(|e| panic!("{board:?}: the firmware builds: {e:#}"));
    let copy = std::env::temp_dir().join(format!(
        "mote-core-{}-{}.elf",
        board.feature(),
        std::process::id()
    ));
    std::fs::copy(&elf, &copy).unwrap();
    copy
}

/// Runs the demo firmware on `board`: its report, and the board name it printed.
fn run(board: Board) -> (FirmwareReport, String) {
    let elf = build(board);
    let run = run_elf_on(board, &elf, Duration::from_secs(60), |_| {})
        .unwrap_or_else(|e| panic!("{board:?}: QEMU runs the firmware: {e:#}"));
    let _ = std::fs::remove_file(&elf);
    assert!(
        run.success(),
        "{board:?}: exit {}; log: {:#?}",
        run.exit_code,
        run.log
    );
    let banner = run.log[0].text.clone();
    (FirmwareReport::from_log(&run.log).unwrap(), banner)
}

#[test]
fn every_emulated_core_gives_the_cortex_m4_bytes() {
    let (m4, _) = run(Board::Qemu);
    let expected: Vec<&[u8]> = m4.inferences.iter().map(|i| &i.output[..]).collect();
    assert!(!expected.is_empty());
    for board in Board::QEMU.into_iter().filter(|&b| b != Board::Qemu) {
        let (report, banner) = run(board);
        let (machine, _) = board.qemu_machine().unwrap();
        assert!(
            banner.ends_with(&format!(" on qemu-{machine}")),
            "{board:?}: {banner}"
        );
        assert_eq!(report.unit, "instructions", "{board:?}");
        let got: Vec<&[u8]> = report.inferences.iter().map(|i| &i.output[..]).collect();
        assert_eq!(
            got,
            expected,
            "{board:?} ({}) vs the Cortex-M4F",
            board.core()
        );
        for inference in &report.inferences {
            assert!(inference.cost > 0, "{board:?}: no cost measured");
        }
        assert_eq!(report.layers.len(), m4.layers.len(), "{board:?}");
    }
}

#[test]
fn a_model_too_big_for_the_microbit_fails_the_build_with_figures() {
    // 32x32x16 activations, two live at once: ~32 KiB of arena, twice the micro:bit's RAM.
    let built = mote_tests::synth::ds_cnn(3, 64, 64, 16, 1, 4)
        .build()
        .unwrap();
    assert!(built.arena_size > 16 * 1024);
    let dir = std::env::temp_dir().join(format!("mote-microbit-too-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.mote"), &built.bytes).unwrap();
    std::fs::write(dir.join("test_inputs.i8"), vec![0u8; 64 * 64]).unwrap();
    let result = {
        let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        firmware::cargo_build_for(Board::Microbit, "microbit")
            .env("MOTE_MODEL_DIR", &dir)
            .output()
            .unwrap()
    };
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(
        stderr.contains("does not fit the BBC micro:bit (QEMU microbit)'s 16 KiB of RAM")
            && stderr.contains(&format!("{} B of arena", built.arena_size)),
        "{stderr}"
    );
}
