//! The graph passes on the golden cases that exercise them: each rewrite happens where it
//! should and not elsewhere (`goldens.rs` checks the rewritten graphs stay bit-exact).

use mote_host::passes::simplify;
use mote_host::tfgraph::TfGraph;
use mote_tests::golden;
use mote_tests::lowering::to_graph;

fn simplified(case: &str) -> TfGraph {
    simplify(&to_graph(&golden::load_case(case))).expect("passes run")
}

fn op_names(g: &TfGraph) -> Vec<&str> {
    g.operators.iter().map(|op| op.name.as_str()).collect()
}

#[test]
fn pads_before_valid_convolutions_fold_into_them() {
    for case in [
        "padfold_zeropad_conv_valid",
        "padfold_asym_conv_s2",
        "padfold_asym_dwconv_s2",
    ] {
        let before = to_graph(&golden::load_case(case));
        assert_eq!(op_names(&before)[0], "PAD", "{case}");
        let after = simplified(case);
        assert_eq!(after.operators.len(), 1, "{case}: {:?}", op_names(&after));
        let conv = &after.operators[0];
        assert!(
            matches!(
                conv.options.padding,
                mote_core::ops::Padding::Explicit { .. }
            ),
            "{case}"
        );
        // The orphaned padded activation and the paddings constant are gone.
        assert_eq!(after.tensors.len(), before.tensors.len() - 2, "{case}");
        assert_eq!(conv.inputs[0], Some(after.inputs[0]), "{case}");
    }
}

#[test]
fn pads_stay_where_folding_would_change_the_result() {
    // Max pooling skips padded cells; a PAD that is the model's output has no consumer.
    for case in [
        "padfold_not_into_maxpool",
        "pad_zeropad2d_asym",
        "padv2_value_rank3",
    ] {
        let after = simplified(case);
        assert!(op_names(&after).contains(&"PAD") || op_names(&after).contains(&"PADV2"));
    }
    // A PADV2 whose value is not the zero point never folds, even before a VALID conv.
    let mut g = to_graph(&golden::load_case("padfold_asym_conv_s2"));
    let pad = &mut g.operators[0];
    let value = g.tensors.len();
    let mut t = g.tensors[pad.inputs[0].unwrap()].clone();
    let zp = t.quant.as_ref().unwrap().zero_points[0];
    t.name = "value".into();
    t.shape = vec![];
    t.data = Some(mote_host::builder::Data::I8(vec![(zp + 1) as i8]));
    pad.name = "PADV2".into();
    pad.inputs.push(Some(value));
    g.tensors.push(t);
    let after = simplify(&g).unwrap();
    assert_eq!(op_names(&after), ["PADV2", "CONV_2D"]);
}

#[test]
fn wide_concatenations_become_chains_of_four() {
    for case in ["concat_7_inputs_split", "pack_axis1_6_inputs"] {
        let after = simplified(case);
        let concats: Vec<_> = after
            .operators
            .iter()
            .filter(|op| op.name == "CONCATENATION")
            .collect();
        assert!(concats.len() >= 2, "{case}: {:?}", op_names(&after));
        assert!(concats.iter().all(|op| op.inputs.len() <= 4), "{case}");
        assert!(!op_names(&after).contains(&"PACK"), "{case}");
    }
}

#[test]
fn pack_becomes_reshapes_and_a_concatenation() {
    let after = simplified("pack_axis_last");
    assert_eq!(
        op_names(&after),
        ["RESHAPE", "RESHAPE", "RESHAPE", "CONCATENATION"]
    );
    assert_eq!(after.operators[3].options.axis, 2);
}

#[test]
fn concatenation_of_differently_quantized_inputs_is_refused() {
    let mut g = to_graph(&golden::load_case("concat_channels"));
    let input = g.operators[0].inputs[0].unwrap();
    g.tensors[input].quant.as_mut().unwrap().scales[0] *= 2.0;
    let err = g.to_builder().and_then(|b| b.build()).unwrap_err();
    assert!(
        format!("{err:#}").contains("quantized like the output"),
        "{err:#}"
    );
}
