//! Where model inputs come from: a stored test set, or a sensor streamed through a sliding
//! window. Sensors plug in through embedded-hal 1.0 traits (see [`lis3dh`]), so the runtime
//! never changes when the hardware does.

pub mod lis3dh;

use heapless::HistoryBuf;

/// One model input at a time, written straight into the model's int8 input tensor.
pub trait InputSource {
    /// What can go wrong while reading.
    type Error;

    /// Fills `input` with the next input and returns its label when the source knows it;
    /// `Ok(None)` once the source is exhausted.
    fn next_input(&mut self, input: &mut [i8]) -> Result<Option<Labelled>, Self::Error>;
}

/// What [`InputSource::next_input`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Labelled {
    /// The true class, if the source knows it (a test set does, a sensor does not).
    pub label: Option<u8>,
}

/// Why an input could not be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InputError<E> {
    /// The model's input tensor has a different size than the source produces.
    WrongSize {
        /// Elements the source produces.
        expected: usize,
        /// Elements of the tensor given.
        actual: usize,
    },
    /// The sensor failed.
    Sensor(E),
}

/// A labelled test set stored in flash: `inputs` holds int8 vectors back to back.
#[derive(Debug, Clone)]
pub struct StoredSet<'a> {
    inputs: &'a [u8],
    labels: &'a [u8],
    input_len: usize,
    next: usize,
}

impl<'a> StoredSet<'a> {
    /// A set of `inputs.len() / input_len` vectors; `labels` has one byte per vector (or is
    /// empty when unknown). `None` if the sizes do not agree.
    pub fn new(inputs: &'a [u8], labels: &'a [u8], input_len: usize) -> Option<Self> {
        let count = inputs.len().checked_div(input_len)?;
        if count * input_len != inputs.len() || !(labels.is_empty() || labels.len() == count) {
            return None;
        }
        Some(Self {
            inputs,
            labels,
            input_len,
            next: 0,
        })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.inputs.len() / self.input_len
    }

    /// Whether the set has no vectors.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Starts again from the first vector.
    pub fn rewind(&mut self) {
        self.next = 0;
    }
}

impl InputSource for StoredSet<'_> {
    type Error = InputError<core::convert::Infallible>;

    fn next_input(&mut self, input: &mut [i8]) -> Result<Option<Labelled>, Self::Error> {
        if input.len() != self.input_len {
            return Err(InputError::WrongSize {
                expected: self.input_len,
                actual: input.len(),
            });
        }
        let start = self.next * self.input_len;
        let Some(vector) = self.inputs.get(start..start + self.input_len) else {
            return Ok(None);
        };
        for (dst, &src) in input.iter_mut().zip(vector) {
            *dst = src as i8;
        }
        let label = self.labels.get(self.next).copied();
        self.next += 1;
        Ok(Some(Labelled { label }))
    }
}

/// Reads one multi-channel sample (e.g. an accelerometer's x, y, z in g) from a sensor.
pub trait SampleSource<const CHANNELS: usize> {
    /// The sensor's error.
    type Error;
    /// The newest sample.
    fn read_sample(&mut self) -> Result<[f32; CHANNELS], Self::Error>;
}

/// [`SampleSource`] for async firmware: awaiting a sample lets other tasks run.
#[cfg(feature = "async")]
#[allow(async_fn_in_trait)] // used from one executor; no Send bound to promise
pub trait AsyncSampleSource<const CHANNELS: usize> {
    /// The sensor's error.
    type Error;
    /// The next sample.
    async fn read_sample(&mut self) -> Result<[f32; CHANNELS], Self::Error>;
}

/// How a float sample becomes the model's int8: per-channel normalization (as stored with the
/// model at export), then the input tensor's quantization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputQuantization<const CHANNELS: usize> {
    /// Subtracted per channel.
    pub mean: [f32; CHANNELS],
    /// Divided by, per channel.
    pub std: [f32; CHANNELS],
    /// The input tensor's scale.
    pub scale: f32,
    /// The input tensor's zero point.
    pub zero_point: i32,
}

impl<const C: usize> InputQuantization<C> {
    fn quantize(&self, channel: usize, x: f32) -> i8 {
        let normalized = (x - self.mean[channel]) / self.std[channel];
        crate::ops::quantize::quantize_one(self.scale, self.zero_point, normalized)
    }
}

/// A sliding window over a sensor stream, kept in a fixed-capacity ring buffer: every `hop`
/// new samples, once `LEN` samples have arrived, it yields the last `LEN` samples as one model
/// input laid out `[1, LEN, CHANNELS]` (time along the width, channels last).
#[derive(Debug)]
pub struct SlidingWindow<S, const CHANNELS: usize, const LEN: usize> {
    sensor: S,
    window: HistoryBuf<[f32; CHANNELS], LEN>,
    hop: usize,
    since_last: usize,
    quantization: InputQuantization<CHANNELS>,
}

impl<S, const C: usize, const LEN: usize> SlidingWindow<S, C, LEN> {
    /// A window that yields every `hop` samples (`hop` is clamped to `1..=LEN`).
    pub fn new(sensor: S, hop: usize, quantization: InputQuantization<C>) -> Self {
        Self {
            sensor,
            window: HistoryBuf::new(),
            hop: hop.clamp(1, LEN),
            since_last: 0,
            quantization,
        }
    }

    /// Adds one sample; returns whether a new input is ready.
    pub fn push(&mut self, sample: [f32; C]) -> bool {
        self.window.write(sample);
        self.since_last += 1;
        if self.window.is_full() && self.since_last >= self.hop {
            self.since_last = 0;
            true
        } else {
            false
        }
    }

    /// Writes the current window, oldest sample first, into `input` (`LEN * C` elements); the
    /// error's sensor type is the caller's choice (only `WrongSize` can occur).
    pub fn fill<E>(&self, input: &mut [i8]) -> Result<(), InputError<E>> {
        self.window_into(input)
    }

    fn window_into<E>(&self, input: &mut [i8]) -> Result<(), InputError<E>> {
        if input.len() != LEN * C || !self.window.is_full() {
            return Err(InputError::WrongSize {
                expected: LEN * C,
                actual: input.len(),
            });
        }
        for (step, sample) in input.chunks_exact_mut(C).zip(self.window.oldest_ordered()) {
            for (channel, (dst, &x)) in step.iter_mut().zip(sample).enumerate() {
                *dst = self.quantization.quantize(channel, x);
            }
        }
        Ok(())
    }

    /// The sensor, back.
    pub fn into_sensor(self) -> S {
        self.sensor
    }

    /// Checks that `input` holds one window.
    fn check_len<E>(input: &[i8]) -> Result<(), InputError<E>> {
        match input.len() == LEN * C {
            true => Ok(()),
            false => Err(InputError::WrongSize {
                expected: LEN * C,
                actual: input.len(),
            }),
        }
    }
}

#[cfg(feature = "async")]
impl<S: AsyncSampleSource<C>, const C: usize, const LEN: usize> SlidingWindow<S, C, LEN> {
    /// [`InputSource::next_input`] for an async sensor: awaits samples until the next window
    /// is ready, then writes it into `input`.
    pub async fn next_input_async(&mut self, input: &mut [i8]) -> Result<(), InputError<S::Error>> {
        Self::check_len(input)?;
        loop {
            let sample = self
                .sensor
                .read_sample()
                .await
                .map_err(InputError::Sensor)?;
            if self.push(sample) {
                return self.window_into(input);
            }
        }
    }
}

impl<S: SampleSource<C>, const C: usize, const LEN: usize> InputSource
    for SlidingWindow<S, C, LEN>
{
    type Error = InputError<S::Error>;

    /// Reads samples until the next window is ready (a sensor stream never ends).
    fn next_input(&mut self, input: &mut [i8]) -> Result<Option<Labelled>, Self::Error> {
        Self::check_len(input)?;
        loop {
            let sample = self.sensor.read_sample().map_err(InputError::Sensor)?;
            if self.push(sample) {
                self.window_into(input)?;
                return Ok(Some(Labelled { label: None }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_set_streams_vectors_and_labels() {
        let inputs = [1u8, 2, 3, 0xFF, 0x80, 6];
        let mut set = StoredSet::new(&inputs, &[7, 9], 3).unwrap();
        assert_eq!(set.len(), 2);
        let mut x = [0i8; 3];
        assert_eq!(
            set.next_input(&mut x),
            Ok(Some(Labelled { label: Some(7) }))
        );
        assert_eq!(x, [1, 2, 3]);
        assert_eq!(
            set.next_input(&mut x),
            Ok(Some(Labelled { label: Some(9) }))
        );
        assert_eq!(x, [-1, -128, 6]);
        assert_eq!(set.next_input(&mut x), Ok(None));
        set.rewind();
        assert_eq!(
            set.next_input(&mut [0i8; 2]),
            Err(InputError::WrongSize {
                expected: 3,
                actual: 2
            })
        );
        assert!(StoredSet::new(&inputs, &[1], 3).is_none());
        assert!(StoredSet::new(&inputs, &[], 4).is_none());
        assert!(StoredSet::new(&inputs, &[], 0).is_none());
    }

    /// A "sensor" counting up: sample k is [k, -k].
    struct Ramp(f32);
    impl SampleSource<2> for Ramp {
        type Error = ();
        fn read_sample(&mut self) -> Result<[f32; 2], ()> {
            self.0 += 1.0;
            Ok([self.0, -self.0])
        }
    }

    #[test]
    fn sliding_window_yields_every_hop_oldest_first() {
        let q = InputQuantization {
            mean: [0.0; 2],
            std: [1.0; 2],
            scale: 1.0,
            zero_point: 0,
        };
        let mut w: SlidingWindow<Ramp, 2, 4> = SlidingWindow::new(Ramp(0.0), 2, q);
        let mut x = [0i8; 8];
        // The first window needs 4 samples: 1..=4.
        assert_eq!(w.next_input(&mut x), Ok(Some(Labelled { label: None })));
        assert_eq!(x, [1, -1, 2, -2, 3, -3, 4, -4]);
        // Then every 2 samples: 3..=6.
        w.next_input(&mut x).unwrap();
        assert_eq!(x, [3, -3, 4, -4, 5, -5, 6, -6]);
    }

    #[test]
    fn window_applies_normalization_then_input_quantization() {
        // (x - 1) / 0.5 / 0.25 - 3: x = 2 -> 8 - 3 = 5.
        let q = InputQuantization {
            mean: [1.0, 0.0],
            std: [0.5, 1.0],
            scale: 0.25,
            zero_point: -3,
        };
        let mut w: SlidingWindow<Ramp, 2, 1> = SlidingWindow::new(Ramp(1.0), 1, q);
        let mut x = [0i8; 2];
        w.next_input(&mut x).unwrap();
        assert_eq!(x, [5, -11]); // channel 1: -2 / 0.25 - 3 = -11
        assert!(w.fill::<()>(&mut [0i8; 3]).is_err());
    }
}
