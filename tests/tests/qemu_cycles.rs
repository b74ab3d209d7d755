//! The Cortex-M4 cycle estimate on real firmware runs in QEMU: sane against the instruction
//! count the firmware measures itself, deterministic, and clear about what it cannot time.

use mote_host::bench::BenchResult;
use mote_host::cycles::{estimate_elf, MOTE_TIMED_SYMBOL, TFLM_INVOKE_SYMBOL};
use mote_host::firmware::{self, Board};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Builds share one output path; each test builds under this lock.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Keyword spotting (MLPerf Tiny), benchmarked with its cycle estimate.
fn kws_with_cycles() -> BenchResult {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mlperf");
    let (case, _) = mote_host::bench::mlperf_suite(&dir, 0)
        .unwrap()
        .into_iter()
        .find(|(c, _)| c.name == "kws_ref_model")
        .unwrap();
    mote_host::bench::run_with_cycles(Board::Qemu, &case).unwrap()
}

#[test]
fn keyword_spotting_cycles_are_sane_and_deterministic() {
    let first = kws_with_cycles();
    let estimate = first.cycles.expect("a cycle estimate");
    // The trace covers the same invoke the firmware times with SysTick, whose resolution is
    // 40 instructions; the timer reads themselves sit between the two regions.
    let systick = first.instructions;
    assert!(
        estimate.instructions.abs_diff(systick) <= 80,
        "traced {} vs SysTick {systick}",
        estimate.instructions
    );
    assert!(estimate.cycles >= estimate.instructions, "{estimate:?}");
    assert!((1.0..=2.5).contains(&estimate.cpi()), "{estimate:?}");
    assert!(
        estimate.taken_branches > 0 && estimate.pipelined > 0,
        "{estimate:?}"
    );
    let per_mac = first.cycles_per_mac().unwrap();
    assert!((0.5..=10.0).contains(&per_mac), "{per_mac} cycles/MAC");
    let table = mote_host::bench::table_at(&[(first.clone(), None)], 100.0);
    let ms = format!("{:.2}", estimate.cycles as f64 / 100e3);
    assert!(
        table.contains(&format!("| {} |", estimate.cycles)),
        "{table}"
    );
    assert!(table.contains(&ms), "{table}");

    // Each layer of the profiled invoke: close to its SysTick figure, and together nearly all
    // of the invoke (the rest is the interpreter's dispatch between layers).
    assert_eq!(first.layer_cycles.len(), first.report.layers.len());
    for (traced, measured) in first.layer_cycles.iter().zip(&first.report.layers) {
        assert!(
            traced.instructions.abs_diff(measured.cost) <= 100,
            "{}: traced {traced:?} vs SysTick {}",
            measured.op,
            measured.cost
        );
    }
    // The profiled invoke is a second one on the timed input, not the timed one itself: its
    // layers' sum has been measured 0.012% above the timed invoke, so allow 0.1% either way.
    let layers: u64 = first.layer_cycles.iter().map(|l| l.cycles).sum();
    assert!(
        layers * 1000 <= estimate.cycles * 1001 && layers * 100 >= estimate.cycles * 99,
        "layers {layers} of {}",
        estimate.cycles
    );

    let second = kws_with_cycles();
    assert_eq!(second.cycles, Some(estimate));
    assert_eq!(second.layer_cycles, first.layer_cycles);
}

#[test]
fn a_symbol_the_elf_lacks_is_a_clear_error() {
    let elf = {
        let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let built = firmware::build(Board::Qemu, &[]).expect("firmware builds");
        let copy = std::env::temp_dir().join(format!("mote-cycles-{}.elf", std::process::id()));
        std::fs::copy(&built, &copy).unwrap();
        copy
    };
    let err = estimate_elf(&elf, "no_such_function", Duration::from_secs(60)).unwrap_err();
    assert!(
        format!("{err:#}").contains("no symbol no_such_function"),
        "{err:#}"
    );
    // A function the run never calls: QEMU runs to the firmware's exit, and that is an error.
    let err = estimate_elf(&elf, "HardFault", Duration::from_secs(60)).unwrap_err();
    assert!(format!("{err:#}").contains("never called"), "{err:#}");
    // The demo model's timed invoke, for contrast, is priced.
    let demo = estimate_elf(&elf, MOTE_TIMED_SYMBOL, Duration::from_secs(60)).unwrap();
    assert!(
        demo.cycles > demo.instructions && demo.instructions > 1000,
        "{demo:?}"
    );
    let _ = std::fs::remove_file(&elf);
}

/// The instructions the peer's micro_speech image prints for its first timed invoke.
const PEER_FIRST_INVOKE_SYSTICK: u64 = 1_495_360;

/// The peer (TFLite-Micro + CMSIS-NN, benchmarks/tflm-peer) through the same estimate: its
/// timed region is the first of its three `MicroInterpreter::Invoke()` calls.
#[test]
fn the_peer_is_estimated_over_one_invoke() {
    let elf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../benchmarks/tflm-peer/tflm_micro_speech_quantized.elf");
    let estimate = || estimate_elf(&elf, TFLM_INVOKE_SYMBOL, Duration::from_secs(120)).unwrap();
    let first = estimate();
    // Within two SysTick ticks (40 instructions each) of what the image prints for that invoke.
    assert!(
        first.instructions.abs_diff(PEER_FIRST_INVOKE_SYSTICK) <= 80,
        "{first:?}"
    );
    assert!((1.0..=2.5).contains(&first.cpi()), "{first:?}");
    assert_eq!(estimate(), first);
}
