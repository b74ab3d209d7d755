//! A small ZIP reader for `.npz` archives: the central directory (with ZIP64 records and
//! extra fields, as numpy writes them), stored and deflated members, CRC-32 checked.

use anyhow::{bail, ensure, Context, Result};
use std::io::Read;

const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

/// One archive member: its name and its uncompressed bytes.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) bytes: Vec<u8>,
}

fn slice<'a>(bytes: &'a [u8], at: u64, len: u64, source: &str, what: &str) -> Result<&'a [u8]> {
    let end = at.checked_add(len);
    match end {
        Some(end) if end <= bytes.len() as u64 => Ok(&bytes[at as usize..end as usize]),
        _ => bail!(
            "{source}: truncated zip archive: the {what} at byte {at} ({len} bytes) runs past the end ({} bytes)",
            bytes.len()
        ),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Every member of the archive `bytes`, in central-directory order; `source` names it in errors.
pub(crate) fn read_members(bytes: &[u8], source: &str) -> Result<Vec<Member>> {
    // The end-of-central-directory record: 22 bytes and a comment of up to 65,535.
    ensure!(
        bytes.len() >= 22,
        "{source}: not a zip archive (only {} bytes)",
        bytes.len()
    );
    let lowest = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (lowest..=bytes.len() - 22)
        .rev()
        .find(|&at| u32_at(bytes, at) == EOCD)
        .with_context(|| {
            format!("{source}: not a zip archive (no end-of-central-directory record)")
        })?;
    let mut entries = u64::from(u16_at(bytes, eocd + 10));
    let mut dir_size = u64::from(u32_at(bytes, eocd + 12));
    let mut dir_offset = u64::from(u32_at(bytes, eocd + 16));
    if entries == 0xFFFF || dir_size == 0xFFFF_FFFF || dir_offset == 0xFFFF_FFFF {
        ensure!(
            eocd >= 20 && u32_at(bytes, eocd - 20) == ZIP64_LOCATOR,
            "{source}: zip archive without its ZIP64 end-of-central-directory locator"
        );
        let record_at = u64_at(bytes, eocd - 20 + 8);
        let record = slice(
            bytes,
            record_at,
            56,
            source,
            "ZIP64 end-of-central-directory record",
        )?;
        ensure!(
            u32_at(record, 0) == ZIP64_EOCD,
            "{source}: bad ZIP64 end-of-central-directory record at byte {record_at}"
        );
        entries = u64_at(record, 32);
        dir_size = u64_at(record, 40);
        dir_offset = u64_at(record, 48);
    }

    let dir = slice(bytes, dir_offset, dir_size, source, "central directory")?;
    let mut members = Vec::new();
    let mut at = 0usize;
    for index in 0..entries {
        let fixed = slice(dir, at as u64, 46, source, "central directory entry")?;
        ensure!(
            u32_at(fixed, 0) == CENTRAL,
            "{source}: central directory entry {index} has a bad signature"
        );
        let flags = u16_at(fixed, 8);
        let method = u16_at(fixed, 10);
        let crc = u32_at(fixed, 16);
        let mut packed = u64::from(u32_at(fixed, 20));
        let mut size = u64::from(u32_at(fixed, 24));
        let name_len = usize::from(u16_at(fixed, 28));
        let extra_len = usize::from(u16_at(fixed, 30));
        let comment_len = usize::from(u16_at(fixed, 32));
        let mut local_at = u64::from(u32_at(fixed, 42));
        let name_bytes = slice(
            dir,
            (at + 46) as u64,
            name_len as u64,
            source,
            "member name",
        )?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let extra = slice(
            dir,
            (at + 46 + name_len) as u64,
            extra_len as u64,
            source,
            "extra field",
        )?;
        at += 46 + name_len + extra_len + comment_len;

        // ZIP64 extra field: the 8-byte values replacing those saturated at 0xFFFFFFFF.
        let mut e = 0usize;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e);
            let len = usize::from(u16_at(extra, e + 2));
            let body = extra.get(e + 4..e + 4 + len).unwrap_or(&[]);
            if id == 0x0001 {
                let mut values = body.chunks_exact(8).map(|c| u64_at(c, 0));
                for field in [&mut size, &mut packed, &mut local_at] {
                    if *field == 0xFFFF_FFFF {
                        *field = values.next().with_context(|| {
                            format!("{source}: member `{name}` has a short ZIP64 extra field")
                        })?;
                    }
                }
            }
            e += 4 + len;
        }

        ensure!(
            flags & 1 == 0,
            "{source}: member `{name}` is encrypted, which is not supported"
        );
        let local = slice(bytes, local_at, 30, source, "local header")?;
        ensure!(
            u32_at(local, 0) == LOCAL,
            "{source}: member `{name}`'s local header at byte {local_at} has a bad signature"
        );
        let data_at = local_at + 30 + u64::from(u16_at(local, 26)) + u64::from(u16_at(local, 28));
        let data = slice(bytes, data_at, packed, source, "member data")?;
        let content = match method {
            0 => data.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(size.min(1 << 30) as usize);
                flate2::read::DeflateDecoder::new(data)
                    .take(size.saturating_add(1))
                    .read_to_end(&mut out)
                    .with_context(|| format!("{source}: member `{name}`: corrupt deflate data"))?;
                out
            }
            other => bail!(
                "{source}: member `{name}` uses compression method {other}; only stored (0) and deflate (8) are supported"
            ),
        };
        ensure!(
            content.len() as u64 == size,
            "{source}: member `{name}` holds {} bytes, but the directory says {size}",
            content.len()
        );
        let actual = mote_core::crc32::crc32(&content);
        ensure!(
            actual == crc,
            "{source}: member `{name}` fails its CRC-32 check (stored {crc:08x}, computed {actual:08x})"
        );
        members.push(Member {
            name,
            bytes: content,
        });
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A one-member archive, deflated, written field by field.
    fn deflated_zip(name: &str, content: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(content).unwrap();
        let packed = enc.finish().unwrap();
        let crc = mote_core::crc32::crc32(content);
        let mut z = Vec::new();
        let common = |z: &mut Vec<u8>| {
            z.extend_from_slice(&20u16.to_le_bytes()); // version needed
            z.extend_from_slice(&0u16.to_le_bytes()); // flags
            z.extend_from_slice(&8u16.to_le_bytes()); // deflate
            z.extend_from_slice(&[0; 4]); // time, date
            z.extend_from_slice(&crc.to_le_bytes());
            z.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            z.extend_from_slice(&(content.len() as u32).to_le_bytes());
            z.extend_from_slice(&(name.len() as u16).to_le_bytes());
            z.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        z.extend_from_slice(&LOCAL.to_le_bytes());
        common(&mut z);
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(&packed);
        let dir_at = z.len();
        z.extend_from_slice(&CENTRAL.to_le_bytes());
        z.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut z);
        z.extend_from_slice(&[0; 10]); // comment length, disk, attributes, external attributes
        z.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        z.extend_from_slice(name.as_bytes());
        let dir_len = z.len() - dir_at;
        z.extend_from_slice(&EOCD.to_le_bytes());
        z.extend_from_slice(&[0; 4]);
        z.extend_from_slice(&1u16.to_le_bytes());
        z.extend_from_slice(&1u16.to_le_bytes());
        z.extend_from_slice(&(dir_len as u32).to_le_bytes());
        z.extend_from_slice(&(dir_at as u32).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z
    }

    #[test]
    fn reads_a_deflated_member_and_checks_its_crc() {
        let content: Vec<u8> = (0..2000u32).map(|i| (i % 7) as u8).collect();
        let mut zip = deflated_zip("x.npy", &content);
        let members = read_members(&zip, "t.npz").unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, "x.npy");
        assert_eq!(members[0].bytes, content);

        // Corrupt the stored CRC (local header byte 14, central entry 16 bytes in).
        let dir_at = u32_at(&zip, zip.len() - 6) as usize;
        zip[dir_at + 16] ^= 1;
        let err = read_members(&zip, "t.npz").err().unwrap().to_string();
        assert!(err.contains("fails its CRC-32 check"), "{err}");
    }

    #[test]
    fn rejects_what_is_not_a_zip() {
        let err = read_members(&[0u8; 100], "t.npz")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "t.npz: not a zip archive (no end-of-central-directory record)"
        );
    }
}
