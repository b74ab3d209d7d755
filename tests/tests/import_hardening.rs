//! `.tflite` import and `.mote` loading on crafted inputs the graph passes and the host's arena
//! allocation once trusted: each is an error that says what is wrong, never a panic (in a dev
//! build, where integer overflow panics, too) or a 4 GiB allocation. The last test mutates the
//! graphs of the real models and of every golden case thousands of times and lowers each.

use mote_core::format::{blob_crc, DType, CRC_OFFSET};
use mote_host::builder::Data;
use mote_host::tfgraph::{TfGraph, TfOperator, TfTensor};
use mote_host::tflite::{import_tflite, infer, lower, read_tflite};
use mote_tests::golden::{case_files, load, load_case};
use mote_tests::lowering::to_graph;
use mote_tests::synth::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

const BIG: usize = i32::MAX as usize;

/// Lowers and builds `graph`; its error text, or a failure naming the panic.
fn build_error(graph: &TfGraph) -> String {
    match catch_unwind(AssertUnwindSafe(|| lower(graph).and_then(|b| b.build()))) {
        Ok(Ok(_)) => panic!("the graph built"),
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => panic!("building the graph panicked"),
    }
}

fn case(name: &str) -> TfGraph {
    to_graph(&load_case(name))
}

fn constant_i32(name: &str, shape: Vec<usize>, v: Vec<i32>) -> TfTensor {
    TfTensor {
        name: name.into(),
        shape,
        dtype: DType::I32,
        quant: None,
        data: Some(Data::I32(v)),
        variable: false,
    }
}

#[test]
fn a_folded_output_whose_shape_overflows_is_an_error() {
    // Tensor 6 is STRIDED_SLICE's output in the SHAPE -> STRIDED_SLICE -> PACK chain that
    // constant folding evaluates: its shape is the file's, not a constant's.
    let mut g = case("shape_reshape_dynamic_batch");
    g.tensors[6].shape = vec![BIG; 4];
    let e = build_error(&g);
    assert!(e.contains("more than the address space"), "{e}");
}

#[test]
fn folding_a_concatenation_of_constants_of_different_ranks_is_an_error() {
    let mut g = TfGraph::default();
    g.tensors.push(constant_i32("a", vec![1, 2, 3], vec![1; 6]));
    g.tensors.push(constant_i32("b", vec![3], vec![2; 3]));
    g.tensors.push(constant_i32("out", vec![1, 2, 6], vec![]));
    g.tensors[2].data = None;
    g.tensors.push(TfTensor {
        name: "x".into(),
        shape: vec![1, 12],
        dtype: DType::I8,
        quant: None,
        data: None,
        variable: false,
    });
    let mut concat = TfOperator {
        name: "CONCATENATION".into(),
        version: 1,
        inputs: vec![Some(0), Some(1)],
        outputs: vec![2],
        options: Default::default(),
    };
    concat.options.axis = 2;
    g.operators.push(concat);
    g.inputs = vec![3];
    g.outputs = vec![3];
    let e = build_error(&g);
    assert!(e.contains("CONCATENATION of different ranks"), "{e}");
}

#[test]
fn a_dilated_convolution_pattern_with_a_missing_tensor_is_an_error() {
    // SPACE_TO_BATCH_ND -> CONV_2D -> BATCH_TO_SPACE_ND, with no output on the last one, or no
    // input on the first.
    let mut g = case("dilated_conv_valid_s2b");
    g.operators[2].outputs.clear();
    build_error(&g);
    let mut g = case("dilated_conv_valid_s2b");
    g.operators[0].inputs.clear();
    build_error(&g);
}

#[test]
fn a_dilated_convolution_whose_batch_overflows_is_an_error() {
    // A zero point of -1 keeps this SAME pattern from folding, so its shapes are inferred:
    // a batch of 2^31 - 1 times blocks of 2^31 - 1, padded to one block each way.
    let mut g = case("dilated_conv_same_s2b");
    g.tensors[0].shape[0] = BIG;
    let block = g.tensors.len();
    g.tensors
        .push(constant_i32("block", vec![2], vec![i32::MAX, i32::MAX]));
    let pads = g.tensors.len();
    let pad = i32::MAX - 9;
    g.tensors
        .push(constant_i32("pads", vec![2, 2], vec![pad, 0, pad, 0]));
    g.operators[0].inputs = vec![Some(0), Some(block), Some(pads)];
    let e = build_error(&g);
    assert!(e.contains("the batch times the blocks is too large"), "{e}");
}

#[test]
fn crops_whose_sum_overflows_are_an_error() {
    let mut g = case("batch_to_space_crop_2x2");
    g.tensors[1].data = Some(Data::I32(vec![0, 1, i32::MAX, i32::MAX]));
    let e = build_error(&g);
    assert!(
        e.contains("the crops or the batch do not fit the blocks"),
        "{e}"
    );
}

#[test]
fn a_mean_over_a_rank_0_input_is_an_error() {
    let mut g = case("mean_axis2");
    g.tensors[0].shape = vec![];
    let e = build_error(&g);
    assert!(e.contains("axis"), "{e}");
}

#[test]
fn an_add_whose_element_count_overflows_is_an_error() {
    let mut g = case("add_two_scales_none");
    g.tensors[0].shape = vec![BIG; 4];
    let e = build_error(&g);
    assert!(e.contains("too large"), "{e}");
}

/// The hello-world model's blob, with its header's `arena_size` set to `size` and the CRC
/// resealed.
fn blob_with_arena(size: u32) -> Vec<u8> {
    let tflite = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("real-models/tflm_hello_world_int8.tflite"),
    )
    .unwrap();
    let mut blob = import_tflite(&tflite).unwrap().bytes;
    blob[16..20].copy_from_slice(&size.to_le_bytes());
    let crc = blob_crc(&blob);
    blob[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    blob
}

#[test]
fn an_arena_larger_than_the_model_uses_is_refused_before_allocating() {
    let built = blob_with_arena(0);
    let aligned = mote_host::AlignedBytes::new(&built);
    // The real figure, read back from an honest blob.
    let honest = blob_with_arena(u32::MAX);
    let used = {
        let tflite = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("real-models/tflm_hello_world_int8.tflite"),
        )
        .unwrap();
        import_tflite(&tflite).unwrap().arena_size
    };
    assert!(
        mote_core::Model::parse(aligned.as_slice()).is_err(),
        "arena 0 fits nothing"
    );
    let e = format!("{:#}", infer(&honest, &[0]).unwrap_err());
    assert!(
        e.contains(&format!("asks for a {}-byte arena", u32::MAX))
            && e.contains(&format!("use {used} bytes")),
        "{e}"
    );
    // The honest blob runs.
    assert_eq!(infer(&blob_with_arena(used as u32), &[0]).unwrap().len(), 1);
}

#[test]
fn every_model_mote_builds_uses_exactly_its_declared_arena() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for dir in ["real-models", "mlperf"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "tflite") {
                continue;
            }
            let Ok(built) = import_tflite(&std::fs::read(&path).unwrap()) else {
                continue;
            };
            let aligned = mote_host::AlignedBytes::new(&built.bytes);
            let model = mote_core::Model::parse(aligned.as_slice()).unwrap();
            let used = mote_host::arena_used(&model).unwrap();
            assert_eq!(used, built.arena_size, "{}", path.display());
            checked += 1;
        }
    }
    for path in case_files() {
        let c = load(&path);
        let built = to_graph(&c).to_builder().and_then(|b| b.build()).unwrap();
        let aligned = mote_host::AlignedBytes::new(&built.bytes);
        let model = mote_core::Model::parse(aligned.as_slice()).unwrap();
        assert_eq!(
            mote_host::arena_used(&model).unwrap(),
            built.arena_size,
            "{}",
            c.name
        );
        checked += 1;
    }
    assert!(checked > 200, "{checked}");
}

/// Every graph to mutate: the real models mote imports, and every golden case.
fn graphs() -> Vec<(String, TfGraph)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["real-models", "mlperf"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let small = path.metadata().unwrap().len() < 400_000;
            if path.extension().is_some_and(|e| e == "tflite") && small {
                if let Ok(g) = read_tflite(&std::fs::read(&path).unwrap()) {
                    out.push((path.file_name().unwrap().to_string_lossy().into(), g));
                }
            }
        }
    }
    for path in case_files() {
        let c = load(&path);
        out.push((c.name.clone(), to_graph(&c)));
    }
    out
}

/// A dimension a `.tflite` file can hold.
fn dim(rng: &mut Rng) -> usize {
    rng.pick(&[0, 1, 2, 3, 4, 7, 8, 16, 65536, 1 << 20, BIG])
}

fn value(rng: &mut Rng) -> i32 {
    rng.pick(&[
        0,
        1,
        -1,
        2,
        3,
        4,
        -2,
        7,
        100,
        65536,
        i32::MAX,
        i32::MIN,
        i32::MAX / 2,
    ])
}

/// One change a `.tflite` file could express: a dimension, an int32 constant, an operator's
/// tensors or options, a type, the graph's inputs and outputs.
fn mutate(rng: &mut Rng, g: &mut TfGraph) {
    let (nt, no) = (g.tensors.len(), g.operators.len());
    let op = (no > 0).then(|| rng.size(0, no.max(1) - 1));
    let t = rng.size(0, nt - 1);
    match (rng.below(7), op) {
        (0, _) => {
            let shape = &mut g.tensors[t].shape;
            match rng.below(3) {
                0 if !shape.is_empty() => {
                    let k = rng.size(0, shape.len() - 1);
                    shape[k] = dim(rng);
                }
                1 => {
                    shape.pop();
                }
                _ if shape.len() < 6 => shape.push(dim(rng)),
                _ => {}
            }
        }
        (1, _) => {
            if let Some(Data::I32(v)) = &mut g.tensors[t].data {
                if !v.is_empty() {
                    let k = rng.size(0, v.len() - 1);
                    v[k] = value(rng);
                }
            }
        }
        (2, Some(k)) => {
            let op = &mut g.operators[k];
            match rng.below(4) {
                0 if !op.inputs.is_empty() => {
                    let i = rng.size(0, op.inputs.len() - 1);
                    op.inputs[i] = rng.pick(&[None, Some(t)]);
                }
                1 => {
                    op.inputs.pop();
                }
                2 => op.inputs.push(Some(t)),
                _ => match rng.below(3) {
                    0 => op.outputs.clear(),
                    1 => op.outputs.push(t),
                    _ => op.outputs = vec![t],
                },
            }
        }
        (3, Some(k)) => {
            let o = &mut g.operators[k].options;
            match rng.below(10) {
                0 => o.axis = value(rng),
                1 => o.num_splits = dim(rng),
                2 => o.num = dim(rng),
                3 => o.stride_h = dim(rng),
                4 => o.filter_w = dim(rng),
                5 => o.dilation_h = dim(rng),
                6 => o.block_size = dim(rng),
                7 => o.batch_dims = value(rng),
                8 => o.shrink_axis_mask = value(rng),
                _ => o.rank = dim(rng),
            }
        }
        (4, _) if g.tensors[t].data.is_none() => {
            g.tensors[t].dtype =
                rng.pick(&[DType::I8, DType::I32, DType::F32, DType::U8, DType::I16]);
        }
        (5, _) => {
            g.inputs.pop();
        }
        _ => g.outputs.push(t),
    }
}

#[test]
fn thousands_of_graph_mutations_never_panic() {
    let all = graphs();
    let mut rng = Rng::new(23);
    let mut failures = Vec::new();
    for round in 0..4000 {
        let (name, base) = &all[rng.size(0, all.len() - 1)];
        let mut g = base.clone();
        for _ in 0..rng.size(1, 3) {
            mutate(&mut rng, &mut g);
        }
        let built = catch_unwind(AssertUnwindSafe(|| lower(&g).and_then(|b| b.build())));
        if built.is_err() {
            failures.push(format!("round {round}: {name}"));
        }
    }
    assert!(failures.is_empty(), "panics: {failures:?}");
}
