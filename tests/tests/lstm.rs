//! UNIDIRECTIONAL_SEQUENCE_LSTM beyond the golden vectors: its state across invokes and the
//! LSTM variants and malformed graphs it refuses with a reason.

use mote_core::{Interpreter, Model};
use mote_host::tfgraph::TfGraph;
use mote_host::AlignedBytes;
use mote_tests::golden;
use mote_tests::lowering::to_graph;

fn graph(case: &str) -> TfGraph {
    to_graph(&golden::load_case(case))
}

fn build_error(g: &TfGraph) -> String {
    match g.to_builder().and_then(|b| b.build()) {
        Ok(_) => panic!("the graph built"),
        Err(e) => format!("{e:#}"),
    }
}

/// The graph's single LSTM operator.
fn lstm_op(g: &mut TfGraph) -> &mut mote_host::tfgraph::TfOperator {
    g.operators
        .iter_mut()
        .find(|op| op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM")
        .expect("an LSTM")
}

#[test]
fn state_carries_across_invokes_until_reset() {
    let built = graph("lstm_seq_6x5_u7")
        .to_builder()
        .unwrap()
        .build()
        .unwrap();
    let blob = AlignedBytes::new(&built.bytes);
    let model = Model::parse(blob.as_slice()).unwrap();
    let mut arena = AlignedBytes::zeroed(model.arena_size());
    let mut interpreter = Interpreter::new(model, arena.as_mut_slice()).unwrap();
    let run = |interpreter: &mut Interpreter| {
        let input = interpreter.input_i8(0).unwrap();
        for (i, v) in input.iter_mut().enumerate() {
            *v = (i as i32 * 29 % 256 - 128) as i8;
        }
        interpreter.invoke().unwrap();
        interpreter.output_i8(0).unwrap().to_vec()
    };
    let first = run(&mut interpreter);
    let second = run(&mut interpreter);
    assert_ne!(
        first, second,
        "the second invoke starts from the first's state"
    );
    interpreter.reset_state().unwrap();
    assert_eq!(
        run(&mut interpreter),
        first,
        "reset_state forgets the sequence"
    );
}

#[test]
fn a_state_that_is_not_variable_is_refused() {
    let mut g = graph("lstm_seq_6x5_u7");
    let hidden = lstm_op(&mut g).inputs[18].unwrap();
    g.tensors[hidden].variable = false;
    let e = build_error(&g);
    assert!(e.contains("must be a variable tensor"), "{e}");
}

#[test]
fn lstm_variants_tflite_micro_lacks_are_refused() {
    // A peephole (cell-to-forget weights): reuse the forget gate's bias tensor's id.
    let mut g = graph("lstm_seq_6x5_u7");
    let op = lstm_op(&mut g);
    op.inputs[10] = op.inputs[13];
    let e = build_error(&g);
    assert!(
        e.contains("peephole, projection or layer normalization"),
        "{e}"
    );
}

#[test]
fn weights_of_the_wrong_shape_are_refused() {
    let mut g = graph("lstm_seq_6x5_u7");
    // The recurrent-to-cell weights given where the input-to-cell ones belong: [7, 7], not
    // [7, 5].
    let op = lstm_op(&mut g);
    op.inputs[3] = op.inputs[7];
    let e = build_error(&g);
    assert!(e.contains("[units, inputs]"), "{e}");
}
