//! The five MLPerf Tiny int8 reference models (`tests/mlperf/`), imported from their `.tflite`
//! files, must reproduce every output byte TFLite-Micro's reference kernels computed for the
//! golden vectors in `tests/mlperf/golden/`.
//!
//! Run with `--nocapture` to see each model's planned arena and its lower bound.

use mote_host::tflite::{import_tflite, infer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn mlperf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mlperf")
}

fn read(rel: &str) -> Vec<u8> {
    let path = mlperf_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn manifest() -> serde_json::Map<String, Value> {
    let text = read("golden/manifest.json");
    match serde_json::from_slice(&text).expect("manifest.json parses") {
        Value::Object(cases) => cases,
        other => panic!("manifest.json is not an object: {other}"),
    }
}

/// The cases this file has a test for; the manifest must list exactly these.
const CASES: [&str; 8] = [
    "kws_real", "kws_rand", "ad_real", "vww_rand", "ic_zero", "ic_rand", "sww_real", "sww_rand",
];

fn product(v: &Value) -> usize {
    v.as_array()
        .expect("a shape array")
        .iter()
        .map(|d| d.as_u64().expect("a dimension") as usize)
        .product()
}

/// Imports the case's model, runs every vector and compares every output byte.
fn check(name: &str) {
    let cases = manifest();
    let case = &cases[name];
    let field = |k: &str| {
        case[k]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no `{k}`"))
    };
    let model_file = field("model");
    let tflite = read(model_file);
    let input = read(field("input"));
    let expected = read(field("expected_output_tflm"));
    let vectors = case["vectors"].as_u64().expect("vectors") as usize;
    let in_len = product(&case["input_shape_per_vector"]);
    let out_len = product(&case["output_shape_per_vector"]);
    assert_eq!(input.len(), vectors * in_len, "{name}: input file size");
    assert_eq!(
        expected.len(),
        vectors * out_len,
        "{name}: output file size"
    );

    let start = Instant::now();
    let built = import_tflite(&tflite).unwrap_or_else(|e| panic!("{name}: import: {e:#}"));
    let imported = start.elapsed();
    println!(
        "{name}: {model_file}: arena_size {} B, arena_lower_bound {} B, blob {} B \
         (imported in {imported:.2?})",
        built.arena_size,
        built.arena_lower_bound,
        built.bytes.len()
    );
    assert!(built.arena_lower_bound <= built.arena_size);
    // Every layer takes a fast kernel with its planned scratch: firmware for these models
    // links no reference kernel.
    let aligned = mote_host::AlignedBytes::new(&built.bytes);
    let model = mote_core::Model::parse(aligned.as_slice()).unwrap();
    assert!(!model.needs_reference_kernels().unwrap(), "{name}");
    // The optional kernel paths each model takes. VWW: dead channels in pointwise layers (a
    // table of channel pairs) and in two depthwise ones (written again in Rust), and a first
    // conv whose 27-tap windows are not whole words (its last channels in Rust), like
    // ResNet-8's, whose 3x3 convs gather windows as rectangles. Only the autoencoder has FULLY_CONNECTED layers big enough for the fast
    // kernel (the others' classifiers run the compact loop); keyword spotting links no path.
    // The streaming wake-word model's depthwise layers (k x 1 kernels on H x 1 maps) run a
    // channel at a time; some of its pointwise channels need the channel-pair table.
    let paths: Vec<&str> = model.kernel_path_features().unwrap().collect();
    let expected_paths: &[&str] = if model_file.contains("vww") {
        &[
            "kernel-conv-table",
            "kernel-conv-tail",
            "kernel-depthwise-fix",
        ]
    } else if model_file.contains("Resnet") {
        &["kernel-conv-tail", "kernel-conv-rect"]
    } else if model_file.contains("ad01") {
        &["kernel-fc-fast"]
    } else if model_file.contains("str_ww") {
        &["kernel-conv-table", "kernel-depthwise-plane"]
    } else {
        &[]
    };
    assert_eq!(paths, expected_paths, "{name}");

    let start = Instant::now();
    let got = infer(&built.bytes, &input).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    println!("{name}: {vectors} vectors in {:.2?}", start.elapsed());
    assert_eq!(got.len(), expected.len(), "{name}: output length");
    if got != expected {
        let mut report = Vec::new();
        let mut differing = 0;
        for (v, (g, e)) in got
            .chunks(out_len)
            .zip(expected.chunks(out_len))
            .enumerate()
        {
            let diffs: Vec<(usize, i8, i8)> = g
                .iter()
                .zip(e)
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, (&a, &b))| (i, a as i8, b as i8))
                .collect();
            differing += diffs.len();
            if !diffs.is_empty() && report.len() < 5 {
                report.push(format!(
                    "vector {v}: {} bytes differ; (index, mote, TFLite-Micro) {:?}",
                    diffs.len(),
                    &diffs[..diffs.len().min(8)]
                ));
            }
        }
        panic!(
            "{name}: {differing} of {} output bytes differ from TFLite-Micro:\n{}",
            expected.len(),
            report.join("\n")
        );
    }
}

#[test]
fn manifest_lists_exactly_the_tested_cases() {
    let mut listed: Vec<&str> = Vec::new();
    let cases = manifest();
    listed.extend(cases.keys().map(String::as_str));
    listed.sort_unstable();
    let mut tested = CASES.to_vec();
    tested.sort_unstable();
    assert_eq!(listed, tested);
}

#[test]
fn kws_real_is_bit_exact() {
    check("kws_real");
}

#[test]
fn kws_rand_is_bit_exact() {
    check("kws_rand");
}

#[test]
fn ad_real_is_bit_exact() {
    check("ad_real");
}

#[test]
fn vww_rand_is_bit_exact() {
    check("vww_rand");
}

#[test]
fn ic_zero_is_bit_exact() {
    check("ic_zero");
}

#[test]
fn ic_rand_is_bit_exact() {
    check("ic_rand");
}

#[test]
fn sww_real_is_bit_exact() {
    check("sww_real");
}

#[test]
fn sww_rand_is_bit_exact() {
    check("sww_rand");
}

/// `infer` takes the `.tflite` file itself too, and gives the same bytes.
#[test]
fn infer_reads_tflite_files_directly() {
    let input = read("golden/kws_real_in.i8");
    let expected = read("golden/kws_real_out_tflm.i8");
    let got = infer(&read("kws_ref_model.tflite"), &input).unwrap();
    assert_eq!(got, expected);
}
