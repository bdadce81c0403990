"""File size and interpreter latency: float vs packed vs cached TFLite.

Builds LeNet300 (784-300-100-10, ReLU) and a small conv net with random
weights, quantizes every kernel to K random codebook entries (indices drawn
uniformly, one codebook per layer), and writes three files per model and K:

* float: the same quantized weights stored as float32 (plain conversion);
* packed: `export_tflite(layout="packed")`, decoded on every invoke;
* cached: `export_tflite(layout="cached")`, decoded on the first invoke;
* expanded: the packed file, read with `lc_keras.load_interpreter`, which
  expands its kernels to float constants in memory (`expand_tflite`); the
  bytes are those on disk, and the load column is the expansion's time.

For each it reports the file size and the median latency of
`Interpreter.invoke()` (stock LiteRT interpreter, default delegates) after a
warm-up, and checks that all four give the same outputs.

Usage:

    python tools/benchmark_export.py
    python tools/benchmark_export.py --models=lenet300 --ks=2,16,256 \\
        --runs=500 --threads=1
"""

import os
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from ai_edge_litert.interpreter import OpResolverType  # noqa: E402

from lc_keras.export import export_quantized  # noqa: E402
from lc_keras.export import float_tflite_bytes  # noqa: E402
from lc_keras.files import atomic_write_bytes  # noqa: E402
from lc_keras.files import check_writable  # noqa: E402
from lc_keras.quantized import QuantizedKernel  # noqa: E402
from lc_keras.runtime import expand_tflite  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["lenet300", "convnet"],
                            "Models: lenet300, convnet, lenet5.")
_KS = flags.DEFINE_list("ks", ["2", "16", "256"], "Codebook sizes.")
_RUNS = flags.DEFINE_integer("runs", 300, "Timed invokes per file.")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed invokes first.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 3, "Timed series per file; the best median is reported "
    "(robust to other load on the machine).")
_BATCH = flags.DEFINE_integer("batch", 1, "Batch size.")
_THREADS = flags.DEFINE_integer("threads", 1, "Interpreter threads.")
_OUT_DIR = flags.DEFINE_string("out_dir", None,
                               "Where to write the files (default: temp).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_DEFAULT_DELEGATES = flags.DEFINE_bool(
    "default_delegates", True,
    "Let the interpreter apply its default delegates (XNNPACK); false runs "
    "the builtin kernels only.")


def lenet300():
    inputs = keras.Input((784,))
    x = keras.layers.Dense(300, activation="relu", name="fc1")(inputs)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(10, name="fc3")(x)
    return keras.Model(inputs, outputs, name="lenet300")


def convnet():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    return keras.Model(inputs, outputs, name="convnet")


def lenet5():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(20, 5, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(50, 5, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(500, activation="relu")(x)
    outputs = keras.layers.Dense(10)(x)
    return keras.Model(inputs, outputs, name="lenet5")


KINDS = ("float", "packed", "cached", "expanded")
BUILDERS = {"lenet300": lenet300, "convnet": convnet, "lenet5": lenet5}


def quantize(model, k, rng):
    """Random per-layer codebooks of k entries; loads Δ(Θ) into the model.

    Biases get small random values too (zero biases would be dropped by the
    converter and make every file look smaller than after training).
    """
    variables, state = {}, {}
    for layer in model.layers:
        v = getattr(layer, "kernel", None)
        if not isinstance(v, keras.Variable):
            continue
        fan_in = int(np.prod(v.shape[:-1]))
        codebook = np.sort(rng.normal(size=(1, k)) / np.sqrt(fan_in))
        q = QuantizedKernel(
            name=v.path, layer_name=layer.name, attribute="kernel",
            kind="AdaptiveQuantization", codebook=codebook.astype(np.float32),
            indices=rng.integers(0, k, tuple(v.shape)),
            layer_type=type(layer).__name__)
        v.assign(q.values())
        variables[v.path], state[v.path] = v, q
        if getattr(layer, "bias", None) is not None:  # as after training
            layer.bias.assign(
                rng.normal(size=layer.bias.shape).astype(np.float32) * 0.01)
    return variables, state


def export_float(model, path):
    """Plain float32 TFLite file of the model's current weights."""
    spec = tf.TensorSpec(model.inputs[0].shape, model.inputs[0].dtype)
    data = float_tflite_bytes(model, spec)
    atomic_write_bytes(path, data)
    return len(data)


def measure(path, x, runs, warmup, threads, default_delegates=True,
            repeats=1, content=None):
    """(best median invoke seconds, first-invoke seconds, output).

    Reads `path`, or runs the model bytes `content` if given.
    """
    kwargs = {} if default_delegates else {
        "experimental_op_resolver_type":
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    source = ({"model_path": path} if content is None
              else {"model_content": content})
    interpreter = Interpreter(num_threads=threads, **source, **kwargs)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    start = time.perf_counter()
    interpreter.invoke()
    first = time.perf_counter() - start
    for _ in range(warmup):
        interpreter.invoke()
    medians = []
    for _ in range(max(1, repeats)):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - start)
        medians.append(float(np.median(times)))
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return min(medians), first, out


def main(argv):
    del argv
    out_dir = _OUT_DIR.value or tempfile.mkdtemp(prefix="lc_bench_")
    os.makedirs(out_dir, exist_ok=True)
    check_writable(os.path.join(out_dir, "lenet300_k2.tflite"), "--out_dir")
    rng = np.random.default_rng(_SEED.value)
    rows = []
    for name in _MODELS.value:
        for k in [int(v) for v in _KS.value]:
            keras.utils.set_random_seed(_SEED.value)
            model = BUILDERS[name]()
            variables, state = quantize(model, k, rng)
            weights = sum(q.size for q in state.values())
            shape = (_BATCH.value,) + tuple(model.inputs[0].shape[1:])
            x = rng.normal(size=shape).astype(np.float32)
            reference = keras.ops.convert_to_numpy(model(x))
            base = os.path.join(out_dir, f"{name}_k{k}")
            sizes = {"float": export_float(model, base + "_float.tflite")}
            for layout in ("packed", "cached"):
                info = export_quantized(model, variables, state,
                                        f"{base}_{layout}.tflite",
                                        layout=layout)
                sizes[layout] = info.size_bytes
            sizes["expanded"] = sizes["packed"]
            load_times = []
            for _ in range(5):
                start = time.perf_counter()
                expanded = expand_tflite(f"{base}_packed.tflite")
                load_times.append(time.perf_counter() - start)
            results = {}
            for kind in KINDS:
                path = f"{base}_{kind}.tflite"
                median, first, out = measure(
                    path, x, _RUNS.value, _WARMUP.value, _THREADS.value,
                    _DEFAULT_DELEGATES.value, _REPEATS.value,
                    content=expanded if kind == "expanded" else None)
                error = float(np.abs(out - reference).max())
                results[kind] = (median, first, error)
            for kind in KINDS:
                median, first, error = results[kind]
                load = (f"{np.median(load_times) * 1e3:.1f}"
                        if kind == "expanded" else "-")
                rows.append((name, weights, k, kind, sizes[kind],
                             8.0 * sizes[kind] / weights, median * 1e6,
                             median / results["float"][0], first * 1e6,
                             load, error))
    print(f"\nFiles in {out_dir}; batch {_BATCH.value}, {_THREADS.value} "
          f"thread(s), best of {_REPEATS.value} medians of {_RUNS.value} "
          f"invokes, default delegates "
          f"{'on' if _DEFAULT_DELEGATES.value else 'off'}.\n")
    print("| model | weights | K | file | bytes | bits/weight | median us "
          "| x float | first invoke us | expand ms | max abs err |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| {} | {:,} | {} | {} | {:,} | {:.3f} | {:.1f} | {:.2f} | "
              "{:.1f} | {} | {:.1e} |".format(*row))


if __name__ == "__main__":
    app.run(main)
