//! mote in an Embassy app on the nRF52840-DK: a sensor task reads an LIS3DH accelerometer over
//! the async TWIM at its output data rate and sends each sample through a channel; an inference
//! task slides a window over them and classifies it, in parts, yielding to the executor between
//! them so that a long inference never stalls the sensor task.
//!
//! The LIS3DH is on the DK's Arduino header (SDA P0.26, SCL P0.27, address 0x18). The model
//! (`model/`, as `mote export` writes it) is a stand-in with random weights and the shape of a
//! motion model: 32 samples of x, y, z in g.
#![no_std]
#![no_main]

use defmt::{info, warn};
use embassy_executor::Spawner;
use embassy_futures::yield_now;
use embassy_nrf::twim::{self, Twim};
use embassy_nrf::{bind_interrupts, peripherals};
use embassy_sync::blocking_mutex::raw::ThreadModeRawMutex;
use embassy_sync::channel::{Channel, Receiver};
use embassy_time::{Delay, Timer};
use mote_core::input::lis3dh::{DataRate, Lis3dhAsync};
use mote_core::input::{AsyncSampleSource, InputQuantization, SlidingWindow};
use mote_core::model::Layer;
use mote_core::{Budget, Error, Interpreter, Model, Progress};
use {defmt_rtt as _, panic_probe as _};

// MODEL, ARENA_SIZE, OP_COUNT, INPUTS, OUTPUTS, CLASS_NAMES, NORMALIZATION_MEAN/STD,
// MOTE_CORE_FEATURES, and the compile-time checks that this build has every feature it needs.
include!("../model/model.rs");

/// Samples in one model input ([1, WINDOW, 3, 1]: time down, x/y/z across).
const WINDOW: usize = INPUTS[0].shape[1];
/// A new input every half window: at 50 Hz, a classification every 320 ms.
const HOP: usize = WINDOW / 2;
const RATE: DataRate = DataRate::Hz50;
/// The LIS3DH's I2C address with SDO/SA0 low.
const LIS3DH_ADDRESS: u8 = 0x18;
/// Multiply-accumulates per part of an inference: each part runs well under a millisecond at
/// 64 MHz, so the sensor task waits no longer than that for its turn.
const MACS_PER_PART: u64 = 20_000;
/// Samples buffered between the tasks: a few periods of slack for an inference's parts.
const QUEUE: usize = 16;

type Sample = [f32; 3];
static SAMPLES: Channel<ThreadModeRawMutex, Sample, QUEUE> = Channel::new();

bind_interrupts!(struct Irqs {
    TWISPI0 => twim::InterruptHandler<peripherals::TWISPI0>;
});

/// Reads the accelerometer at its data rate (the driver awaits data-ready) and queues each
/// sample.
#[embassy_executor::task]
async fn sensor(mut lis3dh: Lis3dhAsync<Twim<'static>, Delay>) {
    loop {
        match lis3dh.next_sample().await {
            Ok(sample) => SAMPLES.send(sample).await,
            Err(e) => {
                warn!("LIS3DH: {}", defmt::Debug2Format(&e));
                Timer::after_millis(100).await;
            }
        }
    }
}

/// The channel's receiving end as mote-core's async sample source, for `SlidingWindow`.
struct Queued(Receiver<'static, ThreadModeRawMutex, Sample, QUEUE>);

impl AsyncSampleSource<3> for Queued {
    type Error = core::convert::Infallible;

    async fn read_sample(&mut self) -> Result<Sample, Self::Error> {
        Ok(self.0.receive().await)
    }
}

/// Waits for each window, then runs the model on it a part at a time.
#[embassy_executor::task]
async fn inference(mut interpreter: Interpreter<'static, 'static>) {
    let quantization = InputQuantization {
        mean: NORMALIZATION_MEAN,
        std: NORMALIZATION_STD,
        scale: INPUTS[0].scale,
        zero_point: INPUTS[0].zero_point,
    };
    let mut window: SlidingWindow<Queued, 3, WINDOW> =
        SlidingWindow::new(Queued(SAMPLES.receiver()), HOP, quantization);
    loop {
        let result = match interpreter.input_i8(0) {
            Ok(input) => match window.next_input_async(input).await {
                Ok(()) => classify(&mut interpreter).await,
                Err(e) => {
                    warn!("window: {}", defmt::Debug2Format(&e));
                    continue;
                }
            },
            Err(e) => Err(e),
        };
        match result {
            Ok((class, score)) => info!(
                "class {} {} (score {})",
                class,
                CLASS_NAMES.get(class).copied().unwrap_or("?"),
                score
            ),
            Err(e) => warn!("inference: {}", e),
        }
    }
}

/// One inference in parts of `MACS_PER_PART`, yielding between them; the best class and score.
async fn classify(interpreter: &mut Interpreter<'_, '_>) -> Result<(usize, i8), Error> {
    let mut progress = Progress::default();
    while !interpreter.invoke_some(&mut progress, Budget::Macs(MACS_PER_PART))? {
        yield_now().await;
    }
    let scores = interpreter.output_i8(0)?;
    let best = (0..scores.len()).max_by_key(|&i| scores[i]).unwrap_or(0);
    Ok((best, scores[best]))
}

/// The model's bytes stay in flash; the arena must start on a 4-byte boundary.
#[repr(C, align(4))]
struct Arena([u8; ARENA_SIZE]);

/// Every check of the blob, then every operator decoded into its slot.
fn interpreter() -> Result<Interpreter<'static, 'static>, Error> {
    let model = Model::parse(&MODEL.0)?;
    let arena = cortex_m::singleton!(: Arena = Arena([0; ARENA_SIZE]));
    let slots = cortex_m::singleton!(: [Option<Layer<'static>>; OP_COUNT] = [None; OP_COUNT]);
    let (Some(arena), Some(slots)) = (arena, slots) else {
        unreachable!("called once");
    };
    Interpreter::with_decoded(model, &mut arena.0, slots)
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_nrf::init(Default::default());
    info!("mote Embassy example: features {}", MOTE_CORE_FEATURES);
    let interpreter = match interpreter() {
        Ok(interpreter) => interpreter,
        Err(e) => defmt::panic!("the model: {}", e),
    };

    // The TWIM's DMA reads only RAM: writes of constants in flash go through this buffer.
    let Some(tx_buffer) = cortex_m::singleton!(: [u8; 8] = [0; 8]) else {
        unreachable!("main runs once");
    };
    let i2c = Twim::new(
        p.TWISPI0,
        Irqs,
        p.P0_26,
        p.P0_27,
        twim::Config::default(),
        tx_buffer,
    );
    let lis3dh = match Lis3dhAsync::new(i2c, Delay, LIS3DH_ADDRESS, RATE).await {
        Ok(lis3dh) => lis3dh,
        Err(e) => defmt::panic!(
            "no LIS3DH at {=u8:#x}: {}",
            LIS3DH_ADDRESS,
            defmt::Debug2Format(&e)
        ),
    };
    spawner.spawn(defmt::unwrap!(sensor(lis3dh)));
    spawner.spawn(defmt::unwrap!(inference(interpreter)));
}
