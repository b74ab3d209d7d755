//! `Interpreter::invoke_some`: an invoke run a few operators (or multiply-accumulates) at a
//! time gives the same output bytes as one `invoke`, carries state like it, and always ends.

use mote_core::{Budget, Interpreter, Model, Progress};
use mote_host::AlignedBytes;

fn model_bytes(path: &str) -> Vec<u8> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bytes = std::fs::read(format!("{root}/{path}")).unwrap();
    match path.ends_with(".tflite") {
        true => mote_host::tflite::import_tflite(&bytes).unwrap().bytes,
        false => bytes,
    }
}

/// Input bytes from a seed, the same for every run.
fn fill(interpreter: &mut Interpreter<'_, '_>, seed: u32) {
    let mut state = seed | 1;
    for i in 0..interpreter.model().input_count() {
        for b in interpreter.input_bytes(i).unwrap() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *b = state as u8;
        }
    }
}

fn outputs(interpreter: &Interpreter<'_, '_>) -> Vec<u8> {
    (0..interpreter.model().output_count())
        .flat_map(|o| interpreter.output_bytes(o).unwrap().to_vec())
        .collect()
}

/// Output bytes of `runs` invokes (state carried) done whole, and done by `budget`, with the
/// number of `invoke_some` calls the latter took.
fn both_ways(path: &str, budget: Budget, runs: u32) -> (Vec<u8>, Vec<u8>, usize) {
    let bytes = model_bytes(path);
    let aligned = AlignedBytes::new(&bytes);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let mut whole = Vec::new();
    {
        let mut interpreter = Interpreter::new(model, arena.as_mut_slice()).unwrap();
        for run in 0..runs {
            fill(&mut interpreter, run);
            interpreter.invoke().unwrap();
            whole.extend(outputs(&interpreter));
        }
    }
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let mut interpreter = Interpreter::new(model, arena.as_mut_slice()).unwrap();
    let (mut parts, mut calls) = (Vec::new(), 0);
    let mut progress = Progress::default();
    for run in 0..runs {
        fill(&mut interpreter, run);
        loop {
            calls += 1;
            assert!(calls < 100_000, "an invoke that never ends");
            if interpreter.invoke_some(&mut progress, budget).unwrap() {
                break;
            }
            assert_ne!(progress.next_operator(), 0);
        }
        assert_eq!(progress.next_operator(), 0);
        parts.extend(outputs(&interpreter));
    }
    (whole, parts, calls)
}

#[test]
fn one_operator_at_a_time_is_one_invoke() {
    let path = "firmware/models/demo/model.mote";
    let ops = Model::parse(AlignedBytes::new(&model_bytes(path)).as_slice())
        .unwrap()
        .op_count();
    let (whole, parts, calls) = both_ways(path, Budget::Operators(1), 3);
    assert_eq!(whole, parts);
    assert_eq!(calls, 3 * usize::from(ops));
    let (_, _, calls) = both_ways(path, Budget::Operators(u16::MAX), 3);
    assert_eq!(calls, 3);
}

#[test]
fn a_mac_budget_splits_an_invoke_and_state_carries_between_parts() {
    // An LSTM: its state carries from one invoke to the next, whichever way they run.
    for path in [
        "tests/real-models/tflm_mnist_lstm_int8.tflite",
        "tests/real-models/tflm_person_detect.tflite",
    ] {
        let bytes = model_bytes(path);
        let model_ref = AlignedBytes::new(&bytes);
        let model = Model::parse(model_ref.as_slice()).unwrap();
        let total: u64 = (0..model.op_count())
            .map(|i| model.layer(i).unwrap().macs(&model).unwrap())
            .sum();
        let (whole, parts, calls) = both_ways(path, Budget::Macs(total / 8), 2);
        assert_eq!(whole, parts, "{path}");
        // Up to eight parts per invoke, fewer when one operator holds most of the MACs (an
        // operator larger than the budget runs alone), and never one.
        assert!(
            (2 * 2..=2 * usize::from(model.op_count())).contains(&calls),
            "{path}: {calls}"
        );
        // A zero budget still runs an operator per call.
        let (_, zero, _) = both_ways(path, Budget::Macs(0), 1);
        assert_eq!(&whole[..zero.len()], &zero[..], "{path}");
    }
}
