//! Data augmentation of training batches (`[training.augment]`): random time shifts, gains and
//! gaussian noise for sequences, random shifts and flips for images. Only the batches the
//! optimizer sees are changed; validation and test data never are. Every draw comes from one
//! stream seeded by `training.seed`, so a run is reproducible.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::shapes::show;
use super::tensor::{volume, Rng, SampleShape};

/// An image shift range in pixels, `[dy, dx]` or one number for both (0 turns an axis off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "ShiftRepr", into = "[usize; 2]")]
pub struct Shift {
    /// Largest vertical shift, rows.
    pub dy: usize,
    /// Largest horizontal shift, columns.
    pub dx: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ShiftRepr {
    One(i64),
    Two(Vec<i64>),
}

impl TryFrom<ShiftRepr> for Shift {
    type Error = String;
    fn try_from(r: ShiftRepr) -> Result<Self, String> {
        let v = match r {
            ShiftRepr::One(v) => vec![v, v],
            ShiftRepr::Two(v) => v,
        };
        match v[..] {
            [dy, dx] if dy >= 0 && dx >= 0 => Ok(Shift {
                dy: dy as usize,
                dx: dx as usize,
            }),
            _ => Err(format!(
                "shift must be pixels >= 0, one number or [dy, dx], got {v:?}"
            )),
        }
    }
}

impl From<Shift> for [usize; 2] {
    fn from(s: Shift) -> Self {
        [s.dy, s.dx]
    }
}

/// The `[training.augment]` table. Each option is off by default. Sequences (an input
/// `[steps, channels]`): `time_shift`, `scale`, `noise`; images (`[h, w, c]`): `shift`,
/// `flip_horizontal`, `flip_vertical`, `scale`, `noise`. Per training sample, in this order:
/// flips, shifts, scale, noise.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSpec {
    /// Sequences: shift the steps by a uniform integer in `[-time_shift, time_shift]`, the
    /// steps shifted in repeating the edge step (a positive shift delays the signal).
    pub time_shift: usize,
    /// Multiply each channel of each sample by a factor drawn from `U(1 - scale, 1 + scale)`;
    /// `0 <= scale < 1`.
    pub scale: f32,
    /// Add gaussian noise `N(0, noise)` to every value; `noise >= 0`.
    pub noise: f32,
    /// Images: shift by uniform integers in `[-dy, dy]` rows and `[-dx, dx]` columns, filling
    /// with zeros.
    pub shift: Shift,
    /// Images: mirror left-right with probability 1/2.
    pub flip_horizontal: bool,
    /// Images: mirror top-bottom with probability 1/2.
    pub flip_vertical: bool,
}

impl AugmentSpec {
    /// Checks the values alone (see [`AugmentSpec::check`] for the input shape).
    pub fn validate(&self) -> Result<()> {
        if !(self.scale.is_finite() && (0.0..1.0).contains(&self.scale)) {
            bail!(
                "training.augment: scale must be in [0, 1), got {}",
                self.scale
            );
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            bail!(
                "training.augment: noise must be finite and >= 0, got {}",
                self.noise
            );
        }
        Ok(())
    }

    /// Checks that every option fits the model's input `shape` (`[1, steps, c]` for a
    /// sequence, `[h, w, c]` with `h > 1` for an image).
    pub fn check(&self, shape: SampleShape) -> Result<()> {
        self.validate()?;
        let [h, w, _] = shape;
        let image = h > 1;
        let fail = |option: &str, wants: &str, instead: &str| {
            bail!(
                "training.augment: {option} needs {wants}, but the model's input is {}{instead}",
                show(shape)
            )
        };
        if self.time_shift > 0 {
            if image || w < 2 {
                return fail(
                    "time_shift",
                    "sequences ([steps, channels])",
                    if image { " (an image: use shift)" } else { "" },
                );
            }
            if self.time_shift >= w {
                bail!(
                    "training.augment: time_shift = {} must be below the {w} steps",
                    self.time_shift
                );
            }
        }
        for (option, on) in [
            ("shift", self.shift != Shift::default()),
            ("flip_horizontal", self.flip_horizontal),
            ("flip_vertical", self.flip_vertical),
        ] {
            if on && !image {
                let hint = if w > 1 {
                    " (a sequence: use time_shift)"
                } else {
                    ""
                };
                return fail(option, "images ([h, w, c])", hint);
            }
        }
        if image && (self.shift.dy >= h || self.shift.dx >= w) {
            bail!(
                "training.augment: shift = [{}, {}] must be below the image's {h}x{w} pixels",
                self.shift.dy,
                self.shift.dx
            );
        }
        Ok(())
    }

    /// Augments a batch in place: `batch` holds whole samples of `shape` (already
    /// [checked](AugmentSpec::check)); `rng` is the run's augmentation stream.
    pub(crate) fn apply(&self, shape: SampleShape, batch: &mut [f32], rng: &mut Rng) {
        let len = volume(shape);
        let mut scratch = vec![0.0; len];
        for sample in batch.chunks_exact_mut(len.max(1)) {
            if self.flip_horizontal && rng.below(2) == 1 {
                flip(sample, shape, true);
            }
            if self.flip_vertical && rng.below(2) == 1 {
                flip(sample, shape, false);
            }
            if self.shift != Shift::default() {
                let dy = symmetric(rng, self.shift.dy);
                let dx = symmetric(rng, self.shift.dx);
                shift_image(sample, shape, (dy, dx), &mut scratch);
            }
            if self.time_shift > 0 {
                let k = symmetric(rng, self.time_shift);
                shift_steps(sample, shape, k, &mut scratch);
            }
            if self.scale > 0.0 {
                let c = shape[2];
                let gains: Vec<f32> = (0..c)
                    .map(|_| rng.range(1.0 - self.scale, 1.0 + self.scale))
                    .collect();
                for (i, v) in sample.iter_mut().enumerate() {
                    *v *= gains[i % c];
                }
            }
            if self.noise > 0.0 {
                for v in sample.iter_mut() {
                    *v += (rng.normal() * f64::from(self.noise)) as f32;
                }
            }
        }
    }
}

/// A uniform integer in `[-n, n]`.
fn symmetric(rng: &mut Rng, n: usize) -> isize {
    rng.below(2 * n + 1) as isize - n as isize
}

/// Mirrors one sample left-right (`horizontal`) or top-bottom.
pub(crate) fn flip(sample: &mut [f32], [h, w, c]: SampleShape, horizontal: bool) {
    for y in 0..h {
        for x in 0..w {
            let (ty, tx) = if horizontal {
                (y, w - 1 - x)
            } else {
                (h - 1 - y, x)
            };
            // Swap each pair once: the first of the two in row-major order does it.
            if (ty, tx) > (y, x) {
                for ch in 0..c {
                    sample.swap((y * w + x) * c + ch, (ty * w + tx) * c + ch);
                }
            }
        }
    }
}

/// Moves an image by `(dy, dx)` pixels (down and right when positive), zero fill.
pub(crate) fn shift_image(
    sample: &mut [f32],
    [h, w, c]: SampleShape,
    (dy, dx): (isize, isize),
    scratch: &mut [f32],
) {
    scratch.copy_from_slice(sample);
    for y in 0..h {
        for x in 0..w {
            let (sy, sx) = (y as isize - dy, x as isize - dx);
            let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
            let dst = &mut sample[(y * w + x) * c..][..c];
            if inside {
                dst.copy_from_slice(&scratch[(sy as usize * w + sx as usize) * c..][..c]);
            } else {
                dst.fill(0.0);
            }
        }
    }
}

/// Delays a sequence `[1, steps, c]` by `k` steps (advances it when negative), repeating the
/// first or last step where the shift leaves a gap.
pub(crate) fn shift_steps(
    sample: &mut [f32],
    [_, steps, c]: SampleShape,
    k: isize,
    scratch: &mut [f32],
) {
    scratch.copy_from_slice(sample);
    for t in 0..steps {
        let src = (t as isize - k).clamp(0, steps as isize - 1) as usize;
        sample[t * c..][..c].copy_from_slice(&scratch[src * c..][..c]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32 + 1.0).collect()
    }

    fn spec(text: &str) -> Result<AugmentSpec> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
    }

    #[test]
    fn shifts_move_values_by_k() {
        let shape = [3, 4, 2];
        let x = ramp(24);
        let mut y = x.clone();
        let mut scratch = vec![0.0; 24];
        shift_image(&mut y, shape, (1, -2), &mut scratch);
        for r in 0..3 {
            for col in 0..4 {
                for ch in 0..2 {
                    let got = y[(r * 4 + col) * 2 + ch];
                    let (sr, sc) = (r as isize - 1, col as isize + 2);
                    let want = if (0..3).contains(&sr) && (0..4).contains(&sc) {
                        x[(sr as usize * 4 + sc as usize) * 2 + ch]
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "{r} {col} {ch}");
                }
            }
        }
        let seq = [1, 6, 2];
        let x = ramp(12);
        for k in [-2isize, 0, 3] {
            let mut y = x.clone();
            shift_steps(&mut y, seq, k, &mut scratch[..12]);
            for t in 0..6 {
                let src = (t as isize - k).clamp(0, 5) as usize;
                assert_eq!(y[t * 2..t * 2 + 2], x[src * 2..src * 2 + 2], "k {k} t {t}");
            }
        }
    }

    #[test]
    fn flipping_twice_is_the_identity() {
        for shape in [[3, 4, 2], [5, 5, 1], [2, 3, 3]] {
            let x = ramp(volume(shape));
            for horizontal in [true, false] {
                let mut y = x.clone();
                flip(&mut y, shape, horizontal);
                assert_ne!(y, x);
                let [h, w, c] = shape;
                let (r, col) = (h - 1, 0);
                let want = if horizontal {
                    x[(r * w + w - 1) * c]
                } else {
                    x[col * c]
                };
                assert_eq!(y[(r * w + col) * c], want);
                flip(&mut y, shape, horizontal);
                assert_eq!(y, x);
            }
        }
    }

    #[test]
    fn zero_noise_and_scale_are_the_identity_and_seeds_repeat() {
        let off = spec("noise = 0.0\nscale = 0.0\n").unwrap();
        let x = ramp(40);
        let mut y = x.clone();
        off.apply([1, 20, 2], &mut y, &mut Rng::new(3));
        assert_eq!(y, x);
        let on = spec("noise = 0.1\nscale = 0.2\ntime_shift = 3\n").unwrap();
        on.check([1, 20, 2]).unwrap();
        let run = |seed| {
            let mut y = x.clone();
            on.apply([1, 20, 2], &mut y, &mut Rng::derive(seed, 3));
            y
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        assert_ne!(run(5), x);
    }

    #[test]
    fn bad_values_unknown_keys_and_misfit_options_are_errors() {
        let err = |text: &str, shape: SampleShape| {
            let e = spec(text).and_then(|s| s.check(shape)).unwrap_err();
            format!("{e:#}")
        };
        let seq = [1, 50, 3];
        let img = [8, 8, 1];
        for (text, shape, word) in [
            ("noise = -0.1", seq, "noise"),
            ("noise = nan", seq, "noise"),
            ("scale = nan", seq, "scale"),
            ("scale = 1.5", seq, "scale"),
            ("nosie = 0.1", seq, "nosie"),
            ("time_shift = -2", seq, "time_shift"),
            ("shift = -1", img, "shift"),
            ("shift = [1, 2, 3]", img, "shift"),
            ("flip_horizontal = true", seq, "use time_shift"),
            ("flip_vertical = true", [1, 1, 9], "images"),
            ("shift = 2", seq, "[1, 50, 3]"),
            ("time_shift = 2", img, "use shift"),
            ("time_shift = 50", seq, "50 steps"),
            ("shift = [8, 1]", img, "8x8"),
        ] {
            let e = err(text, shape);
            assert!(e.contains(word), "{text}: {e}");
        }
        assert!(spec("shift = [2, 0]\nflip_horizontal = true\nnoise = 0.05")
            .unwrap()
            .check(img)
            .is_ok());
    }
}
