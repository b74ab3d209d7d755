//! The whole device story in QEMU: an int8 digits model (trained and quantized by mote) is
//! evaluated on the emulated Cortex-M4, its head is fine-tuned there on a new sensor's data,
//! the weights are saved, the board reboots, and the learned weights come back.

use mote_core::{Interpreter, Model};
use mote_host::firmware::{self, Board};
use mote_host::qemu::run_elf;
use mote_host::AlignedBytes;
use std::time::Duration;

fn field(text: &str, key: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| Some(w.strip_prefix(key)?.strip_prefix('=')?.to_string()))
}

/// `accuracy <what> hits/total` -> (hits, total).
fn accuracy(texts: &[&str], what: &str) -> (usize, usize) {
    let line = texts
        .iter()
        .find(|t| t.starts_with(&format!("accuracy {what} ")))
        .unwrap_or_else(|| panic!("no `accuracy {what}` line in {texts:#?}"));
    let (hits, total) = line.rsplit(' ').next().unwrap().split_once('/').unwrap();
    (hits.parse().unwrap(), total.parse().unwrap())
}

#[test]
fn device_fine_tunes_persists_and_restores_after_a_reboot() {
    let demo = mote_tests::digits_demo::build();
    let dir = std::env::temp_dir().join(format!("mote-digits-demo-{}", std::process::id()));
    demo.write(&dir).unwrap();
    let elf = firmware::build(Board::Qemu, &[("MOTE_MODEL_DIR", dir.to_str().unwrap())]).unwrap();
    let copy = dir.join("firmware.elf");
    std::fs::copy(&elf, &copy).unwrap();
    let run = run_elf(&copy, Duration::from_secs(120), |_| {}).unwrap();
    assert!(run.success(), "exit {}: {:#?}", run.exit_code, run.log);
    let texts: Vec<&str> = run.log.iter().map(|l| l.text.as_str()).collect();

    // The device's int8 accuracy is the host's, sample for sample.
    let blob = AlignedBytes::new(&demo.quantized.built.bytes);
    let model = Model::parse(blob.as_slice()).unwrap();
    let mut arena = mote_host::AlignedBytes::zeroed(model.arena_size());
    let arena = arena.as_mut_slice();
    let mut interpreter = Interpreter::new(model, arena).unwrap();
    let host_hits = demo
        .test
        .x
        .iter()
        .zip(&demo.test.y)
        .filter(|(x, &y)| {
            let q = mote_host::quantize::quantize_input(x, demo.quantized.input);
            interpreter.input_i8(0).unwrap().copy_from_slice(&q);
            interpreter.invoke().unwrap();
            let out = interpreter.output_i8(0).unwrap();
            let best = (0..out.len()).fold(0, |b, i| if out[i] > out[b] { i } else { b });
            best == y as usize
        })
        .count();
    // Two boots print the test accuracy; both must be the host's.
    let test_lines: Vec<&&str> = texts
        .iter()
        .filter(|t| t.starts_with("accuracy test "))
        .collect();
    assert_eq!(test_lines.len(), 2);
    assert_eq!(accuracy(&texts, "test"), (host_hits, 359));

    let before = accuracy(&texts, "new-sensor-before");
    let after = accuracy(&texts, "new-sensor-after");
    let restored = accuracy(&texts, "restored");
    println!("device: test {host_hits}/359, new sensor {before:?} -> {after:?}, after reboot {restored:?}");
    assert!(
        after.0 >= before.0 + 50,
        "fine-tuning gained too little: {before:?} -> {after:?}"
    );
    assert_eq!(
        restored, after,
        "the weights read back after the reboot are not the ones learned"
    );

    let tune = texts.iter().find(|t| t.starts_with("finetune ")).unwrap();
    assert_eq!(field(tune, "samples").as_deref(), Some("2000"));
    assert_eq!(field(tune, "params").as_deref(), Some("1320"));
    let step: u64 = field(tune, "step").unwrap().parse().unwrap();
    assert!(
        (1_000..100_000).contains(&step),
        "{step} instructions per training step"
    );
    assert!(texts.contains(&"saved head slot=0 sequence=1"));
    assert!(texts.contains(&"rebooting"));
    assert!(texts.contains(&"restored head slot=0 sequence=1 bytes=1320"));
    // A cold start holds no copy at all: nothing is reported foreign.
    assert!(
        !texts.iter().any(|t| t.starts_with("stored head ignored")),
        "{texts:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
