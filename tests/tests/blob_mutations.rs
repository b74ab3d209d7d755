//! Whatever bytes `Model::parse` is given, it returns a model or an error, never panics and
//! never reads out of bounds; a model it accepts can be invoked without panicking.

use mote_core::format::{blob_crc, CRC_OFFSET, HEADER_LEN, TENSOR_RECORD_LEN, VERSION};
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

/// Seals `blob` as the builder does: the CRC of every byte but its own field, up to the blob
/// length the header declares (or the end of the bytes, if shorter).
fn reseal(blob: &mut [u8]) {
    let declared = u32::from_le_bytes(blob[8..12].try_into().unwrap()) as usize;
    let crc = blob_crc(&blob[..declared.min(blob.len())]);
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
            supported: VERSION
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

/// The CRC covers every header byte but its own field (magic, version, header and blob length
/// included), and a header length other than this version's is refused.
#[test]
fn the_crc_covers_the_whole_header() {
    let blob = valid_blobs().remove(0);
    let stored = u32::from_le_bytes(blob[CRC_OFFSET..CRC_OFFSET + 4].try_into().unwrap());
    assert_eq!(blob_crc(&blob), stored);
    for at in 0..HEADER_LEN {
        let mut changed = blob.clone();
        changed[at] ^= 0x10;
        let covered = !(CRC_OFFSET..CRC_OFFSET + 4).contains(&at);
        assert_eq!(blob_crc(&changed) != stored, covered, "header byte {at}");
    }
    let parse = |b: &[u8]| Model::parse(AlignedBytes::new(b).as_slice()).map(|_| ());
    let mut header_len = blob.clone();
    header_len[6] = 48;
    reseal(&mut header_len);
    assert!(
        matches!(parse(&header_len), Err(Error::BadLayout { .. })),
        "{:?}",
        parse(&header_len)
    );
    // A blob sealed over only the bytes after the CRC field (format version 1) is refused.
    let mut old_seal = blob.clone();
    let crc = mote_core::crc32::crc32(&old_seal[CRC_OFFSET + 4..]);
    old_seal[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(parse(&old_seal), Err(Error::CrcMismatch { .. })));
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

/// The index of `blob`'s first CONV_2D, and where parameter `p` of operator `op` lies in the
/// blob.
fn first_conv_and_params(blob: &[u8]) -> (u16, impl Fn(u16, usize) -> usize) {
    use mote_core::format::{OpCode, OP_RECORD_LEN};
    let aligned = AlignedBytes::new(blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let conv = (0..model.op_count())
        .find(|&k| model.op(k).unwrap().opcode == OpCode::Conv2d)
        .unwrap();
    let ops_offset = u32::from_le_bytes(blob[32..36].try_into().unwrap()) as usize;
    let param_at = move |op: u16, p: usize| ops_offset + op as usize * OP_RECORD_LEN + 24 + 4 * p;
    (conv, param_at)
}

/// Each convolution's scratch is planned in the arena, clear of every tensor live while it
/// runs; a blob whose scratch is misplaced is refused, and one without scratch still runs
/// (the reference kernels) to the same outputs.
#[test]
fn operator_scratch_is_planned_checked_and_optional() {
    use mote_core::ops::record::{SCRATCH_LEN, SCRATCH_OFFSET};
    let blob = valid_blobs().remove(1);
    let aligned = AlignedBytes::new(&blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let (conv, param_at) = first_conv_and_params(&blob);
    let get = |b: &[u8], at: usize| i32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let set = |b: &mut Vec<u8>, at: usize, v: i32| {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        reseal(b);
    };
    let (off_at, len_at) = (param_at(conv, SCRATCH_OFFSET), param_at(conv, SCRATCH_LEN));
    let (offset, len) = (get(&blob, off_at), get(&blob, len_at));
    assert!(len >= 16 && offset % 4 == 0, "scratch {offset}+{len}");
    let parse = |b: &[u8]| Model::parse(AlignedBytes::new(b).as_slice()).map(|_| ());
    let refused =
        |b: &[u8]| matches!(parse(b), Err(Error::InvalidOperator { index, .. }) if index == conv);

    // Onto the operator's own output.
    let output = model.tensor(model.op(conv).unwrap().output).unwrap();
    let mut onto_output = blob.clone();
    set(&mut onto_output, off_at, output.record.offset as i32);
    assert!(refused(&onto_output), "{:?}", parse(&onto_output));
    // Misaligned, and past the arena's end.
    let mut misaligned = blob.clone();
    set(&mut misaligned, off_at, offset + 2);
    assert!(refused(&misaligned));
    let mut past_end = blob.clone();
    set(
        &mut past_end,
        len_at,
        model.arena_size() as i32 - offset + 4,
    );
    assert!(refused(&past_end));

    // No scratch: the same outputs, from the reference kernels.
    let run = |b: &[u8]| {
        let aligned = AlignedBytes::new(b);
        let model = Model::parse(aligned.as_slice()).unwrap();
        let mut arena = AlignedBytes::zeroed(model.arena_size());
        let mut interpreter = Interpreter::new(model, arena.as_mut_slice()).unwrap();
        let mut rng = Rng::new(7);
        for x in interpreter.input_i8(0).unwrap() {
            *x = rng.i8();
        }
        interpreter.invoke().unwrap();
        interpreter.output_i8(0).unwrap().to_vec()
    };
    let mut without = blob.clone();
    for k in 0..model.op_count() {
        set(&mut without, param_at(k, SCRATCH_LEN), 0);
        set(&mut without, param_at(k, SCRATCH_OFFSET), 0);
    }
    assert_eq!(run(&without), run(&blob));
    // Without scratch, the firmware must link the reference kernels.
    let aligned = AlignedBytes::new(&without);
    let model = Model::parse(aligned.as_slice()).unwrap();
    assert!(model.needs_reference_kernels().unwrap());
}

/// An operator record with several faults is refused for the first one the decoder meets
/// (its checks latch the first failure and carry on), whichever faults follow.
#[test]
fn an_operator_with_several_faults_reports_the_first() {
    use mote_core::ops::conv2d::Conv2dParams;
    use mote_core::ops::record::SCRATCH_LEN;
    use mote_core::ops::{Int8Stage, Window};
    // The slot a field of CONV_2D's parameters is written to, found through its encoding.
    let base = Conv2dParams {
        window: Window::DENSE,
        stage: Int8Stage {
            input_offset: 0,
            output_offset: 0,
            act_min: -128,
            act_max: 127,
        },
    };
    let slot_of = |change: fn(&mut Conv2dParams)| mote_tests::param_slot(base, change);
    let blob = valid_blobs().remove(1);
    let (conv, param_at) = first_conv_and_params(&blob);
    let with = |faults: &[(usize, i32)]| {
        let mut b = blob.clone();
        for &(p, v) in faults {
            let at = param_at(conv, p);
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        reseal(&mut b);
        match Model::parse(AlignedBytes::new(&b).as_slice()) {
            Err(Error::InvalidOperator { index, what }) if index == conv => what.to_string(),
            other => panic!("{:?}", other.map(|_| ())),
        }
    };
    let stride = (slot_of(|p| p.window.stride_h = 2), 0);
    let zero_point = (slot_of(|p| p.stage.output_offset = 1), 1000);
    let scratch = (SCRATCH_LEN, -4);
    assert_eq!(with(&[zero_point]), "zero point out of the int8 range");
    assert_eq!(with(&[scratch]), "negative scratch offset or length");
    assert_eq!(
        with(&[scratch, zero_point]),
        "zero point out of the int8 range"
    );
    assert_eq!(
        with(&[scratch, zero_point, stride]),
        "stride must be positive"
    );
}
