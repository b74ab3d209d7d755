//! The firmware on QEMU's emulated Cortex-M4: it runs the embedded int8 model and must print
//! exactly the outputs TFLite-Micro gives and mote-core gives on the host, plus its costs.

use mote_core::{Interpreter, Model};
use mote_host::bench::BenchCase;
use mote_host::bench::BenchResult;
use mote_host::firmware::{self, Board};
use mote_host::qemu::{run_elf, QemuRun};
use mote_host::report::FirmwareReport;
use mote_host::AlignedBytes;
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

fn host_outputs(blob: &[u8], inputs: &[u8]) -> Vec<Vec<i8>> {
    let blob = AlignedBytes::new(blob);
    let model = Model::parse(blob.as_slice()).unwrap();
    let mut arena = mote_host::AlignedBytes::zeroed(model.arena_size());
    let bytes = arena.as_mut_slice();
    let mut interpreter = Interpreter::new(model, bytes).unwrap();
    let len = interpreter.input_i8(0).unwrap().len();
    inputs
        .chunks_exact(len)
        .map(|vector| {
            for (dst, &src) in interpreter.input_i8(0).unwrap().iter_mut().zip(vector) {
                *dst = src as i8;
            }
            interpreter.invoke().unwrap();
            interpreter.output_i8(0).unwrap().to_vec()
        })
        .collect()
}

#[test]
fn the_committed_demo_model_is_what_the_generator_writes() {
    let (blob, input, _) = mote_tests::lowering::demo_model();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/models/demo");
    assert!(
        std::fs::read(dir.join("model.mote")).unwrap() == blob,
        "run the write_demo_model example"
    );
    assert!(
        std::fs::read(dir.join("test_inputs.i8")).unwrap() == input,
        "run the write_demo_model example"
    );
}

#[test]
fn firmware_output_equals_tflite_micro_and_the_host_with_costs() {
    let elf = build_qemu_firmware(None);
    let run = run(&elf);
    assert!(run.success(), "exit {}; log: {:#?}", run.exit_code, run.log);
    let texts: Vec<&str> = run.log.iter().map(|l| l.text.as_str()).collect();
    assert!(texts[0].starts_with("mote-firmware ") && texts[0].ends_with(" on qemu-mps2-an386"));
    assert_eq!(
        texts[1],
        "cost unit instructions (SysTick x 40 under qemu -icount shift=0)"
    );
    let report = FirmwareReport::from_log(&run.log).unwrap();

    let (blob, inputs, expected) = mote_tests::lowering::demo_model();
    let parsed = AlignedBytes::new(&blob);
    let model = Model::parse(parsed.as_slice()).unwrap();
    assert_eq!(report.unit, "instructions");
    assert_eq!(
        (report.model_bytes, report.ops, report.arena),
        (blob.len(), model.op_count() as usize, model.arena_size())
    );

    let host = host_outputs(&blob, &inputs);
    assert_eq!(report.inferences.len(), expected.len());
    for (i, inference) in report.inferences.iter().enumerate() {
        let output: Vec<i8> = inference.output.iter().map(|&b| b as i8).collect();
        assert_eq!(output, expected[i], "vector {i}: device vs TFLite-Micro");
        assert_eq!(output, host[i], "vector {i}: device vs host");
        assert!(inference.cost > 0 && inference.cost % 40 == 0);
    }

    // One profile line per operator, in order, whose sum is the whole invoke minus the hook's
    // own overhead (a few hundred instructions per layer at most).
    assert_eq!(report.layers.len(), model.op_count() as usize);
    for (k, layer) in report.layers.iter().enumerate() {
        assert_eq!(layer.op, model.op(k as u16).unwrap().opcode.name());
    }
    let layer_sum: u64 = report.layers.iter().map(|l| l.cost).sum();
    let total = report.inferences[0].cost;
    assert!(
        layer_sum <= total + 40 * report.layers.len() as u64,
        "layers {layer_sum} > total {total}"
    );
    assert!(
        layer_sum * 10 >= total * 9,
        "layers {layer_sum} cover under 90% of {total}"
    );
    let stack = report.stack_peak.expect("a stack line");
    assert!((64..8192).contains(&stack), "stack {stack}");
    // Each operator's own peak (the stack repainted after the one before it): the invoke's
    // peak is one of them, and some operator reads below an earlier one (with the repainting
    // broken, each reading would be the running maximum, which never falls).
    let per_layer: Vec<usize> = report.layers.iter().map(|l| l.stack.unwrap()).collect();
    assert_eq!(per_layer.iter().max(), Some(&stack), "{per_layer:?}");
    let falls = per_layer.windows(2).any(|pair| pair[1] < pair[0]);
    assert!(falls, "{per_layer:?}");
    // From reset, the whole run's peak holds the invoke's below the harness, and the harness.
    let from_reset = report.stack_from_reset.expect("a stack-from-reset line");
    assert!(
        from_reset > stack && from_reset < stack + 8192,
        "{from_reset} from reset, {stack} in an invoke"
    );
}

#[test]
fn bench_measures_a_model_and_checks_it_bit_exact() {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (model, inputs, expected) = mote_tests::lowering::demo_model();
    let expected: Vec<u8> = expected.concat().into_iter().map(|v| v as u8).collect();
    let case = BenchCase {
        name: "demo ds-cnn".into(),
        model: model.clone(),
        inputs,
        expected: Some(expected),
    };
    let result = mote_host::bench::run(&case).unwrap();
    assert_eq!(result.bit_exact, Some(true));
    assert_eq!(result.macs, 7296);
    assert_eq!(result.flash.model, model.len());
    assert_eq!(result.flash.inputs, case.inputs.len());
    // The runtime alone, without model and inputs, is most of a small firmware but not all of it.
    assert!(
        (4_000..200_000).contains(&result.flash.runtime),
        "{:?}",
        result.flash
    );
    let table = mote_host::bench::table(&[(result, None)]);
    assert!(table.contains("| demo ds-cnn | 7296 |"), "{table}");
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

/// A HardFault in the middle of a log call (while defmt formats an argument): the fault
/// handler must not take the logger state the interrupted call holds. It writes its message
/// raw, on semihosting's stderr, and the run fails cleanly.
#[test]
fn a_hardfault_during_a_log_call_ends_the_run_with_failure_and_a_raw_message() {
    let elf = build_qemu_firmware(Some("hardfault-in-log"));
    let output = mote_host::qemu::qemu_command(&elf)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("QEMU runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HardFault during a log call at pc=0x"),
        "{stderr}"
    );
}

/// Runs MLPerf model `name` in QEMU on TFLite-Micro's benchmark input and `vectors` golden
/// vectors, and checks every output byte against TFLite-Micro's.
fn mlperf_in_qemu(name: &str, vectors: usize) -> (BenchResult, mote_host::bench::Reference) {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mlperf");
    let (case, reference) = mote_host::bench::mlperf_suite(&dir, vectors)
        .unwrap()
        .into_iter()
        .find(|(c, _)| c.name == name)
        .unwrap();
    let result = mote_host::bench::run(&case).unwrap();
    // The benchmark input, then every golden vector.
    assert_eq!(result.report.inferences.len(), vectors + 1, "{name}");
    assert_eq!(
        result.bit_exact,
        Some(true),
        "{name}: device outputs differ from TFLite-Micro's"
    );
    (result, reference.unwrap())
}

#[test]
fn keyword_spotting_in_qemu_is_bit_exact_with_tflite_micro() {
    let (result, reference) = mlperf_in_qemu("kws_ref_model", 32);
    // Two 8,000-byte activations live at once, plus a depthwise layer's kernel scratch
    // (planned beside them): its row ring, 112 bytes, and a channel group's constants and
    // widened taps, 152.
    assert_eq!(result.arena, 16_264);
    assert_eq!(result.arena, result.arena_lower_bound);
    assert!(result.arena < reference.arena);
    assert_eq!(result.report.layers.len(), 13);
}

/// The streaming wake-word model in QEMU: its H x 1 depthwise layers run the column kernel's
/// assembly; its 16 random and 45 real golden vectors, every output byte as TFLite-Micro's.
#[test]
fn streaming_wake_word_in_qemu_is_bit_exact_with_tflite_micro() {
    let (result, reference) = mlperf_in_qemu("str_ww_ref_model", 61);
    assert_eq!(result.arena, result.arena_lower_bound);
    assert!(result.arena < reference.arena);
    assert_eq!(result.report.layers.len(), 11);
}

/// The anomaly-detection autoencoder (ten FULLY_CONNECTED layers) in QEMU: its 640-feature
/// layer runs the DSP loop that widens the input as it reads it (no scratch), the others the
/// one over a widened column; every output byte as TFLite-Micro's.
#[test]
fn anomaly_detection_in_qemu_is_bit_exact_with_tflite_micro() {
    let (result, reference) = mlperf_in_qemu("ad01_int8", 8);
    assert_eq!(result.arena, result.arena_lower_bound);
    assert!(result.arena < reference.arena);
    assert_eq!(result.report.layers.len(), 10);
}
