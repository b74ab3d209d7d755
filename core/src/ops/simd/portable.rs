//! Portable versions: plain Rust, bit-identical to the DSP instructions.

/// Sign-extended byte `i` of `x`.
#[inline(always)]
fn byte(x: u32, i: u32) -> i32 {
    i32::from((x >> (8 * i)) as u8 as i8)
}

#[inline(always)]
fn halves(x: u32) -> (i32, i32) {
    (
        i32::from(x as u16 as i16),
        i32::from((x >> 16) as u16 as i16),
    )
}

#[inline(always)]
fn pack(lo: i32, hi: i32) -> u32 {
    u32::from(lo as u16) | (u32::from(hi as u16) << 16)
}

#[inline(always)]
pub(super) fn sxtab16(off2: u32, x: u32) -> u32 {
    let (lo, hi) = halves(off2);
    pack(lo.wrapping_add(byte(x, 0)), hi.wrapping_add(byte(x, 2)))
}

#[inline(always)]
pub(super) fn sxtab16_ror8(off2: u32, x: u32) -> u32 {
    sxtab16(off2, x.rotate_right(8))
}

#[inline(always)]
pub(super) fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let ((a0, a1), (b0, b1)) = (halves(a), halves(b));
    acc.wrapping_add(a0 * b0).wrapping_add(a1 * b1)
}

#[inline(always)]
pub(super) fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
    acc.wrapping_add(halves(a).0 * halves(b).0)
}

#[inline(always)]
pub(super) fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
    acc.wrapping_add(halves(a).1 * halves(b).1)
}

#[inline(always)]
pub(super) fn smmulr(a: i32, b: i32) -> i32 {
    ((i64::from(a) * i64::from(b) + (1 << 31)) >> 32) as i32
}

#[inline(always)]
pub(super) fn requant_ssat(acc: i32, left: u32, mult: i32, add: i32, right: u32) -> i32 {
    let y = smmulr(acc.wrapping_shl(left), mult);
    (y.wrapping_add(y >> 31).wrapping_add(add) >> (right & 31)).clamp(-128, 127)
}

/// The int8 word at `w[i..i + 4]`.
#[inline(always)]
fn word(w: &[i8], i: usize) -> u32 {
    u32::from_le_bytes([w[i] as u8, w[i + 1] as u8, w[i + 2] as u8, w[i + 3] as u8])
}

pub(super) fn mac_2x2(cols: &[[u32; 4]], w: &[i8], stride: usize, acc: [i32; 4]) -> [i32; 4] {
    mac_rows(cols, w, &w[stride..], acc)
}

/// [`super::mac_2x2`] with the two rows as slices.
fn mac_rows(cols: &[[u32; 4]], r0: &[i8], r1: &[i8], acc: [i32; 4]) -> [i32; 4] {
    let [mut a0, mut a1, mut b0, mut b1] = acc;
    for (g, x) in cols.iter().enumerate() {
        let (w0, w1) = (word(r0, 4 * g), word(r1, 4 * g));
        let (w0e, w0o, w1e, w1o) = (
            sxtab16(0, w0),
            sxtab16_ror8(0, w0),
            sxtab16(0, w1),
            sxtab16_ror8(0, w1),
        );
        a0 = smlad(x[1], w0o, smlad(x[0], w0e, a0));
        a1 = smlad(x[1], w1o, smlad(x[0], w1e, a1));
        b0 = smlad(x[3], w0o, smlad(x[2], w0e, b0));
        b1 = smlad(x[3], w1o, smlad(x[2], w1e, b1));
    }
    [a0, a1, b0, b1]
}

#[cfg(not(mote_dsp))]
pub(super) fn gemm_pairs<const N: usize>(
    cols: &[[u32; 4]],
    table: &super::PairTable<N>,
    out_a: &mut [i8],
    out_b: &mut [i8],
) {
    for (d, &(r0, r1)) in table.pairs[..table.len].iter().zip(&table.rows) {
        let [b0, b1] = d.bias;
        let acc = mac_rows(cols, r0, r1, [b0, b1, b0, b1]);
        let out =
            |r: &super::RequantSsat, acc| requant_ssat(acc, r.left, r.mult, r.add, r.right) as i8;
        out_a[d.out[0]] = out(&d.rq[0], acc[0]);
        out_a[d.out[1]] = out(&d.rq[1], acc[1]);
        out_b[d.out[0]] = out(&d.rq[0], acc[2]);
        out_b[d.out[1]] = out(&d.rq[1], acc[3]);
    }
}

pub(super) fn gemm_direct(
    cols: &[[u32; 4]],
    (filter, taps): (&[i8], usize),
    (bias, requant): (&[i32], &[crate::quant::QuantizedMultiplier]),
    zp: i32,
    (out_a, out_b): (&mut [i8], &mut [i8]),
    pairs: usize,
) {
    let step = usize::from(requant.len() > 1);
    for k in 0..pairs {
        let j = 2 * k;
        let init = [bias[j], bias[j + 1], bias[j], bias[j + 1]];
        let acc = mac_2x2(cols, &filter[j * taps..], taps, init);
        for (c, (a, b)) in [(0, (acc[0], acc[2])), (1, (acc[1], acc[3]))] {
            let q = requant[(j + c) * step];
            let right = q.shift.wrapping_neg() as u32;
            let add = (1u32.wrapping_shl(right) >> 1) as i32 + zp.wrapping_shl(right);
            out_a[j + c] = requant_ssat(a, 1, q.multiplier, add, right) as i8;
            out_b[j + c] = requant_ssat(b, 1, q.multiplier, add, right) as i8;
        }
    }
}

pub(super) fn mac_1x4(col: &[[u32; 2]], w: &[i8], stride: usize, acc: [i32; 4]) -> [i32; 4] {
    let mut acc = acc;
    for (g, x) in col.iter().enumerate() {
        for (k, a) in acc.iter_mut().enumerate() {
            let wk = word(w, k * stride + 4 * g);
            *a = smlad(x[1], sxtab16_ror8(0, wk), smlad(x[0], sxtab16(0, wk), *a));
        }
    }
    acc
}

pub(super) fn dw3x3_row(k: &mut super::Dw3x3, rows: [*const u32; 3], out: &mut [i8]) {
    // The portable code reads through the rows the safe wrapper checked, as slices.
    // SAFETY: `Dw3x3::row` checked each row pointer has `need` words of the ring after it.
    let rows = rows.map(|r| unsafe { core::slice::from_raw_parts(r, k.need) });
    let (a, c) = (&k.args, k.consts);
    for i in 0..k.n {
        let [mut c0, mut c1, mut c2, mut c3] = c.bias;
        for (t, w) in c.wq.iter().enumerate() {
            let x = rows[t / 3][i * k.stride + t % 3];
            let (xe, xo) = (sxtab16(a.off2, x), sxtab16_ror8(a.off2, x));
            c0 = smlabb(xe, w[0], c0);
            c2 = smlatt(xe, w[0], c2);
            c1 = smlabb(xo, w[1], c1);
            c3 = smlatt(xo, w[1], c3);
        }
        let o = &mut out[i * a.out_stride..][..4];
        for ((o, acc), r) in o.iter_mut().zip([c0, c1, c2, c3]).zip(&c.rq) {
            *o = requant_ssat(acc, r.left, r.mult, r.add, r.right) as i8;
        }
    }
}

pub(super) fn gather_words(src: &[i8], stride: usize, dst: &mut [u32]) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = word(src, i * stride);
    }
}

pub(super) fn gemv_quads(
    col: &[[u32; 2]],
    rows: (&[i8], usize),
    consts: (&[i32], &[super::RequantSsat; 4]),
    out: &mut [i8],
    quads: usize,
) {
    quads_over(col.len(), |g| col[g], rows, consts, out, quads);
}

pub(super) fn gemv_quads_i8(
    (x, off2): (&[i8], u32),
    rows: (&[i8], usize),
    consts: (&[i32], &[super::RequantSsat; 4]),
    out: &mut [i8],
    quads: usize,
) {
    let group = |g: usize| {
        let xw = word(x, 4 * g);
        [sxtab16(off2, xw), sxtab16_ror8(off2, xw)]
    };
    quads_over(x.len() / 4, group, rows, consts, out, quads);
}

/// The quad loops over `groups` q15 groups that `group` gives.
fn quads_over(
    groups: usize,
    group: impl Fn(usize) -> [u32; 2],
    (rows, in_f): (&[i8], usize),
    (bias, rq): (&[i32], &[super::RequantSsat; 4]),
    out: &mut [i8],
    quads: usize,
) {
    for q in 0..quads {
        let j = 4 * q;
        let mut acc = [bias[j], bias[j + 1], bias[j + 2], bias[j + 3]];
        for g in 0..groups {
            let x = group(g);
            for (k, a) in acc.iter_mut().enumerate() {
                let wk = word(rows, (j + k) * in_f + 4 * g);
                *a = smlad(x[1], sxtab16_ror8(0, wk), smlad(x[0], sxtab16(0, wk), *a));
            }
        }
        for (k, r) in rq.iter().enumerate() {
            out[j + k] = requant_ssat(acc[k], r.left, r.mult, r.add, r.right) as i8;
        }
    }
}

pub(super) fn column_run(
    args: &mut super::ColumnArgs,
    x: &[i8],
    (n, advance, step): (usize, usize, usize),
    w: &[[u32; 2]],
    y: &mut [i8],
) {
    for i in 0..n {
        let mut acc = args.bias;
        for (k, w) in w.iter().enumerate() {
            let v = word(x, i * advance + k * step);
            let (even, odd) = (sxtab16(0, v), sxtab16_ror8(0, v));
            acc[0] = smlabb(even, w[0], acc[0]);
            acc[1] = smlabb(odd, w[1], acc[1]);
            acc[2] = smlatt(even, w[0], acc[2]);
            acc[3] = smlatt(odd, w[1], acc[3]);
        }
        for (c, (&acc, r)) in acc.iter().zip(&args.rq).enumerate() {
            let v = requant_ssat(acc, r.left, r.mult, r.add, r.right);
            y[i * args.out_step + c] = v as i8;
        }
    }
}
