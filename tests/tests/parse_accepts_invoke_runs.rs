//! A model `Model::parse` accepts cannot fail on a parameter at invoke: whatever a few bytes of
//! its tensor and operator records (or of its requantization constants and per-channel scales)
//! are changed to, with the CRC resealed, either parse refuses the blob or `invoke` returns Ok
//! on an arena of the size the model asks for, whatever the input.

use mote_core::format::{blob_crc, DType, Header, OpCode, OP_RECORD_LEN, TENSOR_RECORD_LEN};
use mote_core::ops::Activation;
use mote_core::{Error, Interpreter, Model};
use mote_host::builder::{ModelBuilder, OpDef, Quantization, TensorDef, TensorId, TfOptions};
use mote_host::AlignedBytes;
use mote_tests::golden;
use mote_tests::lowering::to_graph;
use mote_tests::synth::{ds_cnn, long_chain, Rng};
use std::ops::Range;

/// A valid blob and the byte ranges whose corruption the decoder must catch.
struct Target {
    name: String,
    bytes: Vec<u8>,
    /// Tensor and operator records.
    records: Range<usize>,
    /// Requantization constants and per-channel scales.
    constants: Vec<Range<usize>>,
}

impl Target {
    fn new(name: String, bytes: Vec<u8>) -> Self {
        let aligned = AlignedBytes::new(&bytes);
        let model = Model::parse(aligned.as_slice()).expect("a valid blob");
        let h = Header::read(&bytes).unwrap();
        let records =
            h.tensors_offset as usize..h.ops_offset as usize + h.op_count as usize * OP_RECORD_LEN;
        assert_eq!(
            h.ops_offset as usize,
            h.tensors_offset as usize + h.tensor_count as usize * TENSOR_RECORD_LEN
        );
        let mut constants = Vec::new();
        for k in 0..model.op_count() {
            let op = model.op(k).unwrap();
            if op.requant_count > 0 {
                let start = op.requant_offset as usize;
                constants.push(start..start + 8 * op.requant_count as usize);
            }
        }
        for t in 0..model.tensor_count() {
            let t = model.tensor(t).unwrap();
            if let Some(scales) = model.channel_scales(&t).unwrap() {
                let start = t.record.channel_scales as usize;
                constants.push(start..start + 4 * scales.len());
            }
        }
        Self {
            name,
            bytes,
            records,
            constants,
        }
    }
}

fn targets() -> Vec<Target> {
    let mut targets = Vec::new();
    for case in golden::load_all() {
        // Cases the builder refuses are covered by the golden tests.
        if let Ok(built) = to_graph(&case).to_builder().and_then(|b| b.build()) {
            targets.push(Target::new(case.name.clone(), built.bytes));
        }
    }
    for seed in 1..4 {
        let built = ds_cnn(seed, 9, 7, 5, 2, 4).build().unwrap();
        targets.push(Target::new(format!("ds_cnn seed {seed}"), built.bytes));
    }
    targets.push(Target::new(
        "long chain".into(),
        long_chain(40).build().unwrap().bytes,
    ));
    let kws = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mlperf/kws_ref_model.tflite"),
    )
    .unwrap();
    let kws = mote_host::tflite::import_tflite(&kws).unwrap();
    targets.push(Target::new("MLPerf KWS".into(), kws.bytes));
    targets
}

/// Recomputes the CRC over the blob's declared length, as the builder seals it.
fn reseal(blob: &mut [u8]) {
    let len = Header::read(blob).unwrap().blob_len as usize;
    let crc = blob_crc(&blob[..len.min(blob.len())]);
    blob[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Changes one byte (or the aligned 4-byte word around it) somewhere in `range`.
fn mutate(blob: &mut [u8], range: Range<usize>, rng: &mut Rng) -> String {
    let at = range.start + rng.below(range.len() as u32) as usize;
    match rng.below(4) {
        0 => {
            let bit = rng.below(8);
            blob[at] ^= 1 << bit;
            format!("byte {at} ^= 1 << {bit}")
        }
        1 => {
            let v = rng.next_u32() as u8;
            blob[at] = v;
            format!("byte {at} = {v}")
        }
        _ => {
            // A boundary value in the 32-bit field (or two 16-bit fields) around the byte.
            let at = at & !3;
            let old = i32::from_le_bytes(blob[at..at + 4].try_into().unwrap());
            let v = [
                0,
                1,
                -1,
                2,
                i32::MIN,
                i32::MAX,
                0xFFFF,
                0x8000,
                old.wrapping_add(1),
                old.wrapping_sub(1),
                old.wrapping_neg(),
                old.wrapping_mul(2),
                old >> 1,
                old ^ 0xFFFF,
                rng.next_u32() as i32,
            ][rng.below(15) as usize];
            blob[at..at + 4].copy_from_slice(&v.to_le_bytes());
            format!("word {at} = {v} (was {old})")
        }
    }
}

/// Fills every model input: random, or one value throughout (the worst case of a SOFTMAX row
/// and of a saturating sum), or the extremes alternating.
fn fill_inputs(interpreter: &mut Interpreter, rng: &mut Rng) {
    let pattern = rng.below(4);
    let value = rng.i8();
    for i in 0..interpreter.model().input_count() {
        let info = interpreter.input_info(i).unwrap();
        let mut next = |k: usize| match pattern {
            0 | 1 => rng.i8(),
            2 => value,
            _ => [i8::MIN, i8::MAX][k % 2],
        };
        match info.dtype() {
            DType::I8 => {
                for (k, x) in interpreter.input_i8(i).unwrap().iter_mut().enumerate() {
                    *x = next(k);
                }
            }
            DType::F32 => {
                for (k, x) in interpreter.input_f32(i).unwrap().iter_mut().enumerate() {
                    *x = f32::from(next(k)) * 0.37;
                }
            }
            _ => {
                for (k, x) in interpreter.input_bytes(i).unwrap().iter_mut().enumerate() {
                    *x = next(k) as u8;
                }
            }
        }
    }
}

#[test]
fn a_model_that_parses_runs() {
    let targets = targets();
    let mut rng = Rng::new(0x5EED_0001);
    let (mut accepted, mut refused) = (0usize, 0usize);
    let mut failures = Vec::new();
    let rounds = 120_000;
    for round in 0..rounds {
        // The KWS model is larger and slower to run: one round in 50.
        let target = match round % 50 {
            0 => &targets[targets.len() - 1],
            _ => &targets[rng.below(targets.len() as u32 - 1) as usize],
        };
        let mut blob = target.bytes.clone();
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let range = match rng.below(10) {
                0 if !target.constants.is_empty() => {
                    target.constants[rng.below(target.constants.len() as u32) as usize].clone()
                }
                _ => target.records.clone(),
            };
            what.push(mutate(&mut blob, range, &mut rng));
        }
        reseal(&mut blob);
        let aligned = AlignedBytes::new(&blob);
        let Ok(model) = Model::parse(aligned.as_slice()) else {
            refused += 1;
            continue;
        };
        accepted += 1;
        let mut arena = AlignedBytes::zeroed(model.arena_size());
        let mut interpreter = Interpreter::new(model, arena.as_mut_slice()).unwrap();
        fill_inputs(&mut interpreter, &mut rng);
        if let Err(e) = interpreter.invoke() {
            failures.push(format!("{} with {what:?}: {e}", target.name));
        }
    }
    println!(
        "{} models; {accepted} mutated blobs accepted and run, {refused} refused",
        targets.len()
    );
    assert!(
        failures.is_empty(),
        "{} accepted blobs failed at invoke:\n{}",
        failures.len(),
        failures[..failures.len().min(30)].join("\n")
    );
    // Both outcomes must be common, or the mutations are too weak or too strong to mean much.
    assert!(accepted > rounds / 10 && refused > rounds / 10);
}

/// A quantized int8 activation.
fn int8(b: &mut ModelBuilder, shape: &[usize], scale: f32, zero_point: i32) -> TensorId {
    b.tensor(TensorDef {
        name: format!("t{}", b.tensors().len()),
        shape: shape.to_vec(),
        dtype: DType::I8,
        quant: Some(Quantization::per_tensor(scale, zero_point)),
        data: None,
    })
}

/// SOFTMAX over rows of `depth`.
fn softmax_model(depth: usize) -> anyhow::Result<Vec<u8>> {
    let mut b = ModelBuilder::new();
    let x = int8(&mut b, &[1, depth], 0.1, 0);
    let y = int8(&mut b, &[1, depth], 1.0 / 256.0, -128);
    b.op(OpDef::new(OpCode::Softmax, &[x], y, TfOptions::default()));
    b.inputs(&[x]);
    b.outputs(&[y]);
    Ok(b.build()?.bytes)
}

fn parse(blob: &[u8]) -> Result<(), Error> {
    Model::parse(AlignedBytes::new(blob).as_slice()).map(|_| ())
}

/// Where field `at` of tensor `t`'s record, or parameter `p` of operator `k`, lies in `blob`.
fn tensor_field(blob: &[u8], t: u16, at: usize) -> usize {
    Header::read(blob).unwrap().tensors_offset as usize + t as usize * TENSOR_RECORD_LEN + at
}
fn op_param(blob: &[u8], k: u16, p: usize) -> usize {
    Header::read(blob).unwrap().ops_offset as usize + k as usize * OP_RECORD_LEN + 24 + 4 * p
}

fn with_word(blob: &[u8], at: usize, v: u32) -> Vec<u8> {
    let mut b = blob.to_vec();
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    reseal(&mut b);
    b
}

/// Each parameter a kernel would refuse at invoke is refused at parse instead.
#[test]
fn what_a_kernel_refuses_parse_refuses() {
    use mote_core::ops::softmax::SoftmaxParams;
    let refused_op = |b: &[u8]| matches!(parse(b), Err(Error::InvalidOperator { .. }));

    // SOFTMAX: a negative multiplier (the kernel refuses it) or a zero one (flat rows).
    let softmax = softmax_model(10).unwrap();
    parse(&softmax).unwrap();
    // The multiplier's slot, found through SOFTMAX's one encoding.
    let p = SoftmaxParams::from_scale(1.0, 0.1).unwrap();
    let slot = mote_tests::param_slot(p, |p| p.input_multiplier -= 1);
    let multiplier = op_param(&softmax, 0, slot);
    for m in [-1i32, 0, i32::MIN] {
        assert!(
            refused_op(&with_word(&softmax, multiplier, m as u32)),
            "{m}"
        );
    }

    // SOFTMAX rows: 511 equal values run, 512 make the kernel fail, so such a row is refused
    // (the builder says why, and a blob patched to it does not parse).
    let wide = softmax_model(511).unwrap();
    let aligned = AlignedBytes::new(&wide);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let mut interpreter = Interpreter::new(model, arena.as_mut_slice()).unwrap();
    interpreter.input_i8(0).unwrap().fill(7);
    interpreter.invoke().unwrap();
    let p = mote_core::ops::softmax::SoftmaxParams::from_scale(1.0, 0.1).unwrap();
    assert!(mote_core::ops::softmax::softmax_i8(&p, &[7; 512], &mut [0; 512], 512).is_err());
    let e = format!("{:#}", softmax_model(512).unwrap_err());
    assert!(e.contains("SOFTMAX over rows of 512"), "{e}");
    // Both tensors' last dimension and length to 512: the arena (two 512-byte slots) holds them.
    let mut patched = wide.clone();
    for t in 0..2 {
        for (at, v) in [(16, 512u32), (24, 512)] {
            let at = tensor_field(&wide, t, at);
            patched[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    reseal(&mut patched);
    assert!(refused_op(&patched), "{:?}", parse(&patched));

    // ADD: a multiplier shift above 0 (the kernel's multipliers are all below one).
    let add = golden_blob("add_two_scales_relu");
    let aligned = AlignedBytes::new(&add);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let k = (0..model.op_count())
        .find(|&k| model.op(k).unwrap().opcode == mote_core::format::OpCode::Add)
        .unwrap();
    let shift_at = model.op(k).unwrap().requant_offset as usize + 4;
    assert!(refused_op(&with_word(&add, shift_at, 1)));
    assert!(parse(&with_word(&add, shift_at, 0)).is_ok());

    // DEQUANTIZE: an input scale of zero (the kernel needs a positive one).
    let float_io = golden_blob("float_io_fc_12x6");
    let aligned = AlignedBytes::new(&float_io);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let k = (0..model.op_count())
        .find(|&k| model.op(k).unwrap().opcode == mote_core::format::OpCode::Dequantize)
        .unwrap();
    let input = model.op(k).unwrap().inputs[0];
    assert!(refused_op(&with_word(
        &float_io,
        tensor_field(&float_io, input, 28),
        0
    )));
}

/// Per-channel scales that are not positive and finite are refused with the tensor.
#[test]
fn bad_per_channel_scales_are_refused() {
    let blob = ds_cnn(1, 9, 7, 5, 2, 4).build().unwrap().bytes;
    let aligned = AlignedBytes::new(&blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let t = (0..model.tensor_count())
        .map(|t| model.tensor(t).unwrap())
        .find(|t| t.record.channel_scales != 0)
        .unwrap();
    let at = t.record.channel_scales as usize + 4;
    for bad in [f32::NAN, f32::INFINITY, 0.0, -0.0, -0.01] {
        let patched = with_word(&blob, at, bad.to_bits());
        assert!(
            matches!(parse(&patched), Err(Error::InvalidTensor { index, .. }) if index == t.index),
            "{bad}: {:?}",
            parse(&patched)
        );
    }
    assert!(parse(&with_word(&blob, at, 0.5f32.to_bits())).is_ok());
    // The axis is refused out of range even without per-channel scales.
    let plain = (0..model.tensor_count())
        .find(|&t| model.tensor(t).unwrap().record.channel_scales == 0)
        .unwrap();
    let mut axis = blob.clone();
    axis[tensor_field(&blob, plain, 2)] = 4;
    reseal(&mut axis);
    assert!(matches!(parse(&axis), Err(Error::InvalidTensor { .. })));
}

fn golden_blob(name: &str) -> Vec<u8> {
    let case = golden::load_case(name);
    to_graph(&case)
        .to_builder()
        .and_then(|b| b.build())
        .unwrap()
        .bytes
}

/// Parsing a model of 8,000 tensors is quick (the plan check sweeps the operators once), and
/// an overlap planted deep in it is still found.
#[test]
fn parse_scales_to_thousands_of_tensors() {
    let blob = long_chain(7999).build().unwrap().bytes;
    let aligned = AlignedBytes::new(&blob);
    let start = std::time::Instant::now();
    let model = Model::parse(aligned.as_slice()).unwrap();
    let took = start.elapsed();
    assert_eq!(model.tensor_count(), 8000);
    // Linear in the tensors, this is milliseconds; a check of every pair would take seconds.
    // The bound leaves room for a busy host.
    assert!(took.as_millis() < 1000, "{took:?}");

    // Operator 7000's output moved onto its input's bytes.
    let op = model.op(7000).unwrap();
    let input = model.tensor(op.inputs[0]).unwrap();
    let offset_at = tensor_field(&blob, op.output, 20);
    let overlapped = with_word(&blob, offset_at, input.record.offset);
    assert_eq!(
        parse(&overlapped),
        Err(Error::PlanOverlap {
            first: op.inputs[0],
            second: op.output
        })
    );
    // A RESHAPE's output planned onto its input is the one overlap allowed.
    assert_eq!(
        model.op(6998).unwrap().opcode,
        mote_core::format::OpCode::Reshape
    );
}

/// The plan check keeps the tensors live at one step in a fixed array: a model with more live
/// at once than it holds is refused, not checked partly.
#[test]
fn too_many_live_tensors_are_refused() {
    let build = |inputs: usize| {
        let mut b = ModelBuilder::new();
        let xs: Vec<_> = (0..inputs).map(|_| int8(&mut b, &[1, 4], 0.1, 0)).collect();
        let mut acc = xs[0];
        for &x in &xs[1..] {
            let y = int8(&mut b, &[1, 4], 0.1, 0);
            let options = TfOptions::fused(Activation::None);
            b.op(OpDef::new(OpCode::Add, &[acc, x], y, options));
            acc = y;
        }
        b.inputs(&xs);
        b.outputs(&[acc]);
        b.build()
    };
    // 31 inputs and the first sum are live at step 0.
    build(31).unwrap();
    let e = format!("{:#}", build(32).unwrap_err());
    assert!(e.contains("more arena tensors live at one step"), "{e}");
}
