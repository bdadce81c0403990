"""Time of `lc.expand_tflite` / `lc.load_interpreter` on large models.

Builds a keras.applications model with random weights (weights=None),
quantizes every compressible kernel to K random codebook entries (random
indices, one codebook per kernel), exports it once with
`lc_keras.export.export_quantized` (cached in --out_dir, reused on later
runs with the same flags), then reports the best of --repeats timings of
`expand_tflite` and of `load_interpreter(...).allocate_tensors()`.

Usage:

    python tools/benchmark_expand.py --model=ConvNeXtTiny --size=32 --k=16
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lc_keras as lc  # noqa: E402
from lc_keras.export import export_quantized  # noqa: E402
from lc_keras.quantized import QuantizedKernel  # noqa: E402

flags.DEFINE_string("model", "ConvNeXtTiny", "keras.applications name")
flags.DEFINE_integer("size", 32, "input height and width")
flags.DEFINE_integer("k", 16, "codebook entries")
flags.DEFINE_string("layout", "packed", "packed or cached")
flags.DEFINE_integer("repeats", 3, "timings (best is reported)")
flags.DEFINE_string("out_dir", "/tmp/lc_benchmark_expand", "export cache")


def exported(path):
    f = flags.FLAGS
    net = getattr(keras.applications, f.model)(
        weights=None, input_shape=(f.size, f.size, 3), classes=10)
    rng = np.random.default_rng(0)
    variables, state = {}, {}
    for ref in lc.compressible_kernels(net):
        v = ref.variable
        codebook = np.sort(rng.normal(size=f.k)).astype(np.float32) * 0.02
        q = QuantizedKernel(
            name=v.path, layer_name=ref.layer.name, attribute=ref.attribute,
            kind="random", codebook=codebook,
            indices=rng.integers(0, f.k, tuple(v.shape)),
            layer_type=ref.layer_type)
        v.assign(q.values())
        variables[v.path], state[v.path] = v, q
    start = time.perf_counter()
    export_quantized(net, variables, state, path, layout=f.layout)
    weights = sum(q.size for q in state.values())
    return time.perf_counter() - start, len(state), weights


def main(_):
    f = flags.FLAGS
    os.makedirs(f.out_dir, exist_ok=True)
    path = os.path.join(f.out_dir,
                        f"{f.model}_{f.size}_k{f.k}_{f.layout}.tflite")
    if not os.path.exists(path):
        seconds, kernels, weights = exported(path)
        print(f"exported {path}: {kernels} kernels, {weights:,} weights, "
              f"{seconds:.1f} s")
    with open(path, "rb") as file:
        data = file.read()
    expand, load = [], []
    for _ in range(f.repeats):
        start = time.perf_counter()
        expanded = lc.expand_tflite(data)
        expand.append(time.perf_counter() - start)
        start = time.perf_counter()
        lc.load_interpreter(data).allocate_tensors()
        load.append(time.perf_counter() - start)
    print(f"{f.model} {f.size}x{f.size} K={f.k} {f.layout}: file "
          f"{len(data):,} B, expanded {len(expanded):,} B; expand_tflite "
          f"{min(expand):.2f} s, load_interpreter + allocate "
          f"{min(load):.2f} s (best of {f.repeats})")


if __name__ == "__main__":
    app.run(main)
