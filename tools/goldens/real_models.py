#!/usr/bin/env python3
"""TFLite-Micro's outputs for the real models in `tests/real-models/`.

For every model in MODELS this runs a few input vectors through
`tflite_micro.runtime.Interpreter` (TFLite-Micro's reference kernels, the oracle) and writes
`tests/real-models/golden/<model>_in.bin` and `<model>_out_tflm.bin`: the vectors back to
back, each the model's inputs (outputs) in order, each raw in its own type, little-endian (the
layout `mote infer` reads and writes), plus `manifest.json` describing them. Vectors: seeded
random ones, every input at its type's minimum, at its maximum, and a real input where the
model has one (see `real_input`).

A model with state (variable tensors: SVDF, LSTM) runs in SEQUENCES: each sequence is
`sequence` consecutive invokes of one interpreter, state carried from one to the next, and
starts from a fresh interpreter (state at its zero point). The manifest's `sequence` says how
many invokes make one (absent: 1, every vector on its own); `vectors` counts invokes, so the
files hold `vectors / sequence` sequences back to back. A replay must reset the state (or
start a new interpreter) at each sequence's first vector.

    /tmp/goldens-venv/bin/python tools/goldens/real_models.py [--only NAME]

Python is tooling only; CI never runs this.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from tflite_micro.python.tflite_micro import runtime as tflm  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DIR = REPO / "tests" / "real-models"
OUT = DIR / "golden"
RANDOM_VECTORS = 3

# name -> arena bytes TFLite-Micro needs (generous).
MODELS = {
    "tflm_hello_world_int8": 1 << 16,
    "tflm_micro_speech_quantized": 1 << 17,
    "tflm_person_detect": 1 << 19,
    "tflm_simple_add_model": 1 << 19,
    "tflm_pytorch_mobilenet_v2_quantized": 1 << 24,
    "mlc_ToyCar_quant_fullint_floatio": 1 << 18,
    "tflm_keyword_scrambled": 1 << 16,
    "tflm_keyword_scrambled_8bit": 1 << 16,
    "tflm_mnist_lstm_int8": 1 << 16,
    "tflm_micro_speech_lstm": 1 << 18,
    "tflm_dtln_noise_suppression": 1 << 16,
}

# Models with state: name -> (invokes per sequence, sequences). The first sequence is random
# vectors; the others start with every input at its minimum, then at its maximum, then random.
SEQUENCES = {
    "tflm_keyword_scrambled": (12, 2),
    "tflm_keyword_scrambled_8bit": (12, 2),
    "tflm_mnist_lstm_int8": (4, 2),
    "tflm_micro_speech_lstm": (3, 2),
    "tflm_dtln_noise_suppression": (12, 2),
}


def seed(name: str, purpose: str) -> int:
    return zlib.crc32(f"{name}/{purpose}".encode())


def digit_image(side: int) -> np.ndarray:
    """The first digit of the repo's digits dataset (8x8, 0..16), upscaled to side x side."""
    path = REPO / "data" / "digits" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        row = next(line for line in f if line[0].isdigit())
    pixels = np.array([float(v) for v in row.strip().split(",")[:64]]).reshape(8, 8) / 16.0
    index = (np.arange(side) * 8) // side
    return pixels[np.ix_(index, index)]


def real_input(name: str, details: list) -> list | None:
    """A real input for the models that have one, as float values in [0, 1] or the model's
    float domain; quantized below with each input's own parameters."""
    if name == "tflm_hello_world_int8":
        return [np.full(details[0]["shape"], 1.3, dtype=np.float64)]
    if name == "tflm_person_detect":
        img = digit_image(96)
        return [(img * 255.0 - 128.0).reshape(details[0]["shape"])]  # int8 pixels, raw
    if name == "tflm_pytorch_mobilenet_v2_quantized":
        img = digit_image(224)
        # ImageNet normalisation of a grey image, NCHW.
        chans = [(img - m) / s for m, s in ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))]
        return [np.stack(chans)[None].astype(np.float64)]
    if name == "mlc_ToyCar_quant_fullint_floatio":
        rng = np.random.default_rng(seed(name, "real"))
        # Log-mel-like features: smooth over the 5 frames x 128 bins, in the model's range.
        base = -20.0 + 10.0 * np.sin(np.linspace(0, 12, 128))
        frames = np.stack([base + rng.normal(0, 1.0, 128) for _ in range(5)])
        return [frames.reshape(details[0]["shape"])]
    return None


def quantize(values: np.ndarray, d: dict) -> np.ndarray:
    dtype = d["dtype"]
    if dtype == np.float32:
        return values.astype(np.float32)
    q = d["quantization_parameters"]
    scale, zero = float(q["scales"][0]), int(q["zero_points"][0])
    info = np.iinfo(dtype)
    if scale == 0:
        q = np.round(values)
    else:
        q = np.round(values / scale) + zero
    return np.clip(q, info.min, info.max).astype(dtype)


def vectors(name: str, details: list) -> list:
    rng = np.random.default_rng(seed(name, "random"))
    out = [random_vector(rng, details) for _ in range(RANDOM_VECTORS)]
    out += [corner_vector(details, pick) for pick in ("min", "max")]
    real = real_input(name, details)
    if real is not None:
        if name == "tflm_person_detect":
            out.append([np.clip(np.round(real[0]), -128, 127).astype(np.int8)])
        else:
            out.append([quantize(r, d) for r, d in zip(real, details)])
    return out


def random_vector(rng, details: list) -> list:
    v = []
    for d in details:
        if d["dtype"] == np.float32:
            v.append(rng.normal(0.0, 2.0, d["shape"]).astype(np.float32))
        else:
            info = np.iinfo(d["dtype"])
            v.append(rng.integers(info.min, info.max + 1, d["shape"]).astype(d["dtype"]))
    return v


def corner_vector(details: list, pick: str) -> list:
    v = []
    for d in details:
        if d["dtype"] == np.float32:
            v.append(np.full(d["shape"], -1e3 if pick == "min" else 1e3, dtype=np.float32))
        else:
            info = np.iinfo(d["dtype"])
            v.append(np.full(d["shape"], getattr(info, pick), dtype=d["dtype"]))
    return v


def sequences(name: str, details: list) -> list:
    """The input sequences of a model with state (see SEQUENCES), each a list of vectors."""
    length, count = SEQUENCES[name]
    rng = np.random.default_rng(seed(name, "sequences"))
    out = [[random_vector(rng, details) for _ in range(length)]]
    for _ in range(1, count):
        corners = [corner_vector(details, "min"), corner_vector(details, "max")]
        out.append(corners + [random_vector(rng, details) for _ in range(length - 2)])
    return out


def run(name: str) -> dict:
    model = (DIR / f"{name}.tflite").read_bytes()
    probe = tflm.Interpreter.from_bytes(model, arena_size=MODELS[name])
    in_details = [probe.get_input_details(i) for i in range(input_count(probe))]
    out_details = [probe.get_output_details(i) for i in range(output_count(probe))]
    if name in SEQUENCES:
        seqs = sequences(name, in_details)
    else:
        seqs = [[v] for v in vectors(name, in_details)]
    inputs, outputs = bytearray(), bytearray()
    for seq in seqs:
        # One interpreter per sequence: its state starts at the zero point and is carried
        # from one invoke to the next.
        interp = tflm.Interpreter.from_bytes(model, arena_size=MODELS[name])
        for v in seq:
            for i, x in enumerate(v):
                interp.set_input(x, i)
                inputs += x.astype(x.dtype.newbyteorder("<")).tobytes()
            interp.invoke()
            for o in range(len(out_details)):
                y = interp.get_output(o)
                outputs += y.astype(y.dtype.newbyteorder("<")).tobytes()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}_in.bin").write_bytes(bytes(inputs))
    (OUT / f"{name}_out_tflm.bin").write_bytes(bytes(outputs))
    describe = lambda d: {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]]}
    entry = {
        "model": f"{name}.tflite",
        "vectors": sum(len(seq) for seq in seqs),
        "real_input": real_input(name, in_details) is not None,
        "inputs": [describe(d) for d in in_details],
        "outputs": [describe(d) for d in out_details],
    }
    if name in SEQUENCES:
        entry["sequence"] = SEQUENCES[name][0]
    return entry


def count(interp, getter) -> int:
    n = 0
    while True:
        try:
            getter(interp)(n)
        except IndexError:
            return n
        n += 1


def input_count(interp) -> int:
    return count(interp, lambda i: i.get_input_details)


def output_count(interp) -> int:
    return count(interp, lambda i: i.get_output_details)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="a model name (repeatable)")
    args = parser.parse_args()
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name in args.only or list(MODELS):
        manifest[name] = run(name)
        print(f"{name}: {manifest[name]['vectors']} vectors")
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
