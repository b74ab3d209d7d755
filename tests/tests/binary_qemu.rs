//! The same-shape ADD, SUB and MUL assembly loops (`core/src/ops/binary_fast.rs`,
//! `core/src/ops/sum_form.rs`) in the
//! emulated Cortex-M4: those operators on one input and random constant operands of its shape
//! (each layer's output a model output, so that no error is hidden by a later layer), the
//! input's shape, per channel (either operand) or a scalar, every activation, extreme zero points and scales, lengths that are and are not
//! multiples of four, long and short, run by the firmware in QEMU, must print exactly what the
//! host computes (the portable formulas, which the core's tests compare with the reference on
//! every pair of int8 values).

use mote_core::format::{DType, OpCode};
use mote_core::ops::Activation;
use mote_host::bench::{run, BenchCase};
use mote_host::builder::{Data, ModelBuilder, OpDef, Quantization, TensorDef, TfOptions};
use mote_tests::synth::Rng;

/// One layer: the operator, its constant's `(scale, zero point)`, its output's, and its fused
/// activation.
type Link = (OpCode, (f32, i32), (f32, i32), Activation);

/// How a layer's constant is shaped and placed.
#[derive(Clone, Copy)]
enum Form {
    /// The input's shape, second operand.
    Same,
    /// One value per channel (`[C]`), second operand.
    Channels,
    /// One value per channel, first operand.
    ChannelsFirst,
    /// One value (`[1]`), second operand.
    Scalar,
}

/// A model with outputs `op1(x, c1)`, `op2(x, c2)`, ... for the input `x` quantized as
/// `input`.
fn parallel(shape: &[usize], input: (f32, i32), links: &[(Link, Form)], rng: &mut Rng) -> Vec<u8> {
    let mut b = ModelBuilder::new();
    let tensor = |b: &mut ModelBuilder, shape: &[usize], (scale, zp): (f32, i32), data| {
        b.tensor(TensorDef {
            name: format!("t{}", b.tensors().len()),
            shape: shape.to_vec(),
            dtype: DType::I8,
            quant: Some(Quantization::per_tensor(scale, zp)),
            data,
        })
    };
    let x = tensor(&mut b, shape, input, None);
    let mut outputs = Vec::new();
    for &((op, constant, output, activation), form) in links {
        let c_shape = match form {
            Form::Same => shape.to_vec(),
            Form::Channels | Form::ChannelsFirst => vec![shape[shape.len() - 1]],
            Form::Scalar => vec![1],
        };
        let n: usize = c_shape.iter().product();
        let values = (0..n).map(|_| rng.int(-128, 127) as i8).collect();
        let c = tensor(&mut b, &c_shape, constant, Some(Data::I8(values)));
        let out = tensor(&mut b, shape, output, None);
        let ins = match form {
            Form::ChannelsFirst => [c, x],
            _ => [x, c],
        };
        b.op(OpDef::new(op, &ins, out, TfOptions::fused(activation)));
        outputs.push(out);
    }
    b.inputs(&[x]);
    b.outputs(&outputs);
    b.build().unwrap().bytes
}

#[test]
fn binary_loops_in_qemu_equal_the_host() {
    if !mote_host::qemu::qemu_available() {
        eprintln!("skipped: qemu-system-arm is not installed");
        return;
    }
    use Activation::{None as Linear, Relu, Relu6};
    use OpCode::{Add, Mul, Sub};
    // Power-of-two scales first: exact ties in the output rounding, on both signs.
    let links: [Link; 11] = [
        (Add, (0.0625, 3), (0.125, -2), Linear),
        (Mul, (0.25, -9), (0.5, 1), Linear),
        (Add, (0.02, 25), (0.03, 18), Linear),
        (Mul, (0.01, -128), (0.02, -1), Relu),
        (Sub, (0.05, 127), (0.04, -128), Linear),
        (Add, (0.04, -3), (0.06, 7), Relu6),
        (Mul, (0.3, 127), (0.05, 3), Linear),
        (Sub, (0.001, 0), (0.2, 100), Relu),
        (Mul, (0.02, 0), (0.0001, -20), Linear),
        (Add, (0.05, -128), (0.01, 0), Linear),
        (Mul, (0.4, 5), (0.03, -128), Relu6),
    ];
    let shapes: [&[usize]; 6] = [
        &[1, 24, 24, 8],
        &[1, 4, 6, 16],
        &[1, 1, 1, 1031],
        &[1, 3, 5, 7],
        &[1, 8, 9, 20],
        &[1, 7, 9, 18],
    ];
    let forms = [
        Form::Same,
        Form::Channels,
        Form::ChannelsFirst,
        Form::Scalar,
    ];
    let mut rng = Rng::new(0xB1_0A5E);
    for (i, (shape, form)) in shapes
        .into_iter()
        .flat_map(|s| forms.map(|f| (s, f)))
        .enumerate()
    {
        let links: Vec<(Link, Form)> = links.iter().map(|&l| (l, form)).collect();
        let model = parallel(shape, (0.0625, -7), &links, &mut rng);
        let in_len: usize = shape.iter().product();
        let inputs: Vec<u8> = (0..3 * in_len).map(|_| rng.next_u32() as u8).collect();
        // The host: the same kernels with the portable arithmetic.
        let expected = mote_host::tflite::infer(&model, &inputs).unwrap();
        let case = BenchCase {
            name: format!("binary{i}"),
            model,
            inputs,
            expected: Some(expected),
        };
        let result = run(&case).unwrap_or_else(|e| panic!("{shape:?}: {e:#}"));
        assert_eq!(
            result.bit_exact,
            Some(true),
            "{shape:?}: QEMU differs from the host"
        );
    }
}
