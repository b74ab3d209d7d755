//! Which model the firmware runs: the newest one written into its two model slots
//! (`mote deploy --model-only`) that it can run, else the one built into its image. A model it
//! cannot run (corrupt, half-written, too large for the arena, an operator left out of this
//! build, other inputs or outputs) is refused with a log line, and the one before it runs.

use crate::model;
use mote_core::persist::{self, Capacity, MappedFlash, ModelStore, StoredModel};
use mote_core::train::{Head, Sgd};
use mote_core::{Error, Model};

/// The slots, as the CPU reads them in place (empty when the build has none).
fn slot_memory() -> &'static [u8] {
    extern "C" {
        /// Start of `2 * MODEL_SLOT_BYTES` bytes the linker reserves (build.rs, model-slots.x).
        static __mote_model_slots: u8;
    }
    if model::MODEL_SLOT_BYTES == 0 {
        return &[];
    }
    // SAFETY: the linker script reserves `2 * MODEL_SLOT_BYTES` bytes at the symbol, in flash
    // (or the QEMU machine's model memory) that this program never writes; the host rewrites
    // them only while the device is halted or held in reset, so they do not change under the
    // returned slice.
    unsafe {
        core::slice::from_raw_parts(
            core::ptr::addr_of!(__mote_model_slots),
            2 * model::MODEL_SLOT_BYTES,
        )
    }
}

fn slot_name(copy: &StoredModel) -> &'static str {
    if copy.stored.slot == 0 {
        "A"
    } else {
        "B"
    }
}

/// The model to run: the newest acceptable copy in the slots, else `built_in`.
pub fn choose(built_in: &'static [u8]) -> Result<Model<'static>, Error> {
    let built_in = Model::parse(built_in)?;
    let memory = slot_memory();
    if memory.is_empty() {
        return Ok(built_in);
    }
    let flash = MappedFlash::new(memory);
    let slot = model::MODEL_SLOT_BYTES as u32;
    let copies = ModelStore::new(flash, 0, slot, slot)
        .and_then(|mut store| store.models())
        .unwrap_or_else(|e| {
            defmt::println!("slots unreadable ({}): running the built-in model", e);
            [None, None]
        });
    let capacity = Capacity {
        arena: model::ARENA_SIZE,
        operators: model::OP_COUNT,
    };
    for copy in copies.into_iter().flatten() {
        let Some(blob) = flash.bytes(copy.offset, copy.stored.len) else {
            continue;
        };
        match persist::check(blob, capacity, &built_in) {
            Ok(chosen) if !head_fits(&chosen) => defmt::println!(
                "slot {=str} sequence={=u32} refused: its head differs from the one this \
                 firmware fine-tunes ({=usize} parameters from {=usize} inputs)",
                slot_name(&copy),
                copy.stored.sequence,
                model::HEAD_PARAMS,
                model::HEAD_INPUTS
            ),
            Ok(chosen) => {
                defmt::println!(
                    "slot {=str} sequence={=u32} bytes={=usize}: running it",
                    slot_name(&copy),
                    copy.stored.sequence,
                    copy.stored.len
                );
                return Ok(chosen);
            }
            Err(why) => defmt::println!(
                "slot {=str} sequence={=u32} refused: {}",
                slot_name(&copy),
                copy.stored.sequence,
                why
            ),
        }
    }
    defmt::println!("built-in model: running it");
    Ok(built_in)
}

/// Whether the fine-tuning buffers, sized for the built-in model's head, fit `candidate`'s
/// (always, when the firmware does not fine-tune).
fn head_fits(candidate: &Model<'_>) -> bool {
    if !model::FINETUNE {
        return true;
    }
    let sgd = Sgd::new(model::LEARNING_RATE);
    Head::find(candidate, sgd).is_ok_and(|head| {
        head.param_count() == model::HEAD_PARAMS
            && head.inputs == model::HEAD_INPUTS
            && fits(head.plan.bytes(), model::TRAIN_BYTES)
    })
}

/// `needed <= available`, for constants the build may set to 0.
fn fits(needed: usize, available: usize) -> bool {
    needed <= available
}
