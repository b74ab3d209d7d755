//! mote in a bare cortex-m-rt application: the model directory's `model.rs` included, an
//! arena in a static, frames from a sensor behind the app's own trait, and each frame's class
//! printed over semihosting. `cargo run --release` runs it on QEMU's emulated Cortex-M4F.
//!
//! The model (`model/`, as `mote import --dir` or `mote export` writes it) is mote's demo
//! DS-CNN on an 8x8x1 input: think of an 8x8 thermal-array sensor. Here a fake sensor replays
//! recorded frames; on a board, implement `FrameSensor` over your HAL's bus.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use mote_core::model::Layer;
use mote_core::ops::quantize::{dequantize_one, quantize_one};
use mote_core::{Error, Interpreter, Model};

// MODEL, ARENA_SIZE, OP_COUNT, INPUTS, OUTPUTS, CLASS_NAMES, MOTE_CORE_FEATURES, and the
// compile-time checks that this build has every mote-core feature the model needs.
include!("../model/model.rs");

/// The frame's pixels: the model's input shape.
const PIXELS: usize = INPUTS[0].shape[1] * INPUTS[0].shape[2] * INPUTS[0].shape[3];

/// The app's sensor, whatever the HAL: one frame of readings in the sensor's own units.
trait FrameSensor {
    /// The bus's or the chip's error.
    type Error: core::fmt::Debug;
    /// Waits for the next frame and writes it into `frame`.
    fn read_frame(&mut self, frame: &mut [f32; PIXELS]) -> Result<(), Self::Error>;
}

/// Recorded frames played back as a sensor would deliver them (`model/test_inputs.i8`, the
/// quantized frames, turned back into readings).
struct Playback {
    recorded: &'static [u8],
    next: usize,
}

/// The recording ran out.
#[derive(Debug)]
struct EndOfRecording;

impl FrameSensor for Playback {
    type Error = EndOfRecording;

    fn read_frame(&mut self, frame: &mut [f32; PIXELS]) -> Result<(), EndOfRecording> {
        let bytes = self
            .recorded
            .get(self.next..self.next + PIXELS)
            .ok_or(EndOfRecording)?;
        self.next += PIXELS;
        let input = INPUTS[0];
        for (reading, &q) in frame.iter_mut().zip(bytes) {
            *reading = dequantize_one(input.scale, input.zero_point, q as i8);
        }
        Ok(())
    }
}

/// The model's bytes in flash need no copy; the arena must start on a 4-byte boundary.
#[repr(C, align(4))]
struct Arena([u8; ARENA_SIZE]);

/// Once, at start-up: every check of the blob, then every operator decoded into its slot.
fn setup() -> Result<Interpreter<'static, 'static>, Error> {
    let model = Model::parse(&MODEL.0)?;
    let arena = cortex_m::singleton!(: Arena = Arena([0; ARENA_SIZE]));
    let slots = cortex_m::singleton!(: [Option<Layer<'static>>; OP_COUNT] = [None; OP_COUNT]);
    let (Some(arena), Some(slots)) = (arena, slots) else {
        unreachable!("setup runs once");
    };
    // Or Interpreter::new(model, &mut arena.0): no slots, each operator decoded as it runs.
    Interpreter::with_decoded(model, &mut arena.0, slots)
}

/// Each frame: readings quantized into the input tensor, one invoke, the best class and score.
fn classify(
    interpreter: &mut Interpreter<'_, '_>,
    frame: &[f32; PIXELS],
) -> Result<(usize, i8), Error> {
    let input = interpreter.input_i8(0)?;
    let (scale, zero_point) = (INPUTS[0].scale, INPUTS[0].zero_point);
    for (q, &x) in input.iter_mut().zip(frame) {
        *q = quantize_one(scale, zero_point, x);
    }
    interpreter.invoke()?;
    let scores = interpreter.output_i8(0)?;
    let best = (0..scores.len()).max_by_key(|&i| scores[i]).unwrap_or(0);
    Ok((best, scores[best]))
}

static RECORDED: &[u8] = include_bytes!("../model/test_inputs.i8");

#[entry]
fn main() -> ! {
    hprintln!(
        "mote bare-metal example: {} operators, {} B arena, features {:?}",
        OP_COUNT,
        ARENA_SIZE,
        MOTE_CORE_FEATURES
    );
    let mut interpreter = match setup() {
        Ok(interpreter) => interpreter,
        Err(e) => fail(e),
    };
    let mut sensor = Playback {
        recorded: RECORDED,
        next: 0,
    };
    let mut frame = [0f32; PIXELS];
    let mut frames = 0;
    while sensor.read_frame(&mut frame).is_ok() {
        match classify(&mut interpreter, &frame) {
            Ok((class, score)) => match CLASS_NAMES.get(class) {
                Some(name) => hprintln!(
                    "frame {}: class {} {} (score {})",
                    frames,
                    class,
                    name,
                    score
                ),
                None => hprintln!("frame {}: class {} (score {})", frames, class, score),
            },
            Err(e) => fail(e),
        }
        frames += 1;
    }
    hprintln!("done: {} frames", frames);
    exit(debug::EXIT_SUCCESS)
}

fn fail(e: Error) -> ! {
    hprintln!("error: {:?}", e);
    exit(debug::EXIT_FAILURE)
}

/// Ends the QEMU run (or a debug session) with `status`; without a debugger, sleeps.
fn exit(status: debug::ExitStatus) -> ! {
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

/// A panic ends the QEMU run with a failure, instead of hanging it.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    exit(debug::EXIT_FAILURE)
}
