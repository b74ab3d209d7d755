//! Every committed golden case (a TFLite model run by TFLite-Micro's reference kernels) goes
//! through mote's builder, mote-core's parser and interpreter, and must reproduce every output
//! byte.

use mote_core::{Interpreter, Model};
use mote_host::AlignedBytes;
use mote_tests::golden::{self, GoldenCase};
use mote_tests::lowering::to_graph;

/// Cases whose operators mote does not implement; each must fail to build with a clear error.
const UNSUPPORTED: &[(&str, &str)] = &[];

/// How the interpreter gets each operator: decoded as it runs, or decoded once beforehand.
#[derive(Clone, Copy, Debug)]
enum Decoding {
    EachInvoke,
    Once,
}

/// Runs every vector of `case`; returns the number of output bytes (or floats) compared.
fn run_case(case: &GoldenCase, decoding: Decoding) -> Result<usize, String> {
    let built = to_graph(case)
        .to_builder()
        .and_then(|b| b.build())
        .map_err(|e| format!("{e:#}"))?;
    // `MOTE_FUZZ_SEEDS=dir` keeps each case's model there: seeds for fuzz/ (see its README).
    if let Some(dir) = std::env::var_os("MOTE_FUZZ_SEEDS") {
        let path = std::path::Path::new(&dir).join(format!("golden-{}.mote", case.name));
        std::fs::write(path, &built.bytes).map_err(|e| e.to_string())?;
    }
    let blob = AlignedBytes::new(&built.bytes);
    let model = Model::parse(blob.as_slice()).map_err(|e| e.to_string())?;
    let mut arena = mote_host::AlignedBytes::zeroed(model.arena_size());
    let arena_bytes = arena.as_mut_slice();
    let mut slots = vec![None; usize::from(model.op_count())];
    let mut interpreter = match decoding {
        Decoding::EachInvoke => Interpreter::new(model, arena_bytes),
        Decoding::Once => Interpreter::with_decoded(model, arena_bytes, &mut slots),
    }
    .map_err(|e| e.to_string())?;
    let mut compared = 0;
    for (v, vector) in case.vectors.iter().enumerate() {
        // A sequence starts from the state's zero point, as a fresh TFLite-Micro interpreter.
        if v % case.sequence.max(1) == 0 {
            interpreter.reset_state().map_err(|e| e.to_string())?;
        }
        for i in 0..case.inputs.len() {
            let bytes = golden::to_le_bytes(&vector.inputs[i], case.input_tensor(i).dtype)?;
            interpreter
                .input_bytes(i as u16)
                .map_err(|e| e.to_string())?
                .copy_from_slice(&bytes);
        }
        interpreter
            .invoke()
            .map_err(|e| format!("vector {v}: {e}"))?;
        for o in 0..case.outputs.len() {
            let dtype = case.output_tensor(o).dtype;
            let got = interpreter
                .output_bytes(o as u16)
                .map_err(|e| e.to_string())?;
            let want = golden::to_le_bytes(&vector.outputs[o], dtype)?;
            if got != want.as_slice() {
                return Err(format!(
                    "vector {v} output {o} ({dtype:?}): got bytes {got:?}, TFLite-Micro {want:?}"
                ));
            }
            compared += case.output_tensor(o).elements();
        }
    }
    Ok(compared)
}

#[test]
fn every_golden_case_is_bit_exact_with_tflite_micro() {
    let cases = golden::load_all();
    assert!(cases.len() >= 60, "only {} golden cases found", cases.len());
    let mut failures = Vec::new();
    let mut compared = 0;
    for (case, decoding) in cases
        .iter()
        .flat_map(|c| [(c, Decoding::EachInvoke), (c, Decoding::Once)])
    {
        let expected_error = UNSUPPORTED.iter().find(|(name, _)| *name == case.name);
        match (run_case(case, decoding), expected_error) {
            (Ok(n), None) => compared += n,
            (Err(e), Some((_, msg))) if e.contains(msg) => {}
            (Err(e), _) => failures.push(format!("{} ({decoding:?}): {e}", case.name)),
            (Ok(_), Some(_)) => failures.push(format!("{}: expected to be unsupported", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!(
        "{} cases, {compared} output values bit-exact (each case decoded per invoke, then once)",
        cases.len()
    );
    assert!(compared > 1000);
}

/// Decoding once needs a slot per operator; fewer is an error that says how many bytes.
#[test]
fn decoding_once_needs_a_slot_per_operator() {
    let case = golden::load_all()
        .into_iter()
        .find(|c| c.name == "model_ds_cnn")
        .unwrap();
    let built = to_graph(&case).to_builder().unwrap().build().unwrap();
    let blob = AlignedBytes::new(&built.bytes);
    let model = Model::parse(blob.as_slice()).unwrap();
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let ops = usize::from(model.op_count());
    let mut slots = vec![None; ops - 1];
    let e = Interpreter::with_decoded(model, arena.as_mut_slice(), &mut slots).unwrap_err();
    let slot = Interpreter::DECODED_SLOT;
    assert_eq!(
        e,
        mote_core::Error::BufferTooSmall {
            needed: ops * slot,
            actual: (ops - 1) * slot
        }
    );
}
