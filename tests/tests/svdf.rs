//! SVDF and its state through the whole path: a golden case's graph, edited, must be refused
//! with an error that names the fault (a state that is not variable, shapes that do not fit,
//! a bias quantized otherwise), a blob whose state lost its variable flag must not parse, an
//! omitted bias computes what an all-zero one does (TFLite-Micro's kernel; its Prepare crashes
//! on an omitted bias), and the state carries from invoke to invoke until `reset_state`.

use mote_core::format::{blob_crc, CRC_OFFSET, TENSOR_RECORD_LEN};
use mote_core::{Interpreter, Model};
use mote_host::tfgraph::TfGraph;
use mote_host::AlignedBytes;
use mote_tests::golden::{self, GoldenCase};
use mote_tests::lowering::to_graph;

fn build(graph: &TfGraph) -> Result<Vec<u8>, String> {
    graph
        .to_builder()
        .and_then(|b| b.build())
        .map(|b| b.bytes)
        .map_err(|e| format!("{e:#}"))
}

fn case() -> GoldenCase {
    golden::load_case("svdf_int16_rank1")
}

/// The refusal of `graph`, which must not build.
fn refusal(graph: &TfGraph) -> String {
    match build(graph) {
        Ok(_) => panic!("an invalid SVDF was accepted"),
        Err(e) => e,
    }
}

#[test]
fn faults_in_the_graph_are_refused_by_name() {
    let good = to_graph(&case());
    build(&good).expect("the golden case builds");
    // Tensors: 0 input, 1 weights_feature, 2 weights_time, 3 bias, 4 state, 5 output.
    let mut g = good.clone();
    g.tensors[4].variable = false;
    assert!(
        refusal(&g).contains("must be a variable tensor"),
        "{}",
        refusal(&g)
    );

    let mut g = good.clone();
    g.tensors[4].shape = vec![1, 10];
    assert!(
        refusal(&g).contains("[batch, memory * filters]"),
        "{}",
        refusal(&g)
    );

    let mut g = good.clone();
    g.operators[0].options.rank = 2; // 3 filters
    assert!(refusal(&g).contains("rank must divide"), "{}", refusal(&g));

    let mut g = good.clone();
    g.tensors[3].quant.as_mut().unwrap().scales[0] *= 2.0;
    assert!(refusal(&g).contains("bias scale"), "{}", refusal(&g));

    let mut g = good.clone();
    g.tensors[4].dtype = mote_core::format::DType::I8;
    assert!(refusal(&g).contains("state"), "{}", refusal(&g));

    let mut g = good.clone();
    g.tensors[5].shape = vec![1, 4];
    assert!(refusal(&g).contains("output"), "{}", refusal(&g));
}

/// Clears tensor `index`'s variable flag in `blob` and seals it again.
fn clear_variable(blob: &mut [u8], index: usize) {
    let tensors = u32::from_le_bytes(blob[28..32].try_into().unwrap()) as usize;
    let flags = tensors + index * TENSOR_RECORD_LEN + 3;
    assert_eq!(blob[flags], 1, "tensor {index} is variable");
    blob[flags] = 0;
    let declared = u32::from_le_bytes(blob[8..12].try_into().unwrap()) as usize;
    let crc = blob_crc(&blob[..declared]);
    blob[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_blob_whose_state_is_not_variable_does_not_parse() {
    let mut blob = build(&to_graph(&case())).unwrap();
    let aligned = AlignedBytes::new(&blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let state = (0..model.tensor_count())
        .find(|&i| model.tensor(i).unwrap().record.variable)
        .expect("a variable tensor");
    clear_variable(&mut blob, usize::from(state));
    let aligned = AlignedBytes::new(&blob);
    let e = Model::parse(aligned.as_slice()).unwrap_err().to_string();
    // Either the plan (a state live for the whole model but not variable) or the decoder.
    assert!(e.contains("variable"), "{e}");
}

/// Every vector of `blob` run in one interpreter, state carried; the int8 outputs.
fn run_all(blob: &[u8], case: &GoldenCase, reset_every: usize) -> Vec<Vec<u8>> {
    let aligned = AlignedBytes::new(blob);
    let model = Model::parse(aligned.as_slice()).unwrap();
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let mut interp = Interpreter::new(model, arena.as_mut_slice()).unwrap();
    let mut outs = Vec::new();
    for (v, vector) in case.vectors.iter().enumerate() {
        if v % reset_every == 0 {
            interp.reset_state().unwrap();
        }
        let bytes = golden::to_le_bytes(&vector.inputs[0], case.input_tensor(0).dtype).unwrap();
        interp.input_bytes(0).unwrap().copy_from_slice(&bytes);
        interp.invoke().unwrap();
        outs.push(interp.output_bytes(0).unwrap().to_vec());
    }
    outs
}

#[test]
fn an_omitted_bias_computes_what_a_zero_bias_does() {
    let case = golden::load_case("svdf_int16_rank2_batch2_zero_bias");
    let zero = to_graph(&case);
    assert!(zero.tensors[3].data.is_some());
    let mut omitted = zero.clone();
    omitted.operators[0].inputs[3] = None;
    let (a, b) = (build(&zero).unwrap(), build(&omitted).unwrap());
    assert_ne!(a, b, "the omitted bias is not in the blob");
    assert_eq!(
        run_all(&a, &case, case.sequence),
        run_all(&b, &case, case.sequence)
    );
}

#[test]
fn state_carries_until_reset() {
    let case = case();
    let blob = build(&to_graph(&case)).unwrap();
    let carried = run_all(&blob, &case, usize::MAX);
    let reset = run_all(&blob, &case, 1);
    let want: Vec<Vec<u8>> = (0..case.vectors.len())
        .map(|v| golden::to_le_bytes(&case.vectors[v].outputs[0], golden::DType::Int8).unwrap())
        .collect();
    // The first sequence is TFLite-Micro's whether or not the state is reset after it ...
    assert_eq!(carried[..case.sequence], want[..case.sequence]);
    // ... an interpreter reset before every invoke forgets (memory 4 shows after one) ...
    assert_ne!(reset, want);
    // ... and the second sequence needs the reset at its start.
    assert_ne!(carried[case.sequence..], want[case.sequence..]);
}
