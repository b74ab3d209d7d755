//! Keeping learned weights across resets and power cuts, on any NOR flash.
//!
//! Two slots, A and B, each one erase-aligned region holding
//! `[payload ... | version u32 | model u32 | shape u32 x2 | sequence u32 | length u32 | crc u32 |
//! commit u32]`. A save goes to the slot that does not hold the newest valid copy: erase, write
//! the payload, write the header, and last of all write the commit word. Until that final word
//! lands, the slot reads as empty, so a power cut at any point leaves the previous weights as
//! the newest valid copy. Boot loads the valid slot with the higher sequence number (compared
//! with wrap-around).
//!
//! Every copy carries the [`Identity`] of what it was learned for (the model blob's CRC and the
//! learned tensor's shape) and the store's [`FORMAT_VERSION`]: weights learned for another
//! model, another head or another layout are reported by [`WeightStore::load`] as
//! [`Loaded::Foreign`], never copied into the caller's buffer, and the next save replaces them.

use crate::crc32::Crc32;
use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

/// Marks a committed slot; erased flash reads 0xFFFF_FFFF.
const COMMIT: u32 = 0x4D4F_5445; // "MOTE"
/// Version, model, shape (2), sequence, length, CRC, commit.
pub const TRAILER_LEN: usize = 32;
/// Version 1's trailer: sequence, length, CRC, commit (no identity). Still recognised, so that
/// its copies are reported as another version's instead of as an empty store.
const V1_TRAILER_LEN: usize = 16;
/// The layout and meaning of a stored copy; bumped whenever either changes.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes staged on the stack at a time while streaming the payload.
const CHUNK: usize = 64;

/// Payload bytes a slot of `slot_size` bytes can hold (0 if it cannot even hold the trailer).
pub const fn payload_capacity(slot_size: usize) -> usize {
    slot_size.saturating_sub(TRAILER_LEN)
}

/// What a stored payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Identity {
    /// CRC-32 of the model blob the weights were learned on (its header's `crc32`, which
    /// [`Model::parse`](crate::Model::parse) verified).
    pub model: u32,
    /// The learned tensor's shape (a dense head: outputs, inputs).
    pub shape: [u32; 2],
}

/// What a stored copy has, or is missing, to be this store's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mismatch {
    /// Written by another version of the store.
    Version {
        /// The copy's version.
        found: u32,
    },
    /// Learned for another model blob.
    Model {
        /// The copy's model CRC.
        found: u32,
    },
    /// Learned for a tensor of another shape.
    Shape {
        /// The copy's shape.
        found: [u32; 2],
    },
    /// Same identity, but not exactly as many bytes as the caller's buffer.
    Length {
        /// The copy's bytes.
        found: usize,
    },
}

impl core::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mismatch::Version { found } => {
                write!(f, "store format version {found}, not {FORMAT_VERSION}")
            }
            Mismatch::Model { found } => write!(f, "learned for model crc {found:#010x}"),
            Mismatch::Shape { found } => write!(f, "learned for shape {}x{}", found[0], found[1]),
            Mismatch::Length { found } => write!(f, "{found} bytes"),
        }
    }
}

/// What went wrong while loading or saving.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StoreError {
    /// The flash driver failed (or the power was cut mid-operation).
    Flash(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] NorFlashErrorKind),
    /// The payload does not fit in a slot.
    TooLarge {
        /// Payload bytes.
        payload: usize,
        /// Bytes a slot can hold.
        capacity: usize,
    },
    /// The slots are not erase-aligned, overlap, or leave the flash; or the flash's write
    /// granularity is not 1, 2 or 4 bytes.
    BadLayout,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::Flash(kind) => write!(f, "flash error: {kind:?}"),
            StoreError::TooLarge { payload, capacity } => {
                write!(f, "{payload} bytes do not fit a {capacity}-byte slot")
            }
            StoreError::BadLayout => f.write_str("weight slots are misplaced for this flash"),
        }
    }
}

impl core::error::Error for StoreError {}

mod model_store;
pub use model_store::{check, Capacity, ModelStore, Refusal, StoredModel};

fn flash_err<E: NorFlashError>(e: E) -> StoreError {
    StoreError::Flash(e.kind())
}

/// A valid stored copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stored {
    /// Which slot (0 = A, 1 = B).
    pub slot: usize,
    /// Its sequence number: each save is one more than the newest before it.
    pub sequence: u32,
    /// Payload bytes.
    pub len: usize,
    /// The store version that wrote it.
    pub version: u32,
    /// What it was learned for (meaningless, all zero, for version 1, which had none).
    pub identity: Identity,
}

/// The result of [`WeightStore::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Loaded {
    /// Neither slot holds a valid copy: keep the exported weights.
    Empty,
    /// The newest copy is this store's and filled the caller's buffer exactly.
    Restored(Stored),
    /// The newest copy belongs to another model, shape, length or store version: the caller's
    /// buffer is untouched; keep the exported weights (the next save replaces the copy).
    Foreign {
        /// The copy.
        stored: Stored,
        /// The first difference found.
        mismatch: Mismatch,
    },
}

/// Two-slot, power-cut-safe storage of one byte payload (the learned weights) of one
/// [`Identity`].
#[derive(Debug)]
pub struct WeightStore<F> {
    flash: F,
    slots: [u32; 2],
    slot_size: u32,
    identity: Identity,
}

impl<F: NorFlash> WeightStore<F> {
    /// Uses `[a, a + slot_size)` and `[b, b + slot_size)` of `flash` as the two slots, for the
    /// weights of `identity`.
    pub fn new(
        flash: F,
        a: u32,
        b: u32,
        slot_size: u32,
        identity: Identity,
    ) -> Result<Self, StoreError> {
        let aligned = |x: u32| x as usize % F::ERASE_SIZE == 0;
        let fits = |x: u32| (x as u64 + slot_size as u64) <= flash.capacity() as u64;
        let disjoint = a.max(b) as u64 >= a.min(b) as u64 + slot_size as u64;
        if !(aligned(a) && aligned(b) && aligned(slot_size) && fits(a) && fits(b) && disjoint)
            || (slot_size as usize) < TRAILER_LEN
            || ![1, 2, 4].contains(&F::WRITE_SIZE)
        {
            return Err(StoreError::BadLayout);
        }
        Ok(Self {
            flash,
            slots: [a, b],
            slot_size,
            identity,
        })
    }

    /// Payload bytes a slot can hold.
    pub fn capacity(&self) -> usize {
        payload_capacity(self.slot_size as usize)
    }

    /// What this store's weights belong to.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The flash, back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    fn trailer_at(&self, slot: usize) -> u32 {
        self.slots[slot] + self.slot_size - TRAILER_LEN as u32
    }

    fn read_word(&mut self, at: u32) -> Result<u32, StoreError> {
        let mut b = [0u8; 4];
        self.flash.read(at, &mut b).map_err(flash_err)?;
        Ok(u32::from_le_bytes(b))
    }

    /// CRC of the first `len` payload bytes of `slot`, streamed through a small buffer.
    fn payload_digest(&mut self, slot: usize, len: usize) -> Result<Crc32, StoreError> {
        let mut digest = Crc32::new();
        let mut chunk = [0u8; CHUNK];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            self.flash
                .read(self.slots[slot] + done as u32, &mut chunk[..n])
                .map_err(flash_err)?;
            digest.update(&chunk[..n]);
            done += n;
        }
        Ok(digest)
    }

    /// Checks a slot: committed, length in range, CRC over payload and trailer. A version 1
    /// copy (the same last four words, no identity) is recognised by its own CRC.
    fn inspect(&mut self, slot: usize) -> Result<Option<Stored>, StoreError> {
        // The last four words sit at the same place in both versions.
        let t = self.trailer_at(slot) + 16;
        if self.read_word(t + 12)? != COMMIT {
            return Ok(None);
        }
        let sequence = self.read_word(t)?;
        let len = self.read_word(t + 4)? as usize;
        let crc = self.read_word(t + 8)?;
        let v1_capacity = self.slot_size as usize - V1_TRAILER_LEN;
        if len > v1_capacity {
            return Ok(None);
        }
        let payload = self.payload_digest(slot, len)?;
        if len <= self.capacity() {
            let u = self.trailer_at(slot);
            let version = self.read_word(u)?;
            let identity = Identity {
                model: self.read_word(u + 4)?,
                shape: [self.read_word(u + 8)?, self.read_word(u + 12)?],
            };
            let stored = Stored {
                slot,
                sequence,
                len,
                version,
                identity,
            };
            if trailer_crc(payload, &stored) == crc {
                return Ok(Some(stored));
            }
        }
        let mut v1 = payload;
        v1.update(&sequence.to_le_bytes());
        v1.update(&(len as u32).to_le_bytes());
        Ok((v1.finish() == crc).then_some(Stored {
            slot,
            sequence,
            len,
            version: 1,
            identity: Identity {
                model: 0,
                shape: [0, 0],
            },
        }))
    }

    /// The newest valid copy, if any, whatever it belongs to.
    pub fn newest(&mut self) -> Result<Option<Stored>, StoreError> {
        Ok(self.copies()?[0])
    }

    /// The valid copies, whatever they belong to, newest first: `[newest, older]`, `[only,
    /// None]` or `[None, None]`.
    pub fn copies(&mut self) -> Result<[Option<Stored>; 2], StoreError> {
        let a = self.inspect(0)?;
        let b = self.inspect(1)?;
        Ok(match (a, b) {
            (Some(a), Some(b)) if newer(b.sequence, a.sequence) => [Some(b), Some(a)],
            (Some(a), Some(b)) => [Some(a), Some(b)],
            (a, b) => [a.or(b), None],
        })
    }

    /// Where `stored`'s payload starts in the flash.
    pub fn payload_offset(&self, stored: &Stored) -> u32 {
        self.slots[stored.slot & 1]
    }

    /// Fills `out` with the newest copy if it is this store's: same version, model and shape,
    /// and exactly `out.len()` bytes. Anything else leaves `out` untouched; only the newest
    /// copy counts (an older one of the same identity predates whatever replaced it).
    pub fn load(&mut self, out: &mut [u8]) -> Result<Loaded, StoreError> {
        let Some(stored) = self.newest()? else {
            return Ok(Loaded::Empty);
        };
        let mismatch = if stored.version != FORMAT_VERSION {
            Some(Mismatch::Version {
                found: stored.version,
            })
        } else if stored.identity.model != self.identity.model {
            Some(Mismatch::Model {
                found: stored.identity.model,
            })
        } else if stored.identity.shape != self.identity.shape {
            Some(Mismatch::Shape {
                found: stored.identity.shape,
            })
        } else if stored.len != out.len() {
            Some(Mismatch::Length { found: stored.len })
        } else {
            None
        };
        if let Some(mismatch) = mismatch {
            return Ok(Loaded::Foreign { stored, mismatch });
        }
        self.flash
            .read(self.slots[stored.slot], out)
            .map_err(flash_err)?;
        Ok(Loaded::Restored(stored))
    }

    /// Saves `payload` as the new newest copy, leaving the previous one intact until the very
    /// last write.
    pub fn save(&mut self, payload: &[u8]) -> Result<Stored, StoreError> {
        if payload.len() > self.capacity() {
            return Err(StoreError::TooLarge {
                payload: payload.len(),
                capacity: self.capacity(),
            });
        }
        let newest = self.newest()?;
        let slot = match newest {
            Some(s) => 1 - s.slot,
            None => 0,
        };
        let sequence = newest.map_or(1, |s| s.sequence.wrapping_add(1));
        let base = self.slots[slot];
        self.flash
            .erase(base, base + self.slot_size)
            .map_err(flash_err)?;

        let whole = payload.len() - payload.len() % F::WRITE_SIZE;
        if whole > 0 {
            self.flash
                .write(base, &payload[..whole])
                .map_err(flash_err)?;
        }
        if whole < payload.len() {
            // The tail, padded with the erased value to the write granularity.
            let mut tail = [0xFFu8; 4];
            tail[..payload.len() - whole].copy_from_slice(&payload[whole..]);
            self.flash
                .write(base + whole as u32, &tail[..F::WRITE_SIZE])
                .map_err(flash_err)?;
        }

        let stored = Stored {
            slot,
            sequence,
            len: payload.len(),
            version: FORMAT_VERSION,
            identity: self.identity,
        };
        let mut digest = Crc32::new();
        digest.update(payload);
        let crc = trailer_crc(digest, &stored);
        let words = [
            FORMAT_VERSION,
            self.identity.model,
            self.identity.shape[0],
            self.identity.shape[1],
            sequence,
            payload.len() as u32,
            crc,
        ];
        let mut header = [0u8; TRAILER_LEN - 4];
        for (dst, w) in header.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
        let t = self.trailer_at(slot);
        self.flash.write(t, &header).map_err(flash_err)?;
        self.flash
            .write(t + TRAILER_LEN as u32 - 4, &COMMIT.to_le_bytes())
            .map_err(flash_err)?;
        Ok(stored)
    }
}

/// The CRC a version-2 trailer holds: the payload's digest, then version, identity, sequence
/// and length.
fn trailer_crc(mut digest: Crc32, s: &Stored) -> u32 {
    for w in [
        s.version,
        s.identity.model,
        s.identity.shape[0],
        s.identity.shape[1],
        s.sequence,
        s.len as u32,
    ] {
        digest.update(&w.to_le_bytes());
    }
    digest.finish()
}

/// Whether sequence `a` came after `b`, allowing for wrap-around.
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// NOR flash in RAM: erase sets bytes to 0xFF, writes can only clear bits, like the real thing.
/// For QEMU (which has no flash controller) and host tests.
#[derive(Debug)]
pub struct RamFlash<'a> {
    mem: &'a mut [u8],
}

impl<'a> RamFlash<'a> {
    /// Flash over `mem`, erased.
    pub fn new(mem: &'a mut [u8]) -> Self {
        mem.fill(0xFF);
        Self { mem }
    }

    /// Flash over `mem` as it is (its contents survive a simulated reboot).
    pub fn keep(mem: &'a mut [u8]) -> Self {
        Self { mem }
    }
}

/// Errors of [`RamFlash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamFlashError(pub NorFlashErrorKind);

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

impl embedded_storage::nor_flash::ErrorType for RamFlash<'_> {
    type Error = RamFlashError;
}

impl ReadNorFlash for RamFlash<'_> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let start = offset as usize;
        let src = self
            .mem
            .get(start..start.saturating_add(bytes.len()))
            .ok_or(RamFlashError(NorFlashErrorKind::OutOfBounds))?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for RamFlash<'_> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let (from, to) = (from as usize, to as usize);
        if from % Self::ERASE_SIZE != 0 || to % Self::ERASE_SIZE != 0 {
            return Err(RamFlashError(NorFlashErrorKind::NotAligned));
        }
        self.mem
            .get_mut(from..to)
            .ok_or(RamFlashError(NorFlashErrorKind::OutOfBounds))?
            .fill(0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let start = offset as usize;
        if start % Self::WRITE_SIZE != 0 || bytes.len() % Self::WRITE_SIZE != 0 {
            return Err(RamFlashError(NorFlashErrorKind::NotAligned));
        }
        let dst = self
            .mem
            .get_mut(start..start.saturating_add(bytes.len()))
            .ok_or(RamFlashError(NorFlashErrorKind::OutOfBounds))?;
        for (d, s) in dst.iter_mut().zip(bytes) {
            *d &= *s;
        }
        Ok(())
    }
}

/// Flash the CPU reads in place (memory-mapped), read through a slice: what a device needs to
/// find the newest copy in its slots and use it where it lies (a [`ModelStore`]'s model).
/// Erasing and writing are refused: on the device they are the host's (`mote deploy`) or a
/// flash driver's.
#[derive(Debug, Clone, Copy)]
pub struct MappedFlash<'a> {
    mem: &'a [u8],
}

impl<'a> MappedFlash<'a> {
    /// The flash at `mem`.
    pub fn new(mem: &'a [u8]) -> Self {
        Self { mem }
    }

    /// `len` bytes at `offset`, in place; `None` outside the flash.
    pub fn bytes(&self, offset: u32, len: usize) -> Option<&'a [u8]> {
        let start = offset as usize;
        self.mem.get(start..start.checked_add(len)?)
    }
}

impl embedded_storage::nor_flash::ErrorType for MappedFlash<'_> {
    type Error = RamFlashError;
}

impl ReadNorFlash for MappedFlash<'_> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let src = self
            .bytes(offset, bytes.len())
            .ok_or(RamFlashError(NorFlashErrorKind::OutOfBounds))?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for MappedFlash<'_> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;

    fn erase(&mut self, _: u32, _: u32) -> Result<(), Self::Error> {
        Err(RamFlashError(NorFlashErrorKind::Other))
    }

    fn write(&mut self, _: u32, _: &[u8]) -> Result<(), Self::Error> {
        Err(RamFlashError(NorFlashErrorKind::Other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_storage::nor_flash::ErrorType;

    /// RamFlash whose power is cut after `budget` steps: each erased page and each written
    /// word is one step. The word being written when the power goes gets only some of its bits
    /// programmed, like a real interrupted NOR write.
    pub(super) struct CutFlash<'a> {
        pub(super) inner: RamFlash<'a>,
        pub(super) budget: usize,
        pub(super) steps: usize,
        pub(super) partial_mask: u8,
    }

    impl CutFlash<'_> {
        fn step(&mut self) -> Result<(), RamFlashError> {
            if self.steps == self.budget {
                return Err(RamFlashError(NorFlashErrorKind::Other));
            }
            self.steps += 1;
            Ok(())
        }
    }

    impl ErrorType for CutFlash<'_> {
        type Error = RamFlashError;
    }

    impl ReadNorFlash for CutFlash<'_> {
        const READ_SIZE: usize = 1;
        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            self.inner.read(offset, bytes)
        }
        fn capacity(&self) -> usize {
            self.inner.capacity()
        }
    }

    impl NorFlash for CutFlash<'_> {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 1024;
        fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            for page in (from..to).step_by(Self::ERASE_SIZE) {
                self.step()?;
                self.inner.erase(page, page + Self::ERASE_SIZE as u32)?;
            }
            Ok(())
        }
        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            for (i, word) in bytes.chunks(4).enumerate() {
                let at = offset + 4 * i as u32;
                if let Err(e) = self.step() {
                    let torn: [u8; 4] = core::array::from_fn(|k| word[k] | self.partial_mask);
                    self.inner.write(at, &torn)?;
                    return Err(e);
                }
                self.inner.write(at, word)?;
            }
            Ok(())
        }
    }

    const SLOT: u32 = 2048;

    fn payload(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    const ID: Identity = Identity {
        model: 0x1234_5678,
        shape: [10, 132],
    };

    fn store(flash: RamFlash<'_>) -> WeightStore<RamFlash<'_>> {
        WeightStore::new(flash, 0, SLOT, SLOT, ID).unwrap()
    }

    /// What a boot restores: the newest copy, read through `load` into a buffer of its length.
    fn boot(mem: &mut [u8]) -> Option<Vec<u8>> {
        let mut store = store(RamFlash::keep(mem));
        let len = store.newest().unwrap()?.len;
        let mut out = vec![0u8; len];
        match store.load(&mut out).unwrap() {
            Loaded::Restored(s) => {
                assert_eq!(s.len, len);
                Some(out)
            }
            other => panic!("{other:?}"),
        }
    }

    /// A boot of firmware whose head is `identity` with `len` bytes of weights: what `load`
    /// says, and the buffer after it (pre-filled with 0xEE: the "exported" weights).
    fn boot_as(mem: &mut [u8], identity: Identity, len: usize) -> (Loaded, Vec<u8>) {
        let mut store = WeightStore::new(RamFlash::keep(mem), 0, SLOT, SLOT, identity).unwrap();
        let mut out = vec![0xEEu8; len];
        let loaded = store.load(&mut out).unwrap();
        (loaded, out)
    }

    #[test]
    fn saves_alternate_slots_and_load_returns_the_newest() {
        let mut mem = vec![0u8; 2 * SLOT as usize];
        let mut store = store(RamFlash::new(&mut mem));
        let mut out = vec![0u8; 100];
        assert_eq!(store.load(&mut out).unwrap(), Loaded::Empty);
        for round in 0..5u8 {
            let p = payload(round, 100 + round as usize * 7);
            let saved = store.save(&p).unwrap();
            assert_eq!(saved.slot, round as usize % 2);
            assert_eq!(saved.sequence, round as u32 + 1);
            assert_eq!((saved.version, saved.identity), (FORMAT_VERSION, ID));
            let mut out = vec![0u8; p.len()];
            assert_eq!(store.load(&mut out).unwrap(), Loaded::Restored(saved));
            assert_eq!(out, p);
        }
        assert_eq!(
            store.save(&vec![0; store.capacity() + 1]),
            Err(StoreError::TooLarge {
                payload: store.capacity() + 1,
                capacity: store.capacity()
            })
        );
    }

    #[test]
    fn a_power_cut_at_any_step_of_a_save_keeps_old_or_new_never_a_mix() {
        for (old_len, new_len) in [(0usize, 37usize), (500, 501), (1000, 4), (2016, 2016)] {
            for partial_mask in [0x00u8, 0x5A, 0xFF] {
                let old = payload(1, old_len);
                let new = payload(2, new_len);
                let mut before = vec![0u8; 2 * SLOT as usize];
                let had_old = old_len > 0;
                if had_old {
                    store(RamFlash::new(&mut before)).save(&old).unwrap();
                } else {
                    before.fill(0xFF);
                }
                // Count the steps of an uninterrupted save.
                let mut mem = before.clone();
                let flash = CutFlash {
                    inner: RamFlash::keep(&mut mem),
                    budget: usize::MAX,
                    steps: 0,
                    partial_mask,
                };
                let mut store = WeightStore::new(flash, 0, SLOT, SLOT, ID).unwrap();
                store.save(&new).unwrap();
                let total = store.into_inner().steps;
                assert!(total > 2);

                for cut in 0..=total {
                    let mut mem = before.clone();
                    let flash = CutFlash {
                        inner: RamFlash::keep(&mut mem),
                        budget: cut,
                        steps: 0,
                        partial_mask,
                    };
                    let mut store = WeightStore::new(flash, 0, SLOT, SLOT, ID).unwrap();
                    let result = store.save(&new);
                    assert_eq!(
                        result.is_ok(),
                        cut == total,
                        "cut after {cut} of {total} steps"
                    );
                    let recovered = boot(&mut mem);
                    let old = had_old.then(|| old.clone());
                    let new = Some(new.clone());
                    let context =
                        format!("cut after {cut} of {total} steps, mask {partial_mask:#x}");
                    if cut + 1 < total {
                        // The commit word was never started: the old copy, exactly.
                        assert_eq!(recovered, old, "{context}");
                    } else if cut + 1 == total {
                        // Cut while programming the commit word: a torn word reads as
                        // uncommitted, a fully programmed one as committed; both are whole.
                        assert!(recovered == old || recovered == new, "{context}");
                    } else {
                        assert_eq!(recovered, new, "{context}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_corrupted_newest_copy_falls_back_to_the_older_one() {
        let mut mem = vec![0u8; 2 * SLOT as usize];
        {
            let mut store = store(RamFlash::new(&mut mem));
            store.save(&payload(1, 64)).unwrap();
            store.save(&payload(2, 64)).unwrap(); // slot B, newest
        }
        mem[SLOT as usize + 10] ^= 0x01; // a bit flips in B's payload
        assert_eq!(boot(&mut mem), Some(payload(1, 64)));
    }

    #[test]
    fn sequence_comparison_survives_wrap_around() {
        assert!(newer(1, 0));
        assert!(newer(0, u32::MAX));
        assert!(!newer(u32::MAX, 0));
        assert!(!newer(5, 5));
    }

    #[test]
    fn bad_layouts_are_refused() {
        let mut mem = vec![0u8; 4096];
        // Each layout check gets its own 4 KiB of erased flash.
        let flash = || RamFlash::keep(Box::leak(vec![0xFFu8; 4096].into_boxed_slice()));
        assert_eq!(
            WeightStore::new(flash(), 0, 1024, 2048, ID).err(),
            Some(StoreError::BadLayout)
        );
        assert_eq!(
            WeightStore::new(flash(), 100, 2048, 1024, ID).err(),
            Some(StoreError::BadLayout)
        );
        assert_eq!(
            WeightStore::new(flash(), 0, 3072, 2048, ID).err(),
            Some(StoreError::BadLayout)
        );
        assert!(WeightStore::new(RamFlash::new(&mut mem), 0, 2048, 2048, ID).is_ok());
    }

    /// The old layout's copy (sequence, length, CRC over payload, sequence and length, commit),
    /// written by hand.
    fn save_v1(mem: &mut [u8], slot: usize, sequence: u32, payload: &[u8]) {
        let base = slot * SLOT as usize;
        mem[base..base + SLOT as usize].fill(0xFF);
        mem[base..base + payload.len()].copy_from_slice(payload);
        let mut digest = Crc32::new();
        digest.update(payload);
        digest.update(&sequence.to_le_bytes());
        digest.update(&(payload.len() as u32).to_le_bytes());
        let t = base + SLOT as usize - 16;
        for (i, w) in [sequence, payload.len() as u32, digest.finish(), COMMIT]
            .into_iter()
            .enumerate()
        {
            mem[t + 4 * i..t + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
    }

    #[test]
    fn a_head_of_the_same_length_from_another_model_is_not_restored() {
        let mut mem = vec![0u8; 2 * SLOT as usize];
        let other = Identity {
            model: 0xCAFE_F00D,
            ..ID
        };
        let old = payload(1, 528);
        WeightStore::new(RamFlash::new(&mut mem), 0, SLOT, SLOT, other)
            .unwrap()
            .save(&old)
            .unwrap();
        let (loaded, out) = boot_as(&mut mem, ID, 528);
        let Loaded::Foreign { stored, mismatch } = loaded else {
            panic!("{loaded:?}")
        };
        assert_eq!(mismatch, Mismatch::Model { found: 0xCAFE_F00D });
        assert_eq!(stored.identity, other);
        assert!(out.iter().all(|&b| b == 0xEE), "the buffer was written");
        // The next save replaces it, and is what the following boot restores.
        let new = payload(2, 528);
        let saved = store(RamFlash::keep(&mut mem)).save(&new).unwrap();
        assert_eq!(saved.sequence, 2);
        assert_eq!(boot_as(&mut mem, ID, 528), (Loaded::Restored(saved), new));
    }

    #[test]
    fn a_shorter_or_longer_stored_head_is_not_restored() {
        for stored_len in [100usize, 527, 529, 1000] {
            let mut mem = vec![0u8; 2 * SLOT as usize];
            store(RamFlash::new(&mut mem))
                .save(&payload(1, stored_len))
                .unwrap();
            let (loaded, out) = boot_as(&mut mem, ID, 528);
            assert!(
                matches!(
                    loaded,
                    Loaded::Foreign {
                        mismatch: Mismatch::Length { found },
                        ..
                    } if found == stored_len
                ),
                "{stored_len}: {loaded:?}"
            );
            assert!(out.iter().all(|&b| b == 0xEE), "{stored_len}: written");
        }
    }

    #[test]
    fn a_head_of_another_shape_is_not_restored() {
        let mut mem = vec![0u8; 2 * SLOT as usize];
        let other = Identity {
            shape: [12, 110],
            ..ID
        };
        // Same model, same byte count: the shape alone tells them apart.
        WeightStore::new(RamFlash::new(&mut mem), 0, SLOT, SLOT, other)
            .unwrap()
            .save(&payload(1, 400))
            .unwrap();
        let (loaded, _) = boot_as(&mut mem, ID, 400);
        assert!(
            matches!(
                loaded,
                Loaded::Foreign {
                    mismatch: Mismatch::Shape { found: [12, 110] },
                    ..
                }
            ),
            "{loaded:?}"
        );
    }

    #[test]
    fn a_copy_of_the_old_format_is_recognised_and_replaced() {
        let mut mem = vec![0xFFu8; 2 * SLOT as usize];
        // Longer than a version-2 slot can hold, as version 1 allowed.
        for len in [528usize, SLOT as usize - 16] {
            save_v1(&mut mem, 1, 7, &payload(3, len));
            let (loaded, out) = boot_as(&mut mem, ID, len);
            let Loaded::Foreign { stored, mismatch } = loaded else {
                panic!("{loaded:?}")
            };
            assert_eq!(mismatch, Mismatch::Version { found: 1 });
            assert_eq!((stored.slot, stored.sequence, stored.len), (1, 7, len));
            assert!(out.iter().all(|&b| b == 0xEE));
        }
        let saved = store(RamFlash::keep(&mut mem))
            .save(&payload(4, 528))
            .unwrap();
        assert_eq!((saved.slot, saved.sequence), (0, 8));
        assert_eq!(boot(&mut mem), Some(payload(4, 528)));
    }

    #[test]
    fn mismatches_read_clearly() {
        let text = |m: Mismatch| m.to_string();
        assert_eq!(
            text(Mismatch::Model { found: 0xAB }),
            "learned for model crc 0x000000ab"
        );
        assert_eq!(
            text(Mismatch::Shape { found: [3, 4] }),
            "learned for shape 3x4"
        );
        assert_eq!(
            text(Mismatch::Version { found: 1 }),
            "store format version 1, not 2"
        );
    }
}
