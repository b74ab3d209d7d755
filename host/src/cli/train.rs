//! `mote train`, `mote export` and `mote eval`.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mote_host::data::{DataOptions, WindowLabel};
use mote_host::plot::{confusion_matrix, training_chart};
use mote_host::quantize::RangeMethod;
use mote_host::train::{BatchEvent, Callbacks, EpochStats, ModelSpec, Network};
use mote_host::workflow::{self, EpochRecord, Prepared, Scores, TrainingRecord};
use std::ops::ControlFlow;
use std::path::Path;

/// A progress bar per epoch: batches done, loss, accuracy, throughput.
pub struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl Progress {
    /// Progress over `epochs` epochs.
    pub fn new(epochs: usize) -> Self {
        Self { bar: None, epochs }
    }
}

impl Callbacks for Progress {
    fn on_batch(&mut self, e: &BatchEvent) {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(e.batches as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        bar.set_prefix(format!("{}/{}", e.epoch + 1, self.epochs));
        bar.set_position(e.batch as u64 + 1);
        bar.set_message(format!(
            "loss {:.4} acc {:.4} lr {:.2e}",
            e.loss, e.accuracy, e.learning_rate
        ));
    }

    fn on_epoch(&mut self, s: &EpochStats) -> ControlFlow<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {:>3}/{}: loss {:.4} acc {:.4}{} | {:.0} samples/s{}",
            s.epoch + 1,
            self.epochs,
            s.loss,
            s.accuracy,
            match (s.val_loss, s.val_accuracy) {
                (Some(l), Some(a)) => format!(" | val loss {l:.4} val acc {a:.4}"),
                _ => String::new(),
            },
            s.samples_per_second,
            if s.best { " *" } else { "" }
        );
        ControlFlow::Continue(())
    }
}

/// Writes `training.svg` (loss, accuracy and learning-rate panels).
fn write_curves(dir: &Path, record: &TrainingRecord) -> Result<()> {
    write_plot(&dir.join("training.svg"), &training_chart(&record.history))
}

fn write_confusion(path: &Path, title: &str, names: &[String], scores: &Scores) -> Result<()> {
    write_plot(path, &confusion_matrix(title, names, &scores.confusion))
}

/// Writes one chart and says where.
pub fn write_plot(path: &Path, svg: &str) -> Result<()> {
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    println!("plot: {}", path.display());
    Ok(())
}

/// How `mote train` reads and splits its data: each flag overrides the model file's `[data]`
/// key of the same name.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DataArgs {
    /// Long format (one row per time step): samples are windows of this many rows.
    #[arg(long)]
    window: Option<usize>,
    /// Rows from one window to the next (default: the window).
    #[arg(long, requires = "window")]
    stride: Option<usize>,
    /// A window's label: its rows' majority, or its last row's.
    #[arg(long, value_parser = ["majority", "last"])]
    window_label: Option<String>,
    /// The layout of one sample as stored, e.g. `64` or `8,8,1` (row-major).
    #[arg(long, value_delimiter = ',')]
    shape: Option<Vec<usize>>,
    /// Samples are stored channels first (PyTorch's layout): `--shape` starts with channels.
    #[arg(long)]
    channels_first: bool,
    /// Class names in label order, e.g. `idle,walk,run`.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// CSV: the label column (`first`, `last`, a 0-based index or a header name).
    #[arg(long)]
    label_column: Option<String>,
    /// CSV: columns to skip (index or header name), e.g. `timestamp`.
    #[arg(long, value_delimiter = ',')]
    ignore_columns: Option<Vec<String>>,
    /// Share of each class held out for testing when there is no `--test` file.
    #[arg(long)]
    test_share: Option<f64>,
    /// Share of each class's training samples validated on after every epoch.
    #[arg(long)]
    validation_share: Option<f64>,
    /// Seed of the splits.
    #[arg(long)]
    split_seed: Option<u64>,
}

impl DataArgs {
    /// `options` with every flag given applied.
    pub fn apply(&self, mut options: DataOptions) -> DataOptions {
        fn set<T: Clone>(slot: &mut Option<T>, flag: &Option<T>) {
            if flag.is_some() {
                slot.clone_from(flag);
            }
        }
        set(&mut options.window, &self.window);
        set(&mut options.stride, &self.stride);
        set(&mut options.shape, &self.shape);
        set(&mut options.classes, &self.classes);
        set(&mut options.label_column, &self.label_column);
        if let Some(label) = &self.window_label {
            options.window_label = match label.as_str() {
                "last" => WindowLabel::Last,
                _ => WindowLabel::Majority,
            };
        }
        options.channels_first |= self.channels_first;
        if let Some(columns) = &self.ignore_columns {
            options.ignore_columns.clone_from(columns);
        }
        options.test = self.test_share.unwrap_or(options.test);
        options.validation = self.validation_share.unwrap_or(options.validation);
        options.seed = self.split_seed.unwrap_or(options.seed);
        options
    }
}

/// `mote train SPEC --data SOURCE --out DIR`.
pub fn train(
    spec_path: &Path,
    data: &str,
    test: Option<&Path>,
    out: &Path,
    epochs: Option<usize>,
    reading: &DataArgs,
) -> Result<(Network, Prepared)> {
    let mut spec = ModelSpec::from_file(spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    if let Some(e) = epochs {
        spec.training.epochs = e;
    }
    let options = DataOptions {
        model_input: Some(spec.input.clone()),
        ..reading.apply(spec.data.clone())
    };
    let prepared = workflow::load_data(data, test, &options)?;
    println!(
        "training `{}` on {data}: {} training, {} validation and {} test samples of shape {:?}, \
         classes {:?}",
        spec.name,
        prepared.train.len(),
        prepared.validation.len(),
        prepared.test.len(),
        prepared.train.feature_shape,
        prepared.train.class_names
    );
    if Network::new(&spec)?.check_sample_shape(&prepared.train.feature_shape)? {
        println!(
            "the model reads each sample's {} values as {:?} (its input)",
            prepared.train.sample_len(),
            spec.input
        );
    }
    let mut progress = Progress::new(spec.training.epochs);
    let (mut net, history) = workflow::train(&spec, &prepared, &mut progress)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    net.save(out.join("model.ckpt"))?;
    let record = TrainingRecord {
        data: workflow::recorded_source(data),
        test: test.map(|t| workflow::recorded_source(&t.to_string_lossy())),
        options,
        normalization: prepared.normalization.clone(),
        class_names: prepared.train.class_names.clone(),
        history: history
            .epochs
            .iter()
            .map(|e| EpochRecord {
                loss: e.loss,
                accuracy: e.accuracy,
                val_loss: e.val_loss,
                val_accuracy: e.val_accuracy,
                learning_rate: Some(e.learning_rate),
                best: history.best_epoch == Some(e.epoch),
            })
            .collect(),
    };
    record.save(out)?;
    write_curves(out, &record)?;
    let scores = workflow::eval_float(&mut net, &prepared.test)?;
    write_confusion(
        &out.join("confusion.svg"),
        "f32, test split",
        &prepared.train.class_names,
        &scores,
    )?;
    let throughput = mote_host::train::throughput(&history.epochs);
    println!(
        "f32 test accuracy {:.2}% after {} epochs ({:.1} s, {throughput:.0} samples/s); wrote {}/{{model.ckpt, training.json, training.svg, confusion.svg}}",
        100.0 * scores.accuracy,
        history.epochs.len(),
        history.seconds,
        out.display()
    );
    Ok((net, prepared))
}

/// The training record next to a checkpoint.
fn record_for(checkpoint: &Path) -> Result<TrainingRecord> {
    TrainingRecord::load(checkpoint.parent().unwrap_or(Path::new(".")))
}

/// Data `mote export` reads instead of the recorded sources.
#[derive(Debug, Clone, Default)]
pub struct SourceOverride {
    /// Instead of the recorded training data.
    pub data: Option<String>,
    /// Instead of the recorded test file.
    pub test: Option<std::path::PathBuf>,
}

/// Parses `minmax` or `pNN.NN`.
pub fn range_method(s: &str) -> Result<RangeMethod> {
    if s == "minmax" {
        return Ok(RangeMethod::MinMax);
    }
    let p: f32 = s
        .strip_prefix('p')
        .and_then(|v| v.parse().ok())
        .context("--range is `minmax` or a percentile like `p99.99`")?;
    anyhow::ensure!(
        (50.0..=100.0).contains(&p),
        "a percentile between 50 and 100"
    );
    Ok(RangeMethod::Percentile(p))
}

/// Where `mote export` takes a fine-tuning set from.
#[derive(Debug, Clone)]
pub enum FinetuneSource {
    /// The training samples through a new sensor's gain and offset.
    Shift(f32, f32),
    /// A labelled recording of the new sensor.
    Recording(std::path::PathBuf),
}

/// `mote export CHECKPOINT --out DIR`.
pub fn export(
    checkpoint: &Path,
    out: &Path,
    calibration: usize,
    method: RangeMethod,
    finetune: Option<FinetuneSource>,
    sources: &SourceOverride,
) -> Result<workflow::ExportReport> {
    let net =
        Network::load(checkpoint).with_context(|| format!("reading {}", checkpoint.display()))?;
    let mut record = record_for(checkpoint)?;
    if let Some(data) = &sources.data {
        record.data = workflow::recorded_source(data);
    }
    if let Some(test) = &sources.test {
        record.test = Some(workflow::recorded_source(&test.to_string_lossy()));
    }
    // The data, splits and normalization the model was trained with.
    let test = record.test.as_deref().map(Path::new);
    let prepared = workflow::load_data_normalized(
        &record.data,
        test,
        &record.options,
        Some(&record.normalization),
    )?;
    let finetune = match finetune {
        Some(FinetuneSource::Shift(gain, offset)) => {
            Some(workflow::Finetune::Shift { gain, offset })
        }
        Some(FinetuneSource::Recording(path)) => {
            // Read as the training data was; no validation split, 20% held out.
            let options = DataOptions {
                validation: 0.0,
                ..record.options.clone()
            };
            let splits = options
                .load(&path.to_string_lossy(), None)
                .with_context(|| format!("reading the fine-tuning recording {}", path.display()))?;
            Some(workflow::Finetune::Recording {
                tune: splits.train,
                test: splits.test,
            })
        }
        None => None,
    };
    let report = workflow::export(&net, &prepared, calibration, method, finetune, out)?;
    // The record travels with the model: `mote eval` on the directory uses its normalization.
    record.save(out)?;
    write_confusion(
        &out.join("confusion_int8.svg"),
        "int8, test split",
        &record.class_names,
        &report.int8,
    )?;
    let aligned = mote_host::AlignedBytes::new(&report.quantized.built.bytes);
    let model = mote_core::Model::parse(aligned.as_slice()).map_err(anyhow::Error::msg)?;
    print!(
        "{}",
        mote_host::inspect::table(&model).map_err(anyhow::Error::msg)?
    );
    println!(
        "test accuracy: f32 {:.2}%, int8 {:.2}% ({:+.2} points); wrote {}/{{model.mote, model.rs, test and fine-tuning sets}}",
        100.0 * report.float.accuracy,
        100.0 * report.int8.accuracy,
        100.0 * (report.int8.accuracy - report.float.accuracy),
        out.display()
    );
    Ok(report)
}

/// `mote eval MODEL [--data SOURCE]`: a checkpoint (f32) or an exported model (int8), with the
/// model's own normalization, on every sample of a file or a set's test split; without
/// `--data`, on the test split it was trained with (a checkpoint) or the test set exported
/// with it (int8: the device's very samples).
pub fn eval(model: &Path, data: Option<&str>) -> Result<Scores> {
    let checkpoint = model.extension().is_some_and(|e| e == "ckpt");
    let dir = match model.is_dir() {
        true => model.to_path_buf(),
        false => model.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    let record = record_for(&dir.join("model.ckpt"))?;
    let norm = &record.normalization;
    let recorded_test = || -> Result<mote_host::data::Dataset> {
        let test = record.test.as_deref().map(Path::new);
        Ok(workflow::load_data_normalized(&record.data, test, &record.options, Some(norm))?.test)
    };
    let (scores, kind, samples) = if checkpoint {
        let mut net = Network::load(model)?;
        let set = match data {
            Some(source) => workflow::eval_samples(source, &record.options, norm)?,
            None => recorded_test()?,
        };
        (workflow::eval_float(&mut net, &set)?, "f32", set.len())
    } else {
        let blob = std::fs::read(dir.join("model.mote"))
            .with_context(|| format!("reading {}", dir.join("model.mote").display()))?;
        let aligned = mote_host::AlignedBytes::new(&blob);
        let parsed = mote_core::Model::parse(aligned.as_slice()).map_err(anyhow::Error::msg)?;
        let input = parsed.input(0).map_err(anyhow::Error::msg)?;
        let q = (input.scale(), input.zero_point());
        match data {
            Some(source) => {
                let set = workflow::eval_samples(source, &record.options, norm)?;
                (workflow::eval_int8(&blob, q, &set)?, "int8", set.len())
            }
            None => {
                let (inputs, labels) = exported_test_set(&dir)?;
                let len = inputs.len().checked_div(labels.len().max(1)).unwrap_or(0);
                let samples = inputs
                    .chunks_exact(len.max(1))
                    .zip(&labels)
                    .map(|(x, &y)| (x.iter().map(|&v| v as i8).collect(), usize::from(y)));
                let scores = workflow::eval_quantized(&blob, &[len], samples)?;
                (scores, "int8", labels.len())
            }
        }
    };
    let on = data.unwrap_or("the recorded test split");
    println!(
        "{kind} accuracy {:.2}% on {samples} samples ({on})",
        100.0 * scores.accuracy
    );
    println!("confusion matrix (rows: true class, columns: predicted):");
    for (name, row) in record.class_names.iter().zip(&scores.confusion) {
        println!(
            "{name:>12} {}",
            row.iter().map(|v| format!("{v:>4}")).collect::<String>()
        );
    }
    Ok(scores)
}

/// The quantized test set `mote export` wrote into `dir`.
fn exported_test_set(dir: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let (inputs, labels) = (read("test_inputs.i8")?, read("test_labels.u8")?);
    anyhow::ensure!(
        !labels.is_empty() && inputs.len() % labels.len() == 0,
        "{}: {} input bytes are not whole samples for {} labels",
        dir.display(),
        inputs.len(),
        labels.len()
    );
    Ok((inputs, labels))
}

/// Median training throughput (samples/s) of `spec` on `data`: `repeats` runs of `epochs`.
pub fn throughput(spec_path: &Path, data: &str, epochs: usize, repeats: usize) -> Result<f64> {
    let mut spec = ModelSpec::from_file(spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    spec.training.epochs = epochs;
    spec.training.early_stopping = None;
    let options = DataOptions {
        model_input: Some(spec.input.clone()),
        ..spec.data.clone()
    };
    let prepared = workflow::load_data(data, None, &options)?;
    let mut rates = Vec::new();
    for _ in 0..repeats {
        let (_, history) = workflow::train(&spec, &prepared, &mut mote_host::train::NoCallbacks)?;
        rates.push(mote_host::train::throughput(&history.epochs));
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}
