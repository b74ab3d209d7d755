//! Public int8 models people deploy (`tests/real-models/`, from TFLite-Micro's repository and
//! MLPerf Tiny), imported from their `.tflite` files: every output byte must be TFLite-Micro's
//! (`tests/real-models/golden/`, written by `tools/goldens/real_models.py`) on random, all-min,
//! all-max and real inputs, on the host and on the emulated Cortex-M4. A model with state
//! (SVDF, LSTM) runs sequences of consecutive invokes, its state carried from one to the next
//! and reset at each sequence's start, as TFLite-Micro ran them.

use mote_host::tflite::{import_tflite, infer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("real-models")
}

fn read(rel: &str) -> Vec<u8> {
    let path = dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One model's golden vectors: the `.tflite` file, its inputs and TFLite-Micro's outputs.
struct Golden {
    name: String,
    tflite: Vec<u8>,
    inputs: Vec<u8>,
    outputs: Vec<u8>,
    vectors: usize,
    /// Invokes per sequence (1: every vector on its own).
    sequence: usize,
}

impl Golden {
    /// The sequences: each one's inputs and TFLite-Micro's outputs, back to back.
    fn sequences(&self) -> Vec<(&[u8], &[u8])> {
        let count = self.vectors / self.sequence;
        let (in_len, out_len) = (self.inputs.len() / count, self.outputs.len() / count);
        self.inputs
            .chunks_exact(in_len)
            .zip(self.outputs.chunks_exact(out_len))
            .collect()
    }
}

fn manifest() -> Vec<Golden> {
    let text = read("golden/manifest.json");
    let Value::Object(models) = serde_json::from_slice(&text).expect("manifest.json parses") else {
        panic!("manifest.json is not an object");
    };
    models
        .iter()
        .map(|(name, m)| Golden {
            name: name.clone(),
            tflite: read(m["model"].as_str().expect("model")),
            inputs: read(&format!("golden/{name}_in.bin")),
            outputs: read(&format!("golden/{name}_out_tflm.bin")),
            vectors: m["vectors"].as_u64().expect("vectors") as usize,
            sequence: m
                .get("sequence")
                .map_or(1, |k| k.as_u64().expect("sequence") as usize),
        })
        .collect()
}

/// The models every test below covers; the manifest must list exactly these.
const MODELS: &[&str] = &[
    "mlc_ToyCar_quant_fullint_floatio",
    "tflm_dtln_noise_suppression",
    "tflm_hello_world_int8",
    "tflm_keyword_scrambled",
    "tflm_keyword_scrambled_8bit",
    "tflm_micro_speech_lstm",
    "tflm_micro_speech_quantized",
    "tflm_mnist_lstm_int8",
    "tflm_person_detect",
    "tflm_pytorch_mobilenet_v2_quantized",
    "tflm_simple_add_model",
];

#[test]
fn manifest_lists_every_model() {
    let listed: Vec<String> = manifest().into_iter().map(|g| g.name).collect();
    assert_eq!(listed, MODELS);
    for g in manifest() {
        assert!(g.vectors >= 5, "{}: {} vectors", g.name, g.vectors);
        assert_eq!(g.inputs.len() % g.vectors, 0, "{}", g.name);
        assert_eq!(g.outputs.len() % g.vectors, 0, "{}", g.name);
        assert!(
            g.sequence >= 1 && g.vectors % g.sequence == 0,
            "{}: {} vectors are not whole sequences of {}",
            g.name,
            g.vectors,
            g.sequence
        );
    }
}

/// Whether the model keeps state between invokes (variable tensors).
fn has_state(mote: &[u8]) -> bool {
    let blob = mote_host::AlignedBytes::new(mote);
    let model = mote_core::Model::parse(blob.as_slice()).expect("imported model parses");
    (0..model.tensor_count()).any(|i| model.tensor(i).is_ok_and(|t| t.record.variable))
}

/// The keyword models (SVDF) and the LSTM models keep state and replay sequences of more than
/// one invoke.
#[test]
fn stateful_models_replay_sequences() {
    for g in manifest() {
        let built = import_tflite(&g.tflite).unwrap_or_else(|e| panic!("{}: {e:#}", g.name));
        let stateful = has_state(&built.bytes);
        assert_eq!(
            stateful,
            g.sequence > 1,
            "{}: sequence {}",
            g.name,
            g.sequence
        );
        if stateful {
            assert!(g.vectors / g.sequence >= 2, "{}: one sequence", g.name);
        }
    }
}

/// Where two output byte strings first differ, for the failure message.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!("byte {i}: mote {}, TFLite-Micro {}", got[i], want[i]),
        None => format!("lengths {} and {}", got.len(), want.len()),
    }
}

#[test]
fn real_models_on_the_host_are_bit_exact_with_tflite_micro() {
    for g in manifest() {
        let built = import_tflite(&g.tflite).unwrap_or_else(|e| panic!("{}: {e:#}", g.name));
        // One interpreter per sequence: its state starts at the zero point.
        for (k, (inputs, outputs)) in g.sequences().into_iter().enumerate() {
            let got = infer(&built.bytes, inputs).unwrap_or_else(|e| panic!("{}: {e:#}", g.name));
            assert!(
                got == outputs,
                "{} sequence {k}: {}",
                g.name,
                first_difference(&got, outputs)
            );
        }
    }
}

static QEMU: Mutex<()> = Mutex::new(());

/// Whether the QEMU test runs model `name`: every model, or those `MOTE_REAL_MODELS` lists
/// (comma-separated), to measure a few without building the firmware for all.
fn selected(name: &str) -> bool {
    match std::env::var("MOTE_REAL_MODELS") {
        Ok(list) => list.split(',').any(|m| m.trim() == name),
        Err(_) => true,
    }
}

#[test]
fn real_models_in_qemu_are_bit_exact_with_tflite_micro() {
    let _guard = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    for g in manifest().into_iter().filter(|g| selected(&g.name)) {
        let built = import_tflite(&g.tflite).unwrap_or_else(|e| panic!("{}: {e:#}", g.name));
        // The firmware runs its vectors back to back in one interpreter: one run per sequence
        // (a model without state runs all its vectors in one).
        let runs = match g.sequence {
            1 => vec![(&g.inputs[..], &g.outputs[..])],
            _ => g.sequences(),
        };
        for (k, (inputs, outputs)) in runs.into_iter().enumerate() {
            let case = mote_host::bench::BenchCase {
                name: g.name.clone(),
                model: built.bytes.clone(),
                inputs: inputs.to_vec(),
                expected: Some(outputs.to_vec()),
            };
            let result =
                mote_host::bench::run(&case).unwrap_or_else(|e| panic!("{}: {e:#}", g.name));
            let vectors = g.vectors * inputs.len() / g.inputs.len();
            assert_eq!(result.report.inferences.len(), vectors, "{}", g.name);
            let got = result.report.output_bytes();
            assert!(
                result.bit_exact == Some(true),
                "{} run {k}: {}",
                g.name,
                first_difference(&got, outputs)
            );
            println!(
                "{} run {k}: {} instructions, {:.2} per MAC, arena {} (lower bound {}), \
                 flash {} + {}",
                g.name,
                result.instructions,
                result.instructions_per_mac(),
                result.arena,
                result.arena_lower_bound,
                result.flash.runtime,
                result.flash.model
            );
        }
    }
}

/// A hybrid model (float activations, int8 weights) is refused with the fix named.
#[test]
fn a_hybrid_model_is_refused_with_the_fix() {
    let err = import_tflite(&read("mlc_ToyCar_quant_hybrid.tflite")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("hybrid"), "{msg}");
    assert!(msg.contains("TFLITE_BUILTINS_INT8"), "{msg}");
}

/// `mote inspect` counts the keyword models' state (7 SVDF layers: 4 of [1, 512] and 3 of
/// [1, 1024], int16 or int8), and their blobs carry no second copy of the time weights and
/// biases each SVDF's lowering folds into one constant: smaller than the `.tflite` files.
#[test]
fn the_keyword_models_state_and_size() {
    for (name, state) in [
        ("tflm_keyword_scrambled", 10_240),
        ("tflm_keyword_scrambled_8bit", 5_120),
    ] {
        let tflite = read(&format!("{name}.tflite"));
        let built = import_tflite(&tflite).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let blob = mote_host::AlignedBytes::new(&built.bytes);
        let model = mote_core::Model::parse(blob.as_slice()).unwrap();
        let table = mote_host::inspect::table(&model).unwrap();
        let line = format!("state: {state} B in 7 variable tensors");
        assert!(table.contains(&line), "{name}: {table}");
        assert!(
            built.bytes.len() < tflite.len(),
            "{name}: blob {} bytes, .tflite {}",
            built.bytes.len(),
            tflite.len()
        );
    }
}
