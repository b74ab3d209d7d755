//! On-device fine-tuning: the exported int8 model stays frozen in flash; its head (the last
//! dense layer) is re-learned in f32 on samples from a new sensor, then kept across reboots
//! in a two-slot, power-cut-safe store.

use crate::cost::Meter;
use crate::model;
use mote_core::persist::{Loaded, WeightStore};
use mote_core::train::{Head, Sgd, Target, Trainer};
use mote_core::{Error, Interpreter};

#[repr(C, align(4))]
struct TrainArena([u8; model::TRAIN_BYTES]);

/// Accuracy of `predict` over a labelled set.
fn accuracy(
    interpreter: &mut Interpreter<'_, '_>,
    inputs: &[u8],
    labels: &[u8],
    mut predict: impl FnMut(&mut Interpreter<'_, '_>) -> Result<usize, Error>,
) -> Result<(usize, usize), Error> {
    let len = inputs.len() / labels.len().max(1);
    // No labelled set (the build allows an empty test set): nothing to count.
    if len == 0 {
        return Ok((0, labels.len()));
    }
    let mut hits = 0;
    for (x, &y) in inputs.chunks_exact(len).zip(labels) {
        for (dst, &src) in interpreter.input_i8(0)?.iter_mut().zip(x) {
            *dst = src as i8;
        }
        hits += usize::from(predict(interpreter)? == usize::from(y));
    }
    Ok((hits, labels.len()))
}

/// The class an int8 output tensor votes for (ties: the lowest index).
pub fn argmax(out: &[i8]) -> usize {
    let mut best = (0, i8::MIN);
    for (i, &v) in out.iter().enumerate() {
        if i == 0 || v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

fn to_bytes(params: &[f32], bytes: &mut [u8]) {
    for (chunk, p) in bytes.chunks_exact_mut(4).zip(params) {
        chunk.copy_from_slice(&p.to_le_bytes());
    }
}

/// `bytes` holds exactly `params.len()` values: the store's `load` only fills a buffer with a
/// copy of exactly its length.
fn from_bytes(bytes: &[u8], params: &mut [f32]) {
    for (p, chunk) in params.iter_mut().zip(bytes.chunks_exact(4)) {
        *p = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
}

/// What to do after fine-tuning.
pub enum Next {
    /// Weights were learned and saved: reboot to show they survive.
    Reboot,
    /// Weights were restored from flash and checked: done.
    Done,
}

/// Fine-tunes the head (or restores it) and reports accuracy and cost.
pub fn run<F: embedded_storage::nor_flash::NorFlash>(
    interpreter: &mut Interpreter<'_, '_>,
    meter: Meter,
    flash: F,
) -> Result<Next, Error> {
    let sgd = Sgd::new(model::LEARNING_RATE).with_momentum(model::MOMENTUM);
    let head = Head::find(interpreter.model(), sgd)?;
    let store_err = |_| Error::InvalidParameter {
        what: mote_core::why!("weight store"),
    };
    let slot = model::STORE_SLOT as u32;
    let identity = head.identity(interpreter.model());
    let mut store = WeightStore::new(flash, 0, slot, slot, identity).map_err(store_err)?;
    let Some(params) =
        cortex_m::singleton!(: [f32; model::HEAD_PARAMS] = [0.0; model::HEAD_PARAMS])
    else {
        return Err(Error::BufferTooSmall {
            needed: model::HEAD_PARAMS,
            actual: 0,
        });
    };
    let Some(bytes) =
        cortex_m::singleton!(: [u8; 4 * model::HEAD_PARAMS] = [0; 4 * model::HEAD_PARAMS])
    else {
        return Err(Error::BufferTooSmall {
            needed: model::HEAD_PARAMS,
            actual: 0,
        });
    };
    // Sized by the build from the model's head (and counted in its RAM check).
    let Some(features) =
        cortex_m::singleton!(: [f32; model::HEAD_INPUTS] = [0.0; model::HEAD_INPUTS])
    else {
        return Err(Error::BufferTooSmall {
            needed: model::HEAD_INPUTS,
            actual: 0,
        });
    };
    let features = features
        .get_mut(..head.inputs)
        .ok_or(Error::BufferTooSmall {
            needed: head.inputs,
            actual: model::HEAD_INPUTS,
        })?;
    let (test_x, test_y) = (
        &model::FINETUNE_TEST_INPUTS[..],
        &model::FINETUNE_TEST_LABELS[..],
    );

    match store.load(&mut bytes[..]).map_err(store_err)? {
        Loaded::Restored(stored) => {
            from_bytes(&bytes[..], params);
            defmt::println!(
                "restored head slot={=usize} sequence={=u32} bytes={=usize}",
                stored.slot,
                stored.sequence,
                stored.len
            );
            let (hits, total) = accuracy(interpreter, test_x, test_y, |i| {
                head.features(i, &mut (), features)?;
                head.predict(params, features)
            })?;
            defmt::println!("accuracy restored {=usize}/{=usize}", hits, total);
            return Ok(Next::Done);
        }
        // Weights learned for another model, head or store version would be wrong here: keep
        // the exported ones and learn again; the save below replaces the copy.
        Loaded::Foreign { stored, mismatch } => defmt::println!(
            "stored head ignored slot={=usize} sequence={=u32}: {} (this head: model crc {=u32:#010x}, shape {=u32}x{=u32}); using the exported weights",
            stored.slot,
            stored.sequence,
            mismatch,
            identity.model,
            identity.shape[0],
            identity.shape[1]
        ),
        Loaded::Empty => {}
    }

    let (hits, total) = accuracy(interpreter, test_x, test_y, |i| {
        i.invoke()?;
        Ok(argmax(i.output_i8(0)?))
    })?;
    defmt::println!("accuracy new-sensor-before {=usize}/{=usize}", hits, total);

    head.init_params(interpreter.model(), params)?;
    let Some(arena) = cortex_m::singleton!(: TrainArena = TrainArena([0; model::TRAIN_BYTES]))
    else {
        return Err(Error::BufferTooSmall {
            needed: model::TRAIN_BYTES,
            actual: 0,
        });
    };
    let (train_x, train_y) = (&model::FINETUNE_INPUTS[..], &model::FINETUNE_LABELS[..]);
    let len = train_x.len() / train_y.len().max(1);
    let (mut step_cost, mut steps) = (0u64, 0u64);
    {
        let mut trainer = Trainer::new(&head.plan, params, &mut arena.0)?;
        for _ in 0..model::EPOCHS {
            for (batch_x, batch_y) in train_x
                .chunks(len * model::BATCH)
                .zip(train_y.chunks(model::BATCH))
            {
                for (x, &y) in batch_x.chunks_exact(len).zip(batch_y) {
                    for (dst, &src) in interpreter.input_i8(0)?.iter_mut().zip(x) {
                        *dst = src as i8;
                    }
                    head.features(interpreter, &mut (), features)?;
                    let start = meter.now();
                    trainer.accumulate(features, Target::Class(usize::from(y)))?;
                    step_cost += meter.since(start).count;
                    steps += 1;
                }
                let start = meter.now();
                trainer.step()?;
                step_cost += meter.since(start).count / model::BATCH as u64;
            }
        }
    }
    defmt::println!(
        "finetune samples={=u64} memory={=usize} params={=usize} step={=u64} {=istr}",
        steps,
        head.plan.bytes(),
        4 * model::HEAD_PARAMS,
        step_cost / steps.max(1),
        meter.unit().name()
    );
    let (hits, total) = accuracy(interpreter, test_x, test_y, |i| {
        head.features(i, &mut (), features)?;
        head.predict(params, features)
    })?;
    defmt::println!("accuracy new-sensor-after {=usize}/{=usize}", hits, total);

    to_bytes(params, bytes);
    let saved = store.save(&bytes[..]).map_err(store_err)?;
    defmt::println!(
        "saved head slot={=usize} sequence={=u32}",
        saved.slot,
        saved.sequence
    );
    Ok(Next::Reboot)
}
