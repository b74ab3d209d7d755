//! Training memory estimated from the model file before anything is allocated, so that an
//! absurd size (a mistyped `units`, a huge `batch_size`) is a clear error rather than an abort
//! on a failed allocation.

use super::shapes::{infer, projection_stride};
use super::spec::{LayerSpec, ModelSpec, Pair};
use super::tensor::SampleShape;
use anyhow::{ensure, Result};

/// Bytes of training memory above which `mote train` refuses a model.
pub(crate) const LIMIT: u64 = 16 << 30;

/// What training a model takes, roughly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Estimate {
    /// Trainable parameters.
    pub parameters: u64,
    /// Activation values of one sample, over every layer's output (a residual block's inner
    /// layers and projection shortcut included).
    pub activations: u64,
    /// Bytes: each parameter four times (value, gradient, two Adam moments), each activation
    /// twice per sample of a batch (kept for the backward pass, and its gradient).
    pub bytes: u64,
}

fn elements(shape: SampleShape) -> u64 {
    shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
}

fn area(k: Pair) -> u64 {
    (k.h as u64).saturating_mul(k.w as u64)
}

/// Products of sizes, saturating: the point is to see that they are absurd.
fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |n, &f| n.saturating_mul(f))
}

/// The parameters of `layer` (weights and biases; batch norm's four vectors) on `input`.
fn parameters(layer: &LayerSpec, input: SampleShape, path: &[usize]) -> Result<u64> {
    let c = input[2] as u64;
    Ok(match layer {
        LayerSpec::Conv2d(s) => product(&[area(s.kernel), c, s.filters as u64]) + s.filters as u64,
        LayerSpec::DepthwiseConv2d(s) => {
            let m = s.depth_multiplier as u64;
            product(&[area(s.kernel), c, m]).saturating_add(c.saturating_mul(m))
        }
        LayerSpec::SeparableConv2d(s) => {
            let (m, f) = (s.depth_multiplier as u64, s.filters as u64);
            product(&[area(s.kernel), c, m])
                .saturating_add(product(&[c, m, f]))
                .saturating_add(c.saturating_mul(m) + f)
        }
        LayerSpec::Dense(s) => product(&[elements(input).saturating_add(1), s.units as u64]),
        LayerSpec::Lstm(s) => {
            let u = s.units as u64;
            product(&[4, u, c.saturating_add(u).saturating_add(1)])
        }
        LayerSpec::BatchNorm(_) => 4 * c,
        LayerSpec::Residual(r) => {
            let mut total = 0u64;
            let mut s = input;
            for (k, inner) in r.layers.iter().enumerate() {
                let inner_path = [path, &[k]].concat();
                total = total.saturating_add(parameters(inner, s, &inner_path)?);
                s = infer(inner, s, &inner_path)?;
            }
            if projection_stride(r, input, s)
                .map_err(anyhow::Error::msg)?
                .is_some()
            {
                // The 1x1 projection's filter and bias.
                let out = s[2] as u64;
                total = total.saturating_add(product(&[c, out]).saturating_add(out));
            }
            total
        }
        _ => 0,
    })
}

/// The activation values of one sample that `layer` keeps: its output, and for a residual
/// block its inner layers' and its projection's outputs too.
fn activations(layer: &LayerSpec, input: SampleShape, path: &[usize]) -> Result<u64> {
    let out = infer(layer, input, path)?;
    let mut total = elements(out);
    if let LayerSpec::Residual(r) = layer {
        let mut s = input;
        for (k, inner) in r.layers.iter().enumerate() {
            let inner_path = [path, &[k]].concat();
            total = total.saturating_add(activations(inner, s, &inner_path)?);
            s = infer(inner, s, &inner_path)?;
        }
        if projection_stride(r, input, s)
            .map_err(anyhow::Error::msg)?
            .is_some()
        {
            total = total.saturating_add(elements(out));
        }
    }
    Ok(total)
}

/// The estimate for `spec` (whose shapes must connect).
pub(crate) fn estimate(spec: &ModelSpec) -> Result<Estimate> {
    let mut s = spec.input_shape()?;
    let (mut parameters_total, mut activations_total) = (0u64, elements(s));
    for (i, layer) in spec.layers.iter().enumerate() {
        parameters_total = parameters_total.saturating_add(parameters(layer, s, &[i])?);
        activations_total = activations_total.saturating_add(activations(layer, s, &[i])?);
        s = infer(layer, s, &[i])?;
    }
    let batch = spec.training.batch_size as u64;
    let bytes =
        product(&[parameters_total, 16]).saturating_add(product(&[activations_total, batch, 8]));
    Ok(Estimate {
        parameters: parameters_total,
        activations: activations_total,
        bytes,
    })
}

/// Errs, saying what to change, if training `spec` would take more than [`LIMIT`].
pub(crate) fn check(spec: &ModelSpec) -> Result<()> {
    let e = estimate(spec)?;
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    ensure!(
        e.bytes <= LIMIT,
        "training this model would take about {:.1} GiB ({} parameters, {} activation values \
         per sample, batches of {}), more than the {:.0} GiB mote allows: lower units, filters \
         or batch_size",
        gib(e.bytes),
        e.parameters,
        e.activations,
        spec.training.batch_size,
        gib(LIMIT)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layers: &str, batch: usize) -> ModelSpec {
        let text = format!(
            "name = \"m\"\ninput = [8, 8, 1]\nclasses = 10\n{layers}\n[training]\nbatch_size = {batch}\n"
        );
        ModelSpec::parse(&text).unwrap()
    }

    #[test]
    fn a_small_model_is_estimated_from_its_layers() {
        let s = spec(
            "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n",
            32,
        );
        let e = estimate(&s).unwrap();
        assert_eq!(e.parameters, 65 * 10);
        assert_eq!(e.activations, 64 + 64 + 10);
        assert_eq!(e.bytes, 650 * 16 + 138 * 32 * 8);
        assert!(check(&s).is_ok());
    }

    /// A projection shortcut's filter, bias and output count, and agree with the network.
    #[test]
    fn a_projection_shortcut_is_counted() {
        let block = |shortcut: &str| {
            spec(
                &format!(
                    "[[layers]]\ntype = \"residual\"\n{shortcut}layers = [ {{ type = \"conv2d\", \
                     filters = 4, kernel = 3, padding = \"same\", stride = 2 }} ]\n\
                     [[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n"
                ),
                8,
            )
        };
        let s = block("");
        let e = estimate(&s).unwrap();
        let conv = 9 * 4 + 4;
        let projection = 4 + 4;
        let dense = 65 * 10;
        assert_eq!(e.parameters, conv + projection + dense);
        let net = super::super::Network::new(&s).unwrap();
        assert_eq!(e.parameters, net.parameter_count() as u64);
        // Input, the block's output, its conv's and its projection's, flatten, dense.
        assert_eq!(e.activations, 64 + 64 + 64 + 64 + 64 + 10);
    }

    #[test]
    fn absurd_units_or_batches_are_refused_before_allocating() {
        let huge_units = spec(
            "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 1000000000\n\
             [[layers]]\ntype = \"dense\"\nunits = 10\n",
            32,
        );
        let e = check(&huge_units).unwrap_err().to_string();
        assert!(e.contains("lower units, filters or batch_size"), "{e}");
        let huge_batch = spec(
            "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 10\n",
            100_000_000,
        );
        assert!(check(&huge_batch).is_err());
    }
}
