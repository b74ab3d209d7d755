//! Weight storage for QEMU (and the STM32F4 and RP2040 boards, until they get a flash store):
//! NOR-flash semantics over a RAM region that a reset does not clear
//! (the `.uninit` section is neither loaded nor zeroed at boot), so learned weights survive a
//! reboot of the emulated board. On a cold start the region holds no valid slot and the
//! exported weights are used.

use core::mem::MaybeUninit;
use core::ptr::{addr_of_mut, write_volatile};
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

const BYTES: usize = 2 * crate::model::STORE_SLOT;
const WORDS: usize = BYTES / 4;

/// Typed as what it is: memory Rust never initialised (a reset keeps it, a cold start leaves
/// it random), read only through [`load_word`], which yields whatever the RAM holds.
#[link_section = ".uninit.MOTE_RETAINED"]
static mut RETAINED: MaybeUninit<[u32; WORDS]> = MaybeUninit::uninit();

/// Reads the RAM word at `p` as the hardware holds it. A Rust load (even a volatile one) of
/// memory the program never wrote would read uninitialised memory, which is undefined
/// behaviour; an `ldr` in assembly is opaque to the compiler and its result is an ordinary,
/// initialised `u32`.
///
/// # Safety
/// `p` must be a word-aligned address inside `RETAINED`.
unsafe fn load_word(p: *const u32) -> u32 {
    let word: u32;
    // SAFETY: the caller passes an aligned address inside the retained static, so the `ldr`
    // reads mapped RAM; it writes only its output register and touches no stack or flags.
    unsafe {
        core::arch::asm!(
            "ldr {word}, [{p}]",
            p = in(reg) p,
            word = lateout(reg) word,
            options(nostack, readonly, preserves_flags)
        );
    }
    word
}

/// The retained region as flash. Create it once.
#[derive(Debug)]
pub struct RetainedFlash {
    base: *mut u32,
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
        if !crate::once::take(&TAKEN) {
            return None;
        }
        // Only the address is taken (no reference to the static is created), and the guard
        // above hands it out once, so this is the region's only user.
        let base = addr_of_mut!(RETAINED).cast::<u32>();
        Some(Self { base })
    }

    fn check(&self, offset: u32, len: usize) -> Result<usize, RetainedError> {
        let start = offset as usize;
        match start.checked_add(len) {
            Some(end) if end <= BYTES => Ok(start),
            _ => Err(RetainedError(NorFlashErrorKind::OutOfBounds)),
        }
    }

    /// Word `i` of the region.
    fn word(&self, i: usize) -> u32 {
        // SAFETY: every caller passes i < WORDS (its byte offset was checked against BYTES),
        // so the address is an aligned word inside the retained static.
        unsafe { load_word(self.base.add(i)) }
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
            let at = start + i;
            *b = self.word(at / 4).to_le_bytes()[at % 4];
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
        for i in (start / 4)..(start + (to - from) as usize) / 4 {
            // SAFETY: inside the retained static (checked above), word-aligned.
            unsafe { write_volatile(self.base.add(i), u32::MAX) };
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if offset as usize % Self::WRITE_SIZE != 0 || bytes.len() % Self::WRITE_SIZE != 0 {
            return Err(RetainedError(NorFlashErrorKind::NotAligned));
        }
        let start = self.check(offset, bytes.len())?;
        for (i, chunk) in bytes.chunks_exact(4).enumerate() {
            let w = start / 4 + i;
            let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            // NOR programming only clears bits, which the AND reproduces.
            let programmed = self.word(w) & value;
            // SAFETY: inside the retained static (checked above), word-aligned.
            unsafe { write_volatile(self.base.add(w), programmed) };
        }
        Ok(())
    }
}
