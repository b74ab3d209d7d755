//! The apps in `examples/`: their model directories are what `mote import --dir` and `mote
//! export` write, their Cargo.toml enables the features their model.rs names, and the
//! bare-metal app, built in its own folder as the README shows, runs on QEMU's Cortex-M4F and
//! prints for every frame the class and score mote-core gives on the host.

use mote_core::ops::quantize::{dequantize_one, quantize_one};
use mote_core::{Interpreter, Model};
use mote_host::AlignedBytes;
use mote_tests::example_models::{self, examples_dir};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_committed_example_models_are_what_the_generator_writes() {
    for model in [example_models::bare_metal(), example_models::embassy()] {
        for (name, bytes) in &model.files {
            let path = model.dir.join(name);
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == *bytes,
                "{} differs from what mote writes now: run `cargo run -p mote-tests --example \
                 write_example_models`",
                path.display()
            );
        }
    }
}

/// `MOTE_CORE_FEATURES` of an example's model.rs.
fn model_features(app: &str) -> Vec<String> {
    let model_rs =
        std::fs::read_to_string(examples_dir().join(app).join("model/model.rs")).unwrap();
    let line = model_rs
        .lines()
        .find(|l| l.starts_with("pub const MOTE_CORE_FEATURES"))
        .expect("model.rs names its features");
    let list = &line[line.find("= [").unwrap() + 3..line.rfind(']').unwrap()];
    list.split(',')
        .map(|f| f.trim().trim_matches('"').to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

#[test]
fn each_example_enables_the_features_its_model_needs() {
    for app in ["bare-metal", "embassy-nrf52840"] {
        let manifest =
            std::fs::read_to_string(examples_dir().join(app).join("Cargo.toml")).unwrap();
        let features = model_features(app);
        assert!(!features.is_empty());
        for feature in features {
            assert!(
                manifest.contains(&format!("\"{feature}\"")),
                "examples/{app}/Cargo.toml lacks mote-core's feature {feature}"
            );
        }
    }
}

/// The runner `cargo run` uses in `dir` (its `.cargo/config.toml`), as a command.
fn cargo_runner(dir: &Path) -> Command {
    let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
    let line = config
        .lines()
        .find_map(|l| l.strip_prefix("runner = \""))
        .expect("the example names its runner");
    let mut words = line.trim_end_matches('"').split_whitespace();
    let mut cmd = Command::new(words.next().unwrap());
    cmd.args(words);
    cmd
}

/// Runs `cmd` until it exits or `timeout` passes; its exit success and its stdout.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start QEMU (qemu-system-arm)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap();
    assert!(
        status.is_some(),
        "the app did not exit within {timeout:?}: {text}"
    );
    (status.is_some_and(|s| s.success()), text)
}

/// What the app should print for each recorded frame: its readings quantized again (as the app
/// does), one invoke on the host, the best class and its score.
fn host_lines(dir: &Path) -> Vec<String> {
    let blob = AlignedBytes::new(&std::fs::read(dir.join("model/model.mote")).unwrap());
    let frames = std::fs::read(dir.join("model/test_inputs.i8")).unwrap();
    let model = Model::parse(blob.as_slice()).unwrap();
    let input = model.input(0).unwrap();
    let (scale, zero_point) = (input.scale(), input.zero_point());
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let mut interpreter = Interpreter::new(model, arena.as_mut_slice()).unwrap();
    let len = interpreter.input_i8(0).unwrap().len();
    let lines: Vec<String> = frames
        .chunks_exact(len)
        .enumerate()
        .map(|(i, frame)| {
            for (q, &x) in interpreter.input_i8(0).unwrap().iter_mut().zip(frame) {
                *q = quantize_one(
                    scale,
                    zero_point,
                    dequantize_one(scale, zero_point, x as i8),
                );
            }
            interpreter.invoke().unwrap();
            let scores = interpreter.output_i8(0).unwrap();
            let best = (0..scores.len()).max_by_key(|&i| scores[i]).unwrap();
            format!("frame {i}: class {best} (score {})", scores[best])
        })
        .collect();
    lines
}

#[test]
fn the_bare_metal_example_runs_in_qemu_and_prints_each_frames_class() {
    let dir = examples_dir().join("bare-metal");
    // As the README shows: `cargo build --release` in the app's folder (the target is explicit
    // here, as its .cargo/config.toml also gives it).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(&dir)
        .args(["build", "--release", "--target", "thumbv7em-none-eabihf"])
        // The ELF's path below is the app's own target/.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .status()
        .expect("run cargo");
    assert!(build.success(), "examples/bare-metal does not build");
    let elf = dir.join("target/thumbv7em-none-eabihf/release/mote-example-bare-metal");

    // As `cargo run --release` runs it: the runner from its .cargo/config.toml.
    let mut qemu = cargo_runner(&dir);
    qemu.arg(&elf);
    let (success, out) = run_with_timeout(qemu, Duration::from_secs(60));
    assert!(success, "the app failed: {out}");

    let lines: Vec<&str> = out.lines().collect();
    let expected = host_lines(&dir);
    assert!(expected.len() > 1);
    assert!(
        lines[0].starts_with("mote bare-metal example: ") && lines[0].contains("op-conv2d"),
        "{out}"
    );
    assert_eq!(lines[1..1 + expected.len()], expected[..], "{out}");
    assert_eq!(
        lines[1 + expected.len()..],
        [format!("done: {} frames", expected.len())],
        "{out}"
    );
}
