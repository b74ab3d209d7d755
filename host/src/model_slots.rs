//! Writing a model into a firmware's two model slots, so the device runs it without its code
//! being rebuilt or reflashed (`mote deploy --model-only`): into the ELF image QEMU boots, or
//! through probe-rs into a board's flash. The slot format and its power-cut safety are
//! mote-core's [`ModelStore`]; the device checks each model before running it.

use crate::AlignedBytes;
use anyhow::{anyhow, bail, Context, Result};
use mote_core::persist::{ModelStore, RamFlash, StoredModel};
use object::{Object, ObjectSection};
use std::path::Path;
use std::process::Command;

/// The ELF section the firmware's linker script puts the slots in.
pub const SECTION: &str = ".mote_model_slots";

/// Where a firmware keeps its two model slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRegion {
    /// The device address of slot A (slot B follows it).
    pub address: u64,
    /// Bytes of each slot.
    pub slot_bytes: u32,
    /// Where the slots' bytes start in the ELF file.
    file_offset: usize,
}

impl SlotRegion {
    /// The slots of the firmware ELF `elf`; an error naming the fix if it was built without.
    pub fn of(elf: &[u8]) -> Result<Self> {
        let file = object::File::parse(elf).context("parsing the firmware ELF")?;
        let section = file.section_by_name(SECTION).ok_or_else(|| {
            anyhow!(
                "the firmware has no model slots: build it with MOTE_MODEL_SLOT_BYTES set \
                 (`mote deploy --model-slot-bytes 65536 ...`)"
            )
        })?;
        let (offset, len) = section
            .file_range()
            .context("the model slots' section has no bytes in the ELF")?;
        let slot_bytes = u32::try_from(len / 2).context("model slots larger than 4 GiB")?;
        if len == 0 || len % 2 != 0 || offset.saturating_add(len) > elf.len() as u64 {
            bail!("the model slots' section is malformed ({len} bytes at file offset {offset})");
        }
        Ok(Self {
            address: section.address(),
            slot_bytes,
            file_offset: offset as usize,
        })
    }

    fn range(&self) -> std::ops::Range<usize> {
        self.file_offset..self.file_offset + 2 * self.slot_bytes as usize
    }
}

/// Writes `blob` into the slots held in `slots` (both, as the device's flash holds them), after
/// checking that it is a model and fits a slot.
pub fn write_model(slots: &mut [u8], slot_bytes: u32, blob: &[u8]) -> Result<StoredModel> {
    let mut store = ModelStore::new(RamFlash::keep(slots), 0, slot_bytes, slot_bytes)
        .map_err(|e| anyhow!("the firmware's model slots: {e}"))?;
    check_blob(blob, store.capacity())?;
    store
        .save(blob)
        .map_err(|e| anyhow!("writing the model slot: {e}"))
}

/// A clear error unless `blob` parses as a model of at most `capacity` bytes.
fn check_blob(blob: &[u8], capacity: usize) -> Result<()> {
    let aligned = AlignedBytes::new(blob);
    mote_core::Model::parse(aligned.as_slice()).map_err(|e| anyhow!("not a valid model: {e}"))?;
    if blob.len() > capacity {
        bail!(
            "the model is {} bytes, but each of the firmware's model slots holds {capacity}: \
             rebuild the firmware with a larger MOTE_MODEL_SLOT_BYTES",
            blob.len()
        );
    }
    Ok(())
}

/// A firmware ELF image whose model slots are rewritten in place: what QEMU boots.
#[derive(Debug)]
pub struct FirmwareImage {
    bytes: Vec<u8>,
    region: SlotRegion,
}

impl FirmwareImage {
    /// Reads the firmware ELF at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::read_bytes(bytes).with_context(|| format!("in {}", path.display()))
    }

    /// The firmware ELF `bytes`.
    pub fn read_bytes(bytes: Vec<u8>) -> Result<Self> {
        let region = SlotRegion::of(&bytes)?;
        Ok(Self { bytes, region })
    }

    /// The ELF's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where its slots are.
    pub fn region(&self) -> SlotRegion {
        self.region
    }

    /// Both slots' bytes, as the device's flash holds them.
    pub fn slots_mut(&mut self) -> &mut [u8] {
        let range = self.region.range();
        &mut self.bytes[range]
    }

    /// Writes `blob` into the slot not holding the newest model.
    pub fn write_model(&mut self, blob: &[u8]) -> Result<StoredModel> {
        let slot_bytes = self.region.slot_bytes;
        write_model(self.slots_mut(), slot_bytes, blob)
    }

    /// Saves the image to `path`, whole or not at all (a new file renamed over the old).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut staging = path.as_os_str().to_owned();
        staging.push(".partial");
        let staging = std::path::PathBuf::from(staging);
        std::fs::write(&staging, &self.bytes)
            .and_then(|()| std::fs::rename(&staging, path))
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Writes `blob` into the model slots of a board running the firmware `elf`, through probe-rs:
/// reads both slots, writes the one not holding the newest model (its commit word, at the
/// slot's end, is programmed last), and resets the board.
pub fn write_model_to_board(elf: &Path, chip: &str, blob: &[u8]) -> Result<StoredModel> {
    let image = FirmwareImage::read(elf)?;
    let region = image.region();
    let words = 2 * region.slot_bytes as usize / 4;
    let listing = probe_rs(&[
        "read",
        "--chip",
        chip,
        "b32",
        &format!("{:#x}", region.address),
        &words.to_string(),
    ])?;
    let mut slots = words_to_bytes(&listing, words)?;
    let stored = write_model(&mut slots, region.slot_bytes, blob)?;
    let start = stored.offset as usize;
    let slot = &slots[start..start + region.slot_bytes as usize];
    let staging = crate::TempDir::new("mote-model-slot").context("creating a temp directory")?;
    let file = staging.path().join("slot.bin");
    std::fs::write(&file, slot).with_context(|| format!("writing {}", file.display()))?;
    let address = region.address + u64::from(stored.offset);
    probe_rs(&[
        "download",
        "--chip",
        chip,
        "--binary-format",
        "bin",
        "--base-address",
        &format!("{address:#x}"),
        file.to_str().context("temp path is not UTF-8")?,
    ])?;
    probe_rs(&["reset", "--chip", chip])?;
    Ok(stored)
}

/// Runs probe-rs with `args`; its standard output.
fn probe_rs(args: &[&str]) -> Result<String> {
    let output = Command::new("probe-rs").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "probe-rs not found: install it with `cargo install probe-rs-tools --locked` \
                 (needs libudev-dev and pkg-config)"
            )
        } else {
            anyhow!("starting probe-rs: {e}")
        }
    })?;
    if !output.status.success() {
        bail!(
            "probe-rs {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `probe-rs read b32`'s listing (hex words separated by white space) as little-endian bytes;
/// exactly `words` of them.
fn words_to_bytes(listing: &str, words: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(4 * words);
    for token in listing.split_whitespace() {
        let digits = token.trim_start_matches("0x");
        let word = u32::from_str_radix(digits, 16)
            .with_context(|| format!("probe-rs read printed {token:?}, not a hex word"))?;
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    if bytes.len() != 4 * words {
        bail!(
            "probe-rs read printed {} words, not the {words} asked for",
            bytes.len() / 4
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_rs_listings_become_little_endian_bytes() {
        let bytes = words_to_bytes("ffffffff 4d4f5445\n00000001 0x0000ab12\n", 4).unwrap();
        assert_eq!(
            &bytes[..8],
            &[0xFF, 0xFF, 0xFF, 0xFF, 0x45, 0x54, 0x4F, 0x4D]
        );
        assert_eq!(&bytes[12..], &[0x12, 0xAB, 0, 0]);
        assert!(words_to_bytes("ffffffff", 2).is_err());
        assert!(words_to_bytes("ffffffff zz", 2).is_err());
    }

    #[test]
    fn a_blob_that_is_not_a_model_is_refused_before_writing() {
        let mut slots = vec![0xFFu8; 2 * 4096];
        let err = write_model(&mut slots, 4096, b"not a model at all").unwrap_err();
        assert!(format!("{err}").contains("not a valid model"), "{err}");
        assert!(slots.iter().all(|&b| b == 0xFF), "nothing written");
    }
}
