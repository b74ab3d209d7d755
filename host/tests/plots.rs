//! The charts say what their data says: panels, markers, labels, recall, bar lengths and the
//! arena plan, read back from the SVG text. With `MOTE_PLOT_DIR` set, each chart is also
//! written there to look at.

use mote_host::inspect::{self, BlockKind};
use mote_host::plot::{
    confusion_matrix, escape, layer_chart, layer_rows, memory_map, training_chart, LayerCosts,
};
use mote_host::workflow::{EpochRecord, TrainingRecord};
use std::collections::HashMap;

type Attrs = HashMap<String, String>;

/// Every `<tag ...>` element whose `class` is `class`: its attributes and its text content.
fn elements(svg: &str, tag: &str, class: &str) -> Vec<(Attrs, String)> {
    let open = format!("<{tag} ");
    svg.split(&open)
        .skip(1)
        .filter_map(|rest| {
            let end = rest.find('>')?;
            let attrs = parse_attrs(&rest[..end]);
            let body = rest[end + 1..].split('<').next().unwrap_or("").to_string();
            (attrs.get("class").map(String::as_str) == Some(class)).then_some((attrs, body))
        })
        .collect()
}

fn parse_attrs(s: &str) -> Attrs {
    let mut attrs = HashMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 2..];
        let close = after.find('"').expect("closed attribute");
        attrs.insert(key, after[..close].to_string());
        rest = &after[close + 1..];
    }
    attrs
}

fn num(a: &Attrs, key: &str) -> f64 {
    a[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key}={}", a[key]))
}

fn dump(name: &str, svg: &str) {
    if let Some(dir) = std::env::var_os("MOTE_PLOT_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), svg).unwrap();
    }
}

fn history(lr: bool) -> Vec<EpochRecord> {
    (0..8)
        .map(|i| {
            let loss = 2.0 / (1.0 + i as f32);
            EpochRecord {
                loss,
                accuracy: 1.0 - loss / 2.5,
                // One epoch without a validation figure: a gap, not a zero.
                val_loss: (i != 3).then_some(loss + 0.2),
                val_accuracy: (i != 3).then_some(0.9 - loss / 3.0),
                learning_rate: lr.then_some(0.01 * 0.5f32.powi(i)),
                best: i == 5,
            }
        })
        .collect()
}

#[test]
fn training_chart_has_a_panel_per_recorded_figure_and_marks_the_best_epoch() {
    let with_lr = training_chart(&history(true));
    dump("training.svg", &with_lr);
    let panels = elements(&with_lr, "g", "panel");
    let names: Vec<&str> = panels
        .iter()
        .map(|(a, _)| a["data-name"].as_str())
        .collect();
    assert_eq!(names, ["loss", "accuracy", "learning-rate"]);
    // 0.01 down to 0.01 / 128 spans more than 10x.
    assert_eq!(panels[2].0["data-log"], "true");
    let without = training_chart(&history(false));
    assert_eq!(elements(&without, "g", "panel").len(), 2);

    let best = elements(&with_lr, "line", "best");
    assert_eq!(best.len(), 3, "one marker per panel");
    let train = &elements(&with_lr, "polyline", "series")[0].0;
    let sixth_x: f64 = train["points"]
        .split(' ')
        .nth(5)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for (b, _) in &best {
        assert_eq!(b["data-epoch"], "6");
        assert_eq!(num(b, "x1"), sixth_x, "the marker sits on epoch 6");
    }
    assert!(with_lr.contains(">best epoch 6</text>"));
    for label in [">epoch<", ">loss<", ">accuracy<", ">learning rate<"] {
        assert!(with_lr.contains(label), "axis label {label}");
    }
}

#[test]
fn missing_values_are_gaps_and_empty_histories_still_draw() {
    let svg = training_chart(&history(false));
    let series = elements(&svg, "polyline", "series");
    let val: Vec<&Attrs> = series
        .iter()
        .map(|(a, _)| a)
        .filter(|a| a["data-label"] == "validation")
        .collect();
    // Loss and accuracy each split around epoch 4: 3 points, then 4.
    assert_eq!(val.len(), 4);
    let points: Vec<usize> = val.iter().map(|a| a["points"].split(' ').count()).collect();
    assert_eq!(points, [3, 4, 3, 4]);
    assert!(!svg.contains("NaN"));

    let nan = EpochRecord {
        loss: f32::NAN,
        accuracy: f32::NAN,
        val_loss: None,
        val_accuracy: None,
        learning_rate: Some(0.0),
        best: false,
    };
    for h in [vec![], vec![nan], vec![nan, nan]] {
        let svg = training_chart(&h);
        assert!(svg.ends_with("</svg>\n") && !svg.contains("NaN") && !svg.contains("inf"));
    }
}

#[test]
fn records_without_learning_rate_or_best_still_load() {
    let old = r#"{"data": "digits", "normalization": {"mean": [0.0], "std": [1.0]},
        "class_names": ["a"], "history": [{"loss": 1.0, "accuracy": 0.5,
        "val_loss": null, "val_accuracy": null}]}"#;
    let record: TrainingRecord = serde_json::from_str(old).unwrap();
    assert_eq!(record.history[0].learning_rate, None);
    assert!(!record.history[0].best);
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn confusion_matrix_names_both_axes_and_states_each_recall() {
    let classes = names(&[
        "walking <fast>",
        "R&D",
        "idle",
        "a very long class name indeed",
    ]);
    let counts = vec![
        vec![28, 2, 0, 0],
        vec![1, 9, 0, 3],
        vec![0, 0, 0, 0],
        vec![4, 0, 1, 45],
    ];
    let svg = confusion_matrix("int8", &classes, &counts);
    dump("confusion.svg", &svg);
    let cols: Vec<String> = elements(&svg, "text", "col-name")
        .into_iter()
        .map(|e| e.1)
        .collect();
    let rows: Vec<String> = elements(&svg, "text", "row-name")
        .into_iter()
        .map(|e| e.1)
        .collect();
    let escaped: Vec<String> = classes.iter().map(|c| escape(c)).collect();
    assert_eq!(cols, escaped);
    assert_eq!(rows, escaped);
    assert!(svg.contains("rotate(-45"), "long column names are rotated");
    assert!(svg.contains(">predicted class<") && svg.contains(">true class<"));
    let recall: Vec<String> = elements(&svg, "text", "recall")
        .into_iter()
        .map(|e| e.1)
        .collect();
    for (r, text) in recall.iter().enumerate() {
        let sum: usize = counts[r].iter().sum();
        let expected = match sum {
            0 => "recall -".to_string(),
            _ => format!("recall {:.0}%", 100.0 * counts[r][r] as f64 / sum as f64),
        };
        assert_eq!(*text, expected);
    }
    assert_eq!(recall[0], "recall 93%");
    // 82 right of 93.
    assert!(svg.contains("accuracy 88.2% (82/93)"));
    let cells = elements(&svg, "rect", "cell");
    assert_eq!(cells.len(), 16);
    assert!(cells.iter().all(|(c, _)| c["data-count"]
        == counts[c["data-row"].parse::<usize>().unwrap()]
            [c["data-col"].parse::<usize>().unwrap()]
        .to_string()));
    // The darkest cell (45 of 50) carries white text.
    assert!(
        svg.contains(r#"fill="white" font-size="11">45<"#)
            || svg.contains(r#"fill="white" font-size="9">45<"#)
    );

    for (n, c) in [
        (vec![], vec![]),
        (names(&["x"]), vec![]),
        (vec![], vec![vec![1, 2]]),
    ] {
        let svg = confusion_matrix("edge", &n, &c);
        assert!(svg.ends_with("</svg>\n") && !svg.contains("NaN"));
    }
}

#[test]
fn layer_bars_are_proportional_to_their_values() {
    let rows = vec![
        LayerCosts {
            label: "0 CONV_2D".into(),
            cost: Some(400_000),
            macs: 100_000,
            weight_bytes: None,
        },
        LayerCosts {
            label: "1 RESHAPE".into(),
            cost: Some(0),
            macs: 0,
            weight_bytes: None,
        },
        LayerCosts {
            label: "2 FULLY_CONNECTED".into(),
            cost: Some(100_000),
            macs: 50_000,
            weight_bytes: None,
        },
    ];
    let svg = layer_chart("bench", "instructions", &rows);
    dump("layers.svg", &svg);
    let bars = elements(&svg, "rect", "bar");
    for metric in ["cost", "macs"] {
        let mine: Vec<&Attrs> = bars
            .iter()
            .map(|b| &b.0)
            .filter(|b| b["data-metric"] == metric)
            .collect();
        assert_eq!(mine.len(), 3);
        let unit = num(mine[0], "width") / num(mine[0], "data-value");
        for b in &mine {
            let expected = num(b, "data-value") * unit;
            assert!((num(b, "width") - expected).abs() < 0.1, "{metric}: {b:?}");
        }
    }
    assert!(!bars.iter().any(|b| b.0["data-metric"] == "weights"));
    let per_mac: Vec<String> = elements(&svg, "text", "per-mac")
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(per_mac, ["4.00", "-", "2.00"]);

    let empty = layer_chart("none", "instructions", &[]);
    assert!(empty.contains("no operators"));
    let zeros = vec![LayerCosts {
        label: "0 ADD".into(),
        cost: None,
        macs: 0,
        weight_bytes: Some(0),
    }];
    let svg = layer_chart("zero", "instructions", &zeros);
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
}

/// A real model: the demo's, and an imported LSTM with state, scratch and a RESHAPE.
fn real_models() -> Vec<(&'static str, Vec<u8>)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let demo = std::fs::read(format!("{root}/firmware/models/demo/model.mote")).unwrap();
    let lstm = std::fs::read(format!(
        "{root}/tests/real-models/tflm_mnist_lstm_int8.tflite"
    ))
    .unwrap();
    let lstm = mote_host::tflite::import_tflite(&lstm).unwrap().bytes;
    vec![("demo", demo), ("lstm", lstm)]
}

#[test]
fn memory_map_draws_the_models_own_plan() {
    for (name, bytes) in real_models() {
        let aligned = mote_host::AlignedBytes::new(&bytes);
        let model = mote_core::Model::parse(aligned.as_slice()).unwrap();
        let map = inspect::arena_map(&model).unwrap();
        let svg = memory_map(name, &map);
        dump(&format!("{name}-memory.svg"), &svg);
        let rects: Vec<Attrs> = elements(&svg, "rect", "block")
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(rects.len(), map.blocks.len());
        // Each tensor's rectangle is its record: offset, size and lifetime.
        for r in &rects {
            let Some(t) = r["data-label"]
                .strip_prefix('t')
                .and_then(|i| i.parse::<u16>().ok())
            else {
                continue;
            };
            let rec = model.tensor(t).unwrap().record;
            assert_eq!(num(r, "data-offset") as u32, rec.offset);
            assert_eq!(num(r, "data-size") as u32, rec.byte_len);
            assert_eq!(num(r, "data-first") as u16, rec.live_from);
            assert_eq!(num(r, "data-last") as u16, rec.live_to);
        }
        // Buffers live at one step never share bytes, so their rectangles never overlap
        // (a RESHAPE's output shares its input's bytes on purpose, drawn as an outline).
        let boxes: Vec<[f64; 4]> = rects
            .iter()
            .filter(|r| r["data-kind"] != format!("{:?}", BlockKind::Alias))
            .map(|r| {
                let (x, y) = (num(r, "x"), num(r, "y"));
                [x, y, x + num(r, "width"), y + num(r, "height")]
            })
            .collect();
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                let eps = 0.05;
                let apart = a[2] <= b[0] + eps
                    || b[2] <= a[0] + eps
                    || a[3] <= b[1] + eps
                    || b[3] <= a[1] + eps;
                assert!(apart, "{name}: {a:?} overlaps {b:?}");
            }
        }
        let kinds: Vec<&str> = rects.iter().map(|r| r["data-kind"].as_str()).collect();
        assert!(
            kinds.contains(&"Scratch") && kinds.contains(&"Io"),
            "{name}: {kinds:?}"
        );
        if name == "lstm" {
            let state = rects
                .iter()
                .find(|r| r["data-kind"] == "State")
                .expect("LSTM state");
            assert_eq!(num(state, "data-first"), 0.0);
            assert_eq!(
                num(state, "data-last"),
                f64::from(model.op_count()),
                "the whole run"
            );
        }
        let arena = elements(&svg, "line", "arena");
        assert_eq!(arena.len(), 1, "the arena size is drawn");
        let top = rects
            .iter()
            .map(|r| num(r, "y"))
            .fold(f64::INFINITY, f64::min);
        assert!(
            num(&arena[0].0, "y1") <= top + 0.05,
            "{name}: no buffer above the arena's end"
        );
    }
}

#[test]
fn names_are_escaped_everywhere() {
    assert_eq!(escape("a<b & c>d"), "a&lt;b &amp; c&gt;d");
    let rows = layer_rows(&[], None, true);
    assert!(rows.is_empty());
    let svg = layer_chart(
        "<x & y>",
        "instructions",
        &[LayerCosts {
            label: "0 <op>".into(),
            cost: None,
            macs: 1,
            weight_bytes: None,
        }],
    );
    assert!(svg.contains("&lt;x &amp; y&gt;") && svg.contains("0 &lt;op&gt;"));
    assert!(!svg.contains("<x") && !svg.contains("<op>"));
}

#[test]
fn empty_plans_and_short_profiles_still_draw() {
    let empty = inspect::ArenaMap {
        arena_size: 0,
        ops: vec![],
        blocks: vec![],
    };
    let svg = memory_map("empty", &empty);
    assert!(svg.ends_with("</svg>\n") && !svg.contains("NaN") && !svg.contains("inf"));

    // A firmware run that reported fewer operators than the model has: no cost, not a panic.
    let (_, bytes) = &real_models()[0];
    let aligned = mote_host::AlignedBytes::new(bytes);
    let model = mote_core::Model::parse(aligned.as_slice()).unwrap();
    let stats = inspect::layers(&model).unwrap();
    let costs = [mote_host::report::LayerCost {
        op: stats[0].op.to_string(),
        cost: 1000,
        stack: None,
    }];
    let rows = layer_rows(&stats, Some(&costs), false);
    assert_eq!(rows.len(), stats.len());
    assert_eq!(rows[0].cost, Some(1000));
    assert!(rows[1..].iter().all(|r| r.cost.is_none()));
    assert_eq!(rows[0].label, format!("0 {}", stats[0].op));
}
