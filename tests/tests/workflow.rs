//! The host workflow end to end: train a spec on the bundled digits, quantize with a
//! calibration subset, export the model directory, and run the exported blob with mote-core.

use mote_core::{Interpreter, Model};
use mote_host::quantize::RangeMethod;
use mote_host::train::{ModelSpec, NoCallbacks};
use mote_host::workflow;
use mote_host::AlignedBytes;

#[test]
fn train_quantize_export_parse_invoke() {
    let root = mote_host::firmware::workspace_root();
    let mut spec = ModelSpec::from_file(root.join("examples/digits_mlp.toml")).unwrap();
    spec.training.epochs = 10;
    let data = workflow::load_data("digits", None, &Default::default()).unwrap();
    // Three stratified splits of the 1,797 digits: 20% test, then 15% of the rest validation.
    let sizes = (data.train.len(), data.validation.len(), data.test.len());
    assert_eq!(sizes, (1222, 216, 359));
    let (net, history) = workflow::train(&spec, &data, &mut NoCallbacks).unwrap();
    assert_eq!(history.epochs.len(), 10);

    let dir = std::env::temp_dir().join(format!("mote-workflow-{}", std::process::id()));
    let report = workflow::export(
        &net,
        &data,
        200,
        RangeMethod::Percentile(99.99),
        Some(workflow::Finetune::Shift {
            gain: 0.6,
            offset: 0.25,
        }),
        &dir,
    )
    .unwrap();
    println!(
        "f32 {:.4} int8 {:.4}",
        report.float.accuracy, report.int8.accuracy
    );
    assert!(report.float.accuracy > 0.95, "{}", report.float.accuracy);
    assert!((report.float.accuracy - report.int8.accuracy).abs() <= 0.01);
    let confusion_total: usize = report.int8.confusion.iter().flatten().sum();
    assert_eq!(confusion_total, 359);

    // The exported blob is what mote-core runs: parse it and classify the exported test set.
    let blob = std::fs::read(dir.join("model.mote")).unwrap();
    let aligned = AlignedBytes::new(&blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let inputs = std::fs::read(dir.join("test_inputs.i8")).unwrap();
    let labels = std::fs::read(dir.join("test_labels.u8")).unwrap();
    let mut arena = vec![0u8; model.arena_size() + 4];
    let at = arena.as_ptr().align_offset(4);
    let mut interpreter = Interpreter::new(model, &mut arena[at..]).unwrap();
    let len = inputs.len() / labels.len();
    let mut hits = 0;
    for (x, &y) in inputs.chunks_exact(len).zip(&labels) {
        for (d, &s) in interpreter.input_i8(0).unwrap().iter_mut().zip(x) {
            *d = s as i8;
        }
        interpreter.invoke().unwrap();
        let out = interpreter.output_i8(0).unwrap();
        let best = (0..out.len()).fold(0, |b, k| if out[k] > out[b] { k } else { b });
        hits += usize::from(best == y as usize);
    }
    assert_eq!(hits as f64 / labels.len() as f64, report.int8.accuracy);
    assert!(dir.join("finetune_inputs.i8").exists() && dir.join("model.rs").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn data_mistakes_get_clear_errors() {
    let err = workflow::load_data("/nonexistent/data.csv", None, &Default::default()).unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent/data.csv"),
        "{err:#}"
    );
    let root = mote_host::firmware::workspace_root();
    let spec = ModelSpec::from_file(root.join("examples/motion_cnn1d.toml")).unwrap();
    let digits = workflow::load_data("digits", None, &Default::default()).unwrap();
    let err = workflow::train(&spec, &digits, &mut NoCallbacks).unwrap_err();
    assert!(format!("{err:#}").contains("[8, 8, 1]"), "{err:#}");
    // Ten digit classes into a four-class model.
    let mut narrow = ModelSpec::from_file(root.join("examples/digits_mlp.toml")).unwrap();
    narrow.classes = 4;
    if let Some(mote_host::train::LayerSpec::Dense(d)) = narrow.layers.iter_mut().rev().nth(1) {
        d.units = 4;
    }
    let err = workflow::train(&narrow, &digits, &mut NoCallbacks).unwrap_err();
    assert!(
        format!("{err:#}").contains("the data has 10 classes"),
        "{err:#}"
    );
}

/// A digits CSV with 64 flat columns (no shape given) trains the 8x8x1 DS-CNN: a row of the
/// input's size is read row-major in the model's shape, as the bundled images are.
#[test]
fn flat_rows_of_the_input_size_train_a_shaped_model() {
    let root = mote_host::firmware::workspace_root();
    let digits = mote_host::data::digits().unwrap();
    let mut csv = String::new();
    for i in 0..digits.len() {
        let (x, y) = digits.sample(i);
        let row: Vec<String> = x.iter().map(f32::to_string).collect();
        csv += &format!("{},{y}\n", row.join(","));
    }
    let path = std::env::temp_dir().join(format!("mote-flat-digits-{}.csv", std::process::id()));
    std::fs::write(&path, csv).unwrap();
    // `mote train` gives the model's input; the rows are read in it.
    let options = mote_host::data::DataOptions {
        model_input: Some(vec![8, 8, 1]),
        ..Default::default()
    };
    let flat = workflow::load_data(path.to_str().unwrap(), None, &options).unwrap();
    let bundled = workflow::load_data("digits", None, &Default::default()).unwrap();
    std::fs::remove_file(&path).ok();
    // The same split, samples and normalization as the bundled images.
    assert_eq!(flat.train.feature_shape, vec![8, 8, 1]);
    assert_eq!(flat.test.features, bundled.test.features);
    let mut spec = ModelSpec::from_file(root.join("examples/digits_dscnn.toml")).unwrap();
    spec.training.epochs = 3;
    spec.training.early_stopping = None;
    let (mut net, _) = workflow::train(&spec, &flat, &mut NoCallbacks).unwrap();
    let scores = workflow::eval_float(&mut net, &flat.test).unwrap();
    assert!(scores.accuracy > 0.5, "{}", scores.accuracy);
}

/// An exported model evaluated on data of another shape: an error naming both sizes, not a
/// panic in the copy.
#[test]
fn eval_on_data_of_another_shape_is_an_error() {
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware/models/demo/model.mote"
    );
    let blob = std::fs::read(demo).unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    let set = mote_host::data::Dataset::new(vec![0.5; 12], vec![6], vec![0, 1], names).unwrap();
    let e = workflow::eval_int8(&blob, (0.1, 0), &set)
        .unwrap_err()
        .to_string();
    assert!(e.contains("takes 64 input values per sample"), "{e}");
    assert!(e.contains("have 6"), "{e}");
}

/// Early stopping validates on samples carved from the training split, not on the test split:
/// with the test labels scrambled, the epochs' validation accuracy stays that of real digits.
#[test]
fn early_stopping_never_looks_at_the_test_split() {
    let root = mote_host::firmware::workspace_root();
    let mut spec = ModelSpec::from_file(root.join("examples/digits_mlp.toml")).unwrap();
    spec.training.epochs = 4;
    spec.training.early_stopping = Some(mote_host::train::EarlyStoppingSpec {
        patience: 2,
        metric: mote_host::train::Metric::ValAccuracy,
        min_delta: 0.0,
    });
    let mut data = workflow::load_data("digits", None, &Default::default()).unwrap();
    let classes = data.test.num_classes() as u32;
    for label in &mut data.test.labels {
        *label = (*label + 3) % classes;
    }
    let (_, history) = workflow::train(&spec, &data, &mut NoCallbacks).unwrap();
    let best = history.best_epoch.expect("early stopping chose an epoch");
    let validation = history.epochs[best].val_accuracy.unwrap();
    assert!(
        validation > 0.8,
        "validated on scrambled test labels: {validation}"
    );
}
