//! Constant folding: an operator whose inputs are all constants is evaluated on the host and
//! replaced by a constant, and SHAPE of a tensor with a static shape is one. What this removes
//! in practice is the shape arithmetic converters write for a dynamic batch (Keras `Reshape` or
//! `Flatten` with `batch_size=None`: SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE), which leaves
//! the RESHAPE with a constant shape. Integer tensors only; an operator this pass cannot
//! evaluate exactly is left for lowering to accept or refuse.

use super::axis;
use crate::builder::Data;
use crate::tfgraph::{TfGraph, TfOperator, TfTensor};
use anyhow::{bail, ensure, Context, Result};
use mote_core::format::DType;
use mote_core::ops::strided_slice::{resolve_slice, resolve_strided, AxisSlice, SliceMasks};
use mote_core::ops::Activation;

pub(crate) fn run(graph: &mut TfGraph) -> Result<()> {
    let ops = std::mem::take(&mut graph.operators);
    for (k, op) in ops.into_iter().enumerate() {
        let folded = fold(graph, &op)
            .with_context(|| format!("operator {k} ({} v{})", op.name, op.version))?;
        match folded {
            Some(values) => {
                let out = &mut graph.tensors[op.outputs[0]];
                out.data = Some(to_data(out.dtype, &values));
            }
            None => graph.operators.push(op),
        }
    }
    Ok(())
}

/// The output's elements, if `op` is one this pass evaluates and its inputs are constants.
fn fold(graph: &TfGraph, op: &TfOperator) -> Result<Option<Vec<i64>>> {
    let [output] = op.outputs[..] else {
        return Ok(None);
    };
    let Some(out) = graph.tensors.get(output) else {
        return Ok(None);
    };
    let inputs: Option<Vec<&TfTensor>> = op
        .inputs
        .iter()
        .flatten()
        .map(|&t| graph.tensors.get(t))
        .collect();
    let Some(inputs) = inputs else {
        return Ok(None);
    };
    if graph.outputs.contains(&output) || !integer(out.dtype) || inputs.is_empty() {
        return Ok(None);
    }
    if op.name == "SHAPE" {
        return Ok(Some(inputs[0].shape.iter().map(|&d| d as i64).collect()));
    }
    let values: Option<Vec<Vec<i64>>> = inputs.iter().map(|t| values(t)).collect();
    let Some(v) = values else {
        return Ok(None);
    };
    // Copies move raw elements; they fold only where every tensor has the same quantization.
    let same_quant = inputs.iter().all(|t| t.quant == out.quant);
    let plain = inputs.iter().all(|t| t.quant.is_none()) && out.quant.is_none();
    let dims = &inputs[0].shape;
    let o = &op.options;
    let result = match op.name.as_str() {
        "RESHAPE" | "SQUEEZE" | "EXPAND_DIMS" if same_quant || plain => v[0].clone(),
        "CAST" if plain => v[0].clone(),
        "STRIDED_SLICE" if same_quant && v.len() == 4 => {
            let masks = SliceMasks {
                begin: o.begin_mask,
                end: o.end_mask,
                ellipsis: o.ellipsis_mask,
                new_axis: o.new_axis_mask,
                shrink: o.shrink_axis_mask,
                offset: o.offset,
            };
            let (b, e, s) = (i32s(&v[1])?, i32s(&v[2])?, i32s(&v[3])?);
            let axes = resolve_strided(dims, (&b, &e, &s), masks).map_err(anyhow::Error::msg)?;
            walk(&v[0], dims, &axes)?
        }
        "SLICE" if same_quant && v.len() == 3 => {
            let (b, s) = (i32s(&v[1])?, i32s(&v[2])?);
            let axes = resolve_slice(dims, &b, &s).map_err(anyhow::Error::msg)?;
            walk(&v[0], dims, &axes)?
        }
        "PACK" if same_quant => {
            ensure!(
                inputs.iter().all(|t| &t.shape == dims),
                "PACK of different shapes"
            );
            let at = axis(o.axis.into(), dims.len() + 1)?;
            let inner: usize = dims[at..].iter().product();
            interleave(&v, &vec![inner; v.len()])
        }
        "CONCATENATION" if same_quant && o.activation == Activation::None => {
            let at = axis(o.axis.into(), dims.len())?;
            // Ranks come from the file: an input of a lower rank has no dimensions past `at`.
            let inners = inputs
                .iter()
                .map(|t| t.shape.get(at..).map(|d| d.iter().product()))
                .collect::<Option<Vec<_>>>()
                .context("CONCATENATION of different ranks")?;
            interleave(&v, &inners)
        }
        "GATHER" if o.batch_dims == 0 && inputs[0].quant == out.quant && v.len() == 2 => {
            gather(&v[0], dims, &v[1], axis(o.axis.into(), dims.len())?)?
        }
        "ADD" | "SUB" | "MUL" if plain && out.dtype == DType::I32 && v.len() == 2 => {
            if o.activation != Activation::None {
                return Ok(None);
            }
            match arithmetic(&op.name, &v[0], &v[1]) {
                Some(r) => r,
                None => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    // The output's shape is not a constant's: nothing bounds its product.
    let elements = out.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    ensure!(
        Some(result.len()) == elements,
        "folds to {} elements; the output {:?} holds {}",
        result.len(),
        out.shape,
        elements.map_or("more than the address space".to_string(), |n| n.to_string())
    );
    Ok(Some(result))
}

fn integer(dtype: DType) -> bool {
    matches!(dtype, DType::I8 | DType::U8 | DType::I16 | DType::I32)
}

/// A constant's elements, if it is an integer constant.
fn values(t: &TfTensor) -> Option<Vec<i64>> {
    Some(match t.data.as_ref()? {
        Data::I8(v) => v.iter().map(|&x| x.into()).collect(),
        Data::U8(v) => v.iter().map(|&x| x.into()).collect(),
        Data::I16(v) => v.iter().map(|&x| x.into()).collect(),
        Data::I32(v) => v.iter().map(|&x| x.into()).collect(),
        Data::F32(_) => return None,
    })
}

/// Elements as `dtype`, wrapping as C's integer conversions (TFLite's CAST) do.
fn to_data(dtype: DType, v: &[i64]) -> Data {
    match dtype {
        DType::I8 => Data::I8(v.iter().map(|&x| x as i8).collect()),
        DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
        DType::I16 => Data::I16(v.iter().map(|&x| x as i16).collect()),
        DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
        DType::F32 => Data::F32(v.iter().map(|&x| x as f32).collect()),
    }
}

fn i32s(v: &[i64]) -> Result<Vec<i32>> {
    Ok(v.iter()
        .map(|&x| i32::try_from(x))
        .collect::<Result<_, _>>()?)
}

/// The elements a resolved slice visits, in order (`dims` right-aligned to four axes).
fn walk(v: &[i64], dims: &[usize], axes: &[AxisSlice; 4]) -> Result<Vec<i64>> {
    let mut padded = [1usize; 4];
    padded[4 - dims.len()..].copy_from_slice(dims);
    let pitch = [
        padded[1] * padded[2] * padded[3],
        padded[2] * padded[3],
        padded[3],
        1,
    ];
    let mut out = Vec::new();
    let mut index = [0usize; 4];
    loop {
        let mut at = 0i64;
        for k in 0..4 {
            let i = axes[k].start as i64 + index[k] as i64 * i64::from(axes[k].stride);
            at += i * pitch[k] as i64;
        }
        out.push(
            *v.get(usize::try_from(at)?)
                .context("slice outside the constant")?,
        );
        // Odometer over the counts, last axis fastest.
        let mut k = 4;
        loop {
            if k == 0 {
                return Ok(out);
            }
            k -= 1;
            index[k] += 1;
            if index[k] < axes[k].count {
                break;
            }
            index[k] = 0;
        }
    }
}

/// PACK and CONCATENATION: for each outer index, `inners[i]` elements of input `i` in turn.
fn interleave(v: &[Vec<i64>], inners: &[usize]) -> Vec<i64> {
    let outer = match inners.first() {
        Some(&i) if i > 0 => v[0].len() / i,
        _ => 0,
    };
    let mut out = Vec::new();
    for o in 0..outer {
        for (x, &inner) in v.iter().zip(inners) {
            out.extend(x.iter().skip(o * inner).take(inner));
        }
    }
    out
}

/// GATHER along `at` with constant `indices`.
fn gather(params: &[i64], dims: &[usize], indices: &[i64], at: usize) -> Result<Vec<i64>> {
    let outer: usize = dims[..at].iter().product();
    let inner: usize = dims[at + 1..].iter().product();
    let mut out = Vec::new();
    for o in 0..outer {
        for &i in indices {
            let i = usize::try_from(i).ok().filter(|&i| i < dims[at]);
            let Some(i) = i else {
                bail!("GATHER index {i:?} out of range")
            };
            let from = (o * dims[at] + i) * inner;
            out.extend_from_slice(&params[from..from + inner]);
        }
    }
    Ok(out)
}

/// int32 ADD, SUB or MUL of same-length operands or one operand of one element, wrapping as
/// TFLite's int32 kernels do; `None` for other broadcasts.
fn arithmetic(name: &str, a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let n = a.len().max(b.len());
    let pick = |x: &[i64], i: usize| if x.len() == 1 { x[0] } else { x[i] };
    if !(a.len() == b.len() || a.len() == 1 || b.len() == 1) {
        return None;
    }
    let f = |x: i64, y: i64| {
        let (x, y) = (x as i32, y as i32);
        i64::from(match name {
            "ADD" => x.wrapping_add(y),
            "SUB" => x.wrapping_sub(y),
            _ => x.wrapping_mul(y),
        })
    };
    Some((0..n).map(|i| f(pick(a, i), pick(b, i))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Quantization;
    use crate::tfgraph::TfOptions;

    fn tensor(name: &str, shape: &[usize], dtype: DType, data: Option<Data>) -> TfTensor {
        TfTensor {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
            quant: (dtype == DType::I8).then(|| Quantization::per_tensor(0.1, 0)),
            data,
            variable: false,
        }
    }

    fn op(name: &str, inputs: &[usize], output: usize, options: TfOptions) -> TfOperator {
        TfOperator {
            name: name.into(),
            version: 1,
            inputs: inputs.iter().map(|&i| Some(i)).collect(),
            outputs: vec![output],
            options,
        }
    }

    fn i32c(v: &[i32]) -> Option<Data> {
        Some(Data::I32(v.to_vec()))
    }

    /// Keras Reshape with a dynamic batch: SHAPE -> STRIDED_SLICE (shrink) -> PACK -> RESHAPE.
    /// The chain folds to the constant [1, 6, 8]; the RESHAPE stays and lowers.
    fn dynamic_reshape() -> TfGraph {
        let i32t = |name, shape: &[usize], data| tensor(name, shape, DType::I32, data);
        TfGraph {
            tensors: vec![
                tensor("x", &[1, 4, 4, 3], DType::I8, None),
                i32t("shape", &[4], None),
                i32t("begin", &[1], i32c(&[0])),
                i32t("end", &[1], i32c(&[1])),
                i32t("strides", &[1], i32c(&[1])),
                i32t("batch", &[], None),
                i32t("six", &[], i32c(&[6])),
                i32t("eight", &[], i32c(&[8])),
                i32t("new_shape", &[3], None),
                tensor("y", &[1, 6, 8], DType::I8, None),
            ],
            operators: vec![
                op("SHAPE", &[0], 1, TfOptions::default()),
                op(
                    "STRIDED_SLICE",
                    &[1, 2, 3, 4],
                    5,
                    TfOptions {
                        shrink_axis_mask: 1,
                        ..TfOptions::default()
                    },
                ),
                op(
                    "PACK",
                    &[5, 6, 7],
                    8,
                    TfOptions {
                        num: 3,
                        ..TfOptions::default()
                    },
                ),
                op("RESHAPE", &[0, 8], 9, TfOptions::default()),
            ],
            inputs: vec![0],
            outputs: vec![9],
        }
    }

    #[test]
    fn the_dynamic_batch_shape_chain_folds_to_a_constant() {
        let mut g = dynamic_reshape();
        run(&mut g).unwrap();
        assert_eq!(g.operators.len(), 1);
        assert_eq!(g.operators[0].name, "RESHAPE");
        assert_eq!(g.tensors[8].data, i32c(&[1, 6, 8]));
        let simplified = crate::passes::simplify(&dynamic_reshape()).unwrap();
        assert_eq!(simplified.operators.len(), 1);
        // x, the folded new shape and y remain.
        assert_eq!(simplified.tensors.len(), 3);
        assert!(dynamic_reshape().to_builder().unwrap().build().is_ok());
    }

    #[test]
    fn copies_and_arithmetic_evaluate() {
        let v: Vec<i64> = (0..24).collect();
        // x[1:2, ::-2] of a [2, 3, 4] constant.
        let axes = resolve_strided(
            &[2, 3, 4],
            (&[1, 0, 3], &[2, 3, 0], &[1, 1, -2]),
            SliceMasks::default(),
        )
        .unwrap();
        assert_eq!(
            walk(&v, &[2, 3, 4], &axes).unwrap(),
            [15, 13, 19, 17, 23, 21]
        );
        // PACK of two [2] along axis 1 and CONCATENATION along axis 0.
        let ab = [vec![1, 2], vec![3, 4]];
        assert_eq!(interleave(&ab, &[1, 1]), [1, 3, 2, 4]);
        assert_eq!(interleave(&ab, &[2, 2]), [1, 2, 3, 4]);
        assert_eq!(
            gather(&v, &[6, 4], &[5, 0], 0).unwrap()[..5],
            [20, 21, 22, 23, 0]
        );
        assert!(gather(&v, &[6, 4], &[6], 0).is_err());
        assert_eq!(arithmetic("MUL", &[2, 3], &[4]).unwrap(), [8, 12]);
        assert_eq!(
            arithmetic("SUB", &[i32::MIN as i64], &[1]).unwrap(),
            [i32::MAX as i64]
        );
        assert!(arithmetic("ADD", &[1, 2], &[1, 2, 3]).is_none());
    }

    /// An operator on activations, or whose output the model returns, is left alone.
    #[test]
    fn only_constant_operators_fold() {
        let mut g = dynamic_reshape();
        g.outputs = vec![8, 9];
        run(&mut g).unwrap();
        assert_eq!(g.operators.len(), 2);
        assert_eq!(g.operators[0].name, "PACK");
    }
}
