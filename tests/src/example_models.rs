//! The model directories the `examples/` apps `include!`, written as `mote import --dir` and
//! `mote export` write one (`mote_host::export::write_model_files`), so the apps build from
//! exactly what a user's firmware would. `cargo run -p mote-tests --example
//! write_example_models` writes them; a test checks the committed files match.

use std::path::{Path, PathBuf};

/// One example's model directory: where it goes and the files in it.
#[derive(Debug)]
pub struct ExampleModel {
    /// `examples/<app>/model`.
    pub dir: PathBuf,
    /// File names and contents.
    pub files: Vec<(String, Vec<u8>)>,
}

/// The workspace's `examples/` folder.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The bare-metal app's model: the firmware's demo model (an 8x8x1 DS-CNN, as from an 8x8
/// thermal sensor), with the demo's input vectors as its fake sensor's frames.
pub fn bare_metal() -> ExampleModel {
    let (blob, inputs, _) = crate::lowering::demo_model();
    let info = mote_host::export::ExportInfo {
        name: "demo",
        class_names: &[],
        normalization: None,
    };
    let mut model = written(&blob, &info, examples_dir().join("bare-metal/model"));
    model.files.push(("test_inputs.i8".into(), inputs));
    model
}

/// Samples in the Embassy app's window: [1, WINDOW, 3] = WINDOW accelerometer samples.
pub const EMBASSY_WINDOW: usize = 32;

/// The Embassy app's model: a stand-in DS-CNN with random weights over a window of
/// accelerometer samples ([1, 32, 3, 1]: time down, x/y/z across), the shape a motion model
/// exported by `mote export` would have. Its normalization (g in, unchanged) goes to model.rs
/// as an export's does.
pub fn embassy() -> ExampleModel {
    let built = crate::synth::ds_cnn(24, EMBASSY_WINDOW, 3, 8, 1, 4)
        .build()
        .expect("the stand-in model builds");
    let names: Vec<String> = ["still", "walking", "running", "shaking"]
        .map(String::from)
        .to_vec();
    let info = mote_host::export::ExportInfo {
        name: "motion-stand-in",
        class_names: &names,
        normalization: Some((&[0.0; 3], &[1.0; 3])),
    };
    written(
        &built.bytes,
        &info,
        examples_dir().join("embassy-nrf52840/model"),
    )
}

/// What `write_model_files` puts in a directory for `blob`.
fn written(blob: &[u8], info: &mote_host::export::ExportInfo<'_>, dir: PathBuf) -> ExampleModel {
    let scratch = std::env::temp_dir().join(format!(
        "mote-example-model-{}-{}",
        std::process::id(),
        info.name
    ));
    mote_host::export::write_model_files(&scratch, blob, info).expect("write the model files");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&scratch)
        .expect("list the model files")
        .map(|entry| {
            let path = entry.expect("a model file").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read a model file"))
        })
        .collect();
    files.sort();
    let _ = std::fs::remove_dir_all(&scratch);
    ExampleModel { dir, files }
}
