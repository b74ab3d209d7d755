//! A data logger's CSV (one row per time step, a timestamp column, activities by name) goes
//! through `mote train` (cut into windows), `mote export` and `mote deploy`: the device logs
//! its predictions and per-class recall by name, and scores what the host's int8 model does.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `mote args` in the workspace root: (success, stdout + stderr).
fn mote(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("mote runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn ok(args: &[&str]) -> String {
    let (success, text) = mote(args);
    assert!(success, "mote {args:?}: {text}");
    text
}

/// The number after `key` in `text`, up to `end`.
fn figure<'a>(text: &'a str, key: &str, end: char) -> &'a str {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("`{key}` in {text}"))
        + key.len();
    text[at..].split(end).next().unwrap()
}

#[test]
fn a_logger_csv_is_windowed_exported_and_named_on_the_device() {
    let out = std::env::temp_dir().join(format!("mote-long-{}", std::process::id()));
    let (dir, model) = (out.to_string_lossy(), out.join("model"));
    let trained = ok(&[
        "train",
        "examples/motion_log.toml",
        "--data",
        "data/motion-log/session_train.csv.gz",
        "--test",
        "data/motion-log/session_test.csv.gz",
        "--epochs",
        "15",
        "--out",
        &dir,
    ]);
    // 4000 test rows in 50-row windows every 25 rows; the model file's class order.
    assert!(
        trained.contains("159 test samples of shape [1, 50, 6]"),
        "{trained}"
    );
    assert!(
        trained.contains(r#"classes ["Standing", "Walking", "Running", "Badminton"]"#),
        "{trained}"
    );
    let record = std::fs::read_to_string(out.join("training.json")).unwrap();
    assert!(record.contains("\"window\": 50") && record.contains("\"stride\": 25"));

    let exported = ok(&[
        "export",
        &format!("{dir}/model.ckpt"),
        "--out",
        &model.to_string_lossy(),
    ]);
    let int8: f64 = figure(&exported, "int8 ", '%').parse().unwrap();
    assert!(int8 > 85.0, "{exported}");
    let generated = std::fs::read_to_string(model.join("model.rs")).unwrap();
    assert!(generated
        .contains(r#"CLASS_NAMES: [&str; 4] = ["Standing", "Walking", "Running", "Badminton"]"#));
    // Eval reads a new log through the recorded windowing and columns.
    let eval = ok(&[
        "eval",
        &model.to_string_lossy(),
        "--data",
        "data/motion-log/session_test.csv.gz",
    ]);
    assert!(
        eval.contains(&format!("int8 accuracy {int8:.2}% on 159 samples")),
        "{eval}"
    );

    let device = ok(&["deploy", &model.to_string_lossy()]);
    let hits: usize = figure(&device, "accuracy test ", '/').parse().unwrap();
    assert_eq!(
        format!("{:.2}", 100.0 * hits as f64 / 159.0),
        format!("{int8:.2}")
    );
    let recalled: usize = ["Standing", "Walking", "Running", "Badminton"]
        .iter()
        .map(|name| {
            let line = figure(&device, &format!("recall {name} "), '\n');
            line.split('/')
                .next()
                .unwrap()
                .trim()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(recalled, hits);
    assert!(device.contains("predicted 0 Standing"), "{device}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn flags_window_name_and_skip_columns_and_bad_ones_are_refused() {
    let out = std::env::temp_dir().join(format!("mote-long-flags-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    // Two channels; the level of channel `a` says the class.
    let mut csv = String::from("t,a,b,state\n");
    for row in 0..400 {
        let (state, level) = if row / 50 % 2 == 0 {
            ("low", 0.0)
        } else {
            ("high", 5.0)
        };
        csv += &format!(
            "{},{},{},{state}\n",
            row,
            level + (row % 7) as f64 * 0.1,
            row % 3
        );
    }
    std::fs::write(out.join("log.csv"), csv).unwrap();
    std::fs::write(
        out.join("model.toml"),
        "name = \"levels\"\ninput = [1, 10, 2]\nclasses = 2\n[[layers]]\ntype = \"flatten\"\n\
         [[layers]]\ntype = \"dense\"\nunits = 2\n[[layers]]\ntype = \"softmax\"\n\
         [training]\nepochs = 3\n",
    )
    .unwrap();
    let (spec, data, dir) = (
        out.join("model.toml").to_string_lossy().into_owned(),
        out.join("log.csv").to_string_lossy().into_owned(),
        out.join("run").to_string_lossy().into_owned(),
    );
    let base = ["train", &spec, "--data", &data, "--out", &dir];
    let flags = [
        "--window",
        "10",
        "--stride",
        "5",
        "--window-label",
        "last",
        "--label-column",
        "state",
        "--ignore-columns",
        "t",
        "--classes",
        "low,high",
    ];
    let trained = ok(&[&base[..], &flags[..]].concat());
    assert!(trained.contains("of shape [1, 10, 2]"), "{trained}");
    assert!(trained.contains(r#"classes ["low", "high"]"#), "{trained}");
    // Each class's last 20% of rows (40 of 200) are test rows: 7 windows of 10 every 5 each.
    assert!(trained.contains("14 test samples"), "{trained}");

    for (bad, says) in [
        (&["--test-share", "1.5"][..], "test share"),
        (&["--window", "0"][..], "window must be at least 1"),
        (&["--test-share", "0"][..], "the test split is empty"),
        (
            &["--classes", "low"][..],
            "label `high` is not one of the classes",
        ),
        (&["--label-column", "mood"][..], "no column named `mood`"),
    ] {
        // The bad flag replaces the good one of the same name.
        let mut args = [&base[..], &flags[..]].concat();
        match args.iter().position(|a| *a == bad[0]) {
            Some(at) => args[at + 1] = bad[1],
            None => args.extend_from_slice(bad),
        }
        let (success, text) = mote(&args);
        assert!(!success && text.contains(says), "{bad:?}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    std::fs::remove_dir_all(&out).ok();
}
