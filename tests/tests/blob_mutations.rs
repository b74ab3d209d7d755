//! Whatever bytes `Model::parse` is given, it returns a model or an error, never panics and
//! never reads out of bounds; a model it accepts can be invoked without panicking.

use mote_core::format::{CRC_OFFSET, HEADER_LEN, TENSOR_RECORD_LEN};
use mote_core::{Error, Interpreter, Model};
use mote_host::AlignedBytes;
use mote_tests::synth::{ds_cnn, Rng};

fn valid_blobs() -> Vec<Vec<u8>> {
    let mut blobs = vec![mote_tests::lowering::demo_model().0];
    for seed in 1..4 {
        blobs.push(ds_cnn(seed, 9, 7, 5, 2, 4).build().unwrap().bytes);
    }
    blobs
}

fn reseal(blob: &mut [u8]) {
    let crc = mote_core::crc32::crc32(&blob[CRC_OFFSET + 4..]);
    blob[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Parses, and if the model is accepted, runs it on an arena of the size it asks for.
fn parse_and_invoke(bytes: &[u8]) -> Result<(), Error> {
    let aligned = AlignedBytes::new(bytes);
    let model = Model::parse(aligned.as_slice())?;
    // The arena size is attacker-controlled: cap what the test allocates.
    if model.arena_size() > 1 << 24 {
        return Ok(());
    }
    let mut arena = mote_host::AlignedBytes::zeroed(model.arena_size());
    let bytes = arena.as_mut_slice();
    let mut interpreter = Interpreter::new(model, bytes)?;
    interpreter.invoke()
}

#[test]
fn valid_blobs_parse_and_run() {
    for blob in valid_blobs() {
        parse_and_invoke(&blob).unwrap();
    }
}

#[test]
fn specific_corruptions_get_specific_errors() {
    let blob = valid_blobs().remove(0);
    let parse = |b: &[u8]| Model::parse(AlignedBytes::new(b).as_slice()).map(|_| ());

    assert_eq!(
        parse(b"not a model at all, just some text that is long enough to hold a header........"),
        Err(Error::NotAModel)
    );
    assert_eq!(
        parse(&blob[..10]),
        Err(Error::Truncated {
            expected: HEADER_LEN,
            actual: 10
        })
    );
    assert_eq!(
        parse(&blob[..blob.len() - 1]),
        Err(Error::Truncated {
            expected: blob.len(),
            actual: blob.len() - 1
        })
    );

    let mut flipped = blob.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert!(matches!(parse(&flipped), Err(Error::CrcMismatch { .. })));

    let mut version = blob.clone();
    version[4] = 99;
    assert_eq!(
        parse(&version),
        Err(Error::UnsupportedVersion {
            found: 99,
            supported: 1
        })
    );

    // Move tensor 0's arena offset onto another live tensor's bytes, then fix the CRC: only the
    // plan check can catch it.
    let aligned = AlignedBytes::new(&blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let input = model.input(0).unwrap();
    let first_op_output = model.op(0).unwrap().output;
    let target = model.tensor(first_op_output).unwrap().record.offset;
    let mut overlapped = blob.clone();
    let at = model_tensors_offset(&blob) + input.index as usize * TENSOR_RECORD_LEN + 20;
    overlapped[at..at + 4].copy_from_slice(&target.to_le_bytes());
    reseal(&mut overlapped);
    assert!(
        matches!(parse(&overlapped), Err(Error::PlanOverlap { .. })),
        "{:?}",
        parse(&overlapped)
    );

    // A misaligned start.
    let mut shifted = vec![0u8; blob.len() + 1];
    shifted[1..].copy_from_slice(&blob);
    let aligned_shifted = AlignedBytes::new(&shifted);
    assert_eq!(
        Model::parse(&aligned_shifted.as_slice()[1..]).map(|_| ()),
        Err(Error::MisalignedBlob)
    );

    // Too small an arena.
    let mut small = vec![0u8; model.arena_size() - 4];
    assert!(matches!(
        Interpreter::new(model, &mut small),
        Err(Error::BufferTooSmall { .. })
    ));
}

fn model_tensors_offset(blob: &[u8]) -> usize {
    u32::from_le_bytes(blob[28..32].try_into().unwrap()) as usize
}

#[test]
fn thousands_of_mutations_never_panic() {
    let blobs = valid_blobs();
    let mut rng = Rng::new(0xC0FFEE);
    let (mut accepted, mut rejected) = (0usize, 0usize);
    for round in 0..20_000 {
        let mut blob = blobs[round % blobs.len()].clone();
        let n_mutations = 1 + rng.below(4);
        for _ in 0..n_mutations {
            let len = blob.len() as u32;
            match rng.below(6) {
                0 => blob.truncate(rng.below(len) as usize),
                1 => {
                    let at = rng.below(len) as usize;
                    blob[at] ^= 1 << rng.below(8);
                }
                2 => {
                    // A huge or boundary value in a 32-bit field (dims, offsets, lengths).
                    let at = (rng.below(len.saturating_sub(4).max(1)) & !3) as usize;
                    let v = [
                        u32::MAX,
                        0x8000_0000,
                        0xFFFF,
                        0,
                        1,
                        len,
                        len + 4,
                        rng.next_u32(),
                    ][rng.below(8) as usize];
                    if at + 4 <= blob.len() {
                        blob[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
                3 => {
                    // Target the header and record tables, where structure lives.
                    let at = rng.below(len.min(HEADER_LEN as u32 + 400)) as usize;
                    blob[at] = rng.next_u32() as u8;
                }
                4 => blob.extend((0..rng.below(64)).map(|_| rng.next_u32() as u8)),
                _ => {
                    let at = rng.below(len) as usize;
                    blob[at] = blob[at].wrapping_add(1);
                }
            }
            if blob.is_empty() {
                break;
            }
        }
        // Most rounds recompute the CRC, so the structural checks behind it are exercised.
        if blob.len() >= HEADER_LEN && rng.below(8) != 0 {
            reseal(&mut blob);
        }
        match parse_and_invoke(&blob) {
            Ok(()) => accepted += 1,
            Err(_) => rejected += 1,
        }
    }
    println!("{accepted} mutated blobs accepted and run, {rejected} rejected with an error");
    assert!(
        rejected > 10_000,
        "only {rejected} rejections: mutations are too weak"
    );
}
