//! The memory routines the compiler calls (`__aeabi_memcpy`, `__aeabi_memset`, ...), as short
//! loops. compiler-builtins' versions are unrolled for speed (about 1.3 KB of flash together);
//! on this firmware they only copy a few interpreter records per layer and clear the arena and
//! a convolution's padding, where a word or byte loop costs a few hundred instructions per
//! inference. Written in assembly so the compiler cannot turn the loops back into calls to
//! themselves.
//!
//! Run-time ABI for the Arm Architecture, section 4.3.4: `__aeabi_memcpy(dest, src, n)`,
//! `__aeabi_memset(dest, n, c)` (note the order), `__aeabi_memclr(dest, n)`; the `4`/`8`
//! variants may assume both pointers are that aligned. None returns a value. They clobber
//! only r0-r3 and the flags, which the ABI lets any call clobber.

// SAFETY: each routine touches exactly the `n` bytes at `dest` (and, for the copies, at `src`)
// that its caller passes under the ABI contract above, and nothing else: no stack, no other
// registers than the argument/scratch registers r0-r3. The word loops run only on the
// aligned variants, whose callers guarantee the alignment; the remaining 0-3 bytes go through
// the byte loops. Every loop counts `n` down with `subs`, and stops on the borrow (`blo`)
// before touching memory, so n = 0 touches nothing.
core::arch::global_asm!(
    ".section .text.mote_mem,\"ax\",%progbits",
    ".syntax unified",
    ".thumb",
    // Word copy, then the byte copy for the tail.
    ".global __aeabi_memcpy4",
    ".global __aeabi_memcpy8",
    ".type __aeabi_memcpy4, %function",
    ".type __aeabi_memcpy8, %function",
    ".thumb_func",
    "__aeabi_memcpy4:",
    ".thumb_func",
    "__aeabi_memcpy8:",
    "1:",
    "subs r2, r2, #4",
    "blo 2f",
    "ldr r3, [r1], #4",
    "str r3, [r0], #4",
    "b 1b",
    "2:",
    "adds r2, r2, #4",
    ".global __aeabi_memcpy",
    ".type __aeabi_memcpy, %function",
    ".thumb_func",
    "__aeabi_memcpy:",
    "3:",
    "subs r2, r2, #1",
    "blo 4f",
    "ldrb r3, [r1], #1",
    "strb r3, [r0], #1",
    "b 3b",
    "4:",
    "bx lr",
    // Word clear, then the byte fill (value 0) for the tail.
    ".global __aeabi_memclr4",
    ".global __aeabi_memclr8",
    ".type __aeabi_memclr4, %function",
    ".type __aeabi_memclr8, %function",
    ".thumb_func",
    "__aeabi_memclr4:",
    ".thumb_func",
    "__aeabi_memclr8:",
    "movs r2, #0",
    "5:",
    "subs r1, r1, #4",
    "blo 6f",
    "str r2, [r0], #4",
    "b 5b",
    "6:",
    "adds r1, r1, #4",
    "b 8f",
    ".global __aeabi_memclr",
    ".type __aeabi_memclr, %function",
    ".thumb_func",
    "__aeabi_memclr:",
    "movs r2, #0",
    // Byte fill; the aligned memset variants are this too (correct, if slower).
    ".global __aeabi_memset",
    ".global __aeabi_memset4",
    ".global __aeabi_memset8",
    ".type __aeabi_memset, %function",
    ".type __aeabi_memset4, %function",
    ".type __aeabi_memset8, %function",
    ".thumb_func",
    "__aeabi_memset:",
    ".thumb_func",
    "__aeabi_memset4:",
    ".thumb_func",
    "__aeabi_memset8:",
    "8:",
    "subs r1, r1, #1",
    "blo 9f",
    "strb r2, [r0], #1",
    "b 8b",
    "9:",
    "bx lr",
);
