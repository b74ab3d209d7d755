//! A model blob kept in two flash slots, so that a new model replaces the running one without
//! reflashing the firmware. The slots, trailer, CRC and commit word are the weight store's: a
//! power cut while a model is written leaves the previous one as the newest valid copy.
//!
//! Writing is the host's job (`mote deploy --model-only`); the device reads the slots at boot
//! with [`ModelStore::models`] and runs the newest copy that [`check`] accepts, falling back to
//! the older copy and then to the model built into its image.

use super::{Identity, StoreError, Stored, WeightStore};
use crate::format::{DType, TensorRecord};
use crate::{Error, Model};
use embedded_storage::nor_flash::NorFlash;

/// The identity every stored model carries, where a weight store keeps the CRC of the model its
/// weights belong to ("MODL"): a copy written by a weight store is never taken for a model.
const MODEL_BLOB: Identity = Identity {
    model: 0x4D4F_444C,
    shape: [0, 0],
};

/// A valid model copy in one of the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoredModel {
    /// The copy: slot, sequence number, length.
    pub stored: Stored,
    /// Where its blob starts in the flash (slot starts are erase-aligned, so the blob is
    /// aligned enough for [`Model::parse`] where the flash is memory-mapped).
    pub offset: u32,
}

/// Two flash slots holding model blobs.
#[derive(Debug)]
pub struct ModelStore<F> {
    slots: WeightStore<F>,
}

impl<F: NorFlash> ModelStore<F> {
    /// Uses `[a, a + slot_size)` and `[b, b + slot_size)` of `flash` as the two slots.
    pub fn new(flash: F, a: u32, b: u32, slot_size: u32) -> Result<Self, StoreError> {
        Ok(Self {
            slots: WeightStore::new(flash, a, b, slot_size, MODEL_BLOB)?,
        })
    }

    /// The largest blob a slot holds.
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// The valid model copies, newest first (CRC-checked; copies of another store format or
    /// kind are left out).
    pub fn models(&mut self) -> Result<[Option<StoredModel>; 2], StoreError> {
        let copies = self.slots.copies()?;
        Ok(copies.map(|copy| {
            copy.filter(|c| c.version == super::FORMAT_VERSION && c.identity == MODEL_BLOB)
                .map(|stored| StoredModel {
                    stored,
                    offset: self.slots.payload_offset(&stored),
                })
        }))
    }

    /// Writes `blob` over the slot that does not hold the newest copy; the newest stays valid
    /// until the last word of the new copy lands. The blob is not parsed here: the device
    /// checks it before running it.
    pub fn save(&mut self, blob: &[u8]) -> Result<StoredModel, StoreError> {
        let stored = self.slots.save(blob)?;
        Ok(StoredModel {
            stored,
            offset: self.slots.payload_offset(&stored),
        })
    }

    /// The flash, back.
    pub fn into_inner(self) -> F {
        self.slots.into_inner()
    }
}

/// What a firmware has room for: a model from a slot must fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes of arena.
    pub arena: usize,
    /// Operators it can decode.
    pub operators: usize,
}

/// Why a stored model is not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refusal {
    /// The blob does not parse (corrupt, or written by another format version).
    Invalid(Error),
    /// It needs an operator or kernel path this build of mote-core left out.
    Missing {
        /// The cargo feature it needs.
        feature: &'static str,
    },
    /// Its arena is larger than the firmware's.
    Arena {
        /// Bytes it needs.
        needed: usize,
        /// Bytes the firmware has.
        available: usize,
    },
    /// It has more operators than the firmware decodes.
    Operators {
        /// Its operators.
        count: usize,
        /// The firmware's.
        capacity: usize,
    },
    /// Its inputs or outputs differ from those the firmware feeds and reads (count, type or
    /// shape).
    Signature {
        /// An input (`false`: an output).
        input: bool,
        /// Which one (the first that differs, or the count when the counts differ).
        index: u16,
    },
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Invalid(e) => write!(f, "not a valid model: {e}"),
            Refusal::Missing { feature } => {
                write!(
                    f,
                    "needs mote-core's feature {feature}, not in this firmware"
                )
            }
            Refusal::Arena { needed, available } => write!(
                f,
                "needs {needed} B of arena, the firmware has {available} B"
            ),
            Refusal::Operators { count, capacity } => write!(
                f,
                "has {count} operators, the firmware decodes at most {capacity}"
            ),
            Refusal::Signature { input, index } => write!(
                f,
                "its {} {index} differs from the firmware's model (count, type or shape)",
                if *input { "input" } else { "output" }
            ),
        }
    }
}

/// Parses `blob` and checks that this firmware can run it in place of `current`: every
/// operator and kernel path built in, the arena and operator count within `capacity`, and the
/// same inputs and outputs (count, type, shape) as `current`, which the firmware's code around
/// the model was written for.
pub fn check<'m>(
    blob: &'m [u8],
    capacity: Capacity,
    current: &Model<'_>,
) -> Result<Model<'m>, Refusal> {
    let model = Model::parse(blob).map_err(Refusal::Invalid)?;
    let mut requirements = model.requirements().map_err(Refusal::Invalid)?;
    if let Some(missing) = requirements.find(|r| !r.is_built()) {
        return Err(Refusal::Missing {
            feature: missing.feature(),
        });
    }
    if model.arena_size() > capacity.arena {
        return Err(Refusal::Arena {
            needed: model.arena_size(),
            available: capacity.arena,
        });
    }
    if usize::from(model.op_count()) > capacity.operators {
        return Err(Refusal::Operators {
            count: usize::from(model.op_count()),
            capacity: capacity.operators,
        });
    }
    same_signature(&model, current, true)?;
    same_signature(&model, current, false)?;
    Ok(model)
}

/// Whether `model`'s inputs (or outputs) have `current`'s count, types and shapes.
fn same_signature(model: &Model<'_>, current: &Model<'_>, input: bool) -> Result<(), Refusal> {
    let count = |m: &Model<'_>| {
        if input {
            m.input_count()
        } else {
            m.output_count()
        }
    };
    let record = |m: &Model<'_>, i: u16| -> Result<TensorRecord, Refusal> {
        let info = if input { m.input(i) } else { m.output(i) };
        info.map(|t| t.record).map_err(Refusal::Invalid)
    };
    let differs = |index| Refusal::Signature { input, index };
    if count(model) != count(current) {
        return Err(differs(count(current)));
    }
    for i in 0..count(current) {
        let (new, old) = (record(model, i)?, record(current, i)?);
        let kind = |r: &TensorRecord| -> (DType, [u32; 4]) { (r.dtype, r.shape) };
        if kind(&new) != kind(&old) {
            return Err(differs(i));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::CutFlash;
    use super::super::RamFlash;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const SLOT: u32 = 4096;

    fn blob(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
    }

    /// The newest model copy's bytes, as a boot reads them.
    fn newest(mem: &mut [u8]) -> Option<Vec<u8>> {
        let mut store = ModelStore::new(RamFlash::keep(mem), 0, SLOT, SLOT).unwrap();
        let copy = store.models().unwrap()[0]?;
        let start = copy.offset as usize;
        Some(mem[start..start + copy.stored.len].to_vec())
    }

    #[test]
    fn models_come_newest_first_and_saves_alternate_slots() {
        let mut mem = vec![0u8; 2 * SLOT as usize];
        let mut store = ModelStore::new(RamFlash::new(&mut mem), 0, SLOT, SLOT).unwrap();
        assert_eq!(store.models().unwrap(), [None, None]);
        let first = store.save(&blob(1, 1000)).unwrap();
        assert_eq!(store.models().unwrap(), [Some(first), None]);
        let second = store.save(&blob(2, 3000)).unwrap();
        assert_eq!(store.models().unwrap(), [Some(second), Some(first)]);
        assert_eq!((first.offset, second.offset), (0, SLOT));
        let third = store.save(&blob(3, 5)).unwrap();
        assert_eq!(store.models().unwrap(), [Some(third), Some(second)]);
        assert_eq!(third.offset, 0);
        assert_eq!(
            store.save(&blob(4, store.capacity() + 1)),
            Err(StoreError::TooLarge {
                payload: store.capacity() + 1,
                capacity: store.capacity()
            })
        );
        assert_eq!(newest(&mut mem), Some(blob(3, 5)));
    }

    #[test]
    fn learned_weights_in_the_slots_are_not_a_model() {
        let mut mem = vec![0u8; 2 * SLOT as usize];
        let weights = Identity {
            model: 0xDEAD_BEEF,
            shape: [4, 8],
        };
        WeightStore::new(RamFlash::new(&mut mem), 0, SLOT, SLOT, weights)
            .unwrap()
            .save(&blob(9, 128))
            .unwrap();
        let mut store = ModelStore::new(RamFlash::keep(&mut mem), 0, SLOT, SLOT).unwrap();
        assert_eq!(store.models().unwrap(), [None, None]);
    }

    #[test]
    fn a_power_cut_during_a_model_write_keeps_the_previous_model_whole() {
        let (old, new) = (blob(1, 2500), blob(2, 3001));
        for had_old in [false, true] {
            let mut before = vec![0xFFu8; 2 * SLOT as usize];
            if had_old {
                let flash = RamFlash::keep(&mut before);
                ModelStore::new(flash, 0, SLOT, SLOT)
                    .unwrap()
                    .save(&old)
                    .unwrap();
            }
            let mut cut = 0;
            loop {
                let mut mem = before.clone();
                let flash = CutFlash {
                    inner: RamFlash::keep(&mut mem),
                    budget: cut,
                    steps: 0,
                    partial_mask: 0x3C,
                };
                let mut store = ModelStore::new(flash, 0, SLOT, SLOT).unwrap();
                let finished = store.save(&new).is_ok();
                let expected = if finished {
                    Some(new.clone())
                } else {
                    had_old.then(|| old.clone())
                };
                assert_eq!(newest(&mut mem), expected, "cut after {cut} steps");
                if finished {
                    break;
                }
                cut += 1;
            }
            assert!(cut > 700, "{cut} steps");
        }
    }
}
