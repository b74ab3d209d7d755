//! Shape inference through a model's layers, with errors that name the layer (its index and
//! type) and both shapes when they do not connect.

use anyhow::{anyhow, bail, Result};

use super::spec::{path_name, LayerSpec, ModelSpec, PaddingKind, Pair, ResidualSpec, Shortcut};
use super::tensor::{volume, Geom, SampleShape};

/// Formats a shape as `[h, w, c]`.
pub(crate) fn show(s: SampleShape) -> String {
    format!("[{}, {}, {}]", s[0], s[1], s[2])
}

/// The window geometry of a conv/depthwise/pool layer on `input`, or why it does not fit.
pub(crate) fn window(
    input: SampleShape,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    padding: PaddingKind,
) -> Result<Geom, String> {
    Geom::new(
        input,
        kernel.tuple(),
        stride.tuple(),
        dilation.tuple(),
        padding.to_core(),
    )
    .ok_or_else(|| {
        let dil = if dilation == Pair::square(1) {
            String::new()
        } else {
            format!(" dilated {}x{}", dilation.h, dilation.w)
        };
        format!(
            "a {}x{}{dil} window does not fit the input {} with padding = \"valid\"",
            kernel.h,
            kernel.w,
            show(input)
        )
    })
}

fn positive(what: &str, v: usize) -> Result<(), String> {
    if v == 0 {
        Err(format!("{what} must be at least 1"))
    } else {
        Ok(())
    }
}

/// The output shape of one layer (checking its options), or what is wrong in words.
fn infer_one(layer: &LayerSpec, input: SampleShape, path: &[usize]) -> Result<SampleShape> {
    let at = || format!("layer {} ({})", path_name(path), layer.type_name());
    let fail = |msg: String| anyhow!("{}: {msg}", at());
    let [h, w, c] = input;
    let out = match layer {
        LayerSpec::Conv2d(s) => {
            positive("filters", s.filters).map_err(fail)?;
            let g = window(input, s.kernel, s.stride, s.dilation, s.padding).map_err(fail)?;
            [g.rows.output, g.cols.output, s.filters]
        }
        LayerSpec::DepthwiseConv2d(s) => {
            positive("depth_multiplier", s.depth_multiplier).map_err(fail)?;
            let g = window(input, s.kernel, s.stride, s.dilation, s.padding).map_err(fail)?;
            [g.rows.output, g.cols.output, c * s.depth_multiplier]
        }
        LayerSpec::SeparableConv2d(s) => {
            positive("filters", s.filters).map_err(fail)?;
            positive("depth_multiplier", s.depth_multiplier).map_err(fail)?;
            let g = window(input, s.kernel, s.stride, s.dilation, s.padding).map_err(fail)?;
            [g.rows.output, g.cols.output, s.filters]
        }
        LayerSpec::Dense(s) => {
            positive("units", s.units).map_err(fail)?;
            if h != 1 || w != 1 {
                bail!(
                    "{}: expects a flat input [1, 1, n], got {}; add a `flatten` (giving {}) or \
                     a `global_avg_pool` (giving {}) before it",
                    at(),
                    show(input),
                    show([1, 1, volume(input)]),
                    show([1, 1, c])
                );
            }
            [1, 1, s.units]
        }
        LayerSpec::MaxPool(s) | LayerSpec::AvgPool(s) => {
            let g = window(input, s.size, s.stride(), Pair::square(1), s.padding).map_err(fail)?;
            [g.rows.output, g.cols.output, c]
        }
        LayerSpec::GlobalAvgPool => [1, 1, c],
        LayerSpec::BatchNorm(s) => {
            if !(0.0..1.0).contains(&s.momentum) || s.epsilon.is_nan() || s.epsilon <= 0.0 {
                return Err(fail(format!(
                    "momentum must be in [0, 1) and epsilon > 0, got {} and {}",
                    s.momentum, s.epsilon
                )));
            }
            input
        }
        LayerSpec::Dropout(s) => {
            if !(0.0..1.0).contains(&s.rate) {
                return Err(fail(format!("rate must be in [0, 1), got {}", s.rate)));
            }
            input
        }
        LayerSpec::Relu | LayerSpec::Relu6 | LayerSpec::Softmax => input,
        LayerSpec::Flatten => [1, 1, volume(input)],
        LayerSpec::Lstm(s) => {
            positive("units", s.units).map_err(fail)?;
            if h != 1 {
                bail!(
                    "{}: expects sequences [1, steps, features], got {}; write the model's \
                     input as [steps, features] (an 8x8 image read row by row is [8, 8])",
                    at(),
                    show(input)
                );
            }
            if s.return_sequences {
                [1, w, s.units]
            } else {
                [1, 1, s.units]
            }
        }
        LayerSpec::Residual(r) => {
            if r.layers.is_empty() {
                bail!("{}: needs at least one inner layer", at());
            }
            let mut s = input;
            for (i, inner) in r.layers.iter().enumerate() {
                s = infer_one(inner, s, &[path, &[i]].concat())?;
            }
            projection_stride(r, input, s).map_err(fail)?;
            s
        }
    };
    if out.contains(&0) {
        bail!("{}: the output {} is empty", at(), show(out));
    }
    Ok(out)
}

/// The stride of a residual block's 1x1 projection shortcut from `input` to the inner layers'
/// `output`, or `None` for the identity shortcut; why neither fits otherwise.
pub(crate) fn projection_stride(
    r: &ResidualSpec,
    input: SampleShape,
    output: SampleShape,
) -> Result<Option<Pair>, String> {
    let same = input == output;
    match r.shortcut {
        None if same => return Ok(None),
        Some(Shortcut::Identity) if same => return Ok(None),
        Some(Shortcut::Identity) => {
            return Err(format!(
                "shortcut = \"identity\" needs the inner layers to keep the shape, but they map \
                 {} to {}; use shortcut = \"projection\" (or leave shortcut out)",
                show(input),
                show(output)
            ))
        }
        _ => {}
    }
    // A 1x1 window with stride s, no padding, gives ceil(n / s) outputs.
    let stride = |n: usize, out: usize| (1..=n).find(|s| n.div_ceil(*s) == out);
    match (stride(input[0], output[0]), stride(input[1], output[1])) {
        (Some(h), Some(w)) => Ok(Some(Pair { h, w })),
        _ => Err(format!(
            "no 1x1 projection shortcut maps {} to the inner layers' {} (a strided 1x1 \
             convolution gives ceil(size / stride)); use padding = \"same\" in the block",
            show(input),
            show(output)
        )),
    }
}

/// The output shape of `layer` at `path` given its input shape, checking its options.
pub(crate) fn infer(layer: &LayerSpec, input: SampleShape, path: &[usize]) -> Result<SampleShape> {
    infer_one(layer, input, path)
}

impl ModelSpec {
    /// Each top-level layer's output shape, after checking that the layers connect, that
    /// residual blocks' shortcuts fit, and that the output has `classes` values.
    pub fn shapes(&self) -> Result<Vec<SampleShape>> {
        let input = self.input_shape()?;
        if self.classes < 2 {
            bail!("classes must be at least 2, got {}", self.classes);
        }
        if self.layers.is_empty() {
            bail!("the model has no layers");
        }
        let mut shapes = Vec::with_capacity(self.layers.len());
        let mut s = input;
        for (i, layer) in self.layers.iter().enumerate() {
            s = infer(layer, s, &[i])?;
            shapes.push(s);
        }
        if volume(s) != self.classes {
            bail!(
                "the last layer's output {} has {} values per sample, but classes = {}",
                show(s),
                volume(s),
                self.classes
            );
        }
        Ok(shapes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", ModelSpec::parse(text).unwrap_err())
    }

    const HEAD: &str = "name = \"t\"\ninput = [8, 8, 1]\nclasses = 10\n";

    #[test]
    fn dense_after_a_feature_map_names_the_layer_both_shapes_and_the_fix() {
        let e = err(&format!(
            "{HEAD}[[layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel = 3\npadding = \"same\"\n\
             [[layers]]\ntype = \"max_pool\"\nsize = 2\n[[layers]]\ntype = \"dense\"\nunits = 10\n"
        ));
        assert!(e.contains("layer 2 (dense)"), "{e}");
        assert!(e.contains("[4, 4, 8]") && e.contains("[1, 1, 128]"), "{e}");
        assert!(
            e.contains("flatten") && e.contains("global_avg_pool"),
            "{e}"
        );
    }

    #[test]
    fn windows_that_do_not_fit_and_bad_options_are_named() {
        let e = err(&format!(
            "{HEAD}[[layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel = [9, 3]\n"
        ));
        assert!(e.contains("layer 0 (conv2d)") && e.contains("9x3"), "{e}");
        assert!(e.contains("[8, 8, 1]"), "{e}");
        let e = err(&format!(
            "{HEAD}[[layers]]\ntype = \"dropout\"\nrate = 1.5\n"
        ));
        assert!(e.contains("layer 0 (dropout)") && e.contains("rate"), "{e}");
        let e = err(&format!("{HEAD}[[layers]]\ntype = \"flatten\"\n"));
        assert!(e.contains("64 values") && e.contains("classes = 10"), "{e}");
    }

    #[test]
    fn residual_shortcuts_fit_or_name_both_shapes() {
        let block = |shortcut: &str, conv: &str| {
            format!(
                "{HEAD}[[layers]]\ntype = \"residual\"\n{shortcut}\
                 layers = [ {{ type = \"conv2d\", kernel = 3, {conv} }} ]\n\
                 [[layers]]\ntype = \"global_avg_pool\"\n\
                 [[layers]]\ntype = \"dense\"\nunits = 10\n"
            )
        };
        let strided = "filters = 16, stride = 2, padding = \"same\"";
        let spec = ModelSpec::parse(&block("", strided)).unwrap();
        assert_eq!(spec.shapes().unwrap()[0], [4, 4, 16]);
        let LayerSpec::Residual(r) = &spec.layers[0] else {
            panic!()
        };
        assert_eq!(
            projection_stride(r, [8, 8, 1], [4, 4, 16]),
            Ok(Some(Pair::square(2)))
        );
        assert!(ModelSpec::parse(&block("shortcut = \"projection\"\n", strided)).is_ok());
        let e = err(&block("shortcut = \"identity\"\n", strided));
        assert!(e.contains("layer 0 (residual)"), "{e}");
        assert!(e.contains("[8, 8, 1] to [4, 4, 16]"), "{e}");
        let e = err(&block("", "filters = 4"));
        assert!(e.contains("[8, 8, 1]") && e.contains("[6, 6, 4]"), "{e}");
        assert!(e.contains("padding = \"same\""), "{e}");
        let e = err(&block("shortcut = \"sideways\"\n", "filters = 1"));
        assert!(
            e.contains("layer 0 (residual)") && e.contains("sideways"),
            "{e}"
        );
        // Without `shortcut`, a block that keeps the shape is the identity, as before.
        let same = "filters = 1, padding = \"same\"";
        let spec = ModelSpec::parse(&block("", same)).unwrap();
        let LayerSpec::Residual(r) = &spec.layers[0] else {
            panic!()
        };
        assert_eq!(projection_stride(r, [8, 8, 1], [8, 8, 1]), Ok(None));
        assert!(!spec.to_toml().unwrap().contains("shortcut"));
    }

    #[test]
    fn an_lstm_on_images_or_without_units_is_named() {
        let e = err(&format!("{HEAD}[[layers]]\ntype = \"lstm\"\nunits = 10\n"));
        assert!(
            e.contains("layer 0 (lstm)") && e.contains("[8, 8, 1]"),
            "{e}"
        );
        assert!(
            e.contains("[steps, features]") && e.contains("[8, 8]"),
            "{e}"
        );
        let e = err("name = \"t\"\ninput = [8, 8]\nclasses = 10\n\
                     [[layers]]\ntype = \"lstm\"\nunits = 0\n");
        assert!(e.contains("layer 0 (lstm)") && e.contains("units"), "{e}");
    }
}
