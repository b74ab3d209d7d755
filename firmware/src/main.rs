//! mote firmware: runs an int8 model with mote-core on a Cortex-M board (or QEMU's
//! mps2-an386) and reports its outputs and their cost through defmt.
#![no_std]
#![no_main]

/// Board features enabled: exactly one may be.
const BOARDS: usize = cfg!(feature = "board-qemu") as usize
    + cfg!(feature = "board-qemu-m3") as usize
    + cfg!(feature = "board-qemu-m7") as usize
    + cfg!(feature = "board-qemu-m33") as usize
    + cfg!(feature = "board-qemu-m55") as usize
    + cfg!(feature = "board-microbit") as usize
    + cfg!(feature = "board-nrf52840") as usize
    + cfg!(feature = "board-stm32f4") as usize
    + cfg!(feature = "board-rp2040") as usize;
const _: () = assert!(
    BOARDS <= 1,
    "choose exactly one board feature (see firmware/Cargo.toml), not several"
);
#[cfg(not(any(
    feature = "board-qemu",
    feature = "board-qemu-m3",
    feature = "board-qemu-m7",
    feature = "board-qemu-m33",
    feature = "board-qemu-m55",
    feature = "board-microbit",
    feature = "board-nrf52840",
    feature = "board-stm32f4",
    feature = "board-rp2040"
)))]
compile_error!("choose exactly one board feature: `qemu`, `qemu-m3`, `qemu-m7`, `qemu-m33`, `qemu-m55`, `microbit`, `nrf52840`, `stm32f4` or `rp2040` (or its `board-*` feature with `op-*` features)");

mod board;
mod cost;
mod finetune;
mod mem;
mod model;
mod model_slots;
mod once;
#[cfg(any(
    feature = "semihosting",
    feature = "board-stm32f4",
    feature = "board-rp2040"
))]
mod retained;
mod stack;
mod tally;

use cortex_m_rt::entry;
use mote_core::format::OpCode;
use mote_core::model::Layer;
use mote_core::{Interpreter, OpHook};

/// The arena, in RAM, sized by the build from the model's plan.
#[repr(C, align(4))]
struct Arena([u8; model::ARENA_SIZE]);

/// Times every operator of one invoke and, with a painted stack, measures its stack peak; each
/// layer's line is printed as it finishes (after its clock stopped), so nothing is stored.
struct Profiler {
    meter: cost::Meter,
    started: u64,
    painted: stack::Painted,
    peak: usize,
}

impl OpHook for Profiler {
    fn before(&mut self, _: u16, _: OpCode) {
        mote_layer_begin();
        self.started = self.meter.now();
    }
    fn after(&mut self, index: u16, op: OpCode) {
        let spent = self.meter.since(self.started).count;
        mote_layer_end();
        let stack = self.painted.peak_bytes();
        self.peak = self.peak.max(stack);
        defmt::println!(
            "layer {=u16} {=istr} {=u64} {=usize}",
            index,
            op.interned_name(),
            spent,
            stack
        );
        // Repainted after the clock stopped (not counted), and after the printing: the next
        // peak is the next layer's decoding and kernel.
        self.painted.repaint_below_caller();
    }
}

/// Faults while defmt formats it, i.e. in the middle of a log call (MOTE_FIRMWARE_FAULT).
struct FaultWhileFormatted;

impl defmt::Format for FaultWhileFormatted {
    fn format(&self, _: defmt::Formatter<'_>) {
        cortex_m::asm::udf()
    }
}

#[entry]
fn main() -> ! {
    let from_reset = stack::paint_from_reset();
    let meter = board::init();
    defmt::println!(
        "mote-firmware {=str} on {=istr}",
        env!("CARGO_PKG_VERSION"),
        board::name()
    );

    // Built with MOTE_FIRMWARE_FAULT set, the firmware fails on purpose so tests can check that
    // a panic or a fault ends the run with a failing status instead of hanging.
    match option_env!("MOTE_FIRMWARE_FAULT") {
        Some("panic") => panic!("deliberate panic (MOTE_FIRMWARE_FAULT=panic)"),
        Some("hardfault") => cortex_m::asm::udf(),
        // The fault handler logs too: it must not take the logger the faulting call holds.
        Some("hardfault-in-log") => defmt::println!("faulting {}", FaultWhileFormatted),
        _ => {}
    }

    let ok = match run(meter, from_reset) {
        Ok(()) => true,
        Err(e) => {
            defmt::error!("{}", e);
            false
        }
    };
    board::exit(ok)
}

fn run(meter: cost::Meter, from_reset: stack::FromReset) -> Result<(), mote_core::Error> {
    defmt::println!(
        "cost unit {=istr} ({=istr})",
        meter.unit().name(),
        meter.unit().method()
    );
    let start = meter.now();
    let model = model_slots::choose(&model::MODEL.0)?;
    let parse_cost = meter.since(start);
    defmt::println!(
        "model bytes={=usize} ops={=u16} arena={=usize} decoded={=usize} parse={=u64}",
        model.bytes().len(),
        model.op_count(),
        model.arena_size(),
        model::OP_COUNT * Interpreter::DECODED_SLOT,
        parse_cost.count
    );

    let Some(arena) = cortex_m::singleton!(: Arena = Arena([0; model::ARENA_SIZE])) else {
        return Err(mote_core::Error::BufferTooSmall {
            needed: model::ARENA_SIZE,
            actual: 0,
        });
    };
    // Each operator decoded once, here, so that an invoke only runs them.
    let Some(decoded) = decoded_slots() else {
        return Err(mote_core::Error::BufferTooSmall {
            needed: model::OP_COUNT * Interpreter::DECODED_SLOT,
            actual: 0,
        });
    };
    let mut interpreter = Interpreter::with_decoded(model, &mut arena.0, decoded)?;
    let vector_len = input_bytes(&interpreter)?;
    if vector_len == 0 || model::TEST_INPUTS.len() % vector_len != 0 {
        return Err(mote_core::Error::LengthMismatch {
            expected: vector_len,
            actual: model::TEST_INPUTS.len(),
        });
    }

    let mut deepest = from_reset.peak_bytes();
    let mut hits = 0;
    let mut tally = tally::ClassTally::new();
    for (vector, input) in model::TEST_INPUTS.chunks_exact(vector_len).enumerate() {
        // Labelled vectors are independent samples: each starts from the initial state, as the
        // host's evaluation does. Unlabelled ones are a stream: state carries, as in TFLite.
        if !model::TEST_LABELS.is_empty() {
            interpreter.reset_state()?;
        }
        fill_inputs(&mut interpreter, input)?;
        let start = meter.now();
        mote_timed_invoke(&mut interpreter)?;
        let total = meter.since(start);
        for o in 0..interpreter.model().output_count() {
            let bytes = interpreter.output_bytes(o)?;
            defmt::println!("output {=usize} {=u16} {=[u8]}", vector, o, bytes);
        }
        defmt::println!(
            "invoke {=usize} {=u64} {=istr}",
            vector,
            total.count,
            total.unit.name()
        );
        if vector == 0 {
            deepest = profile(&mut interpreter, meter, &from_reset, input)?;
        }
        // Accuracy is for classifiers with an int8 output.
        if let Ok(output) = interpreter.output_i8(0) {
            let predicted = finetune::argmax(output);
            let label = model::TEST_LABELS.get(vector).map(|&y| usize::from(y));
            hits += usize::from(label == Some(predicted));
            tally.record(vector, predicted, label);
        }
    }
    tally.report();
    if !model::TEST_LABELS.is_empty() {
        defmt::println!(
            "accuracy test {=usize}/{=usize}",
            hits,
            model::TEST_LABELS.len()
        );
    }

    if model::FINETUNE {
        if let finetune::Next::Reboot =
            finetune::run(&mut interpreter, meter, board::weight_flash())?
        {
            report_stack_from_reset(deepest.max(from_reset.peak_bytes()));
            defmt::println!("rebooting");
            board::reboot();
        }
    }
    report_stack_from_reset(deepest.max(from_reset.peak_bytes()));
    Ok(())
}

/// The per-layer profile: `input` (the first vector, just timed) again, with a hook around
/// every operator that logs its cost and its stack peak below the harness (painted first,
/// then again after each). The host's per-layer cycle trace stops after it, however many
/// vectors follow. Then `input` once more from the initial state, untimed, so that a stream
/// goes on as if the profile had not run. Returns the run's stack peak from reset so far.
fn profile(
    interpreter: &mut Interpreter<'_, '_>,
    meter: cost::Meter,
    from_reset: &stack::FromReset,
    input: &[u8],
) -> Result<usize, mote_core::Error> {
    // The profiler repaints the stack below it: what came before is read now, the profiled
    // invoke's depth from the profiler's own peak.
    let before_profile = from_reset.peak_bytes();
    let mut profiler = Profiler {
        meter,
        started: 0,
        painted: stack::paint(),
        peak: 0,
    };
    fill_inputs(interpreter, input)?;
    interpreter.invoke_with(&mut profiler)?;
    defmt::println!("stack peak {=usize} bytes", profiler.peak);
    let deepest = before_profile.max(profiler.painted.depth_from_top(profiler.peak));
    interpreter.reset_state()?;
    fill_inputs(interpreter, input)?;
    interpreter.invoke()?;
    Ok(deepest)
}

/// The whole run's stack peak so far, from the top of the stack: boot, parse, every invoke,
/// the log, fine-tuning.
fn report_stack_from_reset(bytes: usize) {
    defmt::println!("stack from reset {=usize} bytes", bytes);
}

/// The timed invoke, out of line under a fixed name: the host's cycle estimate traces the
/// first call of this function, from its entry until it returns (host/src/cycles.rs).
#[inline(never)]
#[no_mangle]
fn mote_timed_invoke(interpreter: &mut Interpreter<'_, '_>) -> Result<(), mote_core::Error> {
    interpreter.invoke()
}

/// Marks where an operator of the profiled invoke starts, for the host's per-layer cycle
/// estimate: it traces what runs between this call and the next [`mote_layer_end`] call.
/// Outside the SysTick window, so the firmware's own figures do not include the markers.
#[inline(never)]
#[no_mangle]
fn mote_layer_begin() {
    // A body the optimizer keeps (an empty function's call is deleted), different from the end
    // marker's: identical functions are folded into one address.
    cortex_m::asm::nop();
}

/// Marks where an operator of the profiled invoke ends (see [`mote_layer_begin`]).
#[inline(never)]
#[no_mangle]
fn mote_layer_end() {
    cortex_m::asm::nop();
    cortex_m::asm::nop();
}

// The build script's RAM check counts this much for each decoded operator.
const _: () = assert!(
    Interpreter::DECODED_SLOT <= model::DECODED_SLOT_BOUND,
    "a decoded operator outgrew the RAM check's bound in build.rs"
);

/// The slots the interpreter decodes every operator into, once: a static written in place (a
/// temporary array built on the stack would stay below `main`'s frame for the whole run).
/// `None` on a second call.
fn decoded_slots() -> Option<&'static mut [Option<Layer<'static>>]> {
    use core::mem::MaybeUninit;
    use core::sync::atomic::AtomicBool;
    static TAKEN: AtomicBool = AtomicBool::new(false);
    static mut SLOTS: MaybeUninit<[Option<Layer<'static>>; model::OP_COUNT]> =
        MaybeUninit::uninit();
    if !once::take(&TAKEN) {
        return None;
    }
    let base = core::ptr::addr_of_mut!(SLOTS).cast::<Option<Layer<'static>>>();
    for i in 0..model::OP_COUNT {
        // SAFETY: `i` is within the static's `OP_COUNT` slots, and the flag above lets only
        // this one call reach them, so nothing else reads or writes them.
        unsafe { base.add(i).write(None) };
    }
    // SAFETY: every slot was just written, the static lives for the whole program, and the
    // flag makes this the only reference to it.
    Some(unsafe { core::slice::from_raw_parts_mut(base, model::OP_COUNT) })
}

/// Bytes of one input vector: every model input's, in order.
fn input_bytes(interpreter: &Interpreter<'_, '_>) -> Result<usize, mote_core::Error> {
    let model = interpreter.model();
    (0..model.input_count()).try_fold(0usize, |sum, i| {
        let len = model.input(i)?.record.byte_len as usize;
        sum.checked_add(len).ok_or(mote_core::Error::ShapeOverflow)
    })
}

/// Copies one input vector into the model's inputs, in order, each raw in its own type.
fn fill_inputs(
    interpreter: &mut Interpreter<'_, '_>,
    vector: &[u8],
) -> Result<(), mote_core::Error> {
    let mut rest = vector;
    for i in 0..interpreter.model().input_count() {
        let slot = interpreter.input_bytes(i)?;
        let (head, tail) =
            rest.split_at_checked(slot.len())
                .ok_or(mote_core::Error::LengthMismatch {
                    expected: slot.len(),
                    actual: rest.len(),
                })?;
        slot.copy_from_slice(head);
        rest = tail;
    }
    Ok(())
}
