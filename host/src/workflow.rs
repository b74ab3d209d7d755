//! The host workflow behind `mote train`, `mote export`, `mote eval` and `mote demo`: load a
//! dataset, normalize it, train a spec, quantize with a calibration subset, compare f32 and
//! int8, and write the model directory the firmware builds from.

use crate::data::{DataOptions, Dataset, Normalization, Splits};
use crate::export::{write_model_dir, ExportInfo, LabelledSet};
use crate::quantize::{quantize, quantize_input, Quantized, RangeMethod};
use crate::train::{Callbacks, History, ModelSpec, Network};
use crate::AlignedBytes;
use anyhow::{ensure, Context, Result};
use mote_core::{Interpreter, Model};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The three splits, normalized with statistics of the training split.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Training samples.
    pub train: Dataset,
    /// Validation samples: scored after every epoch (early stopping, schedules).
    pub validation: Dataset,
    /// Test samples: scored once, after training.
    pub test: Dataset,
    /// Per-channel normalization fitted on `train` and applied to all three.
    pub normalization: Normalization,
}

/// Loads `source` (`digits`, `motion`, a data file or folder; `test_file` overrides the test
/// split) as `options` say, and normalizes it with statistics of the training split.
pub fn load_data(
    source: &str,
    test_file: Option<&Path>,
    options: &DataOptions,
) -> Result<Prepared> {
    load_data_normalized(source, test_file, options, None)
}

/// [`load_data`] normalized with `normalization` when given (a trained model's), instead of
/// one fitted on the training split.
pub fn load_data_normalized(
    source: &str,
    test_file: Option<&Path>,
    options: &DataOptions,
    normalization: Option<&Normalization>,
) -> Result<Prepared> {
    let Splits {
        mut train,
        mut validation,
        mut test,
    } = options.load(source, test_file)?;
    let normalization = match normalization {
        Some(n) => n.clone(),
        None => Normalization::fit(&train),
    };
    for set in [&mut train, &mut validation, &mut test] {
        normalization.apply(set)?;
    }
    Ok(Prepared {
        train,
        validation,
        test,
        normalization,
    })
}

/// A data source as a record keeps it in memory: a path that exists, made absolute; anything
/// else (a bundled set's name) as it is.
pub fn recorded_source(source: &str) -> String {
    match std::fs::canonicalize(source) {
        Ok(path) if Path::new(source).exists() => path.display().to_string(),
        _ => source.to_string(),
    }
}

/// `path` relative to the folder `base` (`./x`, `../data/x`), if both exist and share a root.
fn relative_to(path: &Path, base: &Path) -> Option<String> {
    let (path, base) = (
        std::fs::canonicalize(path).ok()?,
        std::fs::canonicalize(base).ok()?,
    );
    let common = path
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return None;
    }
    let ups = base.components().count() - common;
    let mut relative = std::path::PathBuf::from(if ups == 0 { "." } else { ".." });
    (1..ups).for_each(|_| relative.push(".."));
    path.components()
        .skip(common)
        .for_each(|c| relative.push(c));
    Some(relative.display().to_string())
}

/// A recorded source as written into `dir`: a path relative to `dir` where it can be, so that
/// a project moved as a whole still finds its data.
fn source_in(source: &str, dir: &Path) -> String {
    match Path::new(source).is_absolute() {
        true => relative_to(Path::new(source), dir).unwrap_or_else(|| source.to_string()),
        false => source.to_string(),
    }
}

/// A source read from a record in `dir`: `./` and `../` paths are relative to `dir`.
fn source_from(source: &str, dir: &Path) -> String {
    match source.starts_with("./") || source.starts_with("../") {
        true => recorded_source(&dir.join(source).to_string_lossy()),
        false => source.to_string(),
    }
}

/// The samples `mote eval --data SOURCE` scores, read as `options` say and normalized with
/// the model's own `normalization`: every sample of a file; a bundled set's or a folder's test
/// split.
pub fn eval_samples(
    source: &str,
    options: &DataOptions,
    normalization: &Normalization,
) -> Result<Dataset> {
    let path = Path::new(source);
    let mut set = match source {
        _ if path.is_file() => options.read_all(path)?,
        _ => options.load(source, None)?.test,
    };
    normalization.apply(&mut set)?;
    Ok(set)
}

/// What `mote train` writes next to the checkpoint so export can rebuild the inputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// The data source it was trained on: a bundled set's name, or a path (absolute).
    pub data: String,
    /// The test file given with `--test` (absolute), if any: the held-out samples.
    #[serde(default)]
    pub test: Option<String>,
    /// How the data was read and split.
    #[serde(default)]
    pub options: DataOptions,
    /// The normalization fitted on the training split.
    pub normalization: Normalization,
    /// Class names.
    pub class_names: Vec<String>,
    /// One entry per epoch.
    pub history: Vec<EpochRecord>,
}

impl TrainingRecord {
    /// The record's file in `dir`.
    pub const FILE: &'static str = "training.json";

    /// Writes `dir/training.json`, its data paths relative to `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut record = self.clone();
        record.data = source_in(&self.data, dir);
        record.test = self.test.as_deref().map(|t| source_in(t, dir));
        let path = dir.join(Self::FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Reads `dir/training.json`, its relative data paths resolved against `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (written by `mote train` next to the checkpoint)",
                path.display()
            )
        })?;
        let mut record: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a training record", path.display()))?;
        record.data = source_from(&record.data, dir);
        record.test = record.test.as_deref().map(|t| source_from(t, dir));
        Ok(record)
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Training loss.
    pub loss: f32,
    /// Training accuracy.
    pub accuracy: f32,
    /// Held-out loss.
    pub val_loss: Option<f32>,
    /// Held-out accuracy.
    pub val_accuracy: Option<f32>,
    /// The learning rate at the epoch's last batch (absent in records written before it was
    /// kept).
    #[serde(default)]
    pub learning_rate: Option<f32>,
    /// Whether this is the epoch early stopping kept: the checkpoint holds its weights (false
    /// everywhere without early stopping).
    #[serde(default)]
    pub best: bool,
}

/// Trains `spec` on prepared data.
pub fn train(
    spec: &ModelSpec,
    data: &Prepared,
    callbacks: &mut dyn Callbacks,
) -> Result<(Network, History)> {
    let mut net = Network::new(spec)?;
    net.check_sample_shape(&data.train.feature_shape)
        .with_context(|| format!("the data's samples are {:?}", data.train.feature_shape))?;
    ensure!(
        data.train.num_classes() <= spec.classes,
        "the data has {} classes ({:?}), but the model `{}` outputs {}",
        data.train.num_classes(),
        data.train.class_names,
        spec.name,
        spec.classes
    );
    ensure!(
        spec.training.early_stopping.is_none() || !data.validation.is_empty(),
        "early stopping needs validation samples, and the validation split is empty: set the \
         `validation` share above 0 or add data"
    );
    let history = crate::train::train(
        &mut net,
        &data.train.features,
        &data.train.labels,
        &data.validation.features,
        &data.validation.labels,
        &spec.training,
        callbacks,
    )?;
    Ok((net, history))
}

/// Accuracy and confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Correct predictions / samples.
    pub accuracy: f64,
    /// `counts[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

fn scores(classes: usize, pairs: impl Iterator<Item = (usize, usize)>) -> Scores {
    let mut confusion = vec![vec![0usize; classes]; classes];
    let (mut hits, mut total) = (0usize, 0usize);
    for (truth, predicted) in pairs {
        if truth < classes && predicted < classes {
            confusion[truth][predicted] += 1;
        }
        hits += usize::from(truth == predicted);
        total += 1;
    }
    Scores {
        accuracy: hits as f64 / total.max(1) as f64,
        confusion,
    }
}

/// f32 scores of a trained network.
pub fn eval_float(net: &mut Network, set: &Dataset) -> Result<Scores> {
    let predicted = net.predict(&set.features)?;
    Ok(scores(
        net.classes(),
        set.labels.iter().map(|&l| l as usize).zip(predicted),
    ))
}

/// int8 scores of a `.mote` model whose input takes normalized samples quantized with `input`.
pub fn eval_int8(blob: &[u8], input: (f32, i32), set: &Dataset) -> Result<Scores> {
    let samples = (0..set.len()).map(|i| {
        let (x, label) = set.sample(i);
        (quantize_input(x, input), label as usize)
    });
    eval_quantized(blob, &set.feature_shape, samples)
}

/// int8 scores of a `.mote` model on already quantized samples (`shape` names them in errors):
/// each starts from the initial state, as samples are independent.
pub fn eval_quantized(
    blob: &[u8],
    shape: &[usize],
    samples: impl Iterator<Item = (Vec<i8>, usize)>,
) -> Result<Scores> {
    let aligned = AlignedBytes::new(blob);
    let model = Model::parse(aligned.as_slice()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut arena = crate::arena_for(&model)?;
    let bytes = arena.as_mut_slice();
    let mut interpreter = Interpreter::new(model, bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let classes = model.output(0).map_err(|e| anyhow::anyhow!("{e}"))?.shape.c;
    let mut pairs = Vec::new();
    for (q, label) in samples {
        interpreter
            .reset_state()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let slot = interpreter
            .input_i8(0)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(
            slot.len() == q.len(),
            "the model takes {} input values per sample, the data's samples have {} (shape \
             {shape:?}): evaluate it on the data it was trained for",
            slot.len(),
            q.len(),
        );
        slot.copy_from_slice(&q);
        interpreter.invoke().map_err(|e| anyhow::anyhow!("{e}"))?;
        let out = interpreter
            .output_i8(0)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let best = (0..out.len()).fold(0, |b, k| if out[k] > out[b] { k } else { b });
        pairs.push((label, best));
    }
    Ok(scores(classes, pairs.into_iter()))
}

/// What the device fine-tunes its head on, on a new sensor.
#[derive(Debug, Clone)]
pub enum Finetune {
    /// The training samples seen through `x' = gain * x + offset` (offset as a fraction of the
    /// data's range): a synthetic new sensor.
    Shift {
        /// Gain.
        gain: f32,
        /// Offset.
        offset: f32,
    },
    /// A labelled recording from the new sensor, raw, split into samples to fine-tune on and
    /// samples to score (see [`DataOptions::load`]).
    Recording {
        /// Samples the device fine-tunes on.
        tune: Dataset,
        /// Samples it is scored on.
        test: Dataset,
    },
}

/// A sensor with a different gain and offset: `x' = gain * x + offset` on the raw scale,
/// clamped to the data's raw range, then normalized like the rest.
pub fn shifted(set: &Dataset, norm: &Normalization, gain: f32, offset: f32) -> Result<Dataset> {
    let mut raw = set.clone();
    norm.invert(&mut raw)?;
    let (lo, hi) = raw
        .features
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    for v in &mut raw.features {
        *v = (gain * *v + offset * (hi - lo) + lo * (1.0 - gain)).clamp(lo, hi);
    }
    norm.apply(&mut raw)?;
    Ok(raw)
}

/// The outcome of an export.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The quantized model.
    pub quantized: Quantized,
    /// f32 test scores.
    pub float: Scores,
    /// int8 test scores.
    pub int8: Scores,
}

fn rows(set: &Dataset) -> Vec<Vec<f32>> {
    (0..set.len()).map(|i| set.sample(i).0.to_vec()).collect()
}

/// Quantizes `net` with `calibration` training samples, scores f32 and int8 on the test split,
/// and writes the model directory (with a fine-tuning set through a shifted sensor when
/// `finetune_shift` is given).
pub fn export(
    net: &Network,
    data: &Prepared,
    calibration: usize,
    method: RangeMethod,
    finetune: Option<Finetune>,
    dir: &Path,
) -> Result<ExportReport> {
    let float_model = net.to_float_model();
    let calib: Vec<&[f32]> = (0..data.train.len().min(calibration.max(1)))
        .map(|i| data.train.sample(i).0)
        .collect();
    let quantized = quantize(&float_model, &calib, method)?;
    let mut net = net.clone();
    let float = eval_float(&mut net, &data.test)?;
    let int8 = eval_int8(&quantized.built.bytes, quantized.input, &data.test)?;
    let info = ExportInfo {
        name: &net.spec().name,
        class_names: &data.train.class_names,
        normalization: Some((&data.normalization.mean, &data.normalization.std)),
    };
    let test_x = rows(&data.test);
    let finetune = match finetune {
        Some(Finetune::Shift { gain, offset }) => {
            // Fine-tune on (up to) 400 shifted training samples; test on the shifted test split.
            let n = data.train.len().min(400);
            let idx: Vec<usize> = (0..n).collect();
            let tune = shifted(&data.train.subset(&idx), &data.normalization, gain, offset)?;
            let tune_test = shifted(&data.test, &data.normalization, gain, offset)?;
            Some((tune, tune_test))
        }
        Some(Finetune::Recording { mut tune, mut test }) => {
            for set in [&tune, &test] {
                ensure!(
                    set.feature_shape == data.train.feature_shape,
                    "the fine-tuning recording's samples are {:?}, the model's {:?}",
                    set.feature_shape,
                    data.train.feature_shape
                );
                ensure!(
                    set.num_classes() <= data.train.num_classes(),
                    "the fine-tuning recording has {} classes, the model {}",
                    set.num_classes(),
                    data.train.num_classes()
                );
            }
            // As the device sees the new sensor: raw readings through the model's normalization.
            data.normalization.apply(&mut tune)?;
            data.normalization.apply(&mut test)?;
            Some((tune, test))
        }
        None => None,
    };
    let finetune_rows = finetune
        .as_ref()
        .map(|(a, b)| (rows(a), a.labels.clone(), rows(b), b.labels.clone()));
    write_model_dir(
        dir,
        &quantized,
        &info,
        Some(LabelledSet {
            samples: &test_x,
            labels: &data.test.labels,
        }),
        finetune_rows.as_ref().map(|(ax, ay, bx, by)| {
            (
                LabelledSet {
                    samples: ax,
                    labels: ay,
                },
                LabelledSet {
                    samples: bx,
                    labels: by,
                },
            )
        }),
    )?;
    Ok(ExportReport {
        quantized,
        float,
        int8,
    })
}
