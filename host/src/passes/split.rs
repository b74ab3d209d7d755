//! SPLIT, SPLIT_V and UNPACK have one output per part; a mote operator has one. Each becomes
//! one SLICE per part (UNPACK: one STRIDED_SLICE with the axis shrunk), reading the same input
//! with constant begin/size operands added to the graph. Like TFLite-Micro's kernels, the
//! slices copy raw elements.

use super::{add_i32, axis, i32_constant};
use crate::tfgraph::{TfGraph, TfOperator, TfOptions};
use anyhow::{ensure, Context, Result};

pub(crate) fn run(graph: &mut TfGraph) -> Result<()> {
    let ops = std::mem::take(&mut graph.operators);
    for (k, op) in ops.into_iter().enumerate() {
        let parts = match op.name.as_str() {
            "SPLIT" | "SPLIT_V" | "UNPACK" => parts(graph, &op)
                .with_context(|| format!("operator {k} ({} v{})", op.name, op.version))?,
            _ => {
                graph.operators.push(op);
                continue;
            }
        };
        graph.operators.extend(parts);
    }
    Ok(())
}

/// The single-output operators that replace `op`.
fn parts(graph: &mut TfGraph, op: &TfOperator) -> Result<Vec<TfOperator>> {
    let (input, sizes_at, axis_at) = match op.name.as_str() {
        "SPLIT" => (op.inputs.get(1), None, op.inputs.first()),
        "SPLIT_V" => (op.inputs.first(), op.inputs.get(1), op.inputs.get(2)),
        _ => (op.inputs.first(), None, None),
    };
    let input = input.copied().flatten().context("the input is missing")?;
    let dims = graph
        .tensors
        .get(input)
        .context("the input does not exist")?
        .shape
        .clone();
    let ax = match axis_at {
        Some(&id) => i32_constant(graph, id, "the axis")?
            .first()
            .copied()
            .context("the axis is empty")?,
        None => op.options.axis,
    };
    let ax = axis(ax.into(), dims.len())?;
    let n = op.outputs.len();
    let sizes = match (op.name.as_str(), sizes_at) {
        ("SPLIT_V", Some(&id)) => {
            split_v_sizes(&i32_constant(graph, id, "size_splits")?, dims[ax])?
        }
        _ => {
            ensure!(
                n > 0 && dims[ax] % n == 0,
                "{n} outputs do not divide axis {ax} of {dims:?} evenly"
            );
            vec![dims[ax] / n; n]
        }
    };
    ensure!(sizes.len() == n, "{} parts for {n} outputs", sizes.len());
    let rank = dims.len();
    let mut begin = 0;
    let mut out = Vec::with_capacity(n);
    for (&output, &size) in op.outputs.iter().zip(&sizes) {
        let name = graph
            .tensors
            .get(output)
            .context("an output does not exist")?
            .name
            .clone();
        let mut starts = vec![0i32; rank];
        starts[ax] = i32::try_from(begin)?;
        let i32s = |v: Vec<usize>| {
            v.into_iter()
                .map(i32::try_from)
                .collect::<Result<Vec<_>, _>>()
        };
        let part = if op.name == "UNPACK" {
            let mut ends = i32s(dims.clone())?;
            ends[ax] = starts[ax] + 1;
            let b = add_i32(graph, format!("{name}/begin"), vec![rank], starts);
            let e = add_i32(graph, format!("{name}/end"), vec![rank], ends);
            let s = add_i32(graph, format!("{name}/strides"), vec![rank], vec![1; rank]);
            let options = TfOptions {
                shrink_axis_mask: 1 << ax,
                ..TfOptions::default()
            };
            slice_op("STRIDED_SLICE", vec![input, b, e, s], output, options)
        } else {
            let mut lens = dims.clone();
            lens[ax] = size;
            let b = add_i32(graph, format!("{name}/begin"), vec![rank], starts);
            let s = add_i32(graph, format!("{name}/size"), vec![rank], i32s(lens)?);
            slice_op("SLICE", vec![input, b, s], output, TfOptions::default())
        };
        out.push(part);
        begin += size;
    }
    Ok(out)
}

fn slice_op(name: &str, inputs: Vec<usize>, output: usize, options: TfOptions) -> TfOperator {
    TfOperator {
        name: name.to_string(),
        version: 1,
        inputs: inputs.into_iter().map(Some).collect(),
        outputs: vec![output],
        options,
    }
}

/// SPLIT_V's sizes with its one `-1` resolved to what the others leave of `dim`.
fn split_v_sizes(sizes: &[i32], dim: usize) -> Result<Vec<usize>> {
    let unknown = sizes.iter().filter(|&&s| s == -1).count();
    ensure!(unknown <= 1, "size_splits has more than one -1");
    let known: i64 = sizes
        .iter()
        .filter(|&&s| s != -1)
        .map(|&s| i64::from(s))
        .sum();
    ensure!(
        sizes.iter().all(|&s| s == -1 || s > 0),
        "size_splits {sizes:?} has an empty or negative part"
    );
    let rest = dim as i64 - known;
    ensure!(
        rest >= 0 && (unknown == 1 || rest == 0) && (unknown == 0 || rest > 0),
        "size_splits {sizes:?} do not add up to the axis' {dim}"
    );
    Ok(sizes
        .iter()
        .map(|&s| if s == -1 { rest as usize } else { s as usize })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Data, Quantization};
    use crate::tfgraph::TfTensor;
    use mote_core::format::DType;

    fn act(name: &str, shape: &[usize]) -> TfTensor {
        TfTensor {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: DType::I8,
            quant: Some(Quantization::per_tensor(0.1, 0)),
            data: None,
            variable: false,
        }
    }

    fn constant(v: Vec<i32>) -> TfTensor {
        TfTensor {
            name: "c".into(),
            shape: vec![v.len()],
            dtype: DType::I32,
            quant: None,
            data: Some(Data::I32(v)),
            variable: false,
        }
    }

    #[test]
    fn split_v_resolves_minus_one_and_refuses_bad_sizes() {
        assert_eq!(split_v_sizes(&[2, -1, 3], 7).unwrap(), [2, 2, 3]);
        assert_eq!(split_v_sizes(&[3, 4], 7).unwrap(), [3, 4]);
        assert!(split_v_sizes(&[3, 5], 7).is_err());
        assert!(split_v_sizes(&[-1, -1], 7).is_err());
        assert!(split_v_sizes(&[7, -1], 7).is_err());
        assert!(split_v_sizes(&[0, 7], 7).is_err());
    }

    /// SPLIT along the channels becomes one SLICE per output, each from its own offset; the
    /// split's axis constant is left for the orphan sweep.
    #[test]
    fn split_becomes_slices() {
        let mut g = TfGraph {
            tensors: vec![
                act("x", &[1, 2, 6]),
                constant(vec![-1]),
                act("a", &[1, 2, 2]),
                act("b", &[1, 2, 2]),
                act("c", &[1, 2, 2]),
            ],
            operators: vec![TfOperator {
                name: "SPLIT".into(),
                version: 1,
                inputs: vec![Some(1), Some(0)],
                outputs: vec![2, 3, 4],
                options: TfOptions {
                    num_splits: 3,
                    ..TfOptions::default()
                },
            }],
            inputs: vec![0],
            outputs: vec![2, 3, 4],
        };
        let original = g.clone();
        run(&mut g).unwrap();
        assert_eq!(g.operators.len(), 3);
        let third = &g.operators[2];
        assert_eq!(third.name, "SLICE");
        assert_eq!(third.outputs, [4]);
        assert_eq!(i32_constant(&g, third.inputs[1], "").unwrap(), [0, 0, 4]);
        assert_eq!(i32_constant(&g, third.inputs[2], "").unwrap(), [1, 2, 2]);
        let simplified = crate::passes::simplify(&original).unwrap();
        assert_eq!(simplified.tensors.len(), g.tensors.len() - 1);
        assert!(simplified.to_builder().unwrap().build().is_ok());
    }

    #[test]
    fn unpack_becomes_shrinking_strided_slices() {
        let mut g = TfGraph {
            tensors: vec![
                act("x", &[1, 3, 4]),
                act("a", &[1, 4]),
                act("b", &[1, 4]),
                act("c", &[1, 4]),
            ],
            operators: vec![TfOperator {
                name: "UNPACK".into(),
                version: 1,
                inputs: vec![Some(0)],
                outputs: vec![1, 2, 3],
                options: TfOptions {
                    num: 3,
                    axis: 1,
                    ..TfOptions::default()
                },
            }],
            inputs: vec![0],
            outputs: vec![1, 2, 3],
        };
        run(&mut g).unwrap();
        let second = &g.operators[1];
        assert_eq!(second.name, "STRIDED_SLICE");
        assert_eq!(second.options.shrink_axis_mask, 2);
        assert_eq!(i32_constant(&g, second.inputs[1], "").unwrap(), [0, 1, 0]);
        assert_eq!(i32_constant(&g, second.inputs[2], "").unwrap(), [1, 2, 4]);
        let built = g.to_builder().unwrap().build();
        assert!(built.is_ok(), "{:?}", built.err());
    }
}
