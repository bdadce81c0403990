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

With `--native`, it measures `export_tflite(layout="native")` on trained
nets instead (`native_benchmark`): the Fashion-MNIST references of
`tools/benchmark.py` (`--ref_dir`, its cached `<arch>_reference.keras`),
LC for `--native_epochs` with every `--native_codebooks` codebook, each
exported natively; next to post-training ai-edge-quantizer (INT8
dynamic range, INT4 and INT2 per channel, on the float reference; needs
`pip install ai-edge-quantizer`, else those rows are left out) and Keras
`model.quantize` (test error only). Every file's bytes, median latency
against the float file's (measured side by side), and test error of the
file against the Keras quantized net.

Usage:

    python tools/benchmark_export.py
    python tools/benchmark_export.py --models=lenet300 --ks=2,16,256 \\
        --runs=500 --threads=1
    python tools/benchmark_export.py --native --ref_dir=runs/ref
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

import lc_keras as lc  # noqa: E402
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
_NATIVE = flags.DEFINE_bool(
    "native", False, "Benchmark layout='native' on trained nets instead.")
_ARCHS = flags.DEFINE_list("archs", ["lenet300", "lenet5"],
                           "--native: references to load from --ref_dir.")
_REF_DIR = flags.DEFINE_string(
    "ref_dir", "runs/ref", "--native: folder with <arch>_reference.keras "
    "(tools/benchmark.py --out_dir caches them there).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Fashion-MNIST folder.")
_NATIVE_CODEBOOKS = flags.DEFINE_list(
    "native_codebooks", ["uniform2", "uniform4", "uniform8",
                         "scaled_ternary"], "--native: codebooks for LC.")
_NATIVE_EPOCHS = flags.DEFINE_integer(
    "native_epochs", 10, "--native: LC budget (MuSchedule.for_budget).")
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


# ---------------------------------------------------------------------------
# --native: trained nets, layout="native" against post-training baselines
# ---------------------------------------------------------------------------


def _fashion(arch):
    (x, y), (xt, yt) = lc.datasets.load_fashion_mnist(_DATA_DIR.value)
    x = np.asarray(x, np.float32) / 255.0
    xt = np.asarray(xt, np.float32) / 255.0
    if arch == "lenet300":
        return x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt
    return x[..., None], y, xt[..., None], yt


def _copy(net):
    out = keras.models.clone_model(net)
    out.set_weights(net.get_weights())
    return out


def _error(model, xt, yt):
    logits = keras.ops.convert_to_numpy(model.predict(xt, batch_size=2000,
                                                      verbose=0))
    return 100.0 * float(np.mean(np.argmax(logits, 1) != yt))


def _file_error(content, xt, yt, batch=500):
    """Test error % of a .tflite file (stock interpreter, as stored)."""
    interpreter = Interpreter(model_content=content, num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"],
                                    (batch,) + xt.shape[1:])
    interpreter.allocate_tensors()
    out = interpreter.get_output_details()[0]["index"]
    wrong = 0
    for i in range(0, len(xt) - len(xt) % batch, batch):
        interpreter.set_tensor(detail["index"], xt[i:i + batch])
        interpreter.invoke()
        wrong += int(np.sum(np.argmax(interpreter.get_tensor(out), 1)
                            != yt[i:i + batch]))
    return 100.0 * wrong / (len(xt) - len(xt) % batch)


def _lc(reference, name, data):
    x, y, xt, yt = data
    bits = {"uniform2": 2, "uniform4": 4, "uniform8": 8}.get(name)
    codebook = (lc.UniformQuantization(bits) if bits
                else lc.get_codebook(name))
    model = lc.LCModel(_copy(reference), compression=codebook)
    model.compile(keras.optimizers.Adam(1e-3),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    schedule = lc.MuSchedule.for_budget(_NATIVE_EPOCHS.value)
    model.fit(x, y, batch_size=128, epochs=schedule.total_epochs,
              callbacks=[schedule], verbose=2)
    return model


def _post_training(float_bytes):
    """{label: bytes} of ai-edge-quantizer's recipes on the float file."""
    try:
        from ai_edge_quantizer import quantizer
        from ai_edge_quantizer import recipe
    except ImportError:
        return {}
    out = {}
    for label, make in (("AEQ INT8 dynamic range", recipe.dynamic_wi8_afp32),
                        ("AEQ INT4 per channel", recipe.dynamic_wi4c_afp32),
                        ("AEQ INT2 per channel", recipe.dynamic_wi2c_afp32)):
        qt = quantizer.Quantizer(bytearray(float_bytes))
        qt.load_quantization_recipe(make())
        out[label] = bytes(qt.quantize().quantized_model)
    return out


def _keras_quantize(reference, xt, yt):
    rows = []
    for mode in ("int8", "int4"):
        net = _copy(reference)
        try:
            net.quantize(mode)
        except (NotImplementedError, ValueError) as error:
            print(f"Keras model.quantize({mode!r}) failed: {error}")
            continue
        rows.append((f"Keras model.quantize('{mode}')", None,
                     _error(net, xt, yt)))
    return rows


def _timed(files, x):
    """{label: best median µs}, every file measured in turn, side by side."""
    best = {label: np.inf for label in files}
    for _ in range(max(1, _REPEATS.value)):
        for label, content in files.items():
            median, _, _ = measure(None, x, _RUNS.value, _WARMUP.value,
                                   _THREADS.value, True, 1, content=content)
            best[label] = min(best[label], median * 1e6)
    return best


def _native_arch(arch, out_dir):
    data = _fashion(arch)
    _, _, xt, yt = data
    reference = keras.models.load_model(
        os.path.join(_REF_DIR.value, f"{arch}_reference.keras"))
    float_path = os.path.join(out_dir, f"{arch}_float.tflite")
    export_float(reference, float_path)
    files = {"float reference": open(float_path, "rb").read()}
    keras_error = {"float reference": _error(reference, xt, yt)}
    files.update(_post_training(files["float reference"]))
    for name in _NATIVE_CODEBOOKS.value:
        model = _lc(reference, name, data)
        label = f"LC {name}, {_NATIVE_EPOCHS.value} epochs"
        keras_error[label] = _error(model.quantized_model(), xt, yt)
        path = os.path.join(out_dir, f"{arch}_{name}_native.tflite")
        lc.export_tflite(model, path, layout="native")
        files[label] = open(path, "rb").read()
    times = _timed(files, xt[:_BATCH.value])
    rows = []
    for label, content in files.items():
        rows.append((label, len(content), times[label],
                     times[label] / times["float reference"],
                     _file_error(content, xt, yt), keras_error.get(label)))
    return rows, _keras_quantize(reference, xt, yt)


def native_benchmark():
    """Prints the table of `--native` (see the module docstring)."""
    out_dir = _OUT_DIR.value or tempfile.mkdtemp(prefix="lc_native_")
    os.makedirs(out_dir, exist_ok=True)
    print(f"\nFiles in {out_dir}; batch {_BATCH.value}, {_THREADS.value} "
          f"thread(s), best of {_REPEATS.value} medians of {_RUNS.value} "
          "invokes, default delegates (XNNPACK), files timed in turn.\n")
    for arch in _ARCHS.value:
        rows, keras_rows = _native_arch(arch, out_dir)
        print(f"\n{arch}\n")
        print("| file | bytes | median us | x float | test error % (file) "
              "| test error % (Keras net) |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, size, us, ratio, err, kerr in rows:
            kerr = "-" if kerr is None else f"{kerr:.2f}"
            print(f"| {label} | {size:,} | {us:.1f} | {ratio:.2f} | "
                  f"{err:.2f} | {kerr} |")
        for label, _, err in keras_rows:
            print(f"| {label} (Keras, no file) | - | - | - | - | {err:.2f} |")


def main(argv):
    del argv
    if _NATIVE.value:
        native_benchmark()
        return
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
