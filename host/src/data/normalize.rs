//! Per-channel standardization, fitted on training data and stored with the model.

use super::Dataset;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// Per-channel standardization: `x' = (x - mean[c]) / std[c]`, where `c` is the position of
/// `x` along the sample's last axis (the channel axis of NHWC; for a flat `[n]` feature vector
/// every feature is its own channel).
///
/// Per channel rather than per feature because that is what a convolution sees (the same
/// statistics at every position), and a single-channel input's normalization folds into the
/// device's int8 input quantization. The model stores it, so the device applies the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Each channel's mean.
    pub mean: Vec<f32>,
    /// Each channel's standard deviation (population, divided by n), never 0: a channel whose
    /// deviation is below [`Normalization::MIN_STD`] gets 1, so it is only centred.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Deviations below this are taken as a constant channel (standard deviation 1 is used).
    pub const MIN_STD: f32 = 1e-6;

    /// The mean and population standard deviation of each channel over all samples and
    /// positions of `data`, accumulated in f64. An empty dataset gives mean 0 and std 1.
    pub fn fit(data: &Dataset) -> Normalization {
        let channels = data.feature_shape.last().copied().unwrap_or(1).max(1);
        let mut sum = vec![0f64; channels];
        let mut count = 0usize;
        for pixel in data.features.chunks_exact(channels) {
            for (s, &x) in sum.iter_mut().zip(pixel) {
                *s += f64::from(x);
            }
            count += 1;
        }
        let mean: Vec<f64> = sum
            .iter()
            .map(|&s| if count == 0 { 0.0 } else { s / count as f64 })
            .collect();
        let mut squares = vec![0f64; channels];
        for pixel in data.features.chunks_exact(channels) {
            for ((q, &x), &m) in squares.iter_mut().zip(pixel).zip(&mean) {
                let d = f64::from(x) - m;
                *q += d * d;
            }
        }
        let std = squares
            .iter()
            .map(|&q| {
                let s = if count == 0 {
                    1.0
                } else {
                    (q / count as f64).sqrt() as f32
                };
                if s < Self::MIN_STD {
                    1.0
                } else {
                    s
                }
            })
            .collect();
        Normalization {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Standardizes every sample of `data` in place.
    ///
    /// Fails if `data`'s samples do not have [`channels`](Self::channels) channels on their
    /// last axis, or if the normalization is malformed (lengths differ, a zero std).
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        self.check(data)?;
        self.apply_values(&mut data.features)
    }

    /// Undoes [`apply`](Self::apply): `x = x' * std[c] + mean[c]`.
    pub fn invert(&self, data: &mut Dataset) -> Result<()> {
        self.check(data)?;
        self.invert_values(&mut data.features)
    }

    /// Standardizes raw values laid out with the channel fastest (one sample, or several), as
    /// the device does to its input.
    pub fn apply_values(&self, values: &mut [f32]) -> Result<()> {
        self.check_values(values)?;
        for pixel in values.chunks_exact_mut(self.channels()) {
            for ((x, &m), &s) in pixel.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
        Ok(())
    }

    /// Undoes [`apply_values`](Self::apply_values).
    pub fn invert_values(&self, values: &mut [f32]) -> Result<()> {
        self.check_values(values)?;
        for pixel in values.chunks_exact_mut(self.channels()) {
            for ((x, &m), &s) in pixel.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = *x * s + m;
            }
        }
        Ok(())
    }

    fn check(&self, data: &Dataset) -> Result<()> {
        let channels = data.feature_shape.last().copied().unwrap_or(0);
        ensure!(
            channels == self.channels(),
            "the normalization has {} channels, but the dataset's samples (shape {:?}) have {channels}",
            self.channels(),
            data.feature_shape
        );
        Ok(())
    }

    fn check_values(&self, values: &[f32]) -> Result<()> {
        ensure!(
            self.std.len() == self.mean.len() && !self.mean.is_empty(),
            "malformed normalization: {} means and {} standard deviations",
            self.mean.len(),
            self.std.len()
        );
        ensure!(
            self.std.iter().all(|&s| s.is_finite() && s != 0.0)
                && self.mean.iter().all(|m| m.is_finite()),
            "malformed normalization: a mean or standard deviation is not finite, or a deviation is 0"
        );
        ensure!(
            values.len() % self.channels() == 0,
            "{} values are not a whole number of {}-channel positions",
            values.len(),
            self.channels()
        );
        Ok(())
    }
}
