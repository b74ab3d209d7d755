//! CRC-32 (IEEE 802.3 / ISO-HDLC, as zlib and PNG use), a byte a step with zlib's 1 KB table:
//! every boot checks the whole model blob, so its speed is the boot's.

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut digest = Crc32::new();
    digest.update(bytes);
    digest.finish()
}

/// The reflected polynomial.
const POLY: u32 = 0xEDB8_8320;

/// What eight bitwise steps do to the low byte of the register.
const BYTE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = (c >> 1) ^ (POLY & (c & 1).wrapping_neg());
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// A CRC-32 computed over data that arrives in pieces.
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// An empty digest.
    pub const fn new() -> Self {
        Self(!0)
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        // A word at a time: one load and one XOR per four bytes, then four table steps.
        let mut words = bytes.chunks_exact(4);
        for word in &mut words {
            let mut c = self.0 ^ u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            for _ in 0..4 {
                c = (c >> 8) ^ BYTE[(c & 0xFF) as usize];
            }
            self.0 = c;
        }
        for &byte in words.remainder() {
            self.0 = (self.0 >> 8) ^ BYTE[((self.0 ^ u32::from(byte)) & 0xFF) as usize];
        }
    }

    /// The CRC of everything added.
    pub fn finish(self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
    }

    /// The byte table gives the bitwise definition's CRC on every byte value and on pieces.
    #[test]
    fn matches_the_bitwise_definition() {
        let bitwise = |bytes: &[u8]| {
            let mut c = !0u32;
            for &b in bytes {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = (c >> 1) ^ (super::POLY & (c & 1).wrapping_neg());
                }
            }
            !c
        };
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        for len in 0..all.len() {
            assert_eq!(super::crc32(&all[..len]), bitwise(&all[..len]), "{len}");
        }
        let mut pieces = super::Crc32::new();
        pieces.update(&all[..100]);
        pieces.update(&all[100..]);
        assert_eq!(pieces.finish(), bitwise(&all));
    }
}
