//! Scratch probe: each int8 conv/depthwise/fc layer's stage, shift range, and how many
//! channels have unusual requantization constants (and how many of those are constant).
use mote_core::model::Layer;

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).unwrap();
        let aligned = mote_host::AlignedBytes::new(&bytes);
        let m = mote_core::Model::parse(aligned.as_slice()).unwrap();
        for i in 0..m.op_count() {
            let (name, st, rq, bias, taps) = match m.layer(i).unwrap() {
                Layer::Conv2d {
                    stage,
                    requant,
                    bias,
                    filter,
                    ..
                } => (
                    "conv",
                    stage,
                    requant,
                    bias,
                    filter.shape.h * filter.shape.w * filter.shape.c,
                ),
                Layer::DepthwiseConv2d {
                    stage,
                    requant,
                    bias,
                    filter,
                    ..
                } => ("dw", stage, requant, bias, filter.shape.h * filter.shape.w),
                Layer::FullyConnected {
                    stage,
                    requant,
                    bias,
                    weights,
                    ..
                } => ("fc", stage, requant, bias, weights.shape.c),
                _ => continue,
            };
            let s = taps as i64 * 255 * 128;
            let f = |acc: i64, q: mote_core::quant::QuantizedMultiplier| -> i32 {
                (q.apply(acc as i32) + st.output_offset).clamp(st.act_min as i32, st.act_max as i32)
            };
            let (mut odd, mut constant) = (0, 0);
            for (c, q) in rq.iter().enumerate() {
                let b = bias.map_or(0, |b| b[c % b.len()]) as i64;
                if q.shift > -3 || q.shift < -21 || b.unsigned_abs() > 1 << 24 {
                    odd += 1;
                    let fits = b - s >= i32::MIN as i64 && b + s <= i32::MAX as i64;
                    if fits && f(b - s, *q) == f(b + s, *q) {
                        constant += 1;
                    }
                }
            }
            let smin = rq.iter().map(|q| q.shift).min().unwrap();
            let smax = rq.iter().map(|q| q.shift).max().unwrap();
            println!(
                "{path} {i} {name} taps {taps} ch {} in_off {} out_off {} act {}..{} shift {smin}..{smax} odd {odd} constant {constant}",
                rq.len(), st.input_offset, st.output_offset, st.act_min, st.act_max
            );
        }
    }
}
