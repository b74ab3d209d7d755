//! mote-host: the host side of mote, as a library and as the `mote` CLI.
//!
//! Everything the `mote` commands do is here as functions: [`train`] (the f32 engine and its
//! TOML model files), [`quantize`], [`export`] (the model directory a firmware builds from),
//! [`tflite`] import, [`inspect`], the [`firmware`] build and the [`qemu`] runner.
//!
//! # Importing a `.tflite` and running it
//!
//! [`tflite::import_tflite`] turns an int8 `.tflite` into a `.mote` blob (what `mote import`
//! does); mote-core runs it on the host exactly as on the device, and
//! [`export::write_model_files`] writes the model directory with the `model.rs` a firmware
//! `include!`s (what `mote import --dir` does):
//!
//! ```
//! use mote_core::{Interpreter, Model};
//! use mote_host::{export, tflite, AlignedBytes};
//!
//! // TFLite-Micro's hello_world: y = sin(x) for x in [0, 2 pi], int8 in and out.
//! let tflite = include_bytes!("../../tests/real-models/tflm_hello_world_int8.tflite");
//! let built = tflite::import_tflite(tflite)?;
//! let blob = AlignedBytes::new(&built.bytes); // mote-core reads 4-byte-aligned blobs
//! let model = Model::parse(blob.as_slice()).map_err(anyhow::Error::msg)?;
//!
//! let (input, output) = (model.input(0)?, model.output(0)?);
//! let mut arena = AlignedBytes::zeroed(model.arena_size());
//! let mut interpreter = Interpreter::new(model, arena.as_mut_slice())?;
//! let x = 1.0f32;
//! let q = (x / input.scale()).round() as i32 + input.zero_point();
//! interpreter.input_i8(0)?[0] = q as i8;
//! interpreter.invoke()?;
//! let y = output.scale() * (interpreter.output_i8(0)?[0] as i32 - output.zero_point()) as f32;
//! assert!((y - x.sin()).abs() < 0.1, "sin(1) = {y}?");
//!
//! // The model directory: model.mote, model.rs (MODEL, ARENA_SIZE, MOTE_CORE_FEATURES, ...).
//! let dir = std::env::temp_dir().join(format!("mote-doc-{}", std::process::id()));
//! let info = export::ExportInfo { name: "hello_world", class_names: &[], normalization: None };
//! export::write_model_files(&dir, &built.bytes, &info)?;
//! let model_rs = std::fs::read_to_string(dir.join("model.rs"))?;
//! assert!(model_rs.contains(r#"pub const MOTE_CORE_FEATURES: [&str; 1] = ["op-fully-connected"];"#));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), anyhow::Error>(())
//! ```
#![deny(missing_docs)]

pub mod bench;
pub mod builder;
pub mod data;
pub mod export;
pub mod firmware;
pub mod float_model;
pub mod inspect;
pub mod passes;
pub mod planner;
pub mod plot;
pub mod qemu;
pub mod quantize;
pub mod report;
pub mod tfgraph;
pub mod tflite;
pub mod train;
pub mod workflow;

/// A copy of some bytes at a 4-byte-aligned address, as `mote_core::Model::parse` requires
/// (a `Vec<u8>` guarantees no alignment).
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(4)) {
            let mut b = [0u8; 4];
            b[..chunk.len()].copy_from_slice(chunk);
            *word = u32::from_ne_bytes(b);
        }
        Self {
            words,
            len: bytes.len(),
        }
    }

    /// `len` zero bytes: an arena or training buffer for mote-core, which needs 4-byte
    /// alignment.
    pub fn zeroed(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(4)],
            len,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        let all: &[u8] = bytemuck_words(&self.words);
        &all[..self.len]
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: u32 has no padding and every byte pattern is a valid u32; the byte slice
        // covers exactly the words' memory and borrows them mutably for the same lifetime.
        let all = unsafe {
            std::slice::from_raw_parts_mut(
                self.words.as_mut_ptr().cast::<u8>(),
                self.words.len() * 4,
            )
        };
        &mut all[..self.len]
    }
}

fn bytemuck_words(words: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding and u8 has alignment 1; the byte slice covers exactly the
    // words' memory and borrows them immutably for the same lifetime.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 4) }
}
