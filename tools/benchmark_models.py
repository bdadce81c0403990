"""What LC compresses in whole models, and what their files weigh and cost.

For each model (random weights): the share of weights `LCModel` compresses,
the byte sizes of the float TFLite conversion and of `export_tflite`'s
packed file (K codebook entries per kernel, after direct compression), the
`.keras` sizes of the LCModel (with the optimizer's slots after one short
fit) and of `quantized_model()`, and the median latency of the packed file
expanded at load (`lc.load_interpreter`) against the float file, batch 1,
one thread, side by side in one run.

Models: "transformer" (the keras.io text-classification Transformer:
token + position embeddings, one encoder block with MultiHeadAttention,
pooling, two Dense layers; vocabulary 20,000, length 200, dim 32),
"mobilenetv2" (alpha 0.35, 96x96), "resnet50" (64x64).

Usage:

    python tools/benchmark_models.py --models=transformer,mobilenetv2 --k=4
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

import lc_keras as lc  # noqa: E402
from lc_keras.export import float_tflite_bytes  # noqa: E402

flags.DEFINE_list("models", ["transformer", "mobilenetv2"], "models")
flags.DEFINE_integer("k", 4, "codebook entries")
flags.DEFINE_integer("runs", 50, "timed interpreter invokes per file")


@keras.saving.register_keras_serializable(package="lc_keras_bench")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """As in the keras.io text-classification Transformer example."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.maxlen, self.vocab_size, self.embed_dim = (maxlen, vocab_size,
                                                        embed_dim)
        self.token_emb = keras.layers.Embedding(vocab_size, embed_dim)
        self.pos_emb = keras.layers.Embedding(maxlen, embed_dim)

    def call(self, x):
        positions = keras.ops.arange(0, keras.ops.shape(x)[-1])
        return self.token_emb(x) + self.pos_emb(positions)

    def get_config(self):
        return {**super().get_config(), "maxlen": self.maxlen,
                "vocab_size": self.vocab_size, "embed_dim": self.embed_dim}


@keras.saving.register_keras_serializable(package="lc_keras_bench")
class TransformerBlock(keras.layers.Layer):
    """As in the keras.io text-classification Transformer example."""

    def __init__(self, embed_dim, num_heads, ff_dim, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.ff_dim = (embed_dim, num_heads,
                                                       ff_dim)
        self.att = keras.layers.MultiHeadAttention(num_heads, embed_dim)
        self.ffn = keras.Sequential([
            keras.layers.Dense(ff_dim, activation="relu"),
            keras.layers.Dense(embed_dim)])
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6)

    def call(self, x):
        h = self.norm1(x + self.att(x, x))
        return self.norm2(h + self.ffn(h))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim,
                "num_heads": self.num_heads, "ff_dim": self.ff_dim}


def transformer():
    inputs = keras.Input((200,), dtype="int32")
    h = TokenAndPositionEmbedding(200, 20000, 32)(inputs)
    h = TransformerBlock(32, 2, 32)(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dense(20, activation="relu")(h)
    outputs = keras.layers.Dense(2, activation="softmax")(h)
    return keras.Model(inputs, outputs, name="transformer")


MODELS = {
    "transformer": transformer,
    "mobilenetv2": lambda: keras.applications.MobileNetV2(
        alpha=0.35, input_shape=(96, 96, 3), weights=None, classes=10),
    "resnet50": lambda: keras.applications.ResNet50(
        input_shape=(64, 64, 3), weights=None, classes=10),
}


def batch(net, n, rng):
    shape = (n,) + tuple(net.inputs[0].shape[1:])
    if "int" in str(net.inputs[0].dtype):
        return rng.integers(0, 200, shape).astype(np.int32)
    return rng.normal(size=shape).astype(np.float32)


def latency(interpreter, x):
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    times = []
    for _ in range(flags.FLAGS.runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name, folder):
    net = MODELS[name]()
    rng = np.random.default_rng(0)
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(flags.FLAGS.k))
    total = sum(int(np.prod(v.shape)) for v in net.weights)
    compressed = sum(int(np.prod(v.shape))
                     for v in model.compressed_variables().values())
    model.compile(keras.optimizers.Adam(1e-4),
                  keras.losses.SparseCategoricalCrossentropy())
    x = batch(net, 16, rng)
    y = rng.integers(0, 2 if name == "transformer" else 10, 16)
    schedule = lc.MuSchedule.for_budget(1, steps=1)
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[schedule], verbose=0)
    paths = {k: os.path.join(folder, f"{name}.{k}")
             for k in ("float.tflite", "packed.tflite", "lc.keras",
                       "quantized.keras", "float.keras")}
    with open(paths["float.tflite"], "wb") as f:
        f.write(float_tflite_bytes(model.quantized_model()))
    lc.export_tflite(model, paths["packed.tflite"])
    model.save(paths["lc.keras"])
    model.quantized_model().save(paths["quantized.keras"])
    net.save(paths["float.keras"])  # the float net itself, uncompiled
    sizes = {k: os.path.getsize(p) for k, p in paths.items()}
    one = batch(net, 1, rng)
    float_s = latency(Interpreter(model_path=paths["float.tflite"],
                                  num_threads=1), one)
    expanded_s = latency(lc.load_interpreter(paths["packed.tflite"],
                                             num_threads=1), one)
    slots = sum(int(np.prod(v.shape)) * 4 for v in model.optimizer.variables)
    weights_bytes = 4 * total
    print(f"| {name} | {len(model.compression_state())} | {compressed:,} / "
          f"{total:,} ({100 * compressed / total:.2f} %) | "
          f"{sizes['float.tflite']:,} | {sizes['packed.tflite']:,} "
          f"({sizes['packed.tflite'] / sizes['float.tflite']:.3f}x) | "
          f"{(sizes['lc.keras'] - slots) / weights_bytes:.2f}x + slots | "
          f"{sizes['quantized.keras'] / weights_bytes:.3f}x "
          f"({sizes['quantized.keras'] / sizes['float.keras']:.3f}x) | "
          f"{float_s * 1e3:.2f} | {expanded_s * 1e3:.2f} "
          f"({expanded_s / float_s:.2f}x) |", flush=True)


def main(argv):
    del argv
    print("| model | kernels | weights compressed | float .tflite B | "
          "packed .tflite B | LCModel .keras / float weights | "
          "quantized_model() .keras / float weights (/ float net's .keras) | "
          "float ms | "
          "expanded ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in flags.FLAGS.models:
            if name not in MODELS:
                raise app.UsageError(
                    f"--models takes {sorted(MODELS)}. Received: {name!r}")
            measure(name, folder)


if __name__ == "__main__":
    app.run(main)
