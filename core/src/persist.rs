//! Keeping learned weights across resets and power cuts, on any NOR flash.
//!
//! Two slots, A and B, each one erase-aligned region holding
//! `[payload ... | sequence u32 | length u32 | crc u32 | commit u32]`. A save goes to the slot
//! that does not hold the newest valid copy: erase, write the payload, write the header, and
//! last of all write the commit word. Until that final word lands, the slot reads as empty, so a
//! power cut at any point leaves the previous weights as the newest valid copy. Boot loads the
//! valid slot with the higher sequence number (compared with wrap-around).

use crate::crc32::Crc32;
use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

/// Marks a committed slot; erased flash reads 0xFFFF_FFFF.
const COMMIT: u32 = 0x4D4F_5445; // "MOTE"
/// Sequence, length, CRC, commit.
const TRAILER_LEN: usize = 16;
/// Bytes staged on the stack at a time while streaming the payload.
const CHUNK: usize = 64;

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
    /// The caller's buffer is smaller than the stored payload.
    BufferTooSmall {
        /// Bytes stored.
        stored: usize,
    },
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::Flash(kind) => write!(f, "flash error: {kind:?}"),
            StoreError::TooLarge { payload, capacity } => {
                write!(f, "{payload} bytes do not fit a {capacity}-byte slot")
            }
            StoreError::BadLayout => f.write_str("weight slots are misplaced for this flash"),
            StoreError::BufferTooSmall { stored } => {
                write!(
                    f,
                    "the stored weights are {stored} bytes, more than the buffer"
                )
            }
        }
    }
}

impl core::error::Error for StoreError {}

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
}

/// Two-slot, power-cut-safe storage of one byte payload (the learned weights).
#[derive(Debug)]
pub struct WeightStore<F> {
    flash: F,
    slots: [u32; 2],
    slot_size: u32,
}

impl<F: NorFlash> WeightStore<F> {
    /// Uses `[a, a + slot_size)` and `[b, b + slot_size)` of `flash` as the two slots.
    pub fn new(flash: F, a: u32, b: u32, slot_size: u32) -> Result<Self, StoreError> {
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
        })
    }

    /// Payload bytes a slot can hold.
    pub fn capacity(&self) -> usize {
        self.slot_size as usize - TRAILER_LEN
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

    /// Checks a slot: committed, length in range, CRC over payload, sequence and length.
    fn inspect(&mut self, slot: usize) -> Result<Option<Stored>, StoreError> {
        let t = self.trailer_at(slot);
        if self.read_word(t + 12)? != COMMIT {
            return Ok(None);
        }
        let sequence = self.read_word(t)?;
        let len = self.read_word(t + 4)? as usize;
        let crc = self.read_word(t + 8)?;
        if len > self.capacity() {
            return Ok(None);
        }
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
        digest.update(&sequence.to_le_bytes());
        digest.update(&(len as u32).to_le_bytes());
        Ok((digest.finish() == crc).then_some(Stored {
            slot,
            sequence,
            len,
        }))
    }

    /// The newest valid copy, if any.
    pub fn newest(&mut self) -> Result<Option<Stored>, StoreError> {
        let a = self.inspect(0)?;
        let b = self.inspect(1)?;
        Ok(match (a, b) {
            (Some(a), Some(b)) => Some(if newer(b.sequence, a.sequence) { b } else { a }),
            (a, b) => a.or(b),
        })
    }

    /// Copies the newest valid payload into `out`; `None` when neither slot holds one (boot
    /// then keeps the weights the model was exported with).
    pub fn load(&mut self, out: &mut [u8]) -> Result<Option<Stored>, StoreError> {
        let Some(found) = self.newest()? else {
            return Ok(None);
        };
        let dst = out
            .get_mut(..found.len)
            .ok_or(StoreError::BufferTooSmall { stored: found.len })?;
        self.flash
            .read(self.slots[found.slot], dst)
            .map_err(flash_err)?;
        Ok(Some(found))
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

        let mut digest = Crc32::new();
        digest.update(payload);
        digest.update(&sequence.to_le_bytes());
        digest.update(&(payload.len() as u32).to_le_bytes());
        let mut header = [0u8; 12];
        header[..4].copy_from_slice(&sequence.to_le_bytes());
        header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[8..].copy_from_slice(&digest.finish().to_le_bytes());
        let t = self.trailer_at(slot);
        self.flash.write(t, &header).map_err(flash_err)?;
        self.flash
            .write(t + 12, &COMMIT.to_le_bytes())
            .map_err(flash_err)?;
        Ok(Stored {
            slot,
            sequence,
            len: payload.len(),
        })
    }
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
pub struct RamFlashError(NorFlashErrorKind);

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

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_storage::nor_flash::ErrorType;

    /// RamFlash whose power is cut after `budget` steps: each erased page and each written
    /// word is one step. The word being written when the power goes gets only some of its bits
    /// programmed, like a real interrupted NOR write.
    struct CutFlash<'a> {
        inner: RamFlash<'a>,
        budget: usize,
        steps: usize,
        partial_mask: u8,
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

    fn boot(mem: &mut [u8]) -> Option<Vec<u8>> {
        let mut store = WeightStore::new(RamFlash::keep(mem), 0, SLOT, SLOT).unwrap();
        let mut out = vec![0u8; store.capacity()];
        store.load(&mut out).unwrap().map(|s| out[..s.len].to_vec())
    }

    #[test]
    fn saves_alternate_slots_and_load_returns_the_newest() {
        let mut mem = vec![0u8; 2 * SLOT as usize];
        let mut store = WeightStore::new(RamFlash::new(&mut mem), 0, SLOT, SLOT).unwrap();
        let mut out = vec![0u8; store.capacity()];
        assert_eq!(store.load(&mut out).unwrap(), None);
        for round in 0..5u8 {
            let p = payload(round, 100 + round as usize * 7);
            let saved = store.save(&p).unwrap();
            assert_eq!(saved.slot, round as usize % 2);
            assert_eq!(saved.sequence, round as u32 + 1);
            let loaded = store.load(&mut out).unwrap().unwrap();
            assert_eq!(loaded, saved);
            assert_eq!(&out[..loaded.len], &p[..]);
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
        for (old_len, new_len) in [(0usize, 37usize), (500, 501), (1000, 4), (2032, 2032)] {
            for partial_mask in [0x00u8, 0x5A, 0xFF] {
                let old = payload(1, old_len);
                let new = payload(2, new_len);
                let mut before = vec![0u8; 2 * SLOT as usize];
                let had_old = old_len > 0;
                if had_old {
                    let mut store =
                        WeightStore::new(RamFlash::new(&mut before), 0, SLOT, SLOT).unwrap();
                    store.save(&old).unwrap();
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
                let mut store = WeightStore::new(flash, 0, SLOT, SLOT).unwrap();
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
                    let mut store = WeightStore::new(flash, 0, SLOT, SLOT).unwrap();
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
            let mut store = WeightStore::new(RamFlash::new(&mut mem), 0, SLOT, SLOT).unwrap();
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
            WeightStore::new(flash(), 0, 1024, 2048).err(),
            Some(StoreError::BadLayout)
        );
        assert_eq!(
            WeightStore::new(flash(), 100, 2048, 1024).err(),
            Some(StoreError::BadLayout)
        );
        assert_eq!(
            WeightStore::new(flash(), 0, 3072, 2048).err(),
            Some(StoreError::BadLayout)
        );
        assert!(WeightStore::new(RamFlash::new(&mut mem), 0, 2048, 2048).is_ok());
    }
}
