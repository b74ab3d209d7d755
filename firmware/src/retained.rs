//! Weight storage for QEMU: NOR-flash semantics over a RAM region that a reset does not clear
//! (the `.uninit` section is neither loaded nor zeroed at boot), so learned weights survive a
//! reboot of the emulated board. On a cold start the region holds no valid slot and the
//! exported weights are used.

use core::mem::MaybeUninit;
use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

const BYTES: usize = 2 * crate::model::STORE_SLOT;

#[link_section = ".uninit.MOTE_RETAINED"]
static mut RETAINED: MaybeUninit<[u8; BYTES]> = MaybeUninit::uninit();

/// The retained region as flash. Create it once.
#[derive(Debug)]
pub struct RetainedFlash {
    base: *mut u8,
}

/// Out-of-bounds or misaligned access.
#[derive(Debug, Clone, Copy)]
pub struct RetainedError(NorFlashErrorKind);

impl NorFlashError for RetainedError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

impl RetainedFlash {
    /// Takes the retained region; `None` on a second call.
    pub fn take() -> Option<Self> {
        static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if TAKEN.swap(true, core::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        // Only the address is taken (no reference to the static is created), and the guard
        // above hands it out once, so this is the region's only user.
        let base = addr_of_mut!(RETAINED).cast::<u8>();
        Some(Self { base })
    }

    fn check(&self, offset: u32, len: usize) -> Result<usize, RetainedError> {
        let start = offset as usize;
        match start.checked_add(len) {
            Some(end) if end <= BYTES => Ok(start),
            _ => Err(RetainedError(NorFlashErrorKind::OutOfBounds)),
        }
    }
}

impl ErrorType for RetainedFlash {
    type Error = RetainedError;
}

impl ReadNorFlash for RetainedFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let start = self.check(offset, bytes.len())?;
        for (i, b) in bytes.iter_mut().enumerate() {
            // SAFETY: start + i < BYTES (checked), inside the retained static; volatile because
            // the contents come from before the reset, which the compiler cannot know.
            *b = unsafe { read_volatile(self.base.add(start + i)) };
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        BYTES
    }
}

impl NorFlash for RetainedFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if from as usize % Self::ERASE_SIZE != 0 || to as usize % Self::ERASE_SIZE != 0 || to < from
        {
            return Err(RetainedError(NorFlashErrorKind::NotAligned));
        }
        let start = self.check(from, (to - from) as usize)?;
        for i in 0..(to - from) as usize {
            // SAFETY: inside the retained static (checked above).
            unsafe { write_volatile(self.base.add(start + i), 0xFF) };
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if offset as usize % Self::WRITE_SIZE != 0 || bytes.len() % Self::WRITE_SIZE != 0 {
            return Err(RetainedError(NorFlashErrorKind::NotAligned));
        }
        let start = self.check(offset, bytes.len())?;
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: inside the retained static (checked above). NOR programming only clears
            // bits, which the AND reproduces.
            unsafe {
                let p = self.base.add(start + i);
                write_volatile(p, read_volatile(p) & b);
            }
        }
        Ok(())
    }
}
