//! The firmware on QEMU's emulated Cortex-M4: it runs the embedded int8 model and must print
//! exactly the outputs TFLite-Micro gives and mote-core gives on the host, plus its costs.

use mote_core::{Interpreter, Model};
use mote_host::firmware::{self, Board};
use mote_host::qemu::{run_elf, QemuRun};
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

/// `output 3 [-86, -83] 415200 instructions` -> (3, [-86, -83], 415200)
fn parse_output(line: &str) -> (usize, Vec<i8>, u64) {
    let rest = line.strip_prefix("output ").unwrap();
    let (index, rest) = rest.split_once(' ').unwrap();
    let (values, rest) = rest.strip_prefix('[').unwrap().split_once(']').unwrap();
    let values = values
        .split(',')
        .map(|v| v.trim().parse().unwrap())
        .collect();
    let mut words = rest.split_whitespace();
    let count = words.next().unwrap().parse().unwrap();
    assert_eq!(words.next(), Some("instructions"));
    (index.parse().unwrap(), values, count)
}

fn host_outputs(blob: &[u8], inputs: &[u8]) -> Vec<Vec<i8>> {
    let blob = AlignedBytes::new(blob);
    let model = Model::parse(blob.as_slice()).unwrap();
    let mut arena = vec![0u32; model.arena_size().div_ceil(4)];
    // SAFETY: viewing a u32 buffer as bytes; same memory, alignment 4, no padding.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(arena.as_mut_ptr().cast::<u8>(), arena.len() * 4) };
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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/models");
    assert!(
        std::fs::read(dir.join("demo.mote")).unwrap() == blob,
        "run the write_demo_model example"
    );
    assert!(
        std::fs::read(dir.join("demo_input.i8")).unwrap() == input,
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

    let (blob, inputs, expected) = mote_tests::lowering::demo_model();
    let model_line = texts
        .iter()
        .find(|t| t.starts_with("model "))
        .expect("a model line");
    let parsed = AlignedBytes::new(&blob);
    let model = Model::parse(parsed.as_slice()).unwrap();
    assert!(model_line.starts_with(&format!(
        "model bytes={} ops={} arena={} parse=",
        blob.len(),
        model.op_count(),
        model.arena_size()
    )));

    let outputs: Vec<_> = texts
        .iter()
        .filter(|t| t.starts_with("output "))
        .map(|t| parse_output(t))
        .collect();
    let host = host_outputs(&blob, &inputs);
    assert_eq!(outputs.len(), expected.len());
    for (i, (index, device, instructions)) in outputs.iter().enumerate() {
        assert_eq!(*index, i);
        assert_eq!(device, &expected[i], "vector {i}: device vs TFLite-Micro");
        assert_eq!(device, &host[i], "vector {i}: device vs host");
        assert!(*instructions > 0 && instructions % 40 == 0);
    }

    // One profile line per operator, in order, whose sum is the whole invoke minus the hook's
    // own overhead (a few hundred instructions per layer at most).
    let layers: Vec<(String, u64)> = texts
        .iter()
        .filter_map(|t| t.strip_prefix("layer "))
        .map(|t| {
            let w: Vec<&str> = t.split_whitespace().collect();
            (w[1].to_string(), w[2].parse().unwrap())
        })
        .collect();
    assert_eq!(layers.len(), model.op_count() as usize);
    for (k, (name, _)) in layers.iter().enumerate() {
        assert_eq!(name, model.op(k as u16).unwrap().opcode.name());
    }
    let layer_sum: u64 = layers.iter().map(|(_, c)| c).sum();
    let total = outputs[0].2;
    assert!(
        layer_sum <= total + 40 * layers.len() as u64,
        "layers {layer_sum} > total {total}"
    );
    assert!(
        layer_sum * 10 >= total * 9,
        "layers {layer_sum} cover under 90% of {total}"
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
