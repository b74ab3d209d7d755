//! The word-at-a-time copy, fill and table paths (`ops::bytes`, the RELU and PRELU tables) in
//! the emulated Cortex-M4: one-operator models whose sizes take every path (runs with and
//! without a word tail, odd element counts, the RELU table from 512 elements, PRELU's tables
//! per channel and shared) must print exactly what the host computes. The host runs the same
//! Rust, checked against the element-by-element definitions by the core tests; this catches
//! what only the thumb build could get wrong.

use mote_core::format::{DType, OpCode};
use mote_host::bench::{run, BenchCase};
use mote_host::builder::{Data, ModelBuilder, OpDef, Quantization, TensorDef, TfOptions};
use mote_tests::synth::Rng;

/// One operator: activation inputs (shapes), constant inputs, the output shape and scale.
struct Case {
    name: &'static str,
    op: OpCode,
    inputs: Vec<Vec<usize>>,
    constants: Vec<(Vec<usize>, Data)>,
    output: Vec<usize>,
    out_quant: (f32, i32),
    options: TfOptions,
}

impl Case {
    fn new(name: &'static str, op: OpCode, inputs: &[&[usize]], output: &[usize]) -> Self {
        Case {
            name,
            op,
            inputs: inputs.iter().map(|s| s.to_vec()).collect(),
            constants: Vec::new(),
            output: output.to_vec(),
            out_quant: IN_QUANT,
            options: TfOptions::default(),
        }
    }
    fn constant(mut self, shape: &[usize], data: Data) -> Self {
        self.constants.push((shape.to_vec(), data));
        self
    }
    fn out_quant(mut self, scale: f32, zero_point: i32) -> Self {
        self.out_quant = (scale, zero_point);
        self
    }
    fn options(mut self, f: impl FnOnce(&mut TfOptions)) -> Self {
        f(&mut self.options);
        self
    }

    fn model(&self) -> Vec<u8> {
        let mut b = ModelBuilder::new();
        let mut tensor = |shape: Vec<usize>, quant: Option<(f32, i32)>, data: Option<Data>| {
            let dtype = match data {
                Some(Data::I32(_)) => DType::I32,
                _ => DType::I8,
            };
            b.tensor(TensorDef {
                name: format!("t{}", b.tensors().len()),
                shape,
                dtype,
                quant: quant.map(|(s, z)| Quantization::per_tensor(s, z)),
                data,
            })
        };
        let inputs: Vec<_> = self
            .inputs
            .iter()
            .map(|s| tensor(s.clone(), Some(IN_QUANT), None))
            .collect();
        let mut operands = inputs.clone();
        for (shape, data) in &self.constants {
            let quant = matches!(data, Data::I8(_)).then_some(ALPHA_QUANT);
            operands.push(tensor(shape.clone(), quant, Some(data.clone())));
        }
        let output = tensor(self.output.clone(), Some(self.out_quant), None);
        b.op(OpDef::new(self.op, &operands, output, self.options));
        b.inputs(&inputs);
        b.outputs(&[output]);
        b.build()
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.name))
            .bytes
    }
}

const IN_QUANT: (f32, i32) = (0.05, -7);
const ALPHA_QUANT: (f32, i32) = (0.004, 3);

fn cases() -> Vec<Case> {
    let alpha = |n: usize| {
        Data::I8(
            (0..n)
                .map(|k| (k as i8).wrapping_mul(37).wrapping_sub(60))
                .collect(),
        )
    };
    vec![
        Case::new(
            "logistic, 693 elements",
            OpCode::Logistic,
            &[&[1, 9, 11, 7]],
            &[1, 9, 11, 7],
        )
        .out_quant(1.0 / 256.0, -128),
        Case::new(
            "leaky relu",
            OpCode::LeakyRelu,
            &[&[1, 5, 6, 7]],
            &[1, 5, 6, 7],
        )
        .out_quant(0.04, -30)
        .options(|o| o.alpha = 0.2),
        Case::new(
            "relu table",
            OpCode::Relu,
            &[&[1, 9, 11, 7]],
            &[1, 9, 11, 7],
        )
        .out_quant(0.03, -128),
        Case::new(
            "relu6 table",
            OpCode::Relu6,
            &[&[1, 9, 11, 7]],
            &[1, 9, 11, 7],
        ),
        Case::new(
            "prelu per channel",
            OpCode::Prelu,
            &[&[1, 10, 9, 5]],
            &[1, 10, 9, 5],
        )
        .constant(&[1, 1, 5], alpha(5))
        .out_quant(0.04, 2),
        Case::new(
            "prelu shared",
            OpCode::Prelu,
            &[&[1, 10, 9, 5]],
            &[1, 10, 9, 5],
        )
        .constant(&[1], alpha(1))
        .out_quant(0.06, -9),
        Case::new("pad rows", OpCode::Pad, &[&[1, 7, 9, 3]], &[1, 10, 13, 3])
            .constant(&[4, 2], Data::I32(vec![0, 0, 1, 2, 3, 1, 0, 0])),
        Case::new("pad channels", OpCode::Pad, &[&[1, 4, 5, 3]], &[1, 4, 7, 6])
            .constant(&[4, 2], Data::I32(vec![0, 0, 0, 0, 1, 1, 2, 1])),
        Case::new(
            "concat channels",
            OpCode::Concatenation,
            &[&[1, 5, 6, 21], &[1, 5, 6, 3]],
            &[1, 5, 6, 24],
        )
        .options(|o| o.axis = 3),
        Case::new(
            "concat rows",
            OpCode::Concatenation,
            &[&[1, 3, 6, 7], &[1, 4, 6, 7]],
            &[1, 7, 6, 7],
        )
        .options(|o| o.axis = 1),
        Case::new(
            "transpose",
            OpCode::Transpose,
            &[&[1, 6, 7, 13]],
            &[1, 7, 6, 13],
        )
        .constant(&[4], Data::I32(vec![0, 2, 1, 3])),
        Case::new(
            "depth to space",
            OpCode::DepthToSpace,
            &[&[1, 5, 6, 12]],
            &[1, 10, 12, 3],
        )
        .options(|o| o.block_size = 2),
        Case::new(
            "space to depth",
            OpCode::SpaceToDepth,
            &[&[1, 10, 12, 5]],
            &[1, 5, 6, 20],
        )
        .options(|o| o.block_size = 2),
    ]
}

#[test]
fn copies_and_tables_in_qemu_equal_the_host() {
    if !mote_host::qemu::qemu_available() {
        eprintln!("skipped: qemu-system-arm is not installed");
        return;
    }
    let mut rng = Rng::new(0x00c0_b1e5);
    for (seed, case) in cases().into_iter().enumerate() {
        let model = case.model();
        let lens: Vec<usize> = case.inputs.iter().map(|s| s.iter().product()).collect();
        let vector: usize = lens.iter().sum();
        let inputs: Vec<u8> = (0..3 * vector).map(|_| rng.next_u32() as u8).collect();
        // The host: the same kernels with the portable arithmetic.
        let expected = mote_host::tflite::infer(&model, &inputs).unwrap();
        let bench = BenchCase {
            name: format!("copies{seed}"),
            model,
            inputs,
            expected: Some(expected),
        };
        let result = run(&bench).unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        assert_eq!(
            result.bit_exact,
            Some(true),
            "{}: QEMU differs from the host",
            case.name
        );
    }
}
