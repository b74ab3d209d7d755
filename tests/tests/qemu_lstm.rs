//! The LSTM examples end to end: trained in f32 by `mote train`, quantized and exported, then
//! run on QEMU's emulated Cortex-M4, whose test accuracy must be the host's int8 accuracy.

use mote_host::firmware::{self, Board};
use mote_host::qemu::run_elf;
use mote_host::quantize::RangeMethod;
use mote_host::train::{ModelSpec, NoCallbacks};
use mote_host::workflow;
use std::time::Duration;

/// Trains and exports `examples/<file>` on `data`, runs the export in QEMU: the device's
/// `(hits, samples)` and the host's int8 hits.
fn device_and_host(file: &str, data: &str) -> ((usize, usize), usize) {
    let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let spec = ModelSpec::from_file(path).unwrap();
    let data = workflow::load_data(data, None, &Default::default()).unwrap();
    let (net, _) = workflow::train(&spec, &data, &mut NoCallbacks).unwrap();
    let dir = std::env::temp_dir().join(format!("mote-qemu-{}-{}", spec.name, std::process::id()));
    let report = workflow::export(&net, &data, 200, RangeMethod::MinMax, None, &dir).unwrap();
    let samples = data.test.len();
    let host_hits = (report.int8.accuracy * samples as f64).round() as usize;

    let elf = firmware::build(Board::Qemu, &[("MOTE_MODEL_DIR", dir.to_str().unwrap())]).unwrap();
    let copy = dir.join("firmware.elf");
    std::fs::copy(&elf, &copy).unwrap();
    let run = run_elf(&copy, Duration::from_secs(300), |_| {}).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(run.success(), "exit {}: {:#?}", run.exit_code, run.log);
    let line = run
        .log
        .iter()
        .map(|l| l.text.as_str())
        .find(|t| t.starts_with("accuracy test "))
        .expect("an accuracy line");
    let (hits, total) = line.rsplit(' ').next().unwrap().split_once('/').unwrap();
    let device = (hits.parse().unwrap(), total.parse().unwrap());
    println!("{file}: device {device:?}, host int8 {host_hits}/{samples}");
    (device, host_hits)
}

#[test]
fn motion_lstm_on_the_device_scores_what_the_host_does() {
    let ((hits, total), host) = device_and_host("motion_lstm.toml", "motion");
    assert_eq!(total, 40);
    assert_eq!(hits, host);
    assert!(hits >= 39, "{hits}/40");
}

#[test]
fn digits_lstm_on_the_device_scores_what_the_host_does() {
    let ((hits, total), host) = device_and_host("digits_lstm.toml", "digits");
    assert_eq!(total, 359);
    assert_eq!(hits, host);
    assert!(hits >= 348, "{hits}/359");
}
