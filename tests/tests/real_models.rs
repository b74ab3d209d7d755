//! Public int8 models people deploy (`tests/real-models/`, from TFLite-Micro's repository and
//! MLPerf Tiny), imported from their `.tflite` files: every output byte must be TFLite-Micro's
//! (`tests/real-models/golden/`, written by `tools/goldens/real_models.py`) on random, all-min,
//! all-max and real inputs, on the host and on the emulated Cortex-M4.

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
        })
        .collect()
}

/// The models every test below covers; the manifest must list exactly these.
const MODELS: &[&str] = &[
    "mlc_ToyCar_quant_fullint_floatio",
    "tflm_hello_world_int8",
    "tflm_micro_speech_quantized",
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
        let got = infer(&g.tflite, &g.inputs).unwrap_or_else(|e| panic!("{}: {e:#}", g.name));
        assert!(
            got == g.outputs,
            "{}: {}",
            g.name,
            first_difference(&got, &g.outputs)
        );
    }
}

static QEMU: Mutex<()> = Mutex::new(());

#[test]
fn real_models_in_qemu_are_bit_exact_with_tflite_micro() {
    let _guard = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    for g in manifest() {
        let built = import_tflite(&g.tflite).unwrap_or_else(|e| panic!("{}: {e:#}", g.name));
        let case = mote_host::bench::BenchCase {
            name: g.name.clone(),
            model: built.bytes,
            inputs: g.inputs.clone(),
            expected: Some(g.outputs.clone()),
        };
        let result = mote_host::bench::run(&case).unwrap_or_else(|e| panic!("{}: {e:#}", g.name));
        assert_eq!(result.report.inferences.len(), g.vectors, "{}", g.name);
        let got = result.report.output_bytes();
        assert!(
            result.bit_exact == Some(true),
            "{}: {}",
            g.name,
            first_difference(&got, &g.outputs)
        );
        println!(
            "{}: {} instructions, {:.2} per MAC, arena {} (lower bound {})",
            g.name,
            result.instructions,
            result.instructions_per_mac(),
            result.arena,
            result.arena_lower_bound
        );
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
