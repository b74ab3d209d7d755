//! `mote train --data X --test Y` records both (absolute) with the normalization it trained
//! with, and `mote export`, run from another folder, evaluates and writes exactly Y's samples:
//! the held-out figure is on held-out data, and the device's test set is Y.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

/// `n` rows of `x0,x1,x2,x3,label`: class 1 when x0 + x1 > x2 + x3, values spread by `seed`.
fn csv(n: usize, seed: u32) -> String {
    let mut s = String::from("x0,x1,x2,x3,label\n");
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        f64::from(state % 1000) / 100.0
    };
    for _ in 0..n {
        let v = [next(), next(), next(), next()];
        let label = u8::from(v[0] + v[1] > v[2] + v[3]);
        let _ = writeln!(s, "{},{},{},{},{label}", v[0], v[1], v[2], v[3]);
    }
    s
}

fn mote(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("mote runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mote {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Writes `train.csv`, `test.csv` and the sums model into `data` and trains it there (`run/`)
/// with `test.csv` as `--test`.
fn trained(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("train.csv"), csv(120, 1)).unwrap();
    std::fs::write(data.join("test.csv"), csv(7, 2)).unwrap();
    std::fs::write(
        data.join("model.toml"),
        "name = \"sums\"\ninput = [4]\nclasses = 2\n[[layers]]\ntype = \"dense\"\nunits = 8\n\
         activation = \"relu\"\n[[layers]]\ntype = \"dense\"\nunits = 2\n[[layers]]\n\
         type = \"softmax\"\n[training]\nepochs = 5\n",
    )
    .unwrap();
    mote(
        data,
        &[
            "train",
            "model.toml",
            "--data",
            "train.csv",
            "--test",
            "test.csv",
            "--out",
            "run",
        ],
    );
}

/// [`trained`], then exported to `data/model`.
fn trained_and_exported(data: &Path) {
    trained(data);
    mote(data, &["export", "run/model.ckpt", "--out", "model"]);
}

/// `mote eval` on a new sensor's recording (the test rows through `x * 1.5 + 6`) scores what
/// the exported model gives on the same samples normalized with the model's normalization
/// and quantized, run through `mote infer`.
#[test]
fn eval_on_a_shifted_file_equals_infer_on_the_same_samples() {
    let data = std::env::temp_dir().join(format!("mote-shifted-{}", std::process::id()));
    trained_and_exported(&data);
    let rows: Vec<(Vec<f32>, usize)> = csv(40, 3)
        .lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f32> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (
                v[..4].iter().map(|x| x * 1.5 + 6.0).collect(),
                v[4] as usize,
            )
        })
        .collect();
    let mut shifted = String::from("x0,x1,x2,x3,label\n");
    for (x, y) in &rows {
        let _ = writeln!(shifted, "{},{},{},{},{y}", x[0], x[1], x[2], x[3]);
    }
    std::fs::write(data.join("shifted.csv"), shifted).unwrap();
    let said = mote(&data, &["eval", "model", "--data", "shifted.csv"]);
    let percent: f64 = said
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        said.starts_with("int8 accuracy") && said.contains("on 40 samples"),
        "{said}"
    );

    let record: mote_host::workflow::TrainingRecord =
        serde_json::from_str(&std::fs::read_to_string(data.join("model/training.json")).unwrap())
            .unwrap();
    let blob = std::fs::read(data.join("model/model.mote")).unwrap();
    let aligned = mote_host::AlignedBytes::new(&blob);
    let model = mote_core::Model::parse(aligned.as_slice()).unwrap();
    let input = model.input(0).unwrap();
    let mut raw = Vec::new();
    for (x, _) in &rows {
        let mut x = x.clone();
        record.normalization.apply_values(&mut x).unwrap();
        let q = mote_host::quantize::quantize_input(&x, (input.scale(), input.zero_point()));
        raw.extend(q.iter().map(|&v| v as u8));
    }
    std::fs::write(data.join("in.bin"), raw).unwrap();
    mote(
        &data,
        &[
            "infer",
            "model/model.mote",
            "--input",
            "in.bin",
            "--output",
            "out.bin",
        ],
    );
    let out = std::fs::read(data.join("out.bin")).unwrap();
    let hits = out
        .chunks_exact(2)
        .zip(&rows)
        .filter(|(o, (_, y))| usize::from((o[1] as i8) > (o[0] as i8)) == *y)
        .count();
    let infer_percent = 100.0 * hits as f64 / rows.len() as f64;
    assert!(
        (percent - infer_percent).abs() < 0.01,
        "eval {percent}% vs infer {infer_percent}%"
    );
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn a_test_file_survives_through_export() {
    let root = std::env::temp_dir().join(format!("mote-recorded-{}", std::process::id()));
    let (data, elsewhere) = (root.join("data"), root.join("elsewhere"));
    trained(&data);
    std::fs::create_dir_all(&elsewhere).unwrap();
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("run/training.json")).unwrap())
            .unwrap();
    // Recorded relative to the record, so that the project can move as a whole.
    assert_eq!(record["test"].as_str(), Some("../test.csv"));
    assert_eq!(record["data"].as_str(), Some("../train.csv"));

    // Moved, and exported from another folder: the recorded paths still resolve.
    let moved = root.join("moved");
    std::fs::rename(&data, &moved).unwrap();
    let checkpoint = moved.join("run/model.ckpt");
    let out = elsewhere.join("model");
    let export = |extra: &[&str]| {
        let mut args = vec![
            "export",
            checkpoint.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        mote(&elsewhere, &args);
        std::fs::read(out.join("test_labels.u8")).unwrap()
    };
    assert_eq!(
        export(&[]).len(),
        7,
        "the device's test set is the --test file's 7 samples"
    );
    // The exported record points at the same files from its own folder.
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    assert_eq!(exported["test"].as_str(), Some("../../moved/test.csv"));

    // An explicit test file wins over the recorded one.
    std::fs::write(elsewhere.join("other.csv"), csv(5, 3)).unwrap();
    assert_eq!(export(&["--test", "other.csv"]).len(), 5);
    std::fs::remove_dir_all(&root).ok();
}

/// `mote export --finetune-data FILE`: a labelled recording from the new sensor becomes the
/// device's fine-tuning set (80%) and its test (20%), through the model's normalization.
#[test]
fn a_new_sensor_recording_becomes_the_fine_tuning_set() {
    let data = std::env::temp_dir().join(format!("mote-recording-{}", std::process::id()));
    trained_and_exported(&data);
    let mut recording = String::from("x0,x1,x2,x3,label\n");
    for line in csv(50, 5).lines().skip(1) {
        let v: Vec<f32> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let _ = writeln!(
            recording,
            "{},{},{},{},{}",
            v[0] * 1.3 + 1.0,
            v[1] * 1.3 + 1.0,
            v[2] * 1.3 + 1.0,
            v[3] * 1.3 + 1.0,
            v[4]
        );
    }
    std::fs::write(data.join("new_sensor.csv"), recording).unwrap();
    let args = [
        "export",
        "run/model.ckpt",
        "--out",
        "tuned",
        "--finetune-data",
        "new_sensor.csv",
    ];
    mote(&data, &args);
    let labels = |name: &str| std::fs::read(data.join("tuned").join(name)).unwrap().len();
    assert_eq!(labels("finetune_labels.u8"), 40);
    assert_eq!(labels("finetune_test_labels.u8"), 10);
    assert_eq!(labels("finetune_inputs.i8"), 40 * 4);
    std::fs::remove_dir_all(&data).ok();
}
