//! A model swapped without rebuilding the firmware: one firmware image, built once with two
//! model slots, is given new models the way `mote deploy --model-only` writes them, with the
//! power cut at every write step of each swap, and booted in QEMU after each. Whatever the cut,
//! the device runs a whole model, the old one or the new one, with exactly the host's output
//! bytes; a model it cannot run is refused with a log line and the previous one keeps running.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use mote_core::format::OpCode;
use mote_core::persist::{ModelStore, RamFlash, RamFlashError};
use mote_core::{Interpreter, Model};
use mote_host::firmware::{self, Board};
use mote_host::model_slots::FirmwareImage;
use mote_host::qemu::run_elf;
use mote_host::report::FirmwareReport;
use mote_host::AlignedBytes;
use mote_tests::synth::{ds_cnn, ds_cnn_pooled, Rng};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SLOT_BYTES: u32 = 16 * 1024;
const VECTORS: usize = 2;

/// A 16x16x1 -> 4-class DS-CNN with `channels` channels and `blocks` blocks, pooled by `pool`.
fn model(seed: u32, channels: usize, blocks: usize, pool: OpCode) -> Vec<u8> {
    ds_cnn_pooled(pool, seed, 16, 16, channels, blocks, 4)
        .build()
        .unwrap()
        .bytes
}

fn same_shape(seed: u32) -> Vec<u8> {
    model(seed, 8, 1, OpCode::AveragePool2d)
}

fn inputs() -> Vec<u8> {
    let mut rng = Rng::new(77);
    (0..VECTORS * 256).map(|_| rng.i8() as u8).collect()
}

/// The output bytes of `blob` on each input vector, on the host.
fn host_outputs(blob: &[u8], inputs: &[u8]) -> Vec<Vec<u8>> {
    let aligned = AlignedBytes::new(blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let mut interpreter = Interpreter::new(model, arena.as_mut_slice()).unwrap();
    inputs
        .chunks(256)
        .map(|x| {
            interpreter.input_bytes(0).unwrap().copy_from_slice(x);
            interpreter.invoke().unwrap();
            interpreter.output_bytes(0).unwrap().to_vec()
        })
        .collect()
}

/// The firmware around `built_in`, with model slots, copied into a directory of the test's own.
fn firmware(test: &str, built_in: &[u8], inputs: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mote-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.mote"), built_in).unwrap();
    std::fs::write(dir.join("test_inputs.i8"), inputs).unwrap();
    let slot_bytes = SLOT_BYTES.to_string();
    let envs = [
        ("MOTE_MODEL_DIR", dir.to_str().unwrap()),
        ("MOTE_MODEL_SLOT_BYTES", slot_bytes.as_str()),
    ];
    let elf = firmware::build(Board::Qemu, &envs).unwrap();
    let copy = dir.join("firmware.elf");
    std::fs::copy(elf, &copy).unwrap();
    copy
}

/// What a boot ran: the log line naming the model, and each inference's output bytes.
struct Boot {
    chosen: String,
    refusals: Vec<String>,
    outputs: Vec<Vec<u8>>,
}

fn boot(image: &FirmwareImage, path: &Path) -> Boot {
    image.save(path).unwrap();
    let run = run_elf(path, Duration::from_secs(60), |_| {}).unwrap();
    assert!(run.success(), "exit {}: {:#?}", run.exit_code, run.log);
    let lines: Vec<&str> = run.log.iter().map(|l| l.text.as_str()).collect();
    let chosen = lines
        .iter()
        .find(|l| l.ends_with(": running it"))
        .unwrap_or_else(|| panic!("no model chosen: {lines:#?}"))
        .to_string();
    let refusals = lines
        .iter()
        .filter(|l| l.contains(" refused: "))
        .map(|l| l.to_string())
        .collect();
    let report = FirmwareReport::from_log(&run.log).unwrap();
    let outputs = report.inferences.into_iter().map(|i| i.output).collect();
    Boot {
        chosen,
        refusals,
        outputs,
    }
}

/// RAM-backed flash whose power is cut during operation number `cut` (each erase or write call
/// is one): that operation does its first half (pages erased, or bytes programmed), then fails.
struct CutFlash<'a> {
    inner: RamFlash<'a>,
    cut: usize,
    ops: usize,
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

impl CutFlash<'_> {
    /// Whether this operation is the one the power is cut in.
    fn cut_now(&mut self) -> bool {
        self.ops += 1;
        self.ops - 1 == self.cut
    }
}

const POWER_CUT: RamFlashError = RamFlashError(NorFlashErrorKind::Other);

impl NorFlash for CutFlash<'_> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if self.cut_now() {
            let pages = (to - from) / Self::ERASE_SIZE as u32;
            let half = from + pages / 2 * Self::ERASE_SIZE as u32;
            self.inner.erase(from, half)?;
            return Err(POWER_CUT);
        }
        self.inner.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if self.cut_now() {
            let half = bytes.len() / 2 / 4 * 4;
            self.inner.write(offset, &bytes[..half])?;
            return Err(POWER_CUT);
        }
        self.inner.write(offset, bytes)
    }
}

/// Writes `blob` into `image`'s slots with the power cut in operation `cut` (`None`: no cut);
/// whether the write finished.
fn write_with_cut(image: &mut FirmwareImage, blob: &[u8], cut: Option<usize>) -> bool {
    let flash = CutFlash {
        inner: RamFlash::keep(image.slots_mut()),
        cut: cut.unwrap_or(usize::MAX),
        ops: 0,
    };
    let mut store = ModelStore::new(flash, 0, SLOT_BYTES, SLOT_BYTES).unwrap();
    match store.save(blob) {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(
                e,
                mote_core::persist::StoreError::Flash(POWER_CUT.kind()),
                "only the power cut stops a write"
            );
            false
        }
    }
}

/// Operations an uncut write of `blob` takes.
fn write_ops(image: &mut FirmwareImage, blob: &[u8]) -> usize {
    let mut slots = image.slots_mut().to_vec();
    let flash = CutFlash {
        inner: RamFlash::keep(&mut slots),
        cut: usize::MAX,
        ops: 0,
    };
    let mut store = ModelStore::new(flash, 0, SLOT_BYTES, SLOT_BYTES).unwrap();
    store.save(blob).unwrap();
    store.into_inner().ops
}

#[test]
fn a_swap_cut_at_every_write_step_runs_the_old_model_or_the_new_one() {
    let inputs = inputs();
    let (factory, first, second) = (same_shape(1), same_shape(2), same_shape(3));
    let expected = |blob: &[u8]| host_outputs(blob, &inputs);
    let (factory_out, first_out, second_out) =
        (expected(&factory), expected(&first), expected(&second));
    assert_ne!(
        factory_out, first_out,
        "the swapped models must be told apart"
    );
    assert_ne!(first_out, second_out);
    let elf = firmware("swap", &factory, &inputs);
    let scratch = elf.with_file_name("booted.elf");
    let mut image = FirmwareImage::read(&elf).unwrap();

    let fresh = boot(&image, &scratch);
    assert_eq!(fresh.chosen, "built-in model: running it");
    assert_eq!(fresh.outputs, factory_out);

    // From the factory model to the first, then from the first to the second.
    let swaps = [
        (
            &first,
            &factory_out,
            &first_out,
            "built-in",
            "slot A sequence=1",
        ),
        (
            &second,
            &first_out,
            &second_out,
            "slot A sequence=1",
            "slot B sequence=2",
        ),
    ];
    for (blob, old_out, new_out, old_name, new_name) in swaps {
        let ops = write_ops(&mut image, blob);
        assert!(ops >= 4, "erase, payload, header, commit: {ops}");
        for cut in 0..ops {
            let mut cut_image = FirmwareImage::read_bytes(image.bytes().to_vec()).unwrap();
            assert!(!write_with_cut(&mut cut_image, blob, Some(cut)));
            let booted = boot(&cut_image, &scratch);
            assert!(
                booted.chosen.contains(old_name),
                "cut in write step {cut}: {}",
                booted.chosen
            );
            assert_eq!(&booted.outputs, old_out, "cut in write step {cut}");
        }
        assert!(write_with_cut(&mut image, blob, None));
        let booted = boot(&image, &scratch);
        assert!(booted.chosen.contains(new_name), "{}", booted.chosen);
        assert_eq!(&booted.outputs, new_out);
        assert!(booted.refusals.is_empty(), "{:?}", booted.refusals);
    }
    let _ = std::fs::remove_dir_all(elf.parent().unwrap());
}

#[test]
fn a_model_the_firmware_cannot_run_is_refused_and_the_previous_one_runs() {
    let inputs = inputs();
    let factory = same_shape(11);
    let good = same_shape(12);
    let good_out = host_outputs(&good, &inputs);
    let elf = firmware("refusals", &factory, &inputs);
    let scratch = elf.with_file_name("booted.elf");
    let mut image = FirmwareImage::read(&elf).unwrap();
    image.write_model(&good).unwrap();

    let mut corrupt = same_shape(13);
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x55;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "a larger arena",
            model(14, 32, 1, OpCode::AveragePool2d),
            "B of arena, the firmware has",
        ),
        (
            "more operators",
            model(15, 8, 3, OpCode::AveragePool2d),
            "operators, the firmware decodes at most",
        ),
        (
            "an operator left out of the build",
            model(16, 8, 1, OpCode::MaxPool2d),
            "needs mote-core's feature op-",
        ),
        (
            "another input shape",
            ds_cnn(17, 8, 8, 8, 1, 4).build().unwrap().bytes,
            "its input 0 differs",
        ),
        ("a corrupt blob", corrupt, "not a valid model"),
    ];
    for (what, blob, said) in cases {
        let mut case = FirmwareImage::read_bytes(image.bytes().to_vec()).unwrap();
        // Written as the store writes it: the host's own check would refuse the corrupt one.
        let mut store =
            ModelStore::new(RamFlash::keep(case.slots_mut()), 0, SLOT_BYTES, SLOT_BYTES).unwrap();
        store.save(&blob).unwrap();
        let booted = boot(&case, &scratch);
        assert_eq!(booted.refusals.len(), 1, "{what}: {:?}", booted.refusals);
        let refusal = &booted.refusals[0];
        assert!(
            refusal.starts_with("slot B sequence=2 refused: ") && refusal.contains(said),
            "{what}: {refusal}"
        );
        let running = format!("slot A sequence=1 bytes={}: running it", good.len());
        assert_eq!(booted.chosen, running, "{what}");
        assert_eq!(booted.outputs, good_out, "{what}");
    }
    // The host refuses to write a blob that is not a model, or one too large for a slot.
    let mut untouched = FirmwareImage::read_bytes(image.bytes().to_vec()).unwrap();
    assert!(untouched.write_model(b"not a model").is_err());
    let huge = model(18, 96, 2, OpCode::AveragePool2d);
    assert!(huge.len() > SLOT_BYTES as usize, "{} bytes", huge.len());
    let err = untouched.write_model(&huge).unwrap_err();
    assert!(format!("{err}").contains("MOTE_MODEL_SLOT_BYTES"), "{err}");
    assert_eq!(untouched.bytes(), image.bytes());
    let _ = std::fs::remove_dir_all(elf.parent().unwrap());
}
