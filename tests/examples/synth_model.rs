//! Writes benchmark models as `.mote` files for `mote bench`: the four MLPerf Tiny models
//! imported from `tests/mlperf/*.tflite`, and a synthetic KWS-like depthwise-separable CNN.
//!
//! `cargo run -p mote-tests --example synth_model -- <out_dir>` (default: the system temp dir),
//! then `cargo run -p mote-host -- bench <out_dir>/*.mote --layers`.

use std::path::{Path, PathBuf};

fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&out).expect("create the output directory");
    let mlperf = Path::new(env!("CARGO_MANIFEST_DIR")).join("mlperf");
    for (file, name) in [
        ("kws_ref_model.tflite", "kws"),
        ("vww_96_int8.tflite", "vww"),
        ("pretrainedResnet_quant.tflite", "resnet8"),
        ("ad01_int8.tflite", "ad"),
    ] {
        let bytes = std::fs::read(mlperf.join(file)).expect("read a .tflite model");
        let built = mote_host::tflite::import_tflite(&bytes).expect("import the model");
        let path = out.join(format!("{name}.mote"));
        std::fs::write(&path, &built.bytes).expect("write the model");
        println!("{}: {} bytes", path.display(), built.bytes.len());
    }
    // 49x10 input, 64 channels, 4 blocks: close to MLPerf's KWS DS-CNN.
    let built = mote_tests::synth::ds_cnn(7, 49, 10, 64, 4, 12)
        .build()
        .expect("build the synthetic DS-CNN");
    let path = out.join("synth_kws.mote");
    std::fs::write(&path, &built.bytes).expect("write the model");
    println!("{}: {} bytes", path.display(), built.bytes.len());
}
