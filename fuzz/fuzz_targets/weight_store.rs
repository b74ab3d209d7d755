//! The weight store under random sequences of saves, each possibly cut by a power loss at any
//! step (an erased page or a written word is one step; the word being written when the power
//! goes keeps only some of its bits), with payloads of any length and the identity of another
//! model now and then (a new model flashed). After every save, finished or cut, a boot must
//! find either the last finished save or the one that was cut, whole and with its identity,
//! never a mix, never garbage, and never nothing once something was saved.
#![no_main]

use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
use libfuzzer_sys::fuzz_target;
use mote_core::persist::{Identity, Loaded, RamFlash, RamFlashError, WeightStore};

const SLOT: u32 = 2048;

/// RamFlash whose power is cut after `budget` steps.
struct CutFlash<'a> {
    inner: RamFlash<'a>,
    budget: usize,
    steps: usize,
    partial_mask: u8,
}

impl CutFlash<'_> {
    fn step(&mut self) -> bool {
        if self.steps == self.budget {
            return false;
        }
        self.steps += 1;
        true
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

/// The error a cut returns.
fn cut() -> RamFlashError {
    RamFlashError(NorFlashErrorKind::Other)
}

impl NorFlash for CutFlash<'_> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        for page in (from..to).step_by(Self::ERASE_SIZE) {
            if !self.step() {
                return Err(cut());
            }
            self.inner.erase(page, page + Self::ERASE_SIZE as u32)?;
        }
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        for (i, word) in bytes.chunks(4).enumerate() {
            let at = offset + 4 * i as u32;
            if !self.step() {
                let torn: [u8; 4] = core::array::from_fn(|k| word[k] | self.partial_mask);
                self.inner.write(at, &torn)?;
                return Err(cut());
            }
            self.inner.write(at, word)?;
        }
        Ok(())
    }
}

/// A saved payload and what it belongs to.
#[derive(Clone, PartialEq, Debug)]
struct Copy {
    identity: Identity,
    bytes: Vec<u8>,
}

const IDENTITIES: [Identity; 3] = [
    Identity {
        model: 0x1111_1111,
        shape: [10, 50],
    },
    Identity {
        model: 0x2222_2222,
        shape: [10, 50],
    },
    Identity {
        model: 0x1111_1111,
        shape: [4, 125],
    },
];

/// What a boot finds: the newest copy, read back through a store of its own identity.
fn boot(mem: &mut [u8]) -> Option<Copy> {
    let mut store = WeightStore::new(RamFlash::keep(mem), 0, SLOT, SLOT, IDENTITIES[0]).unwrap();
    let newest = store.newest().unwrap()?;
    let identity = newest.identity;
    let mut store = WeightStore::new(store.into_inner(), 0, SLOT, SLOT, identity).unwrap();
    let mut out = vec![0u8; newest.len];
    match store.load(&mut out).unwrap() {
        Loaded::Restored(s) => assert_eq!(s, newest),
        other => panic!("the newest copy, read as its own, is {other:?}"),
    }
    // A boot of any other identity or length leaves its buffer alone.
    for other in IDENTITIES.iter().filter(|&&i| i != identity) {
        let mut store = WeightStore::new(RamFlash::keep(mem), 0, SLOT, SLOT, *other).unwrap();
        let mut buf = vec![0xEEu8; newest.len];
        assert!(matches!(
            store.load(&mut buf).unwrap(),
            Loaded::Foreign { .. }
        ));
        assert!(
            buf.iter().all(|&b| b == 0xEE),
            "a foreign copy was written out"
        );
    }
    Some(Copy {
        identity,
        bytes: out,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut mem = vec![0xFFu8; 2 * SLOT as usize];
    let mut last: Option<Copy> = None;
    for op in data.chunks(5).take(24) {
        let [kind, len_lo, len_hi, seed, mask] = *op else {
            break;
        };
        let identity = IDENTITIES[usize::from(kind >> 6) % IDENTITIES.len()];
        let len = (usize::from(len_hi) << 8 | usize::from(len_lo)) % 2100;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
            .collect();
        // Cut after `budget` steps (low bits of `kind`), or not at all.
        let budget = match kind & 0x3F {
            63 => usize::MAX,
            b => usize::from(b) * (usize::from(mask) % 9 + 1),
        };
        let partial_mask = [0x00, 0xFF, 0x5A, mask][usize::from(mask >> 6)];
        let flash = CutFlash {
            inner: RamFlash::keep(&mut mem),
            budget,
            steps: 0,
            partial_mask,
        };
        let mut store = WeightStore::new(flash, 0, SLOT, SLOT, identity).unwrap();
        let capacity = store.capacity();
        let result = store.save(&bytes);
        let attempt = Copy {
            identity,
            bytes: bytes.clone(),
        };
        let found = boot(&mut mem);
        match result {
            Ok(_) => assert_eq!(
                found.as_ref(),
                Some(&attempt),
                "a finished save is not what boots"
            ),
            Err(e) if len > capacity => {
                assert!(matches!(e, mote_core::persist::StoreError::TooLarge { .. }));
                assert_eq!(found, last, "a refused save changed the store");
            }
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        mote_core::persist::StoreError::Flash(NorFlashErrorKind::Other)
                    ),
                    "{e:?}"
                );
                assert!(
                    found == last || found.as_ref() == Some(&attempt),
                    "after a cut: neither the previous copy nor the new one: {found:?}"
                );
            }
        }
        last = found;
    }
});
