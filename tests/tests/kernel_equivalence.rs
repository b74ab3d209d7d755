//! The fast int8 kernels (`conv2d_i8`, `depthwise_conv2d_i8`, `fully_connected_i8`) against
//! their reference implementations (`*_reference`, TFLite-Micro's loops one multiply at a
//! time) on thousands of random shapes: odd and word-sized channel counts, 1x1 images, strides,
//! dilations, SAME/VALID and arbitrary padding, batches, both extremes of the zero points,
//! per-tensor and per-channel multipliers including degenerate ones (zero, huge biases, deep
//! shifts), and every activation range. Every output byte must match.
//!
//! On the host these run the portable versions of `ops::simd`; `qemu_kernels` below runs the
//! DSP assembly in the emulated Cortex-M4 on models built from the same kind of shapes.

use mote_core::geometry::{dilated_kernel, Axis};
use mote_core::ops::conv2d::{self, conv2d_i8, conv2d_i8_reference};
use mote_core::ops::depthwise_conv2d::{self, depthwise_conv2d_i8, depthwise_conv2d_i8_reference};
use mote_core::ops::fully_connected::{self, fully_connected_i8, fully_connected_i8_reference};
use mote_core::ops::{Int8Stage, Padding, Shape4, Tensor, TensorMut, Window};
use mote_core::quant::QuantizedMultiplier;
use mote_host::AlignedBytes;
use mote_tests::synth::Rng;

/// A kernel's scratch as the arena hands it over: word-aligned and holding stale bytes, so a
/// kernel that relied on zeroed scratch would differ from the reference.
fn garbage(len: usize) -> AlignedBytes {
    let mut scratch = AlignedBytes::zeroed(len);
    scratch.as_mut_slice().fill(0xA5);
    scratch
}

/// Whether a kernel wrote its scratch (an empty one counts: that kernel needs none).
fn used(scratch: &AlignedBytes) -> bool {
    let bytes = scratch.as_slice();
    bytes.is_empty() || bytes.iter().any(|&b| b != 0xA5)
}

/// The random draws the kernel cases need, on the tests' shared generator.
trait KernelDraws {
    fn i8s(&mut self, n: usize, zero_point: i8) -> Vec<i8>;
    fn stage(&mut self) -> Int8Stage;
    fn requant(&mut self, channels: usize) -> Vec<QuantizedMultiplier>;
    fn bias(&mut self, n: usize) -> Option<Vec<i32>>;
}

impl KernelDraws for Rng {
    /// Int8 values: uniform, or squeezed to one end (saturation), or mostly the zero point.
    fn i8s(&mut self, n: usize, zero_point: i8) -> Vec<i8> {
        let mode = self.next_u32() % 5;
        (0..n)
            .map(|_| match mode {
                0 => self.pick(&[-128, 127, -127, 126]),
                1 if self.next_u32() % 2 == 0 => zero_point,
                _ => self.int(-128, 127) as i8,
            })
            .collect()
    }
    /// Zero points at both extremes often; a ReLU-like, full or random activation range.
    fn stage(&mut self) -> Int8Stage {
        let input_offset = match self.next_u32() % 4 {
            0 => 128,
            1 => -127,
            _ => self.int(-127, 128) as i32,
        };
        let output_offset = match self.next_u32() % 3 {
            0 => -128,
            _ => self.int(-128, 127) as i32,
        };
        let (a, b) = (self.int(-128, 127) as i8, self.int(-128, 127) as i8);
        let (act_min, act_max) = match self.next_u32() % 4 {
            0 | 1 => (-128, 127),
            2 => (output_offset as i8, 127),
            _ => (a.min(b), a.max(b)),
        };
        Int8Stage {
            input_offset,
            output_offset,
            act_min,
            act_max,
        }
    }
    /// One multiplier, or one per channel; mostly realistic (2^-12 .. 2^1), some degenerate.
    fn requant(&mut self, channels: usize) -> Vec<QuantizedMultiplier> {
        let n = if self.next_u32() % 4 == 0 {
            1
        } else {
            channels
        };
        (0..n)
            .map(|_| match self.next_u32() % 10 {
                0 => QuantizedMultiplier {
                    multiplier: 0,
                    shift: 0,
                },
                1 => QuantizedMultiplier {
                    multiplier: self.int(1 << 30, i32::MAX as i64) as i32,
                    shift: self.int(-31, -20) as i32,
                },
                2 => QuantizedMultiplier {
                    multiplier: self.int(1 << 30, i32::MAX as i64) as i32,
                    shift: self.int(0, 3) as i32,
                },
                _ => {
                    let real = 2f64.powf(self.int(-12_000, 1_000) as f64 / 1000.0);
                    QuantizedMultiplier::from_f64(real).unwrap()
                }
            })
            .collect()
    }
    /// Biases: none, small, or the huge ones of dead channels.
    fn bias(&mut self, n: usize) -> Option<Vec<i32>> {
        match self.next_u32() % 5 {
            0 => None,
            1 => Some(
                (0..n)
                    .map(|_| match self.next_u32() % 3 {
                        0 => self.pick(&[1 << 30, -(1 << 30), i32::MAX, i32::MIN]),
                        _ => self.int(-30_000, 30_000) as i32,
                    })
                    .collect(),
            ),
            _ => Some((0..n).map(|_| self.int(-30_000, 30_000) as i32).collect()),
        }
    }
}

/// One random spatial axis: SAME, VALID, or any padding and output the kernels accept.
fn random_axis(rng: &mut Rng, max_input: usize, max_kernel: usize) -> Axis {
    let input = rng.size(1, max_input);
    let r0 = rng.size(1, max_kernel);
    let kernel = rng.pick(&[1, 1, 3, 3, 3, r0]);
    let r0 = rng.size(1, 3);
    let stride = rng.pick(&[1, 1, 2, r0]);
    let dilation = rng.pick(&[1, 1, 1, 2]);
    let dilated = dilated_kernel(kernel, dilation).unwrap();
    let mode = rng.next_u32() % 4;
    let padding = if mode == 1 && input >= dilated {
        Padding::Valid
    } else {
        Padding::Same
    };
    let mut axis = Axis::new(padding, input, kernel, stride, dilation).unwrap();
    if mode == 3 {
        axis.pad = rng.size(0, dilated - 1);
        axis.output = rng.size(1, axis.max_output().unwrap());
    }
    axis
}

fn elements(s: Shape4) -> usize {
    s.elements().unwrap()
}

/// One convolution through the fast kernel (on stale scratch) and the reference.
struct ConvRun {
    /// The fast kernel's and the reference's results.
    results: [Result<(), mote_core::Error>; 2],
    /// Their outputs.
    outputs: [Vec<i8>; 2],
    /// Whether the fast kernel ran (it wrote its scratch).
    fast: bool,
}

fn run_conv(
    w: &Window,
    st: &Int8Stage,
    (is, input): (Shape4, &[i8]),
    (fs, filter): (Shape4, &[i8]),
    (bias, rq): (Option<&[i32]>, &[QuantizedMultiplier]),
    os: Shape4,
) -> ConvRun {
    let (mut got, mut want) = (vec![0i8; elements(os)], vec![1i8; elements(os)]);
    let i = Tensor {
        data: input,
        shape: is,
    };
    let f = Tensor {
        data: filter,
        shape: fs,
    };
    let mut scratch = garbage(conv2d::scratch_bytes(st, &f, bias, rq, os));
    let o = TensorMut {
        data: &mut got[..],
        shape: os,
    };
    let r1 = conv2d_i8(w, st, i, f, bias, rq, o, scratch.as_mut_slice());
    let o = TensorMut {
        data: &mut want[..],
        shape: os,
    };
    let r2 = conv2d_i8_reference(w, st, i, f, bias, rq, o);
    ConvRun {
        results: [r1, r2],
        outputs: [got, want],
        fast: used(&scratch),
    }
}

#[test]
fn conv2d_fast_equals_reference() {
    let mut rng = Rng::new(0x9abc_def1);
    let mut outputs = 0;
    // Cases the fast kernel ran (it wrote its scratch), of those that succeeded.
    let (mut fast, mut ok) = (0, 0);
    for case in 0..3000 {
        let (y, x) = (random_axis(&mut rng, 9, 5), random_axis(&mut rng, 9, 5));
        let n = rng.pick(&[1, 1, 1, 2, 3]);
        let r0 = rng.size(1, 40);
        let in_c = rng.pick(&[1, 2, 3, 4, 5, 8, 12, 16, 17, 32, r0]);
        let r0 = rng.size(1, 70);
        let out_c = rng.pick(&[1, 2, 3, 4, 7, 8, 16, 33, r0]);
        let st = rng.stage();
        let is = Shape4::new(n, y.input, x.input, in_c);
        let fs = Shape4::new(out_c, y.kernel, x.kernel, in_c);
        let os = Shape4::new(n, y.output, x.output, out_c);
        let input = rng.i8s(elements(is), (-st.input_offset) as i8);
        let filter = rng.i8s(elements(fs), 0);
        let (bias, rq) = (rng.bias(out_c), rng.requant(out_c));
        let w = Window::from_axes(&y, &x);
        let run = run_conv(
            &w,
            &st,
            (is, &input),
            (fs, &filter),
            (bias.as_deref(), &rq),
            os,
        );
        let [r1, r2] = run.results;
        fast += usize::from(r1.is_ok() && run.fast);
        ok += usize::from(r1.is_ok());
        assert_eq!(r1, r2, "case {case}");
        let [got, want] = run.outputs;
        assert_eq!(
            got, want,
            "case {case}: {y:?} {x:?} n {n} in_c {in_c} out_c {out_c} {st:?}"
        );
        outputs += got.len();
    }
    assert!(outputs > 100_000, "{outputs}");
    assert!(
        fast * 10 >= ok * 7,
        "the fast kernel ran in only {fast} of {ok} cases"
    );
}

/// Long windows (more taps than one column slice holds) and large channel counts.
#[test]
fn conv2d_long_windows_equal_reference() {
    let mut rng = Rng::new(0x0bad_5eed);
    for case in 0..60 {
        let (k, in_c) = rng.pick(&[(3, 64), (3, 72), (1, 600), (5, 25), (3, 33), (2, 150)]);
        let (y, x) = (
            Axis {
                input: rng.size(1, 6),
                kernel: k,
                stride: 1,
                dilation: 1,
                pad: k / 2,
                output: 0,
            },
            Axis {
                input: rng.size(1, 6),
                kernel: k,
                stride: rng.size(1, 2),
                dilation: 1,
                pad: k / 2,
                output: 0,
            },
        );
        let y = Axis {
            output: (y.input + y.pad).div_ceil(y.stride).min(y.input),
            ..y
        };
        let x = Axis {
            output: (x.input + x.pad).div_ceil(x.stride).min(x.input),
            ..x
        };
        let out_c = rng.pick(&[1, 5, 64, 65]);
        let st = rng.stage();
        let is = Shape4::new(1, y.input, x.input, in_c);
        let fs = Shape4::new(out_c, k, k, in_c);
        let os = Shape4::new(1, y.output, x.output, out_c);
        let input = rng.i8s(elements(is), (-st.input_offset) as i8);
        let filter = rng.i8s(elements(fs), 0);
        let (bias, rq) = (rng.bias(out_c), rng.requant(out_c));
        let w = Window::from_axes(&y, &x);
        let run = run_conv(
            &w,
            &st,
            (is, &input),
            (fs, &filter),
            (bias.as_deref(), &rq),
            os,
        );
        assert_eq!(run.results, [Ok(()), Ok(())], "case {case}");
        let [got, want] = run.outputs;
        assert_eq!(
            got, want,
            "case {case}: k {k} in_c {in_c} out_c {out_c} {y:?} {x:?}"
        );
    }
}

#[test]
fn depthwise_fast_equals_reference() {
    let mut rng = Rng::new(0x1357_2468);
    let mut outputs = 0;
    // Cases the fast kernel ran (it wrote its scratch), of those that succeeded.
    let (mut fast, mut ok) = (0, 0);
    for case in 0..4000 {
        let (y, x) = (random_axis(&mut rng, 12, 5), random_axis(&mut rng, 12, 5));
        let n = rng.pick(&[1, 1, 2]);
        let r0 = rng.size(1, 12);
        let r1 = rng.size(1, 9);
        let in_c = rng.pick(&[4, 8, 16, 64, 4 * r0, r1]);
        let dm = rng.pick(&[1, 1, 1, 1, 2, 3]);
        let out_c = in_c * dm;
        let st = rng.stage();
        let is = Shape4::new(n, y.input, x.input, in_c);
        let fs = Shape4::new(1, y.kernel, x.kernel, out_c);
        let os = Shape4::new(n, y.output, x.output, out_c);
        let input = rng.i8s(elements(is), (-st.input_offset) as i8);
        let filter = rng.i8s(elements(fs), 0);
        let (bias, rq) = (rng.bias(out_c), rng.requant(out_c));
        let w = Window::from_axes(&y, &x);
        let (mut got, mut want) = (vec![0i8; elements(os)], vec![1i8; elements(os)]);
        let (i, f) = (
            Tensor {
                data: &input[..],
                shape: is,
            },
            Tensor {
                data: &filter[..],
                shape: fs,
            },
        );
        let o = TensorMut {
            data: &mut got[..],
            shape: os,
        };
        let mut scratch = garbage(depthwise_conv2d::scratch_bytes(&w, dm, is, fs, os));
        let r1 = depthwise_conv2d_i8(
            &w,
            dm,
            &st,
            i,
            f,
            bias.as_deref(),
            &rq,
            o,
            scratch.as_mut_slice(),
        );
        fast += usize::from(r1.is_ok() && used(&scratch));
        ok += usize::from(r1.is_ok());
        let o = TensorMut {
            data: &mut want[..],
            shape: os,
        };
        let r2 = depthwise_conv2d_i8_reference(&w, dm, &st, i, f, bias.as_deref(), &rq, o);
        assert_eq!(r1, r2, "case {case}");
        assert_eq!(
            got, want,
            "case {case}: {y:?} {x:?} n {n} c {in_c} dm {dm} {st:?}"
        );
        outputs += got.len();
    }
    assert!(outputs > 100_000, "{outputs}");
    assert!(
        fast * 10 >= ok * 7,
        "the fast kernel ran in only {fast} of {ok} cases"
    );
}

#[test]
fn fully_connected_fast_equals_reference() {
    let mut rng = Rng::new(0x1234_4321);
    // Cases the fast kernel ran (it wrote its scratch), of those that succeeded.
    let (mut fast, mut ok) = (0, 0);
    for case in 0..3000 {
        let r0 = rng.size(1, 300);
        let in_f = rng.pick(&[1, 3, 4, 8, 27, 64, 128, 640, r0, 2000]);
        let r0 = rng.size(1, 70);
        let out_f = rng.pick(&[1, 2, 3, 4, 5, 8, 10, 128, r0]);
        let rows = rng.pick(&[1, 1, 1, 2, 5]);
        let st = rng.stage();
        let is = Shape4::new(rows, 1, 1, in_f);
        let ws = Shape4::new(out_f, 1, 1, in_f);
        let os = Shape4::new(rows, 1, 1, out_f);
        let input = rng.i8s(elements(is), (-st.input_offset) as i8);
        let weights = rng.i8s(elements(ws), 0);
        let (bias, rq) = (rng.bias(out_f), rng.requant(out_f));
        let (mut got, mut want) = (vec![0i8; elements(os)], vec![1i8; elements(os)]);
        let (i, w) = (
            Tensor {
                data: &input[..],
                shape: is,
            },
            Tensor {
                data: &weights[..],
                shape: ws,
            },
        );
        let o = TensorMut {
            data: &mut got[..],
            shape: os,
        };
        let mut scratch = garbage(fully_connected::scratch_bytes(
            &st,
            ws,
            bias.as_deref(),
            &rq,
        ));
        let r1 = fully_connected_i8(&st, i, w, bias.as_deref(), &rq, o, scratch.as_mut_slice());
        fast += usize::from(r1.is_ok() && used(&scratch));
        ok += usize::from(r1.is_ok());
        let o = TensorMut {
            data: &mut want[..],
            shape: os,
        };
        let r2 = fully_connected_i8_reference(&st, i, w, bias.as_deref(), &rq, o);
        assert_eq!(r1, r2, "case {case}");
        assert_eq!(
            got, want,
            "case {case}: rows {rows} in {in_f} out {out_f} {st:?}"
        );
    }
    assert!(
        fast * 10 >= ok * 7,
        "the fast kernel ran in only {fast} of {ok} cases"
    );
}

/// The DSP assembly itself, in the emulated Cortex-M4: one-operator models whose shapes take
/// every fast path (1x1 and gathered windows, word and byte gathers, odd pixel and channel
/// counts, a window's last partial group, long windows, constant and slow channels, the
/// general output stage; the depthwise ring and its assembly rows; both fully connected
/// paths), run by the firmware in QEMU, must print exactly what the host computes.
#[test]
fn assembly_kernels_in_qemu_equal_the_host() {
    use mote_core::format::DType;
    use mote_core::format::OpCode;
    use mote_core::ops::Activation;
    use mote_host::bench::{run, BenchCase};
    use mote_host::builder::{Data, ModelBuilder, OpDef, Quantization, TensorDef, TfOptions};

    if !mote_host::qemu::qemu_available() {
        eprintln!("skipped: qemu-system-arm is not installed");
        return;
    }
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Conv {
            k: usize,
            stride: usize,
            dilation: usize,
            same: bool,
        },
        Depthwise {
            k: usize,
            stride: usize,
            dm: usize,
            same: bool,
        },
        Fc,
    }
    // (name, op, input [h, w, c], output channels, activation, output zero point, dead biases)
    let cases = [
        (
            "conv 1x1, odd pixels and channels",
            Op::Conv {
                k: 1,
                stride: 1,
                dilation: 1,
                same: false,
            },
            [5, 3, 16],
            7,
            Activation::Relu,
            -128,
            false,
        ),
        (
            "conv 3x3 SAME, word gather",
            Op::Conv {
                k: 3,
                stride: 1,
                dilation: 1,
                same: true,
            },
            [6, 5, 8],
            12,
            Activation::None,
            3,
            false,
        ),
        (
            "conv 3x3/2, 3 channels, tail group",
            Op::Conv {
                k: 3,
                stride: 2,
                dilation: 1,
                same: true,
            },
            [9, 9, 3],
            8,
            Activation::Relu6,
            -128,
            false,
        ),
        (
            "conv 3x3 dilation 2",
            Op::Conv {
                k: 3,
                stride: 1,
                dilation: 2,
                same: true,
            },
            [7, 6, 4],
            5,
            Activation::Relu,
            -20,
            false,
        ),
        (
            "conv 3x3, 72 channels: long windows",
            Op::Conv {
                k: 3,
                stride: 1,
                dilation: 1,
                same: true,
            },
            [4, 4, 72],
            9,
            Activation::None,
            0,
            false,
        ),
        (
            "conv 1x1 with dead channels",
            Op::Conv {
                k: 1,
                stride: 2,
                dilation: 1,
                same: false,
            },
            [6, 6, 32],
            16,
            Activation::Relu,
            -128,
            true,
        ),
        (
            "depthwise 3x3 SAME",
            Op::Depthwise {
                k: 3,
                stride: 1,
                dm: 1,
                same: true,
            },
            [7, 5, 16],
            16,
            Activation::Relu,
            -128,
            false,
        ),
        (
            "depthwise 3x3/2, restricted range",
            Op::Depthwise {
                k: 3,
                stride: 2,
                dm: 1,
                same: true,
            },
            [8, 9, 12],
            12,
            Activation::Relu6,
            -5,
            false,
        ),
        (
            "depthwise 3x3 VALID, dead channels",
            Op::Depthwise {
                k: 3,
                stride: 1,
                dm: 1,
                same: false,
            },
            [5, 6, 8],
            8,
            Activation::None,
            0,
            true,
        ),
        (
            "depthwise 5x5",
            Op::Depthwise {
                k: 5,
                stride: 1,
                dm: 1,
                same: true,
            },
            [6, 6, 4],
            4,
            Activation::Relu,
            -128,
            false,
        ),
        (
            "depthwise multiplier 2",
            Op::Depthwise {
                k: 3,
                stride: 1,
                dm: 2,
                same: true,
            },
            [4, 4, 3],
            6,
            Activation::None,
            1,
            false,
        ),
        (
            "fully connected 128 -> 10",
            Op::Fc,
            [1, 1, 128],
            10,
            Activation::None,
            5,
            false,
        ),
        (
            "fully connected 27 -> 7",
            Op::Fc,
            [1, 1, 27],
            7,
            Activation::Relu,
            -128,
            false,
        ),
        (
            "fully connected 700 -> 6",
            Op::Fc,
            [1, 1, 700],
            6,
            Activation::None,
            -3,
            true,
        ),
    ];
    let mut rng = Rng::new(0x7e57_0001);
    for (seed, (name, op, [h, w, c], oc, activation, zp, dead)) in cases.into_iter().enumerate() {
        let mut b = ModelBuilder::new();
        let tensor = |b: &mut ModelBuilder, shape: Vec<usize>, quant, data| {
            b.tensor(TensorDef {
                name: format!("t{}", b.tensors().len()),
                shape,
                dtype: if matches!(data, Some(Data::I32(_))) {
                    DType::I32
                } else {
                    DType::I8
                },
                quant,
                data,
            })
        };
        let in_scale = 0.05;
        let input = tensor(
            &mut b,
            vec![1, h, w, c],
            Some(Quantization::per_tensor(in_scale, -7)),
            None,
        );
        let (k, taps) = match op {
            Op::Conv { k, .. } => (k, k * k * c),
            Op::Depthwise { k, .. } => (k, k * k),
            Op::Fc => (1, c),
        };
        let (wshape, axis, channels) = match op {
            Op::Conv { .. } => (vec![oc, k, k, c], 0, oc),
            Op::Depthwise { .. } => (vec![1, k, k, oc], 3, oc),
            Op::Fc => (vec![oc, c], 0, 1),
        };
        let scales: Vec<f32> = (0..channels)
            .map(|_| 0.002 + (rng.next_u32() % 1000) as f32 * 2e-5)
            .collect();
        let n: usize = wshape.iter().product();
        let weights = (0..n).map(|_| rng.int(-128, 127) as i8).collect();
        let wq = Quantization {
            zero_points: vec![0; channels],
            scales,
            axis,
        };
        let filter = tensor(&mut b, wshape, Some(wq), Some(Data::I8(weights)));
        let biases = (0..oc)
            .map(|i| {
                if dead && i % 3 == 1 {
                    [1 << 30, -(1 << 30)][i % 2]
                } else {
                    rng.int(-3000, 3000) as i32
                }
            })
            .collect();
        let bias = tensor(&mut b, vec![oc], None, Some(Data::I32(biases)));
        let out_scale = in_scale * 0.01 * (taps as f32).sqrt() * 2.0;
        let out_q = Some(Quantization::per_tensor(out_scale, zp));
        let padding = |same| if same { Padding::Same } else { Padding::Valid };
        let size = |n: usize, same: bool, stride: usize, eff: usize| {
            if same {
                n.div_ceil(stride)
            } else {
                (n - eff) / stride + 1
            }
        };
        let output = match op {
            Op::Conv {
                k,
                stride,
                dilation,
                same,
            } => {
                let eff = (k - 1) * dilation + 1;
                let shape = vec![
                    1,
                    size(h, same, stride, eff),
                    size(w, same, stride, eff),
                    oc,
                ];
                let output = tensor(&mut b, shape, out_q, None);
                let geometry = (padding(same), (stride, stride), (dilation, dilation));
                let options = TfOptions::conv(geometry.0, geometry.1, geometry.2, activation);
                b.op(OpDef::new(
                    OpCode::Conv2d,
                    &[input, filter, bias],
                    output,
                    options,
                ));
                output
            }
            Op::Depthwise {
                k,
                stride,
                dm,
                same,
            } => {
                // The multiplier is not written: lowering derives it from the channels.
                assert_eq!(oc, c * dm, "{name}: output channels");
                let shape = vec![1, size(h, same, stride, k), size(w, same, stride, k), oc];
                let output = tensor(&mut b, shape, out_q, None);
                let options = TfOptions::conv(padding(same), (stride, stride), (1, 1), activation);
                let op = OpDef::new(
                    OpCode::DepthwiseConv2d,
                    &[input, filter, bias],
                    output,
                    options,
                );
                b.op(op);
                output
            }
            Op::Fc => {
                let output = tensor(&mut b, vec![1, oc], out_q, None);
                let flat = tensor(
                    &mut b,
                    vec![1, c],
                    Some(Quantization::per_tensor(in_scale, -7)),
                    None,
                );
                b.op(OpDef::new(
                    OpCode::Reshape,
                    &[input],
                    flat,
                    TfOptions::default(),
                ));
                let options = TfOptions::fused(activation);
                b.op(OpDef::new(
                    OpCode::FullyConnected,
                    &[flat, filter, bias],
                    output,
                    options,
                ));
                output
            }
        };
        b.inputs(&[input]);
        b.outputs(&[output]);
        let model = b.build().unwrap_or_else(|e| panic!("{name}: {e:#}")).bytes;
        // `MOTE_FUZZ_SEEDS=dir` keeps each model there: seeds for fuzz/ (see its README).
        if let Some(dir) = std::env::var_os("MOTE_FUZZ_SEEDS") {
            let path = std::path::Path::new(&dir).join(format!("asm-case{seed}.mote"));
            std::fs::write(path, &model).unwrap();
        }
        let in_len = h * w * c;
        let inputs: Vec<u8> = (0..3 * in_len).map(|_| rng.next_u32() as u8).collect();
        // The host: the same kernels with the portable arithmetic.
        let expected = mote_host::tflite::infer(&model, &inputs).unwrap();
        let case = BenchCase {
            name: format!("case{seed}"),
            model,
            inputs,
            expected: Some(expected),
        };
        let result = run(&case).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(
            result.bit_exact,
            Some(true),
            "{name}: QEMU differs from the host"
        );
    }
}

/// The DSP assembly on seeded random cases, in the emulated Cortex-M4: 50 convolutions, 50
/// depthwise convolutions and 50 fully connected layers, each with random shapes (odd and
/// word-sized channel counts, 1x1 to 9x9 images, kernels 1 to 5, strides, dilations, SAME and
/// VALID), random input and output zero points, random per-channel weight scales (so random
/// multipliers and shifts, some degenerate), random biases (some dead channels) and
/// activations. The layers are independent branches of six models of 25 (the three kernels
/// in turn), so six firmware builds and QEMU runs cover them; every output byte must be the
/// host's (the portable kernels). `MOTE_ASM_SEED=n` draws other cases.
#[test]
fn assembly_kernels_on_random_cases_in_qemu_equal_the_host() {
    use mote_core::format::{DType, OpCode};
    use mote_core::ops::Activation;
    use mote_host::builder::{Data, ModelBuilder, OpDef, Quantization, TensorDef, TfOptions};
    use mote_host::qemu::run_elf;
    use mote_host::report::FirmwareReport;
    use std::sync::Mutex;

    /// One firmware build at a time in the shared target directory.
    static BUILD_LOCK: Mutex<()> = Mutex::new(());
    if !mote_host::qemu::qemu_available() {
        eprintln!("skipped: qemu-system-arm is not installed");
        return;
    }
    let mut qemu_time = std::time::Duration::ZERO;
    let (mut paths, mut references) = (std::collections::BTreeSet::new(), false);
    const PER_KERNEL: usize = 50;
    let seed = std::env::var("MOTE_ASM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0a5e_2026u32);
    let mut rng = Rng::new(seed);
    let tensor = |b: &mut ModelBuilder, shape: Vec<usize>, quant, data: Option<Data>| {
        let dtype = if matches!(data, Some(Data::I32(_))) {
            DType::I32
        } else {
            DType::I8
        };
        b.tensor(TensorDef {
            name: format!("t{}", b.tensors().len()),
            shape,
            dtype,
            quant,
            data,
        })
    };
    // The runtime keeps at most 32 arena tensors live at once, and every branch's input and
    // output is a model edge: 25 branches a model (6 builds of one firmware, one QEMU run each).
    let all: Vec<usize> = (0..3 * PER_KERNEL).collect();
    for group in all.chunks(25) {
        let mut b = ModelBuilder::new();
        let (mut inputs, mut outputs, mut cases) = (Vec::new(), Vec::new(), Vec::new());
        let mut in_bytes = 0;
        for &case in group {
            let kernel = case % 3; // 0 conv, 1 depthwise, 2 fully connected
            let activation = rng.pick(&[Activation::None, Activation::Relu, Activation::Relu6]);
            let (zp_a, zp_b) = (rng.int(-128, 127) as i32, rng.int(-128, 127) as i32);
            let in_zp = rng.pick(&[-128, 127, 0, zp_a]);
            let out_zp = rng.pick(&[-128, 0, zp_b]);
            let in_scale = 2f32.powf(rng.int(-9_000, 0) as f32 / 1000.0);
            let (small, large) = (rng.size(1, 40), rng.size(1, 800));
            let c = if kernel == 2 {
                rng.pick(&[small, large, 128, 27])
            } else {
                let tiny = rng.size(1, 9);
                rng.pick(&[tiny, small, 4, 8, 16, 3])
            };
            let (h, w) = if kernel == 2 {
                (1, 1)
            } else {
                (rng.size(1, 9), rng.size(1, 9))
            };
            let any_k = rng.size(1, 5);
            let k = if kernel == 2 {
                1
            } else {
                rng.pick(&[1, 3, 3, any_k])
            };
            let stride = if kernel == 2 {
                1
            } else {
                rng.pick(&[1, 1, 2, 3])
            };
            let dilation = if kernel == 0 {
                rng.pick(&[1, 1, 1, 2])
            } else {
                1
            };
            let eff = (k - 1) * dilation + 1;
            let same = rng.next_u32() % 2 == 0 || h < eff || w < eff;
            let dm = if kernel == 1 {
                rng.pick(&[1, 1, 1, 2])
            } else {
                1
            };
            // A third of the depthwise layers are H x 1 maps with k x 1 kernels (the column
            // kernel): up to 15 taps, dilated or not, word-sized channel counts.
            let column = kernel == 1 && rng.next_u32() % 3 == 0;
            let (h, w, c, dm) = if column {
                (rng.size(1, 30), 1, rng.pick(&[4, 8, 16, 40]), 1)
            } else {
                (h, w, c, dm)
            };
            let any_tall = rng.size(1, 15);
            let (kh, kw, dil_h) = if column {
                (rng.pick(&[3, 5, 10, 15, any_tall]), 1, rng.pick(&[1, 1, 2]))
            } else {
                (k, k, dilation)
            };
            let (eff_h, eff_w) = ((kh - 1) * dil_h + 1, (kw - 1) * dilation + 1);
            let same = if column {
                rng.next_u32() % 2 == 0 || h < eff_h
            } else {
                same
            };
            let any_oc = rng.size(1, 20);
            let oc = match kernel {
                0 => rng.pick(&[any_oc, 8, 16, 7]),
                1 => c * dm,
                _ => rng.size(1, 16),
            };
            let in_shape = if kernel == 2 {
                vec![1, c]
            } else {
                vec![1, h, w, c]
            };
            let input = tensor(
                &mut b,
                in_shape,
                Some(Quantization::per_tensor(in_scale, in_zp)),
                None,
            );
            let (wshape, axis, channels, taps) = match kernel {
                0 => (vec![oc, k, k, c], 0, oc, k * k * c),
                1 => (vec![1, kh, kw, oc], 3, oc, kh * kw),
                _ => (vec![oc, c], 0, rng.pick(&[1, oc]), c),
            };
            let scales: Vec<f32> = (0..channels)
                .map(|_| 2f32.powf(rng.int(-12_000, -4_000) as f32 / 1000.0))
                .collect();
            let n: usize = wshape.iter().product();
            let weights = (0..n).map(|_| rng.int(-127, 127) as i8).collect();
            let wq = Quantization {
                zero_points: vec![0; channels],
                scales,
                axis,
            };
            let filter = tensor(&mut b, wshape, Some(wq), Some(Data::I8(weights)));
            let dead = rng.next_u32() % 4 == 0;
            let biases = (0..oc)
                .map(|i| {
                    if dead && i % 3 == 1 {
                        [1 << 30, -(1 << 30)][i % 2]
                    } else {
                        rng.int(-5000, 5000) as i32
                    }
                })
                .collect();
            let bias = tensor(&mut b, vec![oc], None, Some(Data::I32(biases)));
            // Around the layer's typical range, give or take a factor of 8 (saturation included).
            let typical = in_scale * 2f32.powf(-8.0) * 64.0 * (taps as f32).sqrt();
            let out_scale = typical * 2f32.powf(rng.int(-3_000, 3_000) as f32 / 1000.0);
            let out_q = Some(Quantization::per_tensor(out_scale, out_zp));
            let padding = if same { Padding::Same } else { Padding::Valid };
            let size = |n: usize, eff: usize| {
                if same {
                    n.div_ceil(stride)
                } else {
                    (n - eff) / stride + 1
                }
            };
            let (opcode, out_shape, options) = match kernel {
                0 => (
                    OpCode::Conv2d,
                    vec![1, size(h, eff), size(w, eff), oc],
                    TfOptions::conv(padding, (stride, stride), (dilation, dilation), activation),
                ),
                1 => (
                    OpCode::DepthwiseConv2d,
                    vec![1, size(h, eff_h), size(w, eff_w), oc],
                    TfOptions::conv(padding, (stride, stride), (dil_h, 1), activation),
                ),
                _ => (
                    OpCode::FullyConnected,
                    vec![1, oc],
                    TfOptions::fused(activation),
                ),
            };
            let output = tensor(&mut b, out_shape, out_q, None);
            b.op(OpDef::new(opcode, &[input, filter, bias], output, options));
            inputs.push(input);
            outputs.push(output);
            in_bytes += h * w * c;
            cases.push(format!(
                "case {case}: kernel {kernel} in {h}x{w}x{c} zp {in_zp} -> {oc} zp {out_zp}, \
                 k {kh}x{kw} stride {stride} dilation {dil_h} dm {dm} same {same} {activation:?}"
            ));
        }
        b.inputs(&inputs);
        b.outputs(&outputs);
        let model = b.build().unwrap_or_else(|e| panic!("{e:#}")).bytes;
        let vectors = 2;
        let data: Vec<u8> = (0..vectors * in_bytes)
            .map(|_| rng.next_u32() as u8)
            .collect();
        let expected = mote_host::tflite::infer(&model, &data).unwrap();
        let aligned = AlignedBytes::new(&model);
        let parsed = mote_core::Model::parse(aligned.as_slice()).unwrap();
        paths.extend(parsed.kernel_paths().unwrap().map(|p| format!("{p:?}")));
        references |= parsed.needs_reference_kernels().unwrap();
        // Every group runs on one firmware configuration (all operators and kernel paths),
        // so mote-core is compiled once and each group only relinks the firmware.
        let dir = std::env::temp_dir().join(format!(
            "mote-random-asm-{}-{}",
            std::process::id(),
            group[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.mote"), &model).unwrap();
        std::fs::write(dir.join("test_inputs.i8"), &data).unwrap();
        let elf = {
            let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let elf = mote_host::firmware::build_with_features(
                "qemu",
                &[("MOTE_MODEL_DIR", dir.to_str().unwrap())],
            )
            .unwrap();
            let copy = dir.join("firmware.elf");
            std::fs::copy(&elf, &copy).unwrap();
            copy
        };
        let started = std::time::Instant::now();
        let qemu = run_elf(&elf, std::time::Duration::from_secs(120), |_| {}).unwrap();
        qemu_time += started.elapsed();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            qemu.success(),
            "exit {}: {:?}",
            qemu.exit_code,
            qemu.log.last()
        );
        let got = FirmwareReport::from_log(&qemu.log).unwrap().output_bytes();
        if got != expected {
            // Name the first layer that differs.
            let mut at = 0;
            for _ in 0..vectors {
                for (o, name) in cases.iter().enumerate() {
                    let len = parsed.output(o as u16).unwrap().record.byte_len as usize;
                    assert_eq!(
                        got.get(at..at + len),
                        expected.get(at..at + len),
                        "{name} (seed {seed:#x}): QEMU differs from the host"
                    );
                    at += len;
                }
            }
            panic!("QEMU differs from the host (seed {seed:#x})");
        }
    }
    println!(
        "150 random cases, QEMU time {qemu_time:.1?}, kernel paths {paths:?}, some layers on \
         reference kernels: {references}"
    );
    assert!(
        qemu_time < std::time::Duration::from_secs(60),
        "QEMU took {qemu_time:?}"
    );
}
