#!/usr/bin/env python3
"""Golden vectors for mote: tiny int8 models run by TFLite-Micro's reference kernels.

For every case below this script builds a small Keras model with seeded random weights,
converts it with the TFLite converter to a fully int8-quantized model (representative dataset
from a seeded RNG), runs seeded int8 inputs through `tflite_micro.runtime.Interpreter` (the
oracle), and writes `tests/goldens/<case>.json`: the converted subgraph as read back from the
flatbuffer (tensors, quantization, constant buffers, operators and their options) plus the
input/output vectors.

Every case is also re-run through a small numpy re-implementation of the int8 kernels that
reads only the JSON; the summary says which requantization variant reproduces TFLite-Micro.

    python tools/goldens/generate.py            # regenerate every case
    python tools/goldens/generate.py --only conv2d_3x3_same_s2_relu
    python tools/goldens/generate.py --list     # names and descriptions
    python tools/goldens/generate.py --table    # the README's case table (markdown)

Python is tooling only; CI never runs this. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import zlib
from pathlib import Path
from typing import Callable, Optional

# Quiet, deterministic TensorFlow: no oneDNN (its float kernels may reorder sums, which would
# move calibration ranges between machines), no log spam.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

import flatbuffers  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
import tf_keras  # noqa: E402  (Keras 2: the LSTM the converter fuses into one operator)
from tflite_micro.python.tflite_micro import runtime as tflm  # noqa: E402
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb  # noqa: E402

L = keras.layers
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "goldens"
REP_SAMPLES = 64
MAX_FILE_BYTES = 300_000
MAX_TOTAL_BYTES = 6_000_000
PROBE_VECTORS = 64  # extra vectors per case for the numpy cross-check only

# ---------------------------------------------------------------------------------------------
# Case specifications
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Spec:
    """One golden case: a model builder plus how to calibrate and exercise it."""

    name: str
    description: str
    inputs: list  # per input, its shape without the batch dimension
    make: Callable  # keras input tensors -> output tensor
    batch: Optional[int] = 1  # None: a dynamic batch (converted as 1)
    ranges: Optional[list] = None  # per input (lo, hi) of the representative dataset
    kernel_gain: float = 1.0  # kernels ~ U(-a, a) with a = gain * sqrt(3 / fan_in)
    bias_amp: float = 0.3  # biases ~ U(-bias_amp, bias_amp)
    set_weights: Optional[Callable] = None  # (model, rng) -> None, replaces the default init
    rep: Optional[Callable] = None  # rng -> one representative sample (list of arrays)
    per_tensor_fc: bool = False  # FULLY_CONNECTED weights per tensor instead of per channel
    float_io: bool = False  # float32 model inputs/outputs (QUANTIZE/DEQUANTIZE at the edges)
    random_vectors: int = 4
    sweep: bool = False  # add one vector holding every int8 code (-128..127, repeated)
    uint8_io: bool = False  # uint8 model input and output (QUANTIZE to/from int8 at the edges)
    patch: Optional[Callable] = None  # (fb.ModelT) -> None, edits the converted model
    expect: tuple = ()  # properties asserted on the result, see check_expectations()
    # Feed the calibrator dicts keyed by input name: it takes a list in the subgraph's input
    # order, which need not be the Keras inputs' (the older two-input cases keep the list).
    rep_by_name: bool = False
    # Build with Keras 2 (tf_keras): the TFLite converter fuses its LSTM layer into
    # UNIDIRECTIONAL_SEQUENCE_LSTM (Keras 3's does not convert). Needs `set_weights`.
    tf_keras: bool = False
    # rng -> model bytes: a model written with the flatbuffer schema directly (operators and
    # types no converter writes: SVDF, int16 edges) instead of Keras and the converter.
    build: Optional[Callable] = None
    # Invokes per sequence: the vectors come in groups this long, each run by one interpreter
    # with its state carried from invoke to invoke (1: every vector on its own).
    sequence: int = 1

    def input_ranges(self):
        return self.ranges or [(-1.0, 1.0)] * len(self.inputs)


SPECS: list[Spec] = []


def case(name, description, inputs, make, **kw):
    SPECS.append(Spec(name, description, inputs, make, **kw))


def conv(filters, k, s=1, pad="same", dil=1, act=None, bias=True):
    return lambda x: L.Conv2D(
        filters, k, strides=s, padding=pad, dilation_rate=dil, activation=act, use_bias=bias
    )(x)


def dw(k, s=1, pad="same", m=1, dil=1, act=None, bias=True):
    return lambda x: L.DepthwiseConv2D(
        k, strides=s, padding=pad, depth_multiplier=m, dilation_rate=dil, activation=act,
        use_bias=bias,
    )(x)


def dense(units, act=None, bias=True):
    return lambda x: L.Dense(units, activation=act, use_bias=bias)(x)


def lam(f):
    return lambda x: L.Lambda(f)(x)


def chain(*fs):
    def run(x):
        for f in fs:
            x = f(x)
        return x

    return run


ACTS = {"none": None, "relu": "relu", "relu6": "relu6"}

# --- CONV_2D ---------------------------------------------------------------------------------
for (name, shape, filters, k, s, pad, dil, act, note) in [
    ("conv2d_1x1_valid_s1_none", (6, 6, 3), 8, 1, 1, "valid", 1, "none", "pointwise 3->8 channels"),
    ("conv2d_1x1_same_s2_relu", (7, 7, 5), 7, 1, 2, "same", 1, "relu", "pointwise, stride 2 on an odd 7x7 input, 5->7 channels"),
    ("conv2d_3x3_same_s1_none", (8, 8, 3), 5, 3, 1, "same", 1, "none", "3x3 SAME (pad 1 each side), 3->5 channels"),
    ("conv2d_3x3_same_s1_relu", (6, 6, 8), 8, 3, 1, "same", 1, "relu", "3x3 SAME, 8->8 channels, fused RELU"),
    ("conv2d_3x3_same_s1_relu6", (5, 5, 7), 3, 3, 1, "same", 1, "relu6", "3x3 SAME, 7->3 channels, fused RELU6"),
    ("conv2d_3x3_same_s2_relu", (8, 8, 3), 5, 3, 2, "same", 1, "relu", "3x3 stride 2 SAME on an even input: asymmetric padding (0 before, 1 after)"),
    ("conv2d_3x3_valid_s2_relu6", (9, 7, 3), 7, 3, 2, "valid", 1, "relu6", "3x3 stride 2 VALID on a non-square 9x7 input, fused RELU6"),
    ("conv2d_3x3_valid_s1_none", (5, 9, 2), 4, 3, 1, "valid", 1, "none", "3x3 VALID on a 5x9 input, 2->4 channels"),
    ("conv2d_5x3_same_s1_relu", (9, 7, 2), 3, (5, 3), 1, "same", 1, "relu", "non-square 5x3 kernel, SAME (pad 2 rows, 1 column each side)"),
    ("conv2d_5x3_valid_s2_none", (11, 8, 3), 5, (5, 3), 2, "valid", 1, "none", "non-square 5x3 kernel, stride 2, VALID"),
    ("conv2d_2x2_valid_s3_none", (8, 8, 3), 4, 2, 3, "valid", 1, "none", "2x2 kernel with stride 3 (stride larger than kernel: skipped pixels), VALID"),
    ("conv2d_2x2_same_s3_relu", (10, 10, 3), 4, 2, 3, "same", 1, "relu", "2x2 kernel, stride 3, SAME on 10x10 (0 padding before, 1 after)"),
    ("conv2d_4x4_same_s1_none", (6, 6, 2), 3, 4, 1, "same", 1, "none", "even 4x4 kernel SAME: padding 1 before, 2 after"),
    ("conv2d_4x4_same_s2_relu6", (9, 9, 3), 5, 4, 2, "same", 1, "relu6", "even 4x4 kernel, stride 2, SAME on odd 9x9: padding 1 before, 2 after"),
    ("conv2d_3x3_same_dil2_none", (8, 8, 3), 5, 3, 1, "same", 2, "none", "3x3 dilation 2 (5x5 effective), SAME"),
    ("conv2d_3x3_valid_dil2_relu", (9, 9, 2), 4, 3, 1, "valid", 2, "relu", "3x3 dilation 2, VALID, fused RELU"),
    ("conv2d_3x3_same_c1_relu", (7, 7, 1), 1, 3, 1, "same", 1, "relu", "single input and output channel"),
    ("conv2d_3x3_same_1x1_image", (1, 1, 5), 7, 3, 1, "same", 1, "none", "1x1 image with a 3x3 SAME kernel: only the centre tap sees data"),
    ("conv2d_1x1_valid_1x1_image_relu6", (1, 1, 8), 3, 1, 1, "valid", 1, "relu6", "1x1 image, 1x1 kernel, 8->3 channels, RELU6"),
]:
    case(name, f"CONV_2D: {note}.", [shape], conv(filters, k, s, pad, dil, ACTS[act]))

case(
    "conv2d_3x3_same_nobias",
    "CONV_2D built with use_bias=False: the converter still emits a bias tensor (all zeros).",
    [(6, 6, 3)], conv(4, 3, bias=False),
)
case(
    "conv2d_3x3_same_batch2_relu",
    "CONV_2D on a batch of 2 images (N=2), 3->4 channels, fused RELU.",
    [(6, 6, 3)], conv(4, 3, act="relu"), batch=2,
)

# --- DEPTHWISE_CONV_2D -----------------------------------------------------------------------
for (name, shape, k, s, pad, m, dil, act, note) in [
    ("dwconv_3x3_same_s1_m1_relu", (8, 8, 5), 3, 1, "same", 1, 1, "relu", "3x3 SAME, 5 channels, multiplier 1, fused RELU"),
    ("dwconv_3x3_same_s2_m1_none", (8, 8, 3), 3, 2, "same", 1, 1, "none", "3x3 stride 2 SAME on an even input (asymmetric padding)"),
    ("dwconv_3x3_valid_s1_m2_none", (7, 7, 3), 3, 1, "valid", 2, 1, "none", "3x3 VALID, depth multiplier 2 (3->6 channels)"),
    ("dwconv_3x3_valid_s2_m3_relu6", (9, 9, 2), 3, 2, "valid", 3, 1, "relu6", "3x3 stride 2 VALID, depth multiplier 3 (2->6 channels), fused RELU6"),
    ("dwconv_3x3_same_s1_m3_c1_relu", (6, 6, 1), 3, 1, "same", 3, 1, "relu", "single input channel, depth multiplier 3"),
    ("dwconv_3x1_same_s1_m1_none", (8, 8, 7), (3, 1), 1, "same", 1, 1, "none", "k x 1 kernel (3x1), 7 channels"),
    ("dwconv_1x3_valid_s2_m2_relu", (7, 8, 3), (1, 3), 2, "valid", 2, 1, "relu", "1 x k kernel (1x3), stride 2, multiplier 2"),
    ("dwconv_5x1_same_s2_m1_relu6", (9, 6, 4), (5, 1), 2, "same", 1, 1, "relu6", "5x1 kernel, stride 2, SAME, fused RELU6"),
    ("dwconv_3x3_same_dil2_m1_relu6", (8, 8, 4), 3, 1, "same", 1, 2, "relu6", "3x3 dilation 2, SAME"),
    ("dwconv_3x3_valid_dil2_m2_none", (9, 9, 3), 3, 1, "valid", 2, 2, "none", "3x3 dilation 2, VALID, multiplier 2"),
    ("dwconv_5x5_same_s2_m1_none", (9, 9, 8), 5, 2, "same", 1, 1, "none", "5x5 stride 2 SAME, 8 channels"),
    ("dwconv_10x1_valid_hx1_m1_none", (24, 1, 8), (10, 1), 1, "valid", 1, 1, "none", "10x1 VALID on an H x 1 map, 8 channels"),
    ("dwconv_15x1_valid_hx1_m1_relu", (15, 1, 6), (15, 1), 1, "valid", 1, 1, "relu", "15x1 VALID on a 15x1 map (one output), 6 channels, fused RELU"),
    ("dwconv_1x15_same_s2_m2_relu6", (1, 20, 3), (1, 15), 2, "same", 2, 1, "relu6", "1x15 stride 2 SAME on a 1 x W map, multiplier 2"),
    ("dwconv_10x8_same_s2_m8_c1_relu", (20, 16, 1), (10, 8), 2, "same", 8, 1, "relu", "10x8 stride 2 SAME, one input channel, multiplier 8 (micro_speech's shape)"),
    ("dwconv_7x1_same_dil3_m2_none", (20, 3, 3), (7, 1), 1, "same", 2, 3, "none", "7x1 dilation 3 SAME, 3 channels, multiplier 2"),
]:
    case(name, f"DEPTHWISE_CONV_2D: {note}.", [shape], dw(k, s, pad, m, dil, ACTS[act]))

case(
    "dwconv_3x3_same_nobias",
    "DEPTHWISE_CONV_2D built with use_bias=False (the converter emits a zero bias).",
    [(5, 5, 3)], dw(3, bias=False),
)

# --- FULLY_CONNECTED -------------------------------------------------------------------------
for (name, shape, units, act, per_tensor, bias, batch, note) in [
    ("fc_per_tensor_16x10_none", (16,), 10, "none", True, True, 1, "per-tensor weights, 16 inputs, 10 outputs"),
    ("fc_per_tensor_13x7_relu", (13,), 7, "relu", True, True, 1, "per-tensor weights, odd sizes 13->7, fused RELU"),
    ("fc_per_tensor_9x5_nobias_relu6", (9,), 5, "relu6", True, False, 1, "per-tensor weights, no bias (input -1), fused RELU6"),
    ("fc_per_tensor_1x1_none", (1,), 1, "none", True, True, 1, "per-tensor weights, one input and one output"),
    ("fc_per_channel_13x7_none", (13,), 7, "none", False, True, 1, "per-channel weights (the converter's default for dense layers), 13->7"),
    ("fc_per_channel_33x11_relu", (33,), 11, "relu", False, True, 1, "per-channel weights, 33->11, fused RELU"),
    ("fc_per_channel_11x5_batch3_none", (11,), 5, "none", False, True, 3, "per-channel weights on a batch of 3 rows"),
    ("fc_per_channel_7x3_nobias_none", (7,), 3, "none", False, False, 1, "per-channel weights, no bias (input -1)"),
]:
    case(name, f"FULLY_CONNECTED: {note}.", [shape], dense(units, ACTS[act], bias),
         per_tensor_fc=per_tensor, batch=batch)

case(
    "fc_per_tensor_64x8_scale_product",
    "FULLY_CONNECTED, per-tensor weights, bias-dominated output (multiplier ~6e-5), with a vector found by search on which the multiplier from a float32 s_in*s_w product and from a double product round differently.",
    [(64,)], dense(8), per_tensor_fc=True, bias_amp=30.0,
)
case(
    "fc_per_channel_keep_num_dims",
    "FULLY_CONNECTED on a rank-3 [1,4,6] input: keep_num_dims=true, output [1,4,5].",
    [(4, 6)], dense(5),
)

# --- pooling ---------------------------------------------------------------------------------
for (name, shape, cls, k, s, pad, post, note) in [
    ("avgpool_2x2_valid_s2", (8, 8, 3), L.AveragePooling2D, 2, 2, "valid", None, "2x2 windows, stride 2, VALID"),
    ("avgpool_3x3_same_s1", (6, 6, 5), L.AveragePooling2D, 3, 1, "same", None, "3x3 SAME stride 1: border windows average over fewer pixels (padding not counted)"),
    ("avgpool_3x3_same_s2", (8, 8, 3), L.AveragePooling2D, 3, 2, "same", None, "3x3 SAME stride 2 on an even input: asymmetric padding, partial windows at the end"),
    ("avgpool_2x3_valid_s1_relu", (5, 7, 2), L.AveragePooling2D, (2, 3), 1, "valid", "relu", "non-square 2x3 windows with a ReLU fused by the converter"),
    ("avgpool_global_5x7", (5, 7, 7), L.AveragePooling2D, (5, 7), 1, "valid", None, "one window over the whole 5x7 image (global average pool as AVERAGE_POOL_2D)"),
    ("maxpool_2x2_valid_s2", (8, 8, 3), L.MaxPooling2D, 2, 2, "valid", None, "2x2 windows, stride 2, VALID"),
    ("maxpool_3x3_same_s2", (8, 8, 5), L.MaxPooling2D, 3, 2, "same", None, "3x3 SAME stride 2 (asymmetric padding)"),
    ("maxpool_3x3_same_s1_c1", (5, 5, 1), L.MaxPooling2D, 3, 1, "same", None, "3x3 SAME stride 1, one channel"),
    ("maxpool_2x2_valid_s3_relu6", (8, 8, 2), L.MaxPooling2D, 2, 3, "valid", "relu6", "stride 3 larger than the 2x2 window, with a ReLU6 fused by the converter"),
]:
    def make_pool(cls=cls, k=k, s=s, pad=pad, post=post):
        def f(x):
            y = cls(pool_size=k, strides=s, padding=pad)(x)
            if post == "relu":
                y = L.ReLU()(y)
            elif post == "relu6":
                y = L.ReLU(max_value=6.0)(y)
            return y

        return f

    op = "AVERAGE_POOL_2D" if cls is L.AveragePooling2D else "MAX_POOL_2D"
    rng_range = [(-2.0, 7.0)] if post == "relu6" else None
    case(name, f"{op}: {note}.", [shape], make_pool(), ranges=rng_range)

case(
    "mean_global_average_pooling",
    "MEAN over axes [1,2] (what the converter makes of GlobalAveragePooling2D), 5x5x6 -> [1,6].",
    [(5, 5, 6)], lambda x: L.GlobalAveragePooling2D()(x),
)

# --- ADD -------------------------------------------------------------------------------------
case(
    "add_two_scales_none",
    "ADD of two [1,4,4,3] inputs calibrated to different ranges (+-1 and +-8): different scales and zero points.",
    [(4, 4, 3), (4, 4, 3)], lambda a, b: L.Add()([a, b]), ranges=[(-1.0, 1.0), (-8.0, 8.0)],
    random_vectors=3,
)
case(
    "add_two_scales_relu",
    "ADD with a fused RELU; inputs calibrated to asymmetric ranges [-2,1] and [-0.25,0.5].",
    [(5, 5, 2), (5, 5, 2)], lambda a, b: L.ReLU()(L.Add()([a, b])),
    ranges=[(-2.0, 1.0), (-0.25, 0.5)], random_vectors=3,
)
case(
    "add_flat_same_range_relu6",
    "ADD of two [1,16] inputs with the same range and a fused RELU6; the converter squeezes one operand to [16] with a RESHAPE, so the ADD broadcasts [1,16] + [16].",
    [(16,), (16,)], lambda a, b: L.ReLU(max_value=6.0)(L.Add()([a, b])),
    ranges=[(-6.0, 6.0), (-6.0, 6.0)], random_vectors=3,
)

# --- Binary element-wise operators with broadcasting and constant operands ------------------
K = keras.ops


def const(values):
    """A float32 constant operand (the converter stores it as an int8 tensor of its own)."""
    return np.asarray(values, np.float32)


def ramp(n, lo, hi):
    return const(np.linspace(lo, hi, n))


def sqdiff(a, b):
    """SQUARED_DIFFERENCE (Keras has no op for it: a Lambda around TensorFlow's)."""
    if isinstance(b, np.ndarray):
        return L.Lambda(lambda t: tf.math.squared_difference(t, b))(a)
    return L.Lambda(lambda t: tf.math.squared_difference(t[0], t[1]))([a, b])


for (name, note, shapes, make, ranges) in [
    ("add_bcast_channel_relu", "[1,4,4,8] + [1,1,1,8] (a per-channel activation), fused RELU",
     [(4, 4, 8), (1, 1, 8)], lambda a, b: L.ReLU()(K.add(a, b)), [(-1.0, 1.0), (-2.0, 0.5)]),
    ("add_bcast_rows_none", "[1,4,4,8] + [1,4,1,8] (one channel vector per row)",
     [(4, 4, 8), (4, 1, 8)], lambda a, b: K.add(a, b), [(-1.0, 1.0), (-8.0, 8.0)]),
    ("add_bcast_rank3", "rank 3: [1,6,5] + [1,1,5], fused RELU6",
     [(6, 5), (1, 5)], lambda a, b: L.ReLU(max_value=6.0)(K.add(a, b)), [(-6.0, 6.0), (-1.0, 3.0)]),
    ("add_bcast_rank2_scalar", "rank 2: [1,12] + [1,1] (a scalar activation)",
     [(12,), (1,)], lambda a, b: K.add(a, b), [(-1.0, 1.0), (-0.1, 0.1)]),
    ("sub_bcast_channel_none", "SUB [1,4,4,8] - [1,1,1,8], inputs of different scales",
     [(4, 4, 8), (1, 1, 8)], lambda a, b: K.subtract(a, b), [(-1.0, 1.0), (-4.0, 4.0)]),
    ("sub_same_shape_relu", "SUB of two [1,5,5,3] inputs with a fused RELU",
     [(5, 5, 3), (5, 5, 3)], lambda a, b: L.ReLU()(K.subtract(a, b)), [(-2.0, 1.0), (-0.25, 0.5)]),
    ("sub_bcast_rows_relu6", "SUB [1,1,4,1] - [1,3,4,6] broadcasting both ways, fused RELU6",
     [(1, 4, 1), (3, 4, 6)], lambda a, b: L.ReLU(max_value=6.0)(K.subtract(a, b)), [(-8.0, 8.0), (-3.0, 3.0)]),
    ("mul_same_shape_none", "MUL of two [1,4,4,3] inputs of different scales",
     [(4, 4, 3), (4, 4, 3)], lambda a, b: K.multiply(a, b), [(-1.0, 1.0), (-8.0, 8.0)]),
    ("mul_bcast_channel_relu", "MUL [1,4,4,8] * [1,1,1,8], fused RELU",
     [(4, 4, 8), (1, 1, 8)], lambda a, b: L.ReLU()(K.multiply(a, b)), [(-1.0, 1.0), (0.0, 2.0)]),
    ("mul_bcast_rows_relu6", "MUL [1,4,4,8] * [1,4,1,1], fused RELU6",
     [(4, 4, 8), (4, 1, 1)], lambda a, b: L.ReLU(max_value=6.0)(K.multiply(a, b)), [(-4.0, 4.0), (-2.0, 3.0)]),
    ("mul_bcast_rank3", "rank 3: MUL [1,6,5] * [1,6,1]",
     [(6, 5), (6, 1)], lambda a, b: K.multiply(a, b), [(-1.0, 1.0), (-1.0, 1.0)]),
    ("squared_difference_same_shape", "SQUARED_DIFFERENCE of two [1,4,4,3] inputs of different scales",
     [(4, 4, 3), (4, 4, 3)], sqdiff, [(-1.0, 1.0), (-3.0, 3.0)]),
    ("squared_difference_bcast_channel", "SQUARED_DIFFERENCE [1,4,4,8] and [1,1,1,8]",
     [(4, 4, 8), (1, 1, 8)], sqdiff, [(-2.0, 2.0), (-1.0, 1.0)]),
    ("maximum_same_shape", "MAXIMUM of two [1,4,4,3] inputs (same range: one quantization)",
     [(4, 4, 3), (4, 4, 3)], lambda a, b: K.maximum(a, b), [(-2.0, 2.0), (-2.0, 2.0)]),
    ("maximum_bcast_channel", "MAXIMUM [1,4,4,8] and [1,1,1,8]",
     [(4, 4, 8), (1, 1, 8)], lambda a, b: K.maximum(a, b), [(-1.0, 1.0), (-1.0, 1.0)]),
    ("minimum_bcast_rows", "MINIMUM [1,4,4,8] and [1,4,1,1]",
     [(4, 4, 8), (4, 1, 1)], lambda a, b: K.minimum(a, b), [(-3.0, 3.0), (-3.0, 3.0)]),
    ("minimum_rank2", "rank 2: MINIMUM [1,12] and [1,12]",
     [(12,), (12,)], lambda a, b: K.minimum(a, b), [(-1.0, 1.0), (-1.0, 1.0)]),
]:
    case(name, f"{note}.", shapes, make, ranges=ranges, random_vectors=3, rep_by_name=True)

for (name, note, shape, make, rng_range) in [
    ("add_const_bias_relu6", "ADD x + bias[c] with a constant [8] bias operand, fused RELU6",
     (4, 4, 8), lambda x: L.ReLU(max_value=6.0)(K.add(x, ramp(8, -0.9, 1.7))), (-1.0, 5.0)),
    ("add_const_scalar", "ADD of a constant scalar (x + 0.75) on [1,6,6,3]",
     (6, 6, 3), lambda x: K.add(x, const(0.75)), (-1.0, 1.0)),
    ("sub_const_channel_relu", "SUB x - c[c] with a constant [8] operand, fused RELU",
     (4, 4, 8), lambda x: L.ReLU()(K.subtract(x, ramp(8, -0.5, 0.5))), (-1.0, 1.0)),
    ("sub_const_from_scalar", "SUB 0.3 - x: the constant is input 1, a scalar",
     (4, 4, 3), lambda x: K.subtract(const(0.3), x), (-1.0, 1.0)),
    ("mul_const_scalar", "MUL x * 1.7 (a constant scalar operand)",
     (6, 6, 3), lambda x: K.multiply(x, const(1.7)), (-1.0, 1.0)),
    ("mul_const_channel_relu6", "MUL x * scale[c] with a constant [8] operand, fused RELU6",
     (4, 4, 8), lambda x: L.ReLU(max_value=6.0)(K.multiply(x, ramp(8, -3.0, 5.0))), (-2.0, 2.0)),
    ("squared_difference_const", "SQUARED_DIFFERENCE of x and a constant [8] operand",
     (4, 4, 8), lambda x: sqdiff(x, ramp(8, -1.0, 1.0)), (-1.0, 1.0)),
    ("maximum_const_scalar", "MAXIMUM of x and a constant scalar 0.25",
     (4, 4, 3), lambda x: K.maximum(x, const(0.25)), (-1.0, 1.0)),
    ("minimum_const_channel", "MINIMUM of x and a constant [8] operand",
     (4, 4, 8), lambda x: K.minimum(x, ramp(8, -0.5, 0.8)), (-1.0, 1.0)),
]:
    case(name, f"{note}.", [shape], make, ranges=[rng_range])

# --- SOFTMAX ---------------------------------------------------------------------------------
for (name, shape, rng_range, note) in [
    ("softmax_10_range1", (10,), (-1.0, 1.0), "10 classes, inputs calibrated to +-1"),
    ("softmax_10_range8", (10,), (-8.0, 8.0), "10 classes, inputs calibrated to +-8"),
    ("softmax_10_range32", (10,), (-32.0, 32.0), "10 classes, wide input range +-32 (most exps underflow)"),
    ("softmax_10_range0p1", (10,), (-0.1, 0.1), "10 classes, narrow input range +-0.1 (near-uniform outputs)"),
    ("softmax_3_asym", (3,), (-3.0, 12.0), "3 classes, asymmetric input range [-3,12]"),
    ("softmax_4d_2x3x5", (2, 3, 5), (-4.0, 4.0), "rank-4 [1,2,3,5] input: softmax over the last axis of each of 6 rows"),
]:
    case(name, f"SOFTMAX (beta 1): {note}.", [shape], lambda x: L.Softmax()(x), ranges=[rng_range])

# --- RESHAPE ---------------------------------------------------------------------------------
case(
    "reshape_flatten_4x4x3",
    "RESHAPE: Flatten of [1,4,4,3] to [1,48] (new shape as an int32 constant input).",
    [(4, 4, 3)], lambda x: L.Flatten()(x),
)
case(
    "reshape_4x4x3_to_6x8",
    "RESHAPE: [1,4,4,3] to [1,6,8].",
    [(4, 4, 3)], lambda x: L.Reshape((6, 8))(x),
)

# --- SQUEEZE / EXPAND_DIMS (the converter writes RESHAPE for both; patched to the real ops) --


def reshape_becomes(builtin, axis):
    """The model's RESHAPE becomes SQUEEZE (squeeze_dims [axis], one input) or EXPAND_DIMS (the
    shape constant rewritten to the int32 axis), which other converters and older TFLite
    versions write and TFLite-Micro runs."""

    def patch(model):
        sg = model.subgraphs[0]
        code = fb.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        code.version = 1
        model.operatorCodes.append(code)
        for op in sg.operators:
            if model.operatorCodes[op.opcodeIndex].builtinCode != fb.BuiltinOperator.RESHAPE:
                continue
            op.opcodeIndex = len(model.operatorCodes) - 1
            if builtin == fb.BuiltinOperator.SQUEEZE:
                op.inputs = op.inputs[:1]
                op.builtinOptionsType = fb.BuiltinOptions.SqueezeOptions
                op.builtinOptions = fb.SqueezeOptionsT()
                op.builtinOptions.squeezeDims = [axis]
            else:
                shape = sg.tensors[op.inputs[1]]
                shape.shape = np.array([1], np.int32)
                model.buffers[shape.buffer].data = np.frombuffer(np.array([axis], np.int32).tobytes(), np.uint8)
                op.builtinOptionsType = fb.BuiltinOptions.ExpandDimsOptions
                op.builtinOptions = fb.ExpandDimsOptionsT()

    return patch


case(
    "squeeze_axis2_relu",
    "SQUEEZE: [1,4,1,6] -> [1,4,6] (squeeze_dims [2]) after a RELU (tf.squeeze, written by the converter as RESHAPE and patched to SQUEEZE).",
    [(4, 1, 6)], chain(lambda x: L.ReLU()(x), lam(lambda t: tf.squeeze(t, axis=2))),
    patch=reshape_becomes(fb.BuiltinOperator.SQUEEZE, 2),
)
case(
    "expand_dims_axis2_relu",
    "EXPAND_DIMS: [1,4,6] -> [1,4,1,6] (axis 2 as an int32 constant) after a RELU (tf.expand_dims, written as RESHAPE and patched to EXPAND_DIMS).",
    [(4, 6)], chain(lambda x: L.ReLU()(x), lam(lambda t: tf.expand_dims(t, axis=2))),
    patch=reshape_becomes(fb.BuiltinOperator.EXPAND_DIMS, 2),
)

# --- RELU / RELU6 (standalone: a ReLU after conv, FC, pooling or ADD is fused instead) --------
case(
    "relu_standalone_4x4x3",
    "RELU: standalone on a [1,4,4,3] input calibrated to [-1,1]; the output scale is half the input's (multiplier ~2, requantized).",
    [(4, 4, 3)], lambda x: L.ReLU()(x),
)
case(
    "relu_asym_range",
    "RELU: rank-2 [1,20] input calibrated to the asymmetric range [-3,12] (input zero point -78, output -128, multiplier ~1.245).",
    [(20,)], lambda x: L.ReLU()(x), ranges=[(-3.0, 12.0)],
)
case(
    "relu_positive_range",
    "RELU: rank-3 [1,4,6] input calibrated to [0.5,4]: input and output share scale and zero point -128 (multiplier exactly 1).",
    [(4, 6)], lambda x: L.ReLU()(x), ranges=[(0.5, 4.0)],
)
case(
    "relu_negative_range",
    "RELU: input calibrated to [-4,-0.5] (zero point 127): the output scale is ~8e-9, the multiplier ~2e6 (left shift 21); every output is the output zero point.",
    [(4, 6)], lambda x: L.ReLU()(x), ranges=[(-4.0, -0.5)],
)
case(
    "relu_reshape_6x8",
    "Keras Reshape [1,4,4,3] -> [1,6,8] then ReLU; the converter moves the RELU before the RESHAPE (RELU on [1,4,4,3], then RESHAPE); multiplier just above 2 (exponent 2).",
    [(4, 4, 3)], lambda x: L.ReLU()(L.Reshape((6, 8))(x)),
)
case(
    "relu6_standalone",
    "RELU6: standalone on a [1,4,4,3] input calibrated to [-8,8]: 6 is inside the input range. The output tensor has its own scale and zero point, which TFLM's int8 RELU6 ignores (it only clamps input codes).",
    [(4, 4, 3)], lambda x: L.ReLU(max_value=6.0)(x), ranges=[(-8.0, 8.0)],
)
case(
    "relu6_narrow",
    "RELU6: [1,20] input calibrated to [-1,2]: 6 lies beyond the input range (its code saturates to 127), so only the lower clamp acts.",
    [(20,)], lambda x: L.ReLU(max_value=6.0)(x), ranges=[(-1.0, 2.0)],
)

# --- LOGISTIC / TANH / HARD_SWISH / LEAKY_RELU (int8 tables) ---------------------------------
# Each has a vector holding all 256 input codes, so the whole table is checked.
for (name, op, act, shape, rng_range, note) in [
    ("logistic_range4", "LOGISTIC", "sigmoid", (4, 4, 16), (-4.0, 4.0), "[1,4,4,16] input calibrated to +-4"),
    ("logistic_wide_asym", "LOGISTIC", "sigmoid", (256,), (-10.0, 25.0), "[1,256] input calibrated to [-10,25]: both ends saturate"),
    ("logistic_narrow", "LOGISTIC", "sigmoid", (8, 32), (-0.5, 0.25), "[1,8,32] input calibrated to [-0.5,0.25]: a small input scale"),
    ("tanh_range3", "TANH", "tanh", (4, 4, 16), (-3.0, 3.0), "[1,4,4,16] input calibrated to +-3"),
    ("tanh_wide_asym", "TANH", "tanh", (256,), (-6.0, 20.0), "[1,256] input calibrated to [-6,20]: both ends saturate"),
    ("tanh_narrow", "TANH", "tanh", (8, 32), (-0.2, 0.3), "[1,8,32] input calibrated to [-0.2,0.3]: a small input scale"),
    ("hard_swish_range4", "HARD_SWISH", "hard_swish", (4, 4, 16), (-4.0, 4.0), "[1,4,4,16] input calibrated to +-4"),
    ("hard_swish_wide_asym", "HARD_SWISH", "hard_swish", (256,), (-8.0, 30.0), "[1,256] input calibrated to [-8,30]"),
    ("hard_swish_narrow", "HARD_SWISH", "hard_swish", (8, 32), (-0.5, 1.0), "[1,8,32] input calibrated to [-0.5,1]: reluish multiplier below one"),
]:
    case(name, f"{op}: {note}; one vector holds every int8 code.", [shape],
         (lambda a: lambda x: L.Activation(a)(x))(act), ranges=[rng_range], sweep=True)
for (name, alpha, shape, rng_range, note) in [
    ("leaky_relu_0p1", 0.1, (4, 4, 16), (-4.0, 4.0), "alpha 0.1, [1,4,4,16] input calibrated to +-4"),
    ("leaky_relu_0p3_asym", 0.3, (256,), (-1.0, 10.0), "alpha 0.3, [1,256] input calibrated to [-1,10]"),
    ("leaky_relu_2p5", 2.5, (8, 32), (-2.0, 2.0), "alpha 2.5 (above one), [1,8,32] input calibrated to +-2"),
    ("leaky_relu_0", 0.0, (256,), (-3.0, 3.0), "alpha 0, [1,256] input calibrated to +-3"),
]:
    case(name, f"LEAKY_RELU: {note}; one vector holds every int8 code.", [shape],
         (lambda a: lambda x: L.LeakyReLU(negative_slope=a)(x))(alpha), ranges=[rng_range], sweep=True)

# --- PRELU -----------------------------------------------------------------------------------


def prelu_alphas(lo, hi):
    def set_weights(model, rng):
        for layer in model.layers:
            if layer.weights:
                layer.set_weights([rng.uniform(lo, hi, w.shape).astype(np.float32) for w in layer.weights])

    return set_weights


for (name, shape, shared, alphas, rng_range, note) in [
    ("prelu_per_channel", (4, 4, 8), [1, 2], (-0.5, 0.8), (-2.0, 2.0), "alpha per channel (shared over height and width) in [-0.5,0.8]"),
    ("prelu_shared", (4, 4, 8), [1, 2, 3], (0.2, 0.2001), (-3.0, 1.0), "one alpha (~0.2) shared over the whole input"),
    ("prelu_per_pixel", (3, 5, 4), None, (0.0, 2.0), (-1.0, 4.0), "one alpha per element in [0,2]"),
    ("prelu_rank2", (16,), None, (-1.0, 1.0), (-1.0, 1.0), "[1,16] input, one alpha per feature in [-1,1]"),
]:
    case(
        name, f"PRELU: {note}; input calibrated to {list(rng_range)}.", [shape],
        (lambda sh: lambda x: L.PReLU(shared_axes=sh)(x))(shared),
        ranges=[rng_range], set_weights=prelu_alphas(*alphas),
    )

# --- MEAN / SUM / REDUCE_MAX over any axes ---------------------------------------------------
REDUCERS = {"MEAN": keras.ops.mean, "SUM": keras.ops.sum, "REDUCE_MAX": keras.ops.max}
for (op, tag, axes, keep, batch, rng_range) in [
    ("MEAN", "axis1_keep", [1], True, 1, (-1.0, 1.0)),
    ("MEAN", "axis2", [2], False, 1, (-2.0, 1.0)),
    ("MEAN", "axes12_keep", [1, 2], True, 1, (-1.0, 3.0)),
    ("MEAN", "axes12", [1, 2], False, 1, (-4.0, 4.0)),
    ("MEAN", "axis3_keep", [3], True, 1, (-1.0, 1.0)),
    ("MEAN", "axis_neg1_neg3", [-1, -3], False, 1, (-3.0, 1.0)),
    ("MEAN", "all_batch2", [0, 1, 2, 3], False, 2, (-1.0, 2.0)),
    ("SUM", "axis1", [1], False, 1, (-1.0, 1.0)),
    ("SUM", "axis2_keep", [2], True, 1, (-0.5, 2.0)),
    ("SUM", "axes12_keep", [1, 2], True, 1, (-1.0, 1.0)),
    ("SUM", "axis3", [3], False, 1, (-2.0, 2.0)),
    ("SUM", "all_batch2_keep", [0, 1, 2, 3], True, 2, (-1.0, 1.0)),
    ("REDUCE_MAX", "axis1_keep", [1], True, 1, (-1.0, 1.0)),
    ("REDUCE_MAX", "axis2", [2], False, 1, (-3.0, 1.0)),
    ("REDUCE_MAX", "axes12", [1, 2], False, 1, (-1.0, 5.0)),
    ("REDUCE_MAX", "axis3_keep", [3], True, 1, (-1.0, 1.0)),
    ("REDUCE_MAX", "all_batch2", [0, 1, 2, 3], False, 2, (-2.0, 2.0)),
]:
    case(
        f"{op.lower()}_{tag}",
        f"{op}: [{batch},4,6,8] input calibrated to {list(rng_range)}, axes {axes}, keep_dims {keep}.",
        [(4, 6, 8)], (lambda f, a, k: lambda x: f(x, axis=a, keepdims=k))(REDUCERS[op], axes, keep),
        batch=batch, ranges=[rng_range],
    )



def output_takes_input_quantization(model):
    """The only operator's output gets its input's scale and zero point."""
    sg = model.subgraphs[0]
    op = sg.operators[0]
    src, dst = sg.tensors[op.inputs[0]].quantization, sg.tensors[op.outputs[0]].quantization
    dst.scale, dst.zeroPoint = list(src.scale), list(src.zeroPoint)


case(
    "mean_axes12_same_quantization",
    "MEAN: [1,4,6,8] input calibrated to [-2,2], axes [1, 2], keep_dims False; the output's quantization is edited to the input's (TFLM still requantizes with 1/count folded in: no truncating mean).",
    [(4, 6, 8)], lambda x: keras.ops.mean(x, axis=[1, 2], keepdims=False),
    ranges=[(-2.0, 2.0)], patch=output_takes_input_quantization,
)

# --- QUANTIZE / DEQUANTIZE -------------------------------------------------------------------
case(
    "float_io_fc_12x6",
    "float32 model edges: QUANTIZE -> FULLY_CONNECTED (per channel) -> DEQUANTIZE; vectors are floats, some beyond the calibrated range.",
    [(12,)], dense(6), float_io=True, ranges=[(-2.0, 2.0)],
)
case(
    "float_io_conv_3x3_relu",
    "float32 model edges: QUANTIZE -> CONV_2D 3x3 SAME RELU -> DEQUANTIZE on an asymmetric [0,4] input range.",
    [(5, 5, 2)], conv(4, 3, act="relu"), float_io=True, ranges=[(0.0, 4.0)],
)
case(
    "float_io_softmax",
    "float32 model edges: QUANTIZE -> SOFTMAX -> DEQUANTIZE.",
    [(6,)], lambda x: L.Softmax()(x), float_io=True, ranges=[(-5.0, 5.0)],
)

case(
    "uint8_io_fc_12x6",
    "uint8 model edges (inference_input_type = inference_output_type = uint8): QUANTIZE uint8->int8 -> FULLY_CONNECTED -> QUANTIZE int8->uint8.",
    [(12,)], dense(6), uint8_io=True, ranges=[(-2.0, 2.0)],
)
case(
    "uint8_io_logistic_asym",
    "uint8 model edges around a LOGISTIC on an asymmetric [-1,6] input range; one vector holds every uint8 code.",
    [(16, 16)], lambda x: L.Activation("sigmoid")(x), uint8_io=True, ranges=[(-1.0, 6.0)], sweep=True,
)
case(
    "uint8_io_conv_3x3_relu",
    "uint8 model edges: QUANTIZE uint8->int8 -> CONV_2D 3x3 SAME RELU -> QUANTIZE int8->uint8 on a [0,4] input range.",
    [(5, 5, 2)], conv(4, 3, act="relu"), uint8_io=True, ranges=[(0.0, 4.0)],
)



def int8_input_rescaled(model):
    """The uint8 model input becomes int8 with another scale and zero point, so the first
    QUANTIZE requantizes int8 -> int8."""
    sg = model.subgraphs[0]
    t = sg.tensors[sg.inputs[0]]
    t.type = fb.TensorType.INT8
    t.quantization.scale = [float(np.float32(t.quantization.scale[0] * 1.37))]
    t.quantization.zeroPoint = [-20]


case(
    "quantize_int8_to_int8_fc",
    "QUANTIZE int8->int8 (a requantization, multiplier ~1.37) -> FULLY_CONNECTED 256->4 -> QUANTIZE int8->uint8: a uint8_io model whose input is edited to int8 with scale x1.37 and zero point -20; one vector holds every int8 code.",
    [(256,)], dense(4), uint8_io=True, ranges=[(-2.0, 2.0)], patch=int8_input_rescaled, sweep=True,
)

# --- saturation and extreme scales -----------------------------------------------------------


def positive_weights(model, rng):
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([
                rng.uniform(0.2, 1.0, w.shape).astype(np.float32) if w.name == "kernel"
                else np.zeros(w.shape, np.float32)
                for w in layer.weights
            ])


def cancelling_weights(model, rng):
    # Two input channels that are always equal in the representative dataset, weighted +w and
    # -w: the calibrated output range is just the (small) bias, so s_in * s_w / s_out > 1.
    for layer in model.layers:
        if layer.weights:
            k = np.zeros(layer.weights[0].shape, np.float32)  # (1, 1, 2, out)
            for o in range(k.shape[-1]):
                w = 1.0 + 1.5 * o
                k[0, 0, 0, o], k[0, 0, 1, o] = w, -w
            b = np.full(layer.weights[1].shape, 0.004, np.float32)
            layer.set_weights([k, b])


def equal_channels(rng):
    x = rng.uniform(-4.0, 4.0, (1, 4, 4, 1)).astype(np.float32)
    return [np.concatenate([x, x], axis=-1)]


case(
    "conv2d_saturate",
    "CONV_2D with all-positive weights calibrated on mixed-sign inputs: uniform inputs drive the output to -128 and 127.",
    [(6, 6, 3)], conv(4, 3), set_weights=positive_weights, expect=("saturates",),
)
case(
    "fc_saturate",
    "FULLY_CONNECTED (per tensor) with all-positive weights: uniform inputs saturate the output at both ends.",
    [(24,)], dense(6), set_weights=positive_weights, per_tensor_fc=True, expect=("saturates",),
)
case(
    "conv2d_tiny_scales",
    "CONV_2D with inputs calibrated to +-1e-3 and weights ~1e-3: input, weight, bias and output scales all tiny.",
    [(5, 5, 3)], conv(4, 3, act="relu"), ranges=[(-1e-3, 1e-3)], kernel_gain=1e-3, bias_amp=1e-7,
    expect=("tiny_scales",),
)
case(
    "conv2d_huge_scales",
    "CONV_2D with inputs calibrated to +-5000, weights ~50 and biases ~1e5: very large scales.",
    [(5, 5, 3)], conv(4, 3), ranges=[(-5000.0, 5000.0)], kernel_gain=50.0, bias_amp=1e5,
    expect=("huge_scales",),
)
case(
    "conv2d_multiplier_gt_one",
    "1x1 CONV_2D whose calibrated output range is tiny (cancelling weights on equal channels): effective multipliers > 1 (left shift), outputs saturate.",
    [(4, 4, 2)], conv(3, 1), set_weights=cancelling_weights, rep=equal_channels,
    expect=("multiplier_gt_one", "saturates"),
)
case(
    "conv2d_tiny_multiplier",
    "CONV_2D whose output range is dominated by +-2000 biases: effective multipliers around 2e-6 (right shifts of 18 and 19).",
    [(5, 5, 3)], conv(5, 3), bias_amp=2000.0, expect=("tiny_multiplier",),
)
case(
    "dwconv_huge_scales_relu",
    "DEPTHWISE_CONV_2D, multiplier 2, inputs calibrated to [-300, 900], weights ~20.",
    [(6, 6, 3)], dw(3, m=2, act="relu"), ranges=[(-300.0, 900.0)], kernel_gain=20.0, bias_amp=50.0,
)

# --- PAD / PADV2 (and PAD folded into the convolution after it) ------------------------------


def kpad(pads, value=0.0):
    return lambda x: keras.ops.pad(x, pads, constant_values=value)


for (name, shape, make, batch, note) in [
    ("pad_zeropad2d_asym", (5, 4, 3), lambda x: L.ZeroPadding2D(((1, 2), (0, 3)))(x), 1, "Keras ZeroPadding2D ((1,2),(0,3)) on [1,5,4,3]: asymmetric height and width padding with the zero point"),
    ("pad_batch_and_channels", (3, 4, 5), kpad([[1, 2], [0, 0], [0, 0], [2, 1]]), 1, "padding on the batch (1 before, 2 after) and channel (2 before, 1 after) axes of a rank-4 tensor"),
    ("pad_rank2", (8,), kpad([[0, 0], [3, 5]]), 1, "rank-2 [1,8] input padded 3 before and 5 after on its last axis"),
    ("pad_rank3_all_axes", (4, 6), kpad([[1, 0], [2, 1], [0, 3]]), 1, "rank-3 [1,4,6] input padded on every axis"),
    ("pad_big", (2, 2, 1), lambda x: L.ZeroPadding2D(6)(x), 1, "2x2 image padded by 6 on each side (most of the output is padding)"),
    ("padv2_value_rank3", (4, 6), kpad([[0, 0], [2, 1], [1, 3]], 0.5), 1, "PADV2: constant 0.5 (not the zero point) on a rank-3 [1,4,6] input"),
    ("padv2_value_channels", (3, 3, 4), kpad([[0, 0], [1, 1], [0, 2], [3, 0]], -0.75), 2, "PADV2: constant -0.75 on height, width and channels of a batch of 2"),
]:
    case(name, f"{'PADV2' if name.startswith('padv2') else 'PAD'}: {note}.", [shape], make, batch=batch)

case(
    "padfold_zeropad_conv_valid",
    "Keras ZeroPadding2D(1) + Conv2D 5x5 VALID (not SAME's padding of 2, so the converter keeps the PAD): mote folds it into the convolution's explicit padding.",
    [(7, 7, 3)], chain(lambda x: L.ZeroPadding2D(1)(x), conv(4, 5, pad="valid", act="relu")),
)
case(
    "padfold_asym_conv_s2",
    "PAD (1,1) rows and (0,1) columns on an 8x7 input before a 3x3 stride-2 VALID CONV_2D (SAME would pad (0,1) and (1,1)), as PyTorch exports strided convolutions: folded.",
    [(8, 7, 3)], chain(lambda x: L.ZeroPadding2D(((1, 1), (0, 1)))(x), conv(5, 3, s=2, pad="valid")),
)
case(
    "padfold_asym_dwconv_s2",
    "PAD (1,0) rows and (2,1) columns before a 3x3 stride-2 VALID DEPTHWISE_CONV_2D (multiplier 2): folded.",
    [(8, 7, 4)], chain(lambda x: L.ZeroPadding2D(((1, 0), (2, 1)))(x), dw(3, s=2, pad="valid", m=2, act="relu6")),
)
case(
    "padfold_not_into_maxpool",
    "PAD before MAX_POOL_2D: not folded (pooling skips padded cells rather than reading the zero point), so the PAD runs.",
    [(6, 6, 2)], chain(lambda x: L.ZeroPadding2D(1)(x), lambda x: L.MaxPooling2D(3, strides=2)(x)),
)

# --- TRANSPOSE -------------------------------------------------------------------------------
for (name, shape, perm, batch, note) in [
    ("transpose_nhwc_to_nchw", (4, 5, 3), [0, 3, 1, 2], 1, "[1,4,5,3] -> [1,3,4,5] (NHWC to NCHW)"),
    ("transpose_nchw_to_nhwc", (3, 4, 5), [0, 2, 3, 1], 1, "[1,3,4,5] -> [1,4,5,3] (NCHW to NHWC)"),
    ("transpose_batch_moves", (3, 2, 4), [3, 1, 0, 2], 2, "batch of 2, perm [3,1,0,2]: the batch axis moves"),
    ("transpose_rank3", (4, 6), [0, 2, 1], 1, "rank-3 [1,4,6] -> [1,6,4]"),
    ("transpose_rank2", (6,), [1, 0], 3, "rank-2 [3,6] -> [6,3]"),
]:
    case(name, f"TRANSPOSE: {note}.", [shape], (lambda perm: lambda x: keras.ops.transpose(x, perm))(perm), batch=batch)

# --- CONCATENATION / PACK --------------------------------------------------------------------


def concat(axis):
    return lambda *xs: L.Concatenate(axis=axis)(list(xs))


def stack(axis):
    return lambda *xs: keras.ops.stack(list(xs), axis=axis)


for (name, shapes, make, batch, note) in [
    ("concat_channels", [(4, 4, 3), (4, 4, 5)], concat(-1), 1, "two [1,4,4,*] inputs along the channels (axis -1)"),
    ("concat_height_3_inputs", [(2, 4, 3), (3, 4, 3), (1, 4, 3)], concat(1), 1, "three inputs along the height (axis 1)"),
    ("concat_width_4_inputs", [(3, 1, 2), (3, 2, 2), (3, 3, 2), (3, 1, 2)], concat(2), 1, "four inputs (a full record) along the width (axis 2)"),
    ("concat_batch_axis0", [(3, 3, 2), (3, 3, 2)], concat(0), 1, "along the batch axis (axis 0): two [1,3,3,2] into [2,3,3,2]"),
    ("concat_rank2_negative_axis", [(5,), (7,)], concat(-1), 1, "rank-2 [1,5] and [1,7] along axis -1"),
    ("concat_rank3_axis1", [(2, 6), (3, 6)], concat(1), 2, "rank-3 inputs of a batch of 2 along axis 1"),
    ("concat_7_inputs_split", [(3, 3, 1), (3, 3, 2), (3, 3, 1), (3, 3, 3), (3, 3, 1), (3, 3, 2), (3, 3, 1)], concat(-1), 1, "seven inputs along the channels: mote splits it into a chain of at most 4-input concatenations"),
]:
    case(name, f"CONCATENATION: {note}.", shapes, make, batch=batch, random_vectors=3)

for (name, shapes, make, batch, note) in [
    ("pack_axis0", [(4, 3), (4, 3)], stack(0), 1, "two rank-3 [1,4,3] inputs stacked along a new axis 0: [2,1,4,3]"),
    ("pack_axis_last", [(5,), (5,), (5,)], stack(-1), 1, "three rank-2 [1,5] inputs stacked along a new last axis: [1,5,3]"),
    ("pack_axis1_6_inputs", [(2, 3)] * 6, stack(1), 1, "six rank-3 [1,2,3] inputs along a new axis 1 (split into a chain)"),
]:
    case(name, f"PACK: {note}.", shapes, make, batch=batch, random_vectors=3)

# --- DEPTH_TO_SPACE --------------------------------------------------------------------------


class DepthToSpace(L.Layer):
    def __init__(self, block, **kw):
        super().__init__(**kw)
        self.block = block

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block)

    def compute_output_shape(self, s):
        b = self.block
        return (s[0], s[1] * b, s[2] * b, s[3] // (b * b))


for (name, shape, block, batch, note) in [
    ("depth_to_space_b2", (3, 4, 8), 2, 1, "block 2: [1,3,4,8] -> [1,6,8,2]"),
    ("depth_to_space_b3_batch2", (2, 3, 18), 3, 2, "block 3 on a batch of 2: [2,2,3,18] -> [2,6,9,2]"),
    ("depth_to_space_b2_c1", (4, 4, 4), 2, 1, "block 2 down to one channel: [1,4,4,4] -> [1,8,8,1]"),
]:
    case(name, f"DEPTH_TO_SPACE: {note}.", [shape], (lambda b: lambda x: DepthToSpace(b)(x))(block), batch=batch)
# --- STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, UNPACK --------------------------------------------


for (name, shape, f, note) in [
    ("strided_slice_4d_step2_reverse", (6, 6, 3), lambda t: t[:, 1:5:2, ::-1, :], "x[:, 1:5:2, ::-1, :]: stride 2 on height, a reversed width (begin/end masks with a negative stride)"),
    ("strided_slice_4d_shrink", (6, 6, 3), lambda t: t[:, 2, :, 1:], "x[:, 2, :, 1:]: shrink_axis_mask drops the height (output rank 3)"),
    ("strided_slice_4d_channel_step", (4, 5, 6), lambda t: t[:, :, 1:, 1::2], "x[:, :, 1:, 1::2]: every other channel (no contiguous inner run)"),
    ("strided_slice_3d_negative", (5, 8), lambda t: t[:, -1:0:-2, -7:-1], "rank 3, x[:, -1:0:-2, -7:-1]: negative indices and a negative stride"),
    ("strided_slice_2d_negative_end", (20,), lambda t: t[:, 3:-2:3], "rank 2, x[:, 3:-2:3]: a negative end, stride 3"),
    ("strided_slice_2d_shrink_last", (5, 7), lambda t: t[:, :, -1], "rank 3 to rank 2, x[:, :, -1]: a shrunk last axis with a negative index"),
    ("slice_4d_size_to_end", (6, 6, 3), lambda t: tf.slice(t, [0, 1, 2, 0], [1, 3, -1, 2]), "tf.slice begin [0,1,2,0] size [1,3,-1,2] (-1: to the end)"),
    ("slice_2d", (10,), lambda t: tf.slice(t, [0, 3], [1, 5]), "rank 2, tf.slice begin [0,3] size [1,5]"),
]:
    op = "SLICE" if name.startswith("slice") else "STRIDED_SLICE"
    case(name, f"{op}: {note}.", [shape], lam(f))

for (name, shape, f, note) in [
    ("split_channels_3", (4, 4, 6), lambda t: tf.split(t, 3, axis=-1), "three equal parts along the channels; the model has three outputs"),
    ("split_width_2", (3, 6, 2), lambda t: tf.split(t, 2, axis=2), "two equal parts along the width"),
    ("split_v_minus_one", (4, 7, 3), lambda t: tf.split(t, [2, -1, 3], axis=2), "SPLIT_V sizes [2,-1,3] along the width (-1: what is left)"),
    ("unpack_axis1", (3, 4, 2), lambda t: tf.unstack(t, axis=1), "UNPACK along axis 1 of [1,3,4,2]: three [1,4,2] outputs"),
]:
    op = "SPLIT_V" if name.startswith("split_v") else name.split("_")[0].upper()
    case(name, f"{op}: {note}.", [shape], lam(f))

# --- static SHAPE chains and dilated convolutions (Keras models with a dynamic batch) --------
case(
    "shape_reshape_dynamic_batch",
    "Keras Reshape((6,8)) with batch_size=None: the converter computes the new shape at run time, SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE (folded to a constant).",
    [(4, 4, 3)], lambda x: L.Reshape((6, 8))(x), batch=None,
)
case(
    "shape_flatten_dense_dynamic_batch",
    "CONV_2D -> Flatten -> Dense with batch_size=None: the Flatten's shape chain (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE) between two weighted layers.",
    [(5, 5, 2)], chain(conv(3, 3, act="relu"), lambda x: L.Flatten()(x), dense(4)), batch=None,
)
for (name, shape, make, note) in [
    ("dilated_conv_same_s2b", (9, 9, 3), conv(4, 3, pad="same", dil=2, bias=False), "Conv2D 3x3 dilation 2 SAME, no bias, batch_size=None: the converter writes SPACE_TO_BATCH_ND -> CONV_2D -> BATCH_TO_SPACE_ND (with a bias it adds a broadcast ADD after). TFLite-Micro pads with 0, not the input zero point (-1), so the three operators run unfolded"),
    ("dilated_conv_valid_s2b", (10, 9, 2), conv(3, 3, pad="valid", dil=2, bias=False), "Conv2D 3x3 dilation 2 VALID, no bias, batch_size=None, on a 10x9 input"),
]:
    case(name, f"{note}.", [shape], make, batch=None)


case(
    "space_to_batch_pad_2x3",
    "SPACE_TO_BATCH_ND alone: tf.space_to_batch with block [2,3] and paddings [[1,2],[0,1]] on [1,5,5,2] (6 batches of 4x2); TFLite-Micro pads with 0.",
    [(5, 5, 2)], lam(lambda t: tf.space_to_batch(t, [2, 3], [[1, 2], [0, 1]])),
)
case(
    "batch_to_space_crop_2x2",
    "BATCH_TO_SPACE_ND alone: tf.batch_to_space with block [2,2] and crops [[0,1],[1,0]] on a batch of 4 [3,3,2] images -> [1,5,5,2].",
    [(3, 3, 2)], lam(lambda t: tf.batch_to_space(t, [2, 2], [[0, 1], [1, 0]])), batch=4,
)


def zero_centred(shape):
    """Samples that reach exactly [-128/127, 1]: the calibrated zero point is 0."""

    def rep(rng):
        x = rng.uniform(-1.0, 1.0, (1,) + shape).astype(np.float32)
        x.reshape(-1)[:2] = [-128.0 / 127.0, 1.0]
        return [x]

    return rep


for (name, shape, make, note) in [
    ("dilated_conv_same_s2b_zp0", (9, 9, 3), conv(4, 3, pad="same", dil=2, bias=False), "Conv2D 3x3 dilation 2 SAME, no bias, batch_size=None, input zero point 0: SPACE_TO_BATCH_ND's zero padding is the convolution's"),
    ("dilated_dwconv_same_s2b_zp0", (8, 8, 4), dw(3, pad="same", dil=2, bias=False), "DepthwiseConv2D 3x3 dilation 2 SAME, no bias, batch_size=None, input zero point 0: SPACE_TO_BATCH_ND -> DEPTHWISE_CONV_2D -> BATCH_TO_SPACE_ND"),
]:
    case(name, f"{note}.", [shape], make, batch=None, rep=zero_centred(shape))
# --- RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR -----------------------------------------------


def resize_v2(size, method):
    return lambda x: L.Lambda(lambda t: tf.image.resize(t, size, method=method))(x)


def resize_v1(size, method, align_corners=False):
    fn = {
        "nearest": tf.compat.v1.image.resize_nearest_neighbor,
        "bilinear": tf.compat.v1.image.resize_bilinear,
    }[method]
    return lambda x: L.Lambda(lambda t: fn(t, size, align_corners=align_corners))(x)


for (name, shape, make, batch, note) in [
    ("resize_nearest_up2_half_pixel", (4, 4, 3), resize_v2((8, 8), "nearest"), 1, "tf.image.resize nearest 4x4 -> 8x8 (half_pixel_centers)"),
    ("resize_nearest_5to7_half_pixel", (5, 5, 2), resize_v2((7, 7), "nearest"), 1, "tf.image.resize nearest 5x5 -> 7x7: non-integer scale, half_pixel_centers"),
    ("resize_nearest_7to5_half_pixel", (7, 7, 2), resize_v2((5, 5), "nearest"), 1, "tf.image.resize nearest 7x7 -> 5x5 (downscale), half_pixel_centers"),
    ("resize_nearest_5to7_v1", (5, 5, 2), resize_v1((7, 7), "nearest"), 1, "tf.compat.v1 resize_nearest_neighbor 5x5 -> 7x7, no options (floor of x * 5/7)"),
    ("resize_nearest_7to5_align_corners", (7, 7, 3), resize_v1((5, 5), "nearest", True), 1, "tf.compat.v1 resize_nearest_neighbor 7x7 -> 5x5, align_corners (rounds x * 1.5 half away from zero)"),
    ("resize_nearest_5x4_to_7x9_align_corners_batch2", (5, 4, 2), resize_v1((7, 9), "nearest", True), 2, "align_corners, non-square 5x4 -> 7x9, batch 2"),
    ("resize_bilinear_upsampling2d_x2", (4, 4, 3), lambda x: L.UpSampling2D(2, interpolation="bilinear")(x), 1, "Keras UpSampling2D(2, bilinear): 4x4 -> 8x8, half_pixel_centers"),
    ("resize_bilinear_5to7_half_pixel", (5, 5, 2), resize_v2((7, 7), "bilinear"), 1, "tf.image.resize bilinear 5x5 -> 7x7, half_pixel_centers (Q10 scale 731)"),
    ("resize_bilinear_7to5_resizing_layer", (7, 7, 2), lambda x: L.Resizing(5, 5, interpolation="bilinear")(x), 1, "Keras Resizing 7x7 -> 5x5 (downscale), half_pixel_centers"),
    ("resize_bilinear_5to7_v1", (5, 5, 2), resize_v1((7, 7), "bilinear"), 1, "tf.compat.v1 resize_bilinear 5x5 -> 7x7, no options"),
    ("resize_bilinear_7to5_v1", (7, 7, 3), resize_v1((5, 5), "bilinear"), 1, "tf.compat.v1 resize_bilinear 7x7 -> 5x5, no options"),
    ("resize_bilinear_5to7_align_corners", (5, 5, 2), resize_v1((7, 7), "bilinear", True), 1, "tf.compat.v1 resize_bilinear 5x5 -> 7x7, align_corners"),
    ("resize_bilinear_7x5_to_5x8_align_corners_batch2", (7, 5, 2), resize_v1((5, 8), "bilinear", True), 2, "align_corners, 7x5 -> 5x8 (down one axis, up the other), batch 2"),
]:
    op = "RESIZE_BILINEAR" if "bilinear" in name else "RESIZE_NEAREST_NEIGHBOR"
    case(name, f"{op}: {note}.", [shape], make, batch=batch)

# --- TRANSPOSE_CONV --------------------------------------------------------------------------


def tconv(filters, k, s, pad, act=None, bias=True):
    return lambda x: L.Conv2DTranspose(filters, k, strides=s, padding=pad, activation=act, use_bias=bias)(x)


def fused_activation(act):
    """Sets every operator's fused activation: one the calibrated output range does not hide."""

    def patch(model):
        for op in model.subgraphs[0].operators:
            op.builtinOptions.fusedActivationFunction = act

    return patch


for (name, shape, filters, k, s, pad, act, bias, note) in [
    ("tconv_3x3_same_s2", (4, 4, 3), 5, 3, 2, "same", None, True, "3x3 stride 2 SAME: 4x4x3 -> 8x8x5"),
    ("tconv_3x3_valid_s2_relu", (4, 4, 3), 5, 3, 2, "valid", "relu", True, "3x3 stride 2 VALID: 4x4 -> 9x9, fused RELU"),
    ("tconv_2x2_same_s2_nobias", (5, 3, 4), 3, 2, 2, "same", None, False, "2x2 stride 2 SAME without bias (3 inputs): 5x3 -> 10x6"),
    ("tconv_2x2_valid_s2", (3, 4, 2), 4, 2, 2, "valid", None, True, "2x2 stride 2 VALID: every output from one input pixel"),
    ("tconv_4x4_same_s2_relu6", (3, 3, 3), 4, 4, 2, "same", "relu6", True, "even 4x4 kernel stride 2 SAME (padding 1), fused RELU6"),
    ("tconv_3x3_same_s1", (5, 5, 4), 3, 3, 1, "same", None, True, "3x3 stride 1 SAME (padding 1 each side)"),
    ("tconv_3x2_valid_s3x1", (3, 4, 2), 3, (3, 2), (3, 1), "valid", None, True, "non-square 3x2 kernel, strides 3 and 1, VALID"),
]:
    case(name, f"TRANSPOSE_CONV: {note}.", [shape], tconv(filters, k, s, pad, act, bias))

case(
    "tconv_3x3_same_s2_patched_relu",
    "TRANSPOSE_CONV 3x3 stride 2 SAME converted without activation, then given a fused RELU by editing the flatbuffer: the output zero point is not -128, so TFLite-Micro's clamp shows.",
    [(4, 4, 2)], tconv(3, 3, 2, "same"), patch=fused_activation(fb.ActivationFunctionType.RELU),
)

# --- DEPTH_TO_SPACE / SPACE_TO_DEPTH ---------------------------------------------------------
for (name, shape, fn, block, batch, note) in [
    ("depth_to_space_block2", (3, 3, 8), tf.nn.depth_to_space, 2, 1, "block 2: 3x3x8 -> 6x6x2"),
    ("depth_to_space_block3_batch2", (2, 3, 18), tf.nn.depth_to_space, 3, 2, "block 3: 2x3x18 -> 6x9x2, batch 2"),
    ("space_to_depth_block2", (4, 6, 3), tf.nn.space_to_depth, 2, 1, "block 2: 4x6x3 -> 2x3x12"),
    ("space_to_depth_block3_batch2", (6, 3, 2), tf.nn.space_to_depth, 3, 2, "block 3: 6x3x2 -> 2x1x18, batch 2"),
]:
    op = "DEPTH_TO_SPACE" if fn is tf.nn.depth_to_space else "SPACE_TO_DEPTH"
    case(name, f"{op}: {note}.", [shape],
         lambda x, fn=fn, block=block: L.Lambda(lambda t: fn(t, block))(x), batch=batch)

# --- UNIDIRECTIONAL_SEQUENCE_LSTM (Keras 2 LSTM layers, int8 with int16 cell state) ----------


def lstm_weights(gain=1.0, forget_bias=1.0):
    """Glorot-like uniform kernels scaled by `gain`, biases U(-0.3, 0.3) plus `forget_bias` on the
    forget gate (Keras' unit_forget_bias), dense layers as elsewhere."""

    def set_weights(model, rng):
        for layer in model.layers:
            values = []
            for w in layer.weights:
                shape = tuple(w.shape)
                name = w.name.split("/")[-1].split(":")[0]
                if name in ("kernel", "recurrent_kernel"):
                    a = gain * math.sqrt(3.0 / shape[0])
                    values.append(rng.uniform(-a, a, shape).astype(np.float32))
                elif name == "bias":
                    b = rng.uniform(-0.3, 0.3, shape).astype(np.float32)
                    if isinstance(layer, tf_keras.layers.LSTM):
                        units = shape[0] // 4
                        b[units:2 * units] += forget_bias
                    values.append(b)
                else:
                    raise ValueError(f"unexpected weight {w.name}")
            if values:
                layer.set_weights(values)

    return set_weights


def lstm(units, seq=True):
    return lambda x: tf_keras.layers.LSTM(units, return_sequences=seq)(x)


def time_major(model):
    """Marks the LSTM time-major and swaps its input's and output's first two dimensions: with a
    batch of 1, the same bytes as the batch-major model's."""
    sg = model.subgraphs[0]
    for op in sg.operators:
        if op.builtinOptionsType == fb.BuiltinOptions.UnidirectionalSequenceLSTMOptions:
            op.builtinOptions.timeMajor = True
            for t in (op.inputs[0], op.outputs[0]):
                shape = sg.tensors[t].shape
                sg.tensors[t].shape = np.array([shape[1], shape[0], shape[2]], np.int32)
                sg.tensors[t].shapeSignature = None


def cell_clip(clip):
    def patch(model):
        for op in model.subgraphs[0].operators:
            if op.builtinOptionsType == fb.BuiltinOptions.UnidirectionalSequenceLSTMOptions:
                op.builtinOptions.cellClip = clip

    return patch


for (name, shape, make, batch, gain, patch, note) in [
    ("lstm_seq_6x5_u7", (6, 5), lstm(7), 1, 1.0, None, "6 steps of 5 features, 7 units, the whole sequence out"),
    ("lstm_last_8x4_u6", (8, 4), lstm(6, seq=False), 1, 1.0, None, "8 steps of 4 features, 6 units, the last step out (LSTM then STRIDED_SLICE)"),
    ("lstm_batch2_5x3_u4", (5, 3), lstm(4), 2, 1.0, None, "a batch of 2 sequences of 5 steps, 4 units"),
    ("lstm_saturating_6x8_u12", (6, 8), lstm(12), 1, 3.0, None, "weights 3x larger: saturated gates and a cell state near its range"),
    ("lstm_time_major_6x5_u8", (6, 5), lstm(8), 1, 1.0, time_major, "time-major ([steps, batch, features]) by editing the flatbuffer"),
    ("lstm_cell_clip_7x4_u5", (7, 4), lstm(5), 1, 3.0, cell_clip(0.5), "cell_clip 0.5 set by editing the flatbuffer: the clipped int16 cell state"),
]:
    case(name, f"UNIDIRECTIONAL_SEQUENCE_LSTM: {note}; 2 sequences of 3 invokes, state carried.",
         [shape], make, batch=batch, tf_keras=True, set_weights=lstm_weights(gain), patch=patch,
         sequence=3)

case(
    "model_lstm_classifier",
    "Sequence classifier on 8 steps of 8 features: LSTM 16 units (last step) -> FULLY_CONNECTED 4 -> SOFTMAX.",
    [(8, 8)],
    chain(lstm(16, seq=False), lambda x: tf_keras.layers.Dense(4)(x), lambda x: tf_keras.layers.Softmax()(x)),
    tf_keras=True, set_weights=lstm_weights(), sequence=3,
)
case(
    "model_lstm_stacked",
    "Two stacked LSTMs (10 then 6 units) on 5 steps of 3 features: the first's int8 sequence feeds the second.",
    [(5, 3)], chain(lstm(10), lstm(6)), tf_keras=True, set_weights=lstm_weights(), sequence=3,
)

# --- small models ----------------------------------------------------------------------------


def ds_cnn(x):
    x = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 1, activation="relu")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Reshape((4 * 4 * 8,))(x)
    x = L.Dense(5)(x)
    return L.Softmax()(x)


def residual(x):
    y = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    y = L.Conv2D(4, 3, padding="same")(y)
    return L.ReLU()(L.Add()([x, y]))


def decoder(x):
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(x)
    x = L.UpSampling2D(2, interpolation="bilinear")(x)
    return L.Conv2D(2, 1)(x)


def subpixel(x):
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(x)
    x = L.Conv2D(3, 3, padding="same")(x)
    return L.Lambda(lambda t: tf.image.resize(t, (7, 7), method="nearest"))(x)


case(
    "model_decoder_upsample",
    "Encoder-decoder on 8x8x2: CONV_2D 3x3 stride 2 RELU -> TRANSPOSE_CONV 3x3 stride 2 RELU -> RESIZE_BILINEAR x2 (UpSampling2D) -> 1x1 CONV_2D.",
    [(8, 8, 2)], decoder,
)
case(
    "model_subpixel_resize",
    "Sub-pixel upscaling on 4x4x1: CONV_2D 3x3 -> DEPTH_TO_SPACE 2 -> CONV_2D 3x3 -> RESIZE_NEAREST_NEIGHBOR 8x8 -> 7x7.",
    [(4, 4, 1)], subpixel,
)
case(
    "model_ds_cnn",
    "Depthwise-separable CNN on 8x8x1: CONV_2D 3x3 -> DEPTHWISE_CONV_2D 3x3 -> 1x1 CONV_2D -> AVERAGE_POOL_2D -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX.",
    [(8, 8, 1)], ds_cnn,
)
case(
    "model_residual_block",
    "Residual block on 6x6x4: CONV_2D 3x3 RELU -> CONV_2D 3x3 -> ADD with the block input, fused RELU.",
    [(6, 6, 4)], residual,
)

# --- Models written with the flatbuffer schema: SVDF, int16 edges -------------------------------

TFL_TYPES = {"int8": fb.TensorType.INT8, "int16": fb.TensorType.INT16,
             "int32": fb.TensorType.INT32, "float32": fb.TensorType.FLOAT32}


def flatbuffer(tensors: list, operators: list, inputs: list, outputs: list) -> bytes:
    """A one-subgraph .tflite. `tensors`: dicts with shape, dtype, scale, zero_point and, for a
    constant, data (numpy) or, for state, variable=True. `operators`: (builtin, version,
    inputs, outputs, options type, options object or None)."""
    model = fb.ModelT()
    model.version = 3
    model.description = "mote golden case"
    model.buffers = [fb.BufferT()]
    sg = fb.SubGraphT()
    sg.tensors = []
    for k, t in enumerate(tensors):
        tt = fb.TensorT()
        tt.name = t.get("name", f"t{k}")
        tt.shape = np.array(t["shape"], np.int32)
        tt.type = TFL_TYPES[t["dtype"]]
        if "scale" in t:
            q = fb.QuantizationParametersT()
            q.scale = [float(np.float32(t["scale"]))]
            q.zeroPoint = [int(t["zero_point"])]
            tt.quantization = q
        tt.isVariable = bool(t.get("variable", False))
        tt.buffer = 0
        if t.get("data") is not None:
            b = fb.BufferT()
            raw = np.asarray(t["data"], NP_TYPES[t["dtype"]]).astype(np.dtype(NP_TYPES[t["dtype"]]).newbyteorder("<"))
            b.data = np.frombuffer(raw.tobytes(), np.uint8)
            model.buffers.append(b)
            tt.buffer = len(model.buffers) - 1
        sg.tensors.append(tt)
    codes, sg.operators = [], []
    for builtin, version, ins, outs, opt_type, opts in operators:
        if (builtin, version) not in codes:
            codes.append((builtin, version))
        op = fb.OperatorT()
        op.opcodeIndex = codes.index((builtin, version))
        op.inputs = np.array(ins, np.int32)
        op.outputs = np.array(outs, np.int32)
        op.builtinOptionsType = opt_type
        op.builtinOptions = opts
        sg.operators.append(op)
    model.operatorCodes = []
    for builtin, version in codes:
        oc = fb.OperatorCodeT()
        oc.builtinCode = builtin
        oc.deprecatedBuiltinCode = min(builtin, 127)
        oc.version = version
        model.operatorCodes.append(oc)
    sg.inputs = np.array(inputs, np.int32)
    sg.outputs = np.array(outputs, np.int32)
    model.subgraphs = [sg]
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def svdf_model(batch, input_size, units, rank, memory, time, bias=True, act="NONE",
               state_zp=0, out_zp=-3):
    """One SVDF: int8 input [batch, input_size] and weights_feature [rank * units, input_size],
    weights_time [filters, memory] and state [batch, memory * filters] of `time` (int16 with
    zero point 0, or int8 with `state_zp`), int32 bias [units] with scale s_state * s_wt
    (all zeros with bias=False: TFLite-Micro's Prepare reads the bias's scale without checking
    that there is one, and crashes on an omitted bias), int8 output [batch, units]. Scales are picked so features and outputs use the
    state's and output's range without saturating everything."""
    def build(rng):
        filters = rank * units
        s_in, s_wf = 0.05, 0.01
        # The feature's real range is about s_in * s_wf * 127 * 128 * sqrt(input_size) / 2.
        feature = s_in * s_wf * 127 * 128 * math.sqrt(input_size) / 2
        t_max = 32767 if time == "int16" else 127
        s_state = feature / (t_max * 0.5)
        s_wt = 0.02
        out_real = s_state * t_max * 0.5 * s_wt * t_max * math.sqrt(memory * rank)
        s_out = out_real / 60.0
        wf = rng.integers(-127, 128, (filters, input_size))
        wt = rng.integers(-t_max, t_max + 1, (filters, memory))
        s_bias = float(np.float32(np.float32(s_state) * np.float32(s_wt)))
        tensors = [
            {"name": "input", "shape": [batch, input_size], "dtype": "int8", "scale": s_in, "zero_point": 7},
            {"name": "weights_feature", "shape": [filters, input_size], "dtype": "int8", "scale": s_wf, "zero_point": 0, "data": wf},
            {"name": "weights_time", "shape": [filters, memory], "dtype": time, "scale": s_wt, "zero_point": 0, "data": wt},
            {"name": "bias", "shape": [units], "dtype": "int32", "scale": s_bias, "zero_point": 0,
             "data": rng.integers(-20000, 20000, units) * bool(bias)},
            {"name": "state", "shape": [batch, memory * filters], "dtype": time, "scale": s_state,
             "zero_point": state_zp if time == "int8" else 0, "variable": True},
            {"name": "output", "shape": [batch, units], "dtype": "int8", "scale": s_out, "zero_point": out_zp},
        ]
        opts = fb.SVDFOptionsT()
        opts.rank = rank
        opts.fusedActivationFunction = getattr(fb.ActivationFunctionType, act)
        ins = [0, 1, 2, 3, 4]
        ops = [(fb.BuiltinOperator.SVDF, 3 if time == "int8" else 2, ins, [5], fb.BuiltinOptions.SVDFOptions, opts)]
        return flatbuffer(tensors, ops, [0], [5])
    return build


def svdf_case(name, description, **kw):
    case(name, description, [], None, build=svdf_model(**kw), sequence=6, random_vectors=10)


svdf_case(
    "svdf_int16_rank1",
    "SVDF: int16 time weights and state, rank 1, 3 units over 10 inputs, memory 4, with bias; 2 sequences of 6 invokes, state carried.",
    batch=1, input_size=10, units=3, rank=1, memory=4, time="int16",
)
svdf_case(
    "svdf_int16_rank2_batch2_zero_bias",
    "SVDF: int16, rank 2 (2 units of 2 filters), batch 2, memory 5, an all-zero bias (what an omitted bias computes; this TFLite-Micro crashes on an omitted one).",
    batch=2, input_size=7, units=2, rank=2, memory=5, time="int16", bias=False,
)
svdf_case(
    "svdf_int8_rank1_relu",
    "SVDF: int8 time weights and state (state zero point -5), rank 1, memory 3, fused RELU with output zero point -3 (TFLite-Micro's integer kernel ignores the activation).",
    batch=1, input_size=12, units=4, rank=1, memory=3, time="int8", act="RELU", state_zp=-5,
)
svdf_case(
    "svdf_int8_rank2_batch2",
    "SVDF: int8, rank 2, batch 2, memory 4, state zero point 9, with bias.",
    batch=2, input_size=6, units=3, rank=2, memory=4, time="int8", state_zp=9,
)


def int16_edges(kind):
    """QUANTIZE int16 -> int8 -> FULLY_CONNECTED -> SOFTMAX int8 -> int16 -> QUANTIZE int16 ->
    int32 (the keyword models' edges), or the one operator `kind` names alone."""
    def build(rng):
        t = [
            {"name": "input16", "shape": [1, 16], "dtype": "int16", "scale": 0.000625, "zero_point": 0},
            {"name": "input8", "shape": [1, 16], "dtype": "int8", "scale": 0.0592, "zero_point": -128},
            {"name": "weights", "shape": [5, 16], "dtype": "int8", "scale": 0.009, "zero_point": 0,
             "data": rng.integers(-127, 128, (5, 16))},
            {"name": "bias", "shape": [5], "dtype": "int32", "scale": float(np.float32(0.0592) * np.float32(0.009)),
             "zero_point": 0, "data": rng.integers(-3000, 3000, 5)},
            {"name": "logits", "shape": [1, 5], "dtype": "int8", "scale": 0.07, "zero_point": 2},
            {"name": "probs", "shape": [1, 5], "dtype": "int16", "scale": 1.5259022e-05, "zero_point": -32768},
            {"name": "output32", "shape": [1, 5], "dtype": "int32", "scale": 3.051851e-05, "zero_point": 0},
        ]
        fc = fb.FullyConnectedOptionsT()
        sm = fb.SoftmaxOptionsT()
        sm.beta = 1.0
        ops = {
            "quantize_in": (fb.BuiltinOperator.QUANTIZE, 1, [0], [1], 0, None),
            "fc": (fb.BuiltinOperator.FULLY_CONNECTED, 4, [1, 2, 3], [4], fb.BuiltinOptions.FullyConnectedOptions, fc),
            "softmax": (fb.BuiltinOperator.SOFTMAX, 2, [4], [5], fb.BuiltinOptions.SoftmaxOptions, sm),
            "quantize_out": (fb.BuiltinOperator.QUANTIZE, 1, [5], [6], 0, None),
        }
        if kind == "chain":
            return flatbuffer(t, list(ops.values()), [0], [6])
        if kind == "quantize_16_to_8":
            return flatbuffer(t[:2], [ops["quantize_in"]], [0], [1])
        if kind == "softmax_8_to_16":
            t4 = dict(t[4], shape=[2, 9])
            t5 = dict(t[5], shape=[2, 9])
            return flatbuffer([t4, t5], [(fb.BuiltinOperator.SOFTMAX, 2, [0], [1], fb.BuiltinOptions.SoftmaxOptions, sm)], [0], [1])
        if kind == "quantize_16_to_32":
            return flatbuffer([dict(t[5], shape=[1, 40]), dict(t[6], shape=[1, 40])],
                              [(fb.BuiltinOperator.QUANTIZE, 1, [0], [1], 0, None)], [0], [1])
        raise ValueError(kind)
    return build


case(
    "quantize_int16_to_int8",
    "QUANTIZE: int16 (scale 0.000625, zero point 0) to int8 (scale 0.0592, zero point -128), TFLite's Requantize: the keyword models' input.",
    [], None, build=int16_edges("quantize_16_to_8"),
)
case(
    "quantize_int16_to_int32",
    "QUANTIZE: int16 softmax probabilities (1/65536, zero point -32768) to int32 (scale 2^-15): the keyword models' output.",
    [], None, build=int16_edges("quantize_16_to_32"),
)
case(
    "softmax_int8_to_int16",
    "SOFTMAX: int8 input (scale 0.07) to int16 output (scale 1/65536 within 0.1 %, zero point -32768), rows of 9.",
    [], None, build=int16_edges("softmax_8_to_16"),
)
case(
    "model_int16_edges",
    "int16 model edges as the keyword models have them: QUANTIZE int16 -> int8, FULLY_CONNECTED, SOFTMAX int8 -> int16, QUANTIZE int16 -> int32.",
    [], None, build=int16_edges("chain"),
)

# ---------------------------------------------------------------------------------------------
# Build, convert, run
# ---------------------------------------------------------------------------------------------


def seed_of(name: str, salt: str) -> int:
    return zlib.crc32(f"{name}/{salt}".encode())


def build_model(spec: Spec) -> keras.Model:
    k = tf_keras if spec.tf_keras else keras
    k.backend.clear_session()  # restart Keras' name counters: tensor names do not depend on order
    k.utils.set_random_seed(seed_of(spec.name, "keras"))
    ins = [k.Input(s, batch_size=spec.batch) for s in spec.inputs]
    out = spec.make(*ins)
    model = k.Model(ins if len(ins) > 1 else ins[0], out)
    rng = np.random.default_rng(seed_of(spec.name, "weights"))
    if spec.set_weights:
        spec.set_weights(model, rng)
        return model
    for layer in model.layers:
        if not layer.weights:
            continue
        values = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if w.name == "kernel":
                if isinstance(layer, L.DepthwiseConv2D):
                    fan_in = shape[0] * shape[1]
                else:
                    fan_in = int(np.prod(shape[:-1]))
                a = spec.kernel_gain * math.sqrt(3.0 / fan_in)
                values.append(rng.uniform(-a, a, shape).astype(np.float32))
            elif w.name == "bias":
                values.append(rng.uniform(-spec.bias_amp, spec.bias_amp, shape).astype(np.float32))
            else:
                raise ValueError(f"{spec.name}: unexpected weight {w.name}")
        layer.set_weights(values)
    return model


def representative(spec: Spec, names: list):
    rng = np.random.default_rng(seed_of(spec.name, "representative"))

    def gen():
        for _ in range(REP_SAMPLES):
            if spec.rep:
                yield spec.rep(rng)
            else:
                sample = [
                    rng.uniform(lo, hi, (spec.batch or 1,) + tuple(s)).astype(np.float32)
                    for s, (lo, hi) in zip(spec.inputs, spec.input_ranges())
                ]
                yield dict(zip(names, sample)) if spec.rep_by_name else sample

    return gen


def static_shapes(model_bytes: bytes) -> bytes:
    """A model with a dynamic batch keeps the shapes its converter guessed for batch 1 inside the
    graph (SPACE_TO_BATCH_ND's output claims batch 1 where it makes 4); TFLite-Micro does not
    resize, so the intermediate shapes are set to those TFLite infers for batch 1, and their
    signatures dropped."""
    interp = tf.lite.Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    shapes = {d["index"]: [int(v) for v in d["shape"]] for d in interp.get_tensor_details()}
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model_bytes, 0))
    changed = False
    for i, t in enumerate(model.subgraphs[0].tensors):
        if i in shapes and t.shape is not None and shapes[i] != [int(v) for v in t.shape]:
            t.shape = np.array(shapes[i], np.int32)
            t.shapeSignature = None
            changed = True
    if not changed:
        return model_bytes
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
def patch_model(model_bytes: bytes, patch: Callable) -> bytes:
    """The model with `patch` applied to its object form: options no converter writes."""
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model_bytes, 0))
    patch(model)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def convert(spec: Spec, model: keras.Model) -> bytes:
    conv_ = tf.lite.TFLiteConverter.from_keras_model(model)
    conv_.optimizations = [tf.lite.Optimize.DEFAULT]
    conv_.representative_dataset = representative(spec, [t.name for t in model.inputs])
    conv_.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if spec.uint8_io:
        conv_.inference_input_type = tf.uint8
        conv_.inference_output_type = tf.uint8
    elif not spec.float_io:
        conv_.inference_input_type = tf.int8
        conv_.inference_output_type = tf.int8
    # The default (False) quantizes dense layers per output channel.
    conv_._experimental_disable_per_channel_quantization_for_dense_layers = spec.per_tensor_fc
    with contextlib.redirect_stdout(io.StringIO()):  # the Keras export prints its signature
        model_bytes = conv_.convert()
    if spec.batch is None:
        model_bytes = static_shapes(model_bytes)
    if spec.patch is not None:
        model_bytes = patch_model(model_bytes, spec.patch)
    return model_bytes


# ---------------------------------------------------------------------------------------------
# Flatbuffer -> JSON
# ---------------------------------------------------------------------------------------------

OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {
    fb.TensorType.INT8: "int8", fb.TensorType.INT32: "int32", fb.TensorType.FLOAT32: "float32",
    fb.TensorType.UINT8: "uint8", fb.TensorType.INT16: "int16",
}
NP_TYPES = {"int8": np.int8, "int32": np.int32, "float32": np.float32, "uint8": np.uint8,
            "int16": np.int16}
PADDING = {fb.Padding.SAME: "SAME", fb.Padding.VALID: "VALID"}
ACTIVATION = {
    fb.ActivationFunctionType.NONE: "NONE",
    fb.ActivationFunctionType.RELU: "RELU",
    fb.ActivationFunctionType.RELU_N1_TO_1: "RELU_N1_TO_1",
    fb.ActivationFunctionType.RELU6: "RELU6",
    fb.ActivationFunctionType.TANH: "TANH",
    fb.ActivationFunctionType.SIGN_BIT: "SIGN_BIT",
}


def f32(x) -> float:
    """The exact double value of a float32."""
    return float(np.float32(x))


def options_of(op_name: str, opts) -> dict:
    """The builtin options in snake_case. Fields the kernels here ignore must hold defaults."""

    def need(cond, what):
        if not cond:
            raise ValueError(f"{op_name}: unexpected option {what}")

    if op_name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        out = {
            "padding": PADDING[opts.padding],
            "stride_w": opts.strideW,
            "stride_h": opts.strideH,
            "dilation_w_factor": opts.dilationWFactor,
            "dilation_h_factor": opts.dilationHFactor,
            "fused_activation_function": ACTIVATION[opts.fusedActivationFunction],
        }
        if op_name == "DEPTHWISE_CONV_2D":
            out["depth_multiplier"] = opts.depthMultiplier
        else:
            need(opts.quantizedBiasType == 0, "quantized_bias_type")
        return out
    if op_name == "FULLY_CONNECTED":
        need(opts.weightsFormat == fb.FullyConnectedOptionsWeightsFormat.DEFAULT, "weights_format")
        need(not opts.asymmetricQuantizeInputs, "asymmetric_quantize_inputs")
        need(opts.quantizedBiasType == 0, "quantized_bias_type")
        return {
            "fused_activation_function": ACTIVATION[opts.fusedActivationFunction],
            "keep_num_dims": bool(opts.keepNumDims),
        }
    if op_name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return {
            "padding": PADDING[opts.padding],
            "stride_w": opts.strideW,
            "stride_h": opts.strideH,
            "filter_width": opts.filterWidth,
            "filter_height": opts.filterHeight,
            "fused_activation_function": ACTIVATION[opts.fusedActivationFunction],
        }
    if op_name in ("ADD", "SUB", "MUL"):
        # pot_scale_int16 (ADD, SUB) only matters for int16 activations.
        return {"fused_activation_function": ACTIVATION[opts.fusedActivationFunction]}
    if op_name in ("MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"):
        return {}  # their options tables have no fields
    if op_name == "SOFTMAX":
        return {"beta": f32(opts.beta)}
    if op_name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        need(not opts.asymmetricQuantizeInputs, "asymmetric_quantize_inputs")
        need(not opts.diagonalRecurrentTensors, "diagonal_recurrent_tensors")
        return {
            "fused_activation_function": ACTIVATION[opts.fusedActivationFunction],
            "cell_clip": f32(opts.cellClip),
            "proj_clip": f32(opts.projClip),
            "time_major": bool(opts.timeMajor),
        }
    if op_name == "SQUEEZE":
        return {"squeeze_dims": [int(v) for v in (opts.squeezeDims if opts.squeezeDims is not None else [])]}
    if op_name == "EXPAND_DIMS":
        return {}  # the axis is the int32 constant second input
    if op_name == "RESHAPE":
        if opts is None:
            return {}
        return {"new_shape": [int(v) for v in (opts.newShape if opts.newShape is not None else [])]}
    if op_name == "MEAN":
        return {"keep_dims": bool(opts.keepDims)}
    if op_name in ("PAD", "PADV2", "TRANSPOSE"):
        # PadOptions, PadV2Options and TransposeOptions have no fields.
        return {}
    if op_name == "CONCATENATION":
        return {
            "axis": int(opts.axis),
            "fused_activation_function": ACTIVATION[opts.fusedActivationFunction],
        }
    if op_name == "PACK":
        return {"values_count": int(opts.valuesCount), "axis": int(opts.axis)}
    if op_name == "DEPTH_TO_SPACE":
        return {"block_size": int(opts.blockSize)}
    if op_name == "STRIDED_SLICE":
        return {
            "begin_mask": opts.beginMask,
            "end_mask": opts.endMask,
            "ellipsis_mask": opts.ellipsisMask,
            "new_axis_mask": opts.newAxisMask,
            "shrink_axis_mask": opts.shrinkAxisMask,
            "offset": bool(opts.offset),
        }
    if op_name in ("SPLIT", "SPLIT_V"):
        return {"num_splits": opts.numSplits}
    if op_name == "UNPACK":
        return {"num": opts.num, "axis": opts.axis}
    if op_name == "SHAPE":
        need(opts is None or opts.outType == fb.TensorType.INT32, "out_type")
        return {}
    if op_name in ("SLICE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"):
        return {}
    if op_name in ("SUM", "REDUCE_MAX"):
        return {"keep_dims": bool(opts.keepDims)}
    if op_name == "LEAKY_RELU":
        return {"alpha": f32(opts.alpha)}
    if op_name in ("LOGISTIC", "TANH", "HARD_SWISH", "PRELU"):
        return {}
    if op_name in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
        return {
            "align_corners": bool(opts.alignCorners),
            "half_pixel_centers": bool(opts.halfPixelCenters),
        }
    if op_name == "TRANSPOSE_CONV":
        need(opts.quantizedBiasType == 0, "quantized_bias_type")
        return {
            "padding": PADDING[opts.padding],
            "stride_w": opts.strideW,
            "stride_h": opts.strideH,
            "fused_activation_function": ACTIVATION[opts.fusedActivationFunction],
        }
    if op_name in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        return {"block_size": opts.blockSize}
    if op_name == "SVDF":
        need(not opts.asymmetricQuantizeInputs, "asymmetric_quantize_inputs")
        return {
            "rank": int(opts.rank),
            "fused_activation_function": ACTIVATION[opts.fusedActivationFunction],
        }
    if op_name in ("QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1"):
        need(opts is None, f"({op_name} takes none)")
        return {}
    raise ValueError(f"no option dumper for {op_name}")


def buffer_bytes(model_bytes: bytes, buf) -> Optional[bytes]:
    if buf.data is not None and len(buf.data) > 0:
        return bytes(np.asarray(buf.data, dtype=np.uint8))
    if buf.offset > 1 and buf.size > 0:
        return model_bytes[buf.offset: buf.offset + buf.size]
    return None


def dump_subgraph(model_bytes: bytes) -> dict:
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model_bytes, 0))
    if len(model.subgraphs) != 1:
        raise ValueError(f"{len(model.subgraphs)} subgraphs")
    sg = model.subgraphs[0]
    tensors = []
    for t in sg.tensors:
        dtype = TYPE_NAMES.get(t.type)
        if dtype is None:
            raise ValueError(f"tensor {t.name!r}: unsupported type {t.type}")
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        if t.shapeSignature is not None and len(t.shapeSignature) > 0:
            sig = [int(d) for d in t.shapeSignature]
            if len(sig) != len(shape) or any(s != d and not (s == -1 and d == 1) for s, d in zip(sig, shape)):
                raise ValueError(f"tensor {t.name!r}: shape {shape} vs signature {sig}")
        q = t.quantization
        scale, zp, qdim = [], [], 0
        if q is not None and q.scale is not None and len(q.scale) > 0:
            if q.detailsType != 0:
                raise ValueError(f"tensor {t.name!r}: custom quantization details")
            scale = [f32(s) for s in q.scale]
            zp = [int(z) for z in q.zeroPoint]
            qdim = int(q.quantizedDimension)
        raw = buffer_bytes(model_bytes, model.buffers[t.buffer]) if t.buffer > 0 else None
        data = None
        if raw is not None:
            values = np.frombuffer(raw, dtype=np.dtype(NP_TYPES[dtype]).newbyteorder("<"))
            if values.size != int(np.prod(shape)):
                raise ValueError(f"tensor {t.name!r}: {values.size} values for shape {shape}")
            data = [f32(v) for v in values] if dtype == "float32" else [int(v) for v in values]
        tensor = {
            "name": t.name.decode() if isinstance(t.name, bytes) else str(t.name),
            "shape": shape,
            "dtype": dtype,
            "scale": scale,
            "zero_point": zp,
            "quantized_dimension": qdim,
            "data": data,
        }
        if t.isVariable:
            tensor["variable"] = True
        tensors.append(tensor)
    operators = []
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = tflm.get_builtin_code_from_operator_code(code)
        name = OP_NAMES.get(builtin)
        if name is None or name == "CUSTOM":
            raise ValueError(f"unsupported operator code {builtin}")
        operators.append({
            "op": name,
            "version": int(code.version),
            "inputs": [int(i) for i in op.inputs],
            "outputs": [int(i) for i in op.outputs],
            "options": options_of(name, op.builtinOptions),
        })
    return {
        "tensors": tensors,
        "operators": operators,
        "inputs": [int(i) for i in sg.inputs],
        "outputs": [int(i) for i in sg.outputs],
    }


# ---------------------------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------------------------


def make_vectors(spec: Spec, graph: dict) -> list:
    """Per vector, one array per subgraph input (numpy, the tensor's dtype and shape)."""
    rng = np.random.default_rng(seed_of(spec.name, "vectors"))
    ins = [graph["tensors"][i] for i in graph["inputs"]]
    vectors = []
    for _ in range(spec.random_vectors):
        row = []
        for t in ins:
            if t["dtype"] == "int8":
                row.append(rng.integers(-128, 128, t["shape"], dtype=np.int8))
            elif t["dtype"] == "uint8":
                row.append(rng.integers(0, 256, t["shape"], dtype=np.uint8))
            elif t["dtype"] == "int16":
                row.append(rng.integers(-32768, 32768, t["shape"], dtype=np.int16))
            elif t["dtype"] == "float32":
                lo, hi = spec.input_ranges()[len(row)]
                span = hi - lo
                row.append(rng.uniform(lo - 0.25 * span, hi + 0.25 * span, t["shape"]).astype(np.float32))
            else:
                raise ValueError("int32 model input")
        vectors.append(row)
    if spec.sweep:
        vectors.append([
            np.resize(np.arange(-128, 128).astype(NP_TYPES[t["dtype"]]), t["shape"]) for t in ins
        ])
    if all(t["dtype"] == "uint8" for t in ins):
        for v in (0, 255):
            vectors.append([np.full(t["shape"], v, np.uint8) for t in ins])
    elif all(t["dtype"] == "int16" for t in ins):
        for v in (-32768, 32767, 0):
            vectors.append([np.full(t["shape"], v, np.int16) for t in ins])
    elif all(t["dtype"] == "int8" for t in ins):
        corners = [(-128,) * len(ins), (127,) * len(ins)]
        if len(ins) == 2:
            corners += [(127, -128), (-128, 127)]
        for c in corners:
            vectors.append([np.full(t["shape"], v, np.int8) for t, v in zip(ins, c)])
        if spec.sequence > 1:
            # A sequence's state starts at the corners: the second sequence opens with them.
            corners = vectors[-len(corners):]
            del vectors[-len(corners):]
            vectors[spec.sequence:spec.sequence] = corners
    else:
        for pick in (lambda lo, hi: 3.0 * lo - 1.0, lambda lo, hi: 3.0 * hi + 1.0, lambda lo, hi: 0.0):
            vectors.append([
                np.full(t["shape"], pick(*r), np.float32) for t, r in zip(ins, spec.input_ranges())
            ])
    return vectors


def run_tflm(model_bytes: bytes, inputs: list, n_outputs: int) -> list:
    """One fresh TFLM interpreter per vector, so no state can leak between vectors."""
    interp = tflm.Interpreter.from_bytes(model_bytes, arena_size=max(10 * len(model_bytes), 1 << 18))
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    return [np.array(interp.get_output(i)) for i in range(n_outputs)]


def run_tflm_sequences(spec: Spec, model_bytes: bytes, vectors: list, n_outputs: int) -> list:
    """Every vector's outputs: each on its own (`run_tflm`), or for a case with sequences, each
    group of `spec.sequence` vectors through one interpreter, state carried."""
    if spec.sequence == 1:
        return [run_tflm(model_bytes, v, n_outputs) for v in vectors]
    if len(vectors) % spec.sequence:
        raise ValueError(f"{spec.name}: {len(vectors)} vectors are not whole sequences")
    outputs = []
    for start in range(0, len(vectors), spec.sequence):
        interp = tflm.Interpreter.from_bytes(model_bytes, arena_size=max(10 * len(model_bytes), 1 << 18))
        for v in vectors[start:start + spec.sequence]:
            for i, x in enumerate(v):
                interp.set_input(x, i)
            interp.invoke()
            outputs.append([np.array(interp.get_output(i)) for i in range(n_outputs)])
    return outputs


def flat_list(a: np.ndarray) -> list:
    a = np.asarray(a)
    if a.dtype == np.float32:
        return [f32(v) for v in a.reshape(-1)]
    return [int(v) for v in a.reshape(-1)]


# ---------------------------------------------------------------------------------------------
# Independent numpy re-implementation (reads only the JSON), to document TFLM's arithmetic
# ---------------------------------------------------------------------------------------------

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def round_half_away(x: float) -> int:
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(real: float):
    """(q31 mantissa, exponent) with real ~= mantissa * 2^(exponent - 31)."""
    if real == 0.0:
        return 0, 0
    mant, exp = math.frexp(real)
    q = round_half_away(mant * (1 << 31))
    if q == (1 << 31):
        q //= 2
        exp += 1
    if exp < -31:
        return 0, 0
    if exp > 30:
        return (1 << 31) - 1, 30
    return q, exp


def trunc_div(a: np.ndarray, d: int) -> np.ndarray:
    q = np.abs(a) // d
    return np.where(a < 0, -q, q)


def mul_double_rounding(x: np.ndarray, m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Saturating rounding doubling high multiply, then rounding divide by a power of two."""
    x = np.asarray(x, np.int64)
    m = np.asarray(m, np.int64)
    e = np.asarray(e, np.int64)
    left = np.maximum(e, 0)
    right = np.maximum(-e, 0)
    xs = x << left
    if np.any((xs < I32_MIN) | (xs > I32_MAX)):
        raise OverflowError("left shift overflows int32")
    ab = xs * m
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = trunc_div(ab + nudge, 1 << 31)
    high = np.where((xs == I32_MIN) & (m == I32_MIN), I32_MAX, high)
    mask = (np.int64(1) << right) - 1
    rem = high & mask
    threshold = (mask >> 1) + np.where(high < 0, 1, 0)
    return (high >> right) + np.where(rem > threshold, 1, 0)


def mul_single_rounding(x: np.ndarray, m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """One 64-bit multiply, one rounding shift (TFLITE_SINGLE_ROUNDING)."""
    x = np.asarray(x, np.int64)
    total = 31 - np.asarray(e, np.int64)
    return (x * np.asarray(m, np.int64) + (np.int64(1) << (total - 1))) >> total


# gemmlowp-style fixed point on Python ints (raw int32 values), for the softmax re-implementation.


def wrap32(v: int) -> int:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a: int, b: int) -> int:
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) >> 31
    return q if ab + nudge >= 0 else -q


def rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


def sat_shl(x: int, e: int) -> int:
    threshold = (1 << (31 - e)) - 1
    if x > threshold:
        return I32_MAX
    if x < -threshold:
        return I32_MIN
    return x << e


def fx_exp_on_interval(a: int) -> int:
    """exp(a) for a Q0.31 a in [-1/4, 0)."""
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(wrap32(srdhm(wrap32(x4_over_4 + x3), 715827883) + x2), 1)
    c = 1895147668  # exp(-1/8)
    return wrap32(c + srdhm(c, wrap32(x + poly)))


EXP_BARREL = [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
              (2, 39332535), (3, 720401), (4, 242)]


def fx_exp_on_negative_values(a: int) -> int:
    """exp(a) in Q0.31 for a Q5.26 a <= 0."""
    frac = 26
    quarter = 1 << (frac - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = fx_exp_on_interval(sat_shl(a_mod, 5))  # Rescale from 5 to 0 integer bits
    remainder = wrap32(a_mod - a)
    for exponent, mult in EXP_BARREL:
        if remainder & (1 << (frac + exponent)):
            result = srdhm(result, mult)
    return I32_MAX if a == 0 else result


def fx_one_over_one_plus_x(a: int) -> int:
    """1 / (1 + a) for a Q0.31 a in [0, 1), as Q0.31, by Newton-Raphson in Q2.29."""
    s = a + I32_MAX + 1  # RoundingHalfSum(a, One): (a + one + sign) / 2, truncating
    half_den = (s // 2) if s >= 0 else -((-s) // 2)
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))
    for _ in range(3):
        hx = srdhm(half_den, x)
        one_minus = wrap32((1 << 29) - hx)
        x = wrap32(x + sat_shl(srdhm(x, one_minus), 2))
    return sat_shl(x, 1)


def act_range(act: str, scale: float, zp: int):
    def q(v):
        return zp + round_half_away(float(np.float32(v) / np.float32(scale)))

    if act == "NONE":
        return -128, 127
    if act == "RELU":
        return max(-128, q(0.0)), 127
    if act == "RELU6":
        return max(-128, q(0.0)), min(127, q(6.0))
    raise ValueError(act)


def out_and_pad(padding, size, k, stride, dil):
    eff = (k - 1) * dil + 1
    out = (size + stride - 1) // stride if padding == "SAME" else (size - eff + stride) // stride
    pad = max(0, ((out - 1) * stride + eff - size) // 2)
    return out, pad


class Reference:
    """Runs a JSON case with one requantization variant."""

    def __init__(self, case_: dict, rounding: str, fc_scale: str):
        self.case = case_
        self.mul = mul_double_rounding if rounding == "double" else mul_single_rounding
        self.fc_scale = fc_scale  # "double": s_in*s_w in double; "float": the product in float32
        self.min_mult = math.inf
        self.max_mult = 0.0

    def multipliers(self, s_in, s_w, s_out, f32_product=False):
        ms, es = [], []
        for sw in s_w:
            if f32_product:
                real = float(np.float32(s_in) * np.float32(sw)) / s_out
            else:
                real = s_in * sw / s_out
            self.min_mult = min(self.min_mult, real)
            self.max_mult = max(self.max_mult, real)
            m, e = quantize_multiplier(real)
            ms.append(m)
            es.append(e)
        return np.array(ms, np.int64), np.array(es, np.int64)

    def run(self, inputs: list) -> list:
        T = self.case["tensors"]
        vals = {}
        for t_idx, t in enumerate(T):
            if t["data"] is not None:
                vals[t_idx] = np.array(t["data"], NP_TYPES[t["dtype"]]).reshape(t["shape"])
        for i, x in zip(self.case["inputs"], inputs):
            vals[i] = np.asarray(x).reshape(T[i]["shape"])
        for op in self.case["operators"]:
            fn = getattr(self, "op_" + op["op"].lower(), None)
            if fn is None:
                return None
            args = [vals[i] if i >= 0 else None for i in op["inputs"]]
            out_t = T[op["outputs"][0]]
            in_t = T[op["inputs"][0]]
            got = fn(op, args, in_t, out_t, [T[i] if i >= 0 else None for i in op["inputs"]])
            if isinstance(got, list):  # several outputs
                vals.update(zip(op["outputs"], got))
            else:
                vals[op["outputs"][0]] = got
        return [vals[i] for i in self.case["outputs"]]

    def requant(self, acc, ms, es, out_t, act):
        lo, hi = act_range(act, out_t["scale"][0], out_t["zero_point"][0])
        y = self.mul(acc, ms, es) + out_t["zero_point"][0]
        return np.clip(y, lo, hi).astype(np.int8)

    def conv_like(self, op, args, in_t, out_t, ts, depthwise):
        x, w, b = args[0].astype(np.int64), args[1].astype(np.int64), args[2]
        o = op["options"]
        n, ih, iw, ic = x.shape
        _, kh, kw, _ = w.shape
        oh, ph = out_and_pad(o["padding"], ih, kh, o["stride_h"], o["dilation_h_factor"])
        ow, pw = out_and_pad(o["padding"], iw, kw, o["stride_w"], o["dilation_w_factor"])
        oc = out_t["shape"][3]
        xz = x - in_t["zero_point"][0]
        big = np.zeros((n, ih + 2 * ph + kh * o["dilation_h_factor"] + o["stride_h"] * oh,
                        iw + 2 * pw + kw * o["dilation_w_factor"] + o["stride_w"] * ow, ic), np.int64)
        big[:, ph:ph + ih, pw:pw + iw, :] = xz
        acc = np.zeros((n, oh, ow, oc), np.int64)
        for dy in range(kh):
            for dx in range(kw):
                y0 = dy * o["dilation_h_factor"]
                x0 = dx * o["dilation_w_factor"]
                patch = big[:, y0:y0 + o["stride_h"] * oh:o["stride_h"], x0:x0 + o["stride_w"] * ow:o["stride_w"], :]
                if depthwise:
                    mult = o["depth_multiplier"]
                    acc += np.repeat(patch, mult, axis=3) * w[0, dy, dx, :]
                else:
                    acc += np.einsum("nhwc,oc->nhwo", patch, w[:, dy, dx, :])
        if b is not None:
            acc += b.astype(np.int64)
        ms, es = self.multipliers(in_t["scale"][0], ts[1]["scale"], out_t["scale"][0])
        return self.requant(acc, ms, es, out_t, o["fused_activation_function"])

    def op_conv_2d(self, op, args, in_t, out_t, ts):
        return self.conv_like(op, args, in_t, out_t, ts, False)

    def op_depthwise_conv_2d(self, op, args, in_t, out_t, ts):
        return self.conv_like(op, args, in_t, out_t, ts, True)

    def op_fully_connected(self, op, args, in_t, out_t, ts):
        w = args[1].astype(np.int64)
        x = args[0].astype(np.int64).reshape(-1, w.shape[1]) - in_t["zero_point"][0]
        acc = x @ w.T
        if args[2] is not None:
            acc += args[2].astype(np.int64)
        per_tensor = len(ts[1]["scale"]) == 1
        ms, es = self.multipliers(in_t["scale"][0], ts[1]["scale"], out_t["scale"][0],
                                  f32_product=per_tensor and self.fc_scale == "float")
        y = self.requant(acc, ms, es, out_t, op["options"]["fused_activation_function"])
        return y.reshape(out_t["shape"])

    def pool(self, op, args, out_t, kind):
        x = args[0].astype(np.int64)
        o = op["options"]
        n, ih, iw, c = x.shape
        oh, ph = out_and_pad(o["padding"], ih, o["filter_height"], o["stride_h"], 1)
        ow, pw = out_and_pad(o["padding"], iw, o["filter_width"], o["stride_w"], 1)
        lo, hi = act_range(o["fused_activation_function"], out_t["scale"][0], out_t["zero_point"][0])
        y = np.zeros((n, oh, ow, c), np.int64)
        for r in range(oh):
            for q in range(ow):
                y0 = max(0, r * o["stride_h"] - ph)
                y1 = min(ih, r * o["stride_h"] - ph + o["filter_height"])
                x0 = max(0, q * o["stride_w"] - pw)
                x1 = min(iw, q * o["stride_w"] - pw + o["filter_width"])
                win = x[:, y0:y1, x0:x1, :]
                if kind == "max":
                    y[:, r, q, :] = win.max(axis=(1, 2))
                else:
                    count = (y1 - y0) * (x1 - x0)
                    s = win.sum(axis=(1, 2))
                    y[:, r, q, :] = np.where(s > 0, trunc_div(s + count // 2, count), trunc_div(s - count // 2, count))
        return np.clip(y, lo, hi).astype(np.int8)

    def op_average_pool_2d(self, op, args, in_t, out_t, ts):
        return self.pool(op, args, out_t, "avg")

    def op_max_pool_2d(self, op, args, in_t, out_t, ts):
        return self.pool(op, args, out_t, "max")

    def op_add(self, op, args, in_t, out_t, ts):
        s1, s2, so = ts[0]["scale"][0], ts[1]["scale"][0], out_t["scale"][0]
        left = 20
        twice_max = 2.0 * max(s1, s2)
        m1, e1 = quantize_multiplier(s1 / twice_max)
        m2, e2 = quantize_multiplier(s2 / twice_max)
        mo, eo = quantize_multiplier(twice_max / ((1 << left) * so))
        a = (args[0].astype(np.int64) - ts[0]["zero_point"][0]) << left
        b = (args[1].astype(np.int64) - ts[1]["zero_point"][0]) << left
        a, b = np.broadcast_arrays(a, b)
        total = self.mul(a, m1, e1) + self.mul(b, m2, e2)
        lo, hi = act_range(op["options"]["fused_activation_function"], so, out_t["zero_point"][0])
        return np.clip(self.mul(total, mo, eo) + out_t["zero_point"][0], lo, hi).astype(np.int8)

    def op_sub(self, op, args, in_t, out_t, ts):
        # TFLM's SUB prepares its multipliers in float32 (ADD uses double).
        f = np.float32
        s1, s2, so = f(ts[0]["scale"][0]), f(ts[1]["scale"][0]), f(out_t["scale"][0])
        left = 20
        twice_max = f(2.0) * max(s1, s2)
        m1, e1 = quantize_multiplier(float(s1 / twice_max))
        m2, e2 = quantize_multiplier(float(s2 / twice_max))
        mo, eo = quantize_multiplier(float(twice_max / (f(1 << left) * so)))
        a = (args[0].astype(np.int64) - ts[0]["zero_point"][0]) << left
        b = (args[1].astype(np.int64) - ts[1]["zero_point"][0]) << left
        a, b = np.broadcast_arrays(a, b)
        total = self.mul(a, m1, e1) - self.mul(b, m2, e2)
        lo, hi = act_range(op["options"]["fused_activation_function"], float(so), out_t["zero_point"][0])
        return np.clip(self.mul(total, mo, eo) + out_t["zero_point"][0], lo, hi).astype(np.int8)

    def op_mul(self, op, args, in_t, out_t, ts):
        s1, s2, so = ts[0]["scale"][0], ts[1]["scale"][0], out_t["scale"][0]
        m, e = quantize_multiplier(s1 * s2 / so)
        a = args[0].astype(np.int64) - ts[0]["zero_point"][0]
        b = args[1].astype(np.int64) - ts[1]["zero_point"][0]
        lo, hi = act_range(op["options"]["fused_activation_function"], so, out_t["zero_point"][0])
        return np.clip(self.mul(a * b, m, e) + out_t["zero_point"][0], lo, hi).astype(np.int8)

    def op_squared_difference(self, op, args, in_t, out_t, ts):
        s1, s2, so = ts[0]["scale"][0], ts[1]["scale"][0], out_t["scale"][0]
        left = 7
        twice_max = 2.0 * max(s1, s2)
        m1, e1 = quantize_multiplier(s1 / twice_max)
        m2, e2 = quantize_multiplier(s2 / twice_max)
        # TFLM multiplies the output scale by 2^14 in float32.
        mo, eo = quantize_multiplier(twice_max * twice_max / float(np.float32(1 << (2 * left)) * np.float32(so)))
        a = (args[0].astype(np.int64) - ts[0]["zero_point"][0]) << left
        b = (args[1].astype(np.int64) - ts[1]["zero_point"][0]) << left
        a, b = np.broadcast_arrays(a, b)
        d = self.mul(a, m1, e1) - self.mul(b, m2, e2)
        return np.clip(self.mul(d * d, mo, eo) + out_t["zero_point"][0], -128, 127).astype(np.int8)

    def op_maximum(self, op, args, in_t, out_t, ts):
        return np.maximum(args[0], args[1]).astype(np.int8)

    def op_minimum(self, op, args, in_t, out_t, ts):
        return np.minimum(args[0], args[1]).astype(np.int8)

    def reduce_axes(self, args, in_t):
        axes = sorted(set(int(a) % len(in_t["shape"]) for a in args[1].reshape(-1)))
        x = args[0].astype(np.int64)
        return x, tuple(axes), int(np.prod([x.shape[a] for a in axes]))

    def op_mean(self, op, args, in_t, out_t, ts):
        # QuantizedMeanOrSum for every axis set and quantization: 1/count folded into the
        # multiplier s_in / s_out, applied to the centred sum.
        x, axes, count = self.reduce_axes(args, in_t)
        m, e = quantize_multiplier(in_t["scale"][0] / out_t["scale"][0])
        shift = min(count.bit_length() - 1, 32, 31 + e)
        m = (m << shift) // count
        e -= shift
        acc = self.mul(x.sum(axis=axes) - in_t["zero_point"][0] * count, m, e)
        y = np.clip(acc + out_t["zero_point"][0], -128, 127).astype(np.int8)
        return y.reshape(out_t["shape"])

    def op_sum(self, op, args, in_t, out_t, ts):
        x, axes, count = self.reduce_axes(args, in_t)
        m, e = quantize_multiplier(in_t["scale"][0] / out_t["scale"][0])
        acc = self.mul(x.sum(axis=axes) - in_t["zero_point"][0] * count, m, e)
        y = np.clip(acc + out_t["zero_point"][0], -128, 127).astype(np.int8)
        return y.reshape(out_t["shape"])

    def op_reduce_max(self, op, args, in_t, out_t, ts):
        x, axes, _ = self.reduce_axes(args, in_t)
        return x.max(axis=axes).astype(np.int8).reshape(out_t["shape"])

    def op_softmax(self, op, args, in_t, out_t, ts):
        # int8 output: scale 1/256, zero point -128; int16: 1/65536 (within 0.1 %), -32768.
        bits = 16 if out_t["dtype"] == "int16" else 8
        if out_t["zero_point"] != [-(1 << (bits - 1))] or abs(out_t["scale"][0] * (1 << bits) - 1) > 1e-3:
            raise NotImplementedError("softmax output quantization")
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        beta, s_in = op["options"]["beta"], in_t["scale"][0]
        real = min(beta * s_in * (1 << (31 - 5)), (1 << 31) - 1.0)
        m, left = quantize_multiplier(real)
        diff_min = -math.floor(((1 << 5) - 1) * (1 << (31 - 5)) / (1 << left))
        x = args[0].astype(np.int64)
        rows = x.reshape(-1, x.shape[-1])
        out = np.empty_like(rows)
        for r, row in enumerate(rows):
            diff = row - row.max()
            live = diff >= diff_min
            exps = np.array([fx_exp_on_negative_values(int(self.mul(d, m, left))) if ok else 0
                             for d, ok in zip(diff, live)], np.int64)
            total = 0
            for ev, ok in zip(exps, live):
                if ok:
                    total = wrap32(total + int(rdbpot(int(ev), 12)))
            headroom = 32 - total.bit_length() if total > 0 else 32
            bits_over_unit = 12 - headroom
            shifted = wrap32(((total << headroom) & 0xFFFFFFFF) - (1 << 31))
            scale = fx_one_over_one_plus_x(shifted)
            for c, (ev, ok) in enumerate(zip(exps, live)):
                if ok:
                    v = int(rdbpot(srdhm(scale, int(ev)), bits_over_unit + 31 - bits)) + low
                    out[r, c] = min(max(v, low), high)
                else:
                    out[r, c] = low
        return out.reshape(out_t["shape"]).astype(NP_TYPES[out_t["dtype"]])

    def op_relu(self, op, args, in_t, out_t, ts):
        # Requantized from the input's to the output's quantization, then clamped to
        # [max(-128, zp_out + round(0 / s_out)), 127].
        s_in, s_out = in_t["scale"][0], out_t["scale"][0]
        real = s_in / s_out
        self.min_mult = min(self.min_mult, real)
        self.max_mult = max(self.max_mult, real)
        m, e = quantize_multiplier(real)
        acc = args[0].astype(np.int64) - in_t["zero_point"][0]
        return self.requant(acc, m, e, out_t, "RELU")

    def op_relu6(self, op, args, in_t, out_t, ts):
        # No requantization: the input codes are clamped to [zp_in, zp_in + round(6 / s_in)]
        # (the bound saturated to int8) and copied; the output's quantization is not read.
        zp, s_in = in_t["zero_point"][0], in_t["scale"][0]
        six = min(127, max(-128, zp + round_half_away(float(np.float32(6.0) / np.float32(s_in)))))
        return np.clip(args[0].astype(np.int64), zp, six).astype(np.int8)

    def op_pad(self, op, args, in_t, out_t, ts):
        # Raw codes moved; the border is the output's zero point (PAD) or PADV2's raw constant.
        value = out_t["zero_point"][0] if len(args) < 3 else int(args[2].reshape(-1)[0])
        pads = args[1].reshape(-1, 2)
        return np.pad(args[0], [tuple(p) for p in pads], constant_values=value).astype(np.int8)

    op_padv2 = op_pad

    def op_transpose(self, op, args, in_t, out_t, ts):
        return np.transpose(args[0], [int(p) for p in args[1]])

    def op_concatenation(self, op, args, in_t, out_t, ts):
        # TFLM refuses inputs quantized unlike the output, and copies raw codes.
        for t in ts:
            if (t["scale"], t["zero_point"]) != (out_t["scale"], out_t["zero_point"]):
                raise NotImplementedError("CONCATENATION input quantized unlike the output")
        return np.concatenate(args, axis=op["options"]["axis"])

    def op_pack(self, op, args, in_t, out_t, ts):
        return np.stack(args, axis=op["options"]["axis"])
    def op_resize_nearest_neighbor(self, op, args, in_t, out_t, ts):
        # TFLite's GetNearestNeighbor: float32 scale and position, then floor, or with
        # align_corners round half away from zero (exact in float64), clamped to the input.
        x = args[0]
        ac, hp = op["options"]["align_corners"], op["options"]["half_pixel_centers"]

        def sources(n_in, n_out):
            if ac and n_out > 1:
                scale = np.float32(n_in - 1) / np.float32(n_out - 1)
            else:
                scale = np.float32(n_in) / np.float32(n_out)
            pos = (np.arange(n_out).astype(np.float32) + np.float32(0.5 if hp else 0.0)) * scale
            pos = pos.astype(np.float64)
            i = np.floor(pos + 0.5) if ac else np.floor(pos)
            return np.clip(i.astype(np.int64), 0, n_in - 1)

        oh, ow = (int(v) for v in args[1].reshape(-1))
        return x[:, sources(x.shape[1], oh)][:, :, sources(x.shape[2], ow)]

    def op_resize_bilinear(self, op, args, in_t, out_t, ts):
        # ResizeBilinearInteger: Q10 scale and positions, Q20 sums rounded half away from zero.
        x = args[0].astype(np.int64)
        ac, hp = op["options"]["align_corners"], op["options"]["half_pixel_centers"]

        def lerp(n_in, n_out):
            if ac and n_out > 1:
                scale = ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
            else:
                scale = ((1 << 10) * n_in + n_out // 2) // n_out
            v = np.arange(n_out, dtype=np.int64)
            pos = v * scale + scale // 2 - (1 << 9) if hp else v * scale
            lo = np.maximum(trunc_div(pos, 1 << 10), 0)
            hi = np.minimum(trunc_div(pos + (1 << 10) - 1, 1 << 10), n_in - 1)
            return lo, hi, pos - (1 << 10) * lo

        oh, ow = (int(v) for v in args[1].reshape(-1))
        y0, y1, dy = lerp(x.shape[1], oh)
        x0, x1, dx = lerp(x.shape[2], ow)
        dy, dx = dy[None, :, None, None], dx[None, None, :, None]
        at = lambda ys, xs: x[:, ys][:, :, xs]  # noqa: E731
        total = (at(y0, x0) * (1024 - dy) * (1024 - dx) + at(y1, x0) * dy * (1024 - dx)
                 + at(y0, x1) * (1024 - dy) * dx + at(y1, x1) * dy * dx)
        if self.mul is mul_single_rounding:  # TFLITE_SINGLE_ROUNDING's `>> 20`
            return ((total + (1 << 19)) >> 20).astype(np.int8)
        rounded = np.where(total > 0, total + (1 << 19), total - (1 << 19))
        return trunc_div(rounded, 1 << 20).astype(np.int8)

    def op_transpose_conv(self, op, args, in_t, out_t, ts):
        # Inputs: output shape, OHWI weights, input, optional bias. Each input pixel's products
        # land at (iy * stride - pad + ky, ix * stride - pad + kx); TFLite's padding treats
        # the output's size as a convolution's input size.
        o = op["options"]
        w, x_t = args[1].astype(np.int64), ts[2]
        x = args[2].astype(np.int64) - x_t["zero_point"][0]
        n, ih, iw, _ = x.shape
        oc, kh, kw, _ = w.shape
        oh, ow = out_t["shape"][1], out_t["shape"][2]

        def pad(size, k, s):
            out = (size + s - 1) // s if o["padding"] == "SAME" else (size + s - k) // s
            return max(0, (out - 1) * s + k - size) // 2

        ph, pw = pad(oh, kh, o["stride_h"]), pad(ow, kw, o["stride_w"])
        acc = np.zeros((n, oh, ow, oc), np.int64)
        for ky in range(kh):
            for kx in range(kw):
                oy = np.arange(ih) * o["stride_h"] - ph + ky
                ox = np.arange(iw) * o["stride_w"] - pw + kx
                my, mx = np.nonzero((oy >= 0) & (oy < oh))[0], np.nonzero((ox >= 0) & (ox < ow))[0]
                part = np.einsum("nhwc,oc->nhwo", x[:, my][:, :, mx], w[:, ky, kx, :])
                acc[np.ix_(range(n), oy[my], ox[mx], range(oc))] += part
        if len(args) > 3 and args[3] is not None:
            acc += args[3].astype(np.int64)
        ms, es = self.multipliers(x_t["scale"][0], ts[1]["scale"], out_t["scale"][0])
        return self.requant(acc, ms, es, out_t, o["fused_activation_function"])

    def op_depth_to_space(self, op, args, in_t, out_t, ts):
        b = op["options"]["block_size"]
        n, h, w, c = args[0].shape
        y = args[0].reshape(n, h, w, b, b, c // (b * b)).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(n, h * b, w * b, c // (b * b))

    def op_space_to_depth(self, op, args, in_t, out_t, ts):
        b = op["options"]["block_size"]
        n, h, w, c = args[0].shape
        y = args[0].reshape(n, h // b, b, w // b, b, c).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(n, h // b, w // b, b * b * c)

    def op_reshape(self, op, args, in_t, out_t, ts):
        return args[0].reshape(out_t["shape"])

    op_squeeze = op_reshape
    op_expand_dims = op_reshape

    def op_quantize(self, op, args, in_t, out_t, ts):
        if in_t["dtype"] in ("int8", "uint8", "int16", "int32"):
            # Requantize: (x - zp_in) * M(s_in / s_out) + zp_out, clamped to the output type.
            m, e = quantize_multiplier(in_t["scale"][0] / out_t["scale"][0])
            acc = args[0].astype(np.int64) - in_t["zero_point"][0]
            y = self.mul(acc, np.array([m], np.int64), np.array([e], np.int64)) + out_t["zero_point"][0]
            info = np.iinfo(NP_TYPES[out_t["dtype"]])
            return np.clip(y, info.min, info.max).astype(NP_TYPES[out_t["dtype"]])
        x = args[0].astype(np.float32)
        scale = np.float32(out_t["scale"][0])
        q = np.vectorize(lambda v: round_half_away(float(v)))(x / scale) + out_t["zero_point"][0]
        return np.clip(q, -128, 127).astype(np.int8)

    def op_dequantize(self, op, args, in_t, out_t, ts):
        d = args[0].astype(np.float64) - in_t["zero_point"][0]
        return (d * in_t["scale"][0]).astype(np.float32)

    # Slicing (raw copies: input and output quantization play no part).

    def op_strided_slice(self, op, args, in_t, out_t, ts):
        o = op["options"]
        if o["ellipsis_mask"] or o["new_axis_mask"] or o["offset"]:
            raise NotImplementedError("masks TFLM ignores")
        x = args[0]
        index = []
        for k, (b, e, s) in enumerate(zip(args[1], args[2], args[3])):
            b = None if o["begin_mask"] >> k & 1 else int(b)
            e = None if o["end_mask"] >> k & 1 else int(e)
            index.append(b if o["shrink_axis_mask"] >> k & 1 else slice(b, e, int(s)))
        return x[tuple(index)].reshape(out_t["shape"])

    def op_slice(self, op, args, in_t, out_t, ts):
        x = args[0]
        index = tuple(slice(int(b), None if s == -1 else int(b) + int(s)) for b, s in zip(args[1], args[2]))
        return x[index]

    def op_split(self, op, args, in_t, out_t, ts):
        return list(np.split(args[1], op["options"]["num_splits"], axis=int(args[0].reshape(-1)[0])))

    def op_split_v(self, op, args, in_t, out_t, ts):
        x, sizes, axis = args[0], [int(v) for v in args[1]], int(args[2].reshape(-1)[0])
        if -1 in sizes:
            sizes[sizes.index(-1)] = x.shape[axis] - (sum(sizes) + 1)
        return list(np.split(x, np.cumsum(sizes)[:-1], axis=axis))

    def op_unpack(self, op, args, in_t, out_t, ts):
        axis = op["options"]["axis"]
        return [np.take(args[0], k, axis=axis) for k in range(args[0].shape[axis])]

    def op_shape(self, op, args, in_t, out_t, ts):
        return np.array(in_t["shape"], np.int32)

    def op_pack(self, op, args, in_t, out_t, ts):
        return np.stack(args, axis=op["options"]["axis"])

    def op_space_to_batch_nd(self, op, args, in_t, out_t, ts):
        (bh, bw), pads = [int(v) for v in args[1]], args[2].reshape(2, 2)
        # The pinned TFLite-Micro pads with 0, not the zero point.
        x = np.pad(args[0], ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)), constant_values=0)
        n, h, w, c = x.shape
        x = x.reshape(n, h // bh, bh, w // bw, bw, c).transpose(2, 4, 0, 1, 3, 5)
        return x.reshape(bh * bw * n, h // bh, w // bw, c)

    def op_batch_to_space_nd(self, op, args, in_t, out_t, ts):
        (bh, bw), crops = [int(v) for v in args[1]], args[2].reshape(2, 2)
        x = args[0]
        nb, h, w, c = x.shape
        n = nb // (bh * bw)
        x = x.reshape(bh, bw, n, h, w, c).transpose(2, 3, 0, 4, 1, 5).reshape(n, h * bh, w * bw, c)
        return x[:, crops[0][0]:h * bh - crops[0][1], crops[1][0]:w * bw - crops[1][1], :]


SVDF_VARIANTS = [(scales, order) for scales in ("float", "double") for order in ("clamp_then_zp", "zp_then_clamp")]


def svdf_reference(case_: dict, vectors: list, variant: tuple) -> list:
    """A one-SVDF case's outputs over its sequences (`case_["sequence"]` invokes each, state
    reset at each start), with `variant` = (scales, order): the multipliers from float32 or
    double products, and the state's zero point added after the saturating clamp (the pinned
    TFLite-Micro) or before it (later versions)."""
    T = case_["tensors"]
    op = case_["operators"][0]
    x_t, wf_t, wt_t, b_t, st_t = [T[i] if i >= 0 else None for i in op["inputs"]]
    out_t = T[op["outputs"][0]]
    rank = op["options"]["rank"]
    wf = np.array(wf_t["data"], np.int64).reshape(wf_t["shape"])
    wt = np.array(wt_t["data"], np.int64).reshape(wt_t["shape"])
    filters, memory = wt.shape
    bias = np.array(b_t["data"], np.int64) if b_t is not None else np.zeros(filters // rank, np.int64)
    s = lambda t: t["scale"][0]
    if variant[0] == "float":
        m1 = float(np.float32(np.float32(s(x_t)) * np.float32(s(wf_t))) / np.float32(s(st_t)))
        m2 = float(np.float32(np.float32(s(st_t)) * np.float32(s(wt_t))) / np.float32(s(out_t)))
    else:
        m1 = s(x_t) * s(wf_t) / s(st_t)
        m2 = s(st_t) * s(wt_t) / s(out_t)
    (q1, e1), (q2, e2) = quantize_multiplier(m1), quantize_multiplier(m2)
    info = np.iinfo(NP_TYPES[st_t["dtype"]])
    zp_in, zp_s, zp_out = x_t["zero_point"][0], st_t["zero_point"][0], out_t["zero_point"][0]
    batch = x_t["shape"][0]
    def mbqm(acc, q, e):
        # MultiplyByQuantizedMultiplier with C's int32 arithmetic: the sum and the left shift
        # wrap (as the compiled TFLite-Micro does), then the double rounding.
        wrap = lambda v: ((np.asarray(v, np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)
        left = max(e, 0)
        return mul_double_rounding(wrap(wrap(acc) << left), q, min(e, 0))

    outs = []
    for k, vec in enumerate(vectors):
        if k % case_["sequence"] == 0:
            state = np.full((batch, filters, memory), zp_s, np.int64)
        x = np.asarray(vec[0], np.int64).reshape(batch, -1)
        state = np.roll(state.reshape(batch, -1), -1, axis=1).reshape(batch, filters, memory)
        feat = mbqm((x - zp_in) @ wf.T, q1, e1)
        if variant[1] == "clamp_then_zp":
            v = np.clip(feat, info.min, info.max) + zp_s
            v = ((v - info.min) % (info.max - info.min + 1)) + info.min  # C's narrowing
        else:
            v = np.clip(feat + zp_s, info.min, info.max)
        state[:, :, -1] = v
        per_filter = np.einsum("bfm,fm->bf", state - zp_s, wt)
        acc = bias + per_filter.reshape(batch, filters // rank, rank).sum(axis=2)
        y = np.clip(mbqm(acc, q2, e2) + zp_out, -128, 127)
        outs.append([y.astype(np.int8).reshape(out_t["shape"])])
    return outs


def svdf_crosscheck(case_: dict, vectors: list, tflm_outputs: list) -> dict:
    """Per SVDF variant, the output elements that differ from TFLM, per vector."""
    result = {}
    for variant in SVDF_VARIANTS:
        got = svdf_reference(case_, vectors, variant)
        result[variant] = [
            int(np.sum(np.asarray(g[0]).reshape(-1) != np.asarray(w[0]).reshape(-1)))
            for g, w in zip(got, tflm_outputs)
        ]
    return result


def svdf_probe(spec, case_: dict, model_bytes: bytes, counts: dict, tries: int = 400):
    """A random sequence (int8 inputs) on which some variant no written vector tells apart
    from TFLM's arithmetic differs, run through TFLM: (vectors, outputs), or None."""
    blind = [v for v in SVDF_VARIANTS if v != SVDF_VARIANTS[0] and sum(counts[v]) == 0]
    if not blind:
        return None
    rng = np.random.default_rng(seed_of(spec.name, "svdf-probe"))
    shape = case_["tensors"][case_["inputs"][0]]["shape"]
    for _ in range(tries):
        seq = [[rng.integers(-128, 128, shape, dtype=np.int8)] for _ in range(spec.sequence)]
        want = svdf_reference(case_, seq, SVDF_VARIANTS[0])
        if any(any(np.any(a[0] != b[0]) for a, b in zip(want, svdf_reference(case_, seq, v))) for v in blind):
            return seq, run_tflm_sequences(spec, model_bytes, seq, 1)
    return None


def crosscheck(case_: dict, vectors: list, tflm_outputs: list) -> dict:
    """Per requantization variant (rounding, FC per-tensor scale product), the number of output
    elements that differ from TFLM, per vector; {"unchecked": True} if an operator is not
    re-implemented here."""
    result = {}
    for rounding in ("double", "single"):
        for fc_scale in ("float", "double"):
            ref = Reference(case_, rounding, fc_scale)
            wrong = []
            for ins, outs in zip(vectors, tflm_outputs):
                got = ref.run(ins)
                if got is None:
                    return {"unchecked": True}
                wrong.append(sum(
                    int(np.sum(np.asarray(g).reshape(-1) != np.asarray(want).reshape(-1)))
                    for g, want in zip(got, outs)
                ))
            result[(rounding, fc_scale)] = wrong
            result["multiplier_range"] = (ref.min_mult, ref.max_mult)
    return result


def fc_scale_probe(case_: dict, seed: int, batches: int = 256, batch: int = 4096):
    """For a one-FULLY_CONNECTED case with per-tensor weights: a random int8 input on which the
    multiplier from a float32 s_in*s_w product and the one from a double product give different
    outputs, or None. (They differ by ~1e-8 relative, so random vectors almost never tell.)"""
    ops = case_["operators"]
    if len(ops) != 1 or ops[0]["op"] != "FULLY_CONNECTED":
        return None
    T = case_["tensors"]
    x_t, w_t, out_t = T[ops[0]["inputs"][0]], T[ops[0]["inputs"][1]], T[ops[0]["outputs"][0]]
    b_idx = ops[0]["inputs"][2]
    if len(w_t["scale"]) != 1 or x_t["dtype"] != "int8":
        return None
    w = np.array(w_t["data"], np.int64).reshape(w_t["shape"])
    bias = np.array(T[b_idx]["data"], np.int64) if b_idx >= 0 else 0
    s_in, s_w, s_out = x_t["scale"][0], w_t["scale"][0], out_t["scale"][0]
    m_d, e_d = quantize_multiplier(s_in * s_w / s_out)
    m_f, e_f = quantize_multiplier(float(np.float32(s_in) * np.float32(s_w)) / s_out)
    if (m_d, e_d) == (m_f, e_f):
        return None
    lo, hi = act_range(ops[0]["options"]["fused_activation_function"], s_out, out_t["zero_point"][0])
    rng = np.random.default_rng(seed)
    rows = int(np.prod(x_t["shape"])) // w.shape[1]
    for _ in range(batches):
        x = rng.integers(-128, 128, (batch, rows, w.shape[1]))
        acc = (x - x_t["zero_point"][0]) @ w.T + bias
        y_d = np.clip(mul_double_rounding(acc, m_d, e_d) + out_t["zero_point"][0], lo, hi)
        y_f = np.clip(mul_double_rounding(acc, m_f, e_f) + out_t["zero_point"][0], lo, hi)
        diff = np.nonzero(np.any(y_d != y_f, axis=(1, 2)))[0]
        if diff.size:
            return x[diff[0]].reshape(x_t["shape"]).astype(np.int8)
    return None


def add_rounding_probe(case_: dict, seed: int, batches: int = 16, batch: int = 4096):
    """For a one-ADD case: random int8 inputs on which double and single rounding disagree."""
    ops = case_["operators"]
    if len(ops) != 1 or ops[0]["op"] != "ADD" or len(case_["inputs"]) != 2:
        return None
    T = case_["tensors"]
    ts = [T[i] for i in ops[0]["inputs"]]
    out_t = T[ops[0]["outputs"][0]]
    rng = np.random.default_rng(seed)
    double = Reference(case_, "double", "double")
    single = Reference(case_, "single", "double")
    for _ in range(batches):
        xs = [rng.integers(-128, 128, (batch,) + tuple(t["shape"])) for t in ts]
        a = double.op_add(ops[0], xs, ts[0], out_t, ts)
        b = single.op_add(ops[0], xs, ts[0], out_t, ts)
        diff = np.nonzero((a != b).reshape(batch, -1).any(axis=1))[0]
        if diff.size:
            by_index = dict(zip(ops[0]["inputs"], xs))
            return [by_index[i][diff[0]].astype(np.int8) for i in case_["inputs"]]
    return None


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def check_expectations(spec: Spec, case_: dict, outputs: list, check: dict):
    flat = np.concatenate([np.asarray(o).reshape(-1) for vec in outputs for o in vec])
    for e in spec.expect:
        if e == "saturates":
            ok = flat.min() == -128 and flat.max() == 127
        elif e == "multiplier_gt_one":
            ok = check["multiplier_range"][1] > 1.0
        elif e == "tiny_multiplier":
            ok = check["multiplier_range"][1] < 1e-4
        elif e == "tiny_scales":
            ok = max(s for t in case_["tensors"] for s in t["scale"]) < 1e-4
        elif e == "huge_scales":
            ok = min(s for t in case_["tensors"] if t["data"] is None for s in t["scale"]) > 1.0
        else:
            raise ValueError(e)
        if not ok:
            raise AssertionError(f"{spec.name}: expectation {e!r} does not hold")


def dumps_case(case_: dict) -> str:
    """Lightly indented JSON: one line per tensor, operator and vector."""

    def c(v):
        return json.dumps(v, separators=(",", ":"), allow_nan=False)

    lines = ["{"]
    lines.append(f' "name": {c(case_["name"])},')
    lines.append(f' "description": {c(case_["description"])},')
    lines.append(' "tensors": [')
    lines.append(",\n".join("  " + c(t) for t in case_["tensors"]))
    lines.append(" ],")
    lines.append(' "operators": [')
    lines.append(",\n".join("  " + c(o) for o in case_["operators"]))
    lines.append(" ],")
    lines.append(f' "inputs": {c(case_["inputs"])},')
    lines.append(f' "outputs": {c(case_["outputs"])},')
    if "sequence" in case_:
        lines.append(f' "sequence": {c(case_["sequence"])},')
    lines.append(' "vectors": [')
    lines.append(",\n".join("  " + c(v) for v in case_["vectors"]))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(spec: Spec) -> tuple:
    if spec.build is not None:
        model_bytes = spec.build(np.random.default_rng(seed_of(spec.name, "weights")))
    else:
        model_bytes = convert(spec, build_model(spec))
    graph = dump_subgraph(model_bytes)
    vectors = make_vectors(spec, graph)
    outputs = run_tflm_sequences(spec, model_bytes, vectors, len(graph["outputs"]))
    for outs in outputs:
        if len(outs) != len(graph["outputs"]):
            raise AssertionError(f"{spec.name}: {len(outs)} outputs, expected {len(graph['outputs'])}")
        for o, t_idx in zip(outs, graph["outputs"]):
            t = graph["tensors"][t_idx]
            if o.dtype != NP_TYPES[t["dtype"]] or o.size != int(np.prod(t["shape"])):
                raise AssertionError(f"{spec.name}: output {o.dtype} {o.shape} vs {t}")
    case_ = {"name": spec.name, "description": spec.description, **graph}
    if spec.sequence > 1:
        case_["sequence"] = spec.sequence
    case_["vectors"] = [
        {"inputs": [flat_list(x) for x in ins], "outputs": [flat_list(y) for y in outs]}
        for ins, outs in zip(vectors, outputs)
    ]
    if spec.sequence > 1 and any(op["op"] != "SVDF" for op in graph["operators"]):
        return case_, {"unchecked": True}  # no numpy re-implementation of its state
    if spec.sequence > 1:
        # SVDF: its own numpy re-implementation over the sequences, with each variant; a probe
        # sequence is appended where the written ones tell a variant apart from none.
        counts = svdf_crosscheck(case_, vectors, outputs)
        found = svdf_probe(spec, case_, model_bytes, counts)
        if found is not None:
            vectors, outputs = vectors + found[0], outputs + found[1]
            counts = svdf_crosscheck(case_, vectors, outputs)
        case_["vectors"] = [
            {"inputs": [flat_list(x) for x in ins], "outputs": [flat_list(y) for y in outs]}
            for ins, outs in zip(vectors, outputs)
        ]
        return case_, {"svdf": counts, "elements": sum(np.asarray(o[0]).size for o in outputs)}
    # Extra random vectors, not written, so that the rounding variants can be told apart.
    probe_spec = dataclasses.replace(spec, name=spec.name + "/probe", random_vectors=PROBE_VECTORS)
    probes = make_vectors(probe_spec, graph)
    probe_outputs = [run_tflm(model_bytes, v, len(graph["outputs"])) for v in probes]
    found = fc_scale_probe(case_, seed_of(spec.name, "fc-scale-probe"))
    if found is not None:
        probes.append([found])
        probe_outputs.append(run_tflm(model_bytes, [found], len(graph["outputs"])))
    found = add_rounding_probe(case_, seed_of(spec.name, "add-rounding-probe"))
    if found is not None:
        probes.append(found)
        probe_outputs.append(run_tflm(model_bytes, found, len(graph["outputs"])))
    all_vectors, all_outputs = vectors + probes, outputs + probe_outputs
    check = crosscheck(case_, all_vectors, all_outputs)
    n = len(vectors)
    if not check.get("unchecked"):
        # Keep a probe that a wrong variant gets wrong, if the written vectors do not: move it
        # to position n (in the vectors, their outputs and every variant's counts) and write it.
        variants = [k for k in check if isinstance(k, tuple)]
        for key in variants:
            counts = check[key]
            if sum(counts[:n]) == 0 and sum(counts[n:]) > 0:
                best = n + int(np.argmax(counts[n:]))
                for seq in [all_vectors, all_outputs] + [check[k] for k in variants]:
                    seq.insert(n, seq.pop(best))
                n += 1
        check["elements"] = sum(np.asarray(o).size for outs in all_outputs for o in outs)
        case_["vectors"] = [
            {"inputs": [flat_list(x) for x in ins], "outputs": [flat_list(y) for y in outs]}
            for ins, outs in zip(all_vectors[:n], all_outputs[:n])
        ]
        check_expectations(spec, case_, all_outputs[:n], check)
    elif spec.expect:
        raise ValueError(f"{spec.name}: expectations need the numpy re-implementation")
    return case_, check


def describe_check(check: dict) -> str:
    if check.get("unchecked"):
        return "not re-implemented"
    if "svdf" in check:
        counts = check["svdf"]
        ok = [f"{a}/{b}" for (a, b), c in counts.items() if sum(c) == 0]
        bad = [f"{a}/{b}:{sum(c)}" for (a, b), c in counts.items() if sum(c) != 0]
        head = "ok " + " ".join(ok) if ok else "NO VARIANT MATCHES"
        return head + (f"; wrong of {check['elements']}: " + " ".join(bad) if bad else "")
    variants = [k for k in check if isinstance(k, tuple)]
    ok = [f"{r}/{f}" for (r, f) in variants if sum(check[(r, f)]) == 0]
    bad = [f"{r}/{f}:{sum(check[(r, f)])}" for (r, f) in variants if sum(check[(r, f)]) != 0]
    lo, hi = check["multiplier_range"]
    mult = f"; multipliers {lo:.3g}..{hi:.3g}" if hi > 0 else ""
    head = "ok " + " ".join(ok) if ok else "NO VARIANT MATCHES"
    tail = f"; wrong of {check['elements']}: " + " ".join(bad) if bad else ""
    return head + tail + mult


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default tests/goldens)")
    ap.add_argument("--only", nargs="*", help="generate only these cases")
    ap.add_argument("--list", action="store_true", help="print case names and descriptions")
    ap.add_argument("--table", action="store_true", help="print the README's case table from --out")
    args = ap.parse_args(argv)

    names = [s.name for s in SPECS]
    if len(set(names)) != len(names):
        raise SystemExit("duplicate case names")
    if args.list:
        for s in SPECS:
            print(f"{s.name}: {s.description}")
        return 0
    if args.table:
        print("| case | operators | covers | vectors |")
        print("|---|---|---|---|")
        for s in SPECS:
            data = json.loads((args.out / f"{s.name}.json").read_text())
            ops = " ".join(dict.fromkeys(o["op"] for o in data["operators"]))
            covers = s.description.split(": ", 1)[1] if s.description.startswith(ops + ": ") else s.description
            print(f"| `{s.name}` | {ops} | {covers} | {len(data['vectors'])} |")
        return 0

    specs = [s for s in SPECS if not args.only or s.name in args.only]
    if args.only and len(specs) != len(args.only):
        raise SystemExit(f"unknown case in {args.only}")
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for spec in specs:
        case_, check = generate(spec)
        text = dumps_case(case_)
        if len(text) > MAX_FILE_BYTES:
            raise SystemExit(f"{spec.name}: {len(text)} bytes is over {MAX_FILE_BYTES}")
        (args.out / f"{spec.name}.json").write_text(text)
        summary = describe_check(check)
        if "NO VARIANT" in summary:
            failures += 1
        ops = ",".join(o["op"] for o in case_["operators"])
        print(f"{spec.name:40s} {len(case_['vectors'])} vectors {len(text):7d} B  {ops}  [{summary}]", flush=True)
    if not args.only:
        stale = sorted(p.name for p in args.out.glob("*.json") if p.stem not in names)
        if stale:
            print(f"warning: files with no case: {stale}")
    total = sum(p.stat().st_size for p in args.out.glob("*.json"))
    print(f"{len(specs)} cases written, {total} bytes in {args.out}")
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"total {total} bytes is over {MAX_TOTAL_BYTES}")
    if failures:
        print(f"{failures} case(s) not reproduced by any numpy variant", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
