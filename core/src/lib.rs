//! mote-core: the part of mote that runs on the microcontroller.
//!
//! `#![no_std]` and free of `alloc`: every buffer is owned by the caller, and every problem with
//! the input comes back as an [`Error`] rather than a panic.
//!
//! # Running a model
//!
//! `mote export` (or `mote import --dir`) writes a model directory: `model.mote`, and a
//! `model.rs` to `include!` that holds `MODEL` (the blob, 4-byte aligned), `ARENA_SIZE`,
//! `OP_COUNT`, the inputs' and outputs' shapes and quantization, the class names and
//! `MOTE_CORE_FEATURES`, the cargo features of this crate the model needs (a build without one
//! fails to compile, naming it). With the blob and an arena of `ARENA_SIZE` bytes:
//!
//! ```
//! use mote_core::{Interpreter, Model};
//!
//! # #[repr(C, align(4))]
//! # struct Aligned<T: ?Sized>(T);
//! # static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../../firmware/models/demo/model.mote"));
//! #[repr(C, align(4))] // the arena must start on a 4-byte boundary
//! struct Arena([u8; 8192]); // in firmware: [u8; ARENA_SIZE], in a static
//!
//! let model = Model::parse(&MODEL.0)?; // CRC, bounds, shapes and memory plan, checked once
//! let mut arena = Arena([0; 8192]);
//! let mut interpreter = Interpreter::new(model, &mut arena.0)?;
//! interpreter.input_i8(0)?.fill(-128); // the quantized input
//! interpreter.invoke()?;
//! let scores = interpreter.output_i8(0)?;
//! let class = (0..scores.len()).max_by_key(|&i| scores[i]).unwrap_or(0);
//! assert!(class < scores.len());
//! # Ok::<(), mote_core::Error>(())
//! ```
//!
//! An async task runs an inference in parts with [`Interpreter::invoke_some`], yielding
//! between them.
//!
//! # Learning on the device
//!
//! [`train::Head`] fine-tunes the model's last dense layer on features from the frozen int8
//! backbone; [`persist::WeightStore`] keeps what it learned across resets and power cuts, in
//! two flash slots, tagged with the model and shape it belongs to:
//!
//! ```
//! use mote_core::persist::{Loaded, RamFlash, WeightStore};
//! use mote_core::train::{Head, Sgd, Target, Trainer};
//! use mote_core::{Interpreter, Model};
//!
//! # #[repr(C, align(4))]
//! # struct Aligned<T: ?Sized>(T);
//! # static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../../firmware/models/demo/model.mote"));
//! #[repr(C, align(4))]
//! struct Aligned4<const N: usize>([u8; N]);
//!
//! let model = Model::parse(&MODEL.0)?;
//! let mut arena = Aligned4([0; 8192]);
//! let mut interpreter = Interpreter::new(model, &mut arena.0)?;
//! let head = Head::find(&model, Sgd::new(0.05).with_momentum(0.9))?;
//! let mut params = vec![0f32; head.param_count()];
//! head.init_params(&model, &mut params)?; // start from the exported weights
//! let mut features = vec![0f32; head.inputs];
//! let mut memory = Aligned4([0; 16384]); // training memory: head.plan.bytes() of it
//! let mut trainer = Trainer::new(&head.plan, &mut params, &mut memory.0)?;
//! for label in [0usize, 1] {
//!     interpreter.input_i8(0)?.fill(label as i8); // a labelled sample from the sensor
//!     head.features(&mut interpreter, &mut (), &mut features)?;
//!     trainer.accumulate(&features, Target::Class(label))?;
//! }
//! trainer.step()?; // one SGD step over the two samples
//! let learned: Vec<u8> = trainer.params().iter().flat_map(|w| w.to_le_bytes()).collect();
//!
//! // Two 8 KiB slots in (here) RAM standing in for flash.
//! let mut flash = vec![0xFFu8; 16 * 1024];
//! let mut store = WeightStore::new(RamFlash::new(&mut flash), 0, 8192, 8192, head.identity(&model))?;
//! store.save(&learned)?;
//! let mut restored = vec![0u8; learned.len()];
//! assert!(matches!(store.load(&mut restored)?, Loaded::Restored(_)));
//! assert_eq!(restored, learned);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

#[macro_use]
mod error;
mod cast;
pub mod crc32;
pub mod format;
pub mod geometry;
pub mod input;
mod interpreter;
pub mod model;
pub mod ops;
pub mod persist;
pub mod quant;
#[cfg(test)]
pub(crate) mod test_support;
pub mod train;

pub use cast::Element;
pub use error::{Error, Why};
pub use interpreter::{Budget, Interpreter, OpHook, Progress};
pub use model::{Model, TensorInfo};
