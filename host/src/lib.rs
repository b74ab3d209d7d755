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
pub mod cycles;
pub mod data;
pub mod export;
pub mod firmware;
pub mod float_model;
pub mod inspect;
pub mod model_slots;
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

/// A zeroed arena for `model`, refused when the header asks for more than the model uses.
///
/// The header's `arena_size` is a `u32` the parser only checks from below (every tensor and
/// scratch buffer must fit), so a crafted or corrupted blob could make the host allocate up to
/// 4 GiB. A blob mote builds declares exactly the end of its last arena tensor or kernel
/// scratch (rounded up to the planner's alignment), so anything larger is an error naming
/// both figures.
pub fn arena_for(model: &mote_core::Model<'_>) -> anyhow::Result<AlignedBytes> {
    let used = arena_used(model)?;
    let declared = model.arena_size();
    anyhow::ensure!(
        declared <= used,
        "the model's header asks for a {declared}-byte arena, but its tensors and kernel \
         scratch use {used} bytes: a blob mote builds asks for exactly what it uses, so this \
         one is corrupted or crafted"
    );
    Ok(AlignedBytes::zeroed(declared))
}

/// The end of the last arena byte any tensor or kernel scratch of `model` occupies, rounded
/// up to [`planner::ALIGN`].
pub fn arena_used(model: &mote_core::Model<'_>) -> anyhow::Result<usize> {
    let err = |e: mote_core::Error| anyhow::anyhow!("{e}");
    let mut end = 0;
    for i in 0..model.tensor_count() {
        let t = model.tensor(i).map_err(err)?;
        if t.record.storage == mote_core::format::Storage::Arena {
            end = end.max(t.arena_range().end);
        }
    }
    for k in 0..model.op_count() {
        end = end.max(model.layer(k).map_err(err)?.scratch().range().end);
    }
    Ok(end.next_multiple_of(planner::ALIGN))
}

/// A temporary directory, removed with everything in it when dropped: on success, on an error
/// returned through it, and on a panic that unwinds.
#[derive(Debug)]
pub struct TempDir {
    path: std::path::PathBuf,
}

impl TempDir {
    /// A new directory `<prefix>-<process id>-<n>` in the system's temporary directory.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    /// A new directory `<prefix>-<process id>-<n>` in `root`.
    pub fn new_in(root: &std::path::Path, prefix: &str) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("{prefix}-{}-{n}", std::process::id()));
            // A directory left by an earlier process with the same id is not reused.
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Nothing to report to at this point: a directory that cannot be removed stays.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mote-lib-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_temp_dir_is_removed_when_dropped_even_on_a_panic() {
        let root = root("temp");
        let kept = {
            let dir = TempDir::new_in(&root, "mote-x").unwrap();
            std::fs::write(dir.path().join("model.mote"), b"x").unwrap();
            dir.path().to_path_buf()
        };
        assert!(!kept.exists());
        let panicked = std::panic::catch_unwind(|| {
            let dir = TempDir::new_in(&root, "mote-x").unwrap();
            std::fs::write(dir.path().join("a"), b"x").unwrap();
            panic!("mid-way");
        });
        assert!(panicked.is_err());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        std::fs::remove_dir(&root).unwrap();
    }
}
