import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


def classification_data(n=256, d=12, classes=3, seed=0):
    """A small, learnable synthetic classification problem."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    w = rng.normal(size=(d, classes))
    y = np.argmax(x @ w, axis=1).astype("int64")
    return x, y


def image_data(n=64, size=8, channels=2, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, channels)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64") + (
        x[:, 0, 0, 0] > 1).astype("int64")
    return x, np.minimum(y, classes - 1)


def sse(v, codebook, indices):
    """Squared error per row of an assignment, float64."""
    v = np.asarray(v, np.float64)
    c = np.asarray(codebook, np.float64)
    return ((v - np.take_along_axis(c, np.asarray(indices), 1)) ** 2).sum(1)


def nearest_sse(v, codebook):
    """Squared error per row of the nearest-codeword assignment, float64."""
    d = np.asarray(v, np.float64)[:, :, None] - np.asarray(
        codebook, np.float64)[:, None, :]
    return (d * d).min(2).sum(1)


def assert_valid_projection(v, codebook, indices, k):
    """Shapes, dtypes, sorted finite codebook rows, and nearest indices."""
    v = np.asarray(v)
    c, z = np.asarray(codebook), np.asarray(indices)
    assert c.shape == (v.shape[0], k) and c.dtype == np.float32
    assert z.shape == v.shape and z.dtype == np.int32
    assert np.all(np.isfinite(c))
    assert np.all(np.diff(c, axis=1) >= 0), c
    assert z.min() >= 0 and z.max() < k
    # Every value goes to a nearest codeword of its row (up to ties).
    np.testing.assert_allclose(sse(v, c, z), nearest_sse(v, c), rtol=1e-6,
                               atol=1e-9)


def mlp(d=12, classes=3, name="mlp"):
    """The small two-layer classifier most model tests wrap."""
    return keras.Sequential([
        keras.Input((d,)),
        keras.layers.Dense(16, activation="relu", name="dense_1"),
        keras.layers.Dense(classes, activation="softmax", name="dense_2"),
    ], name=name)


def brute_force_kmeans(x, k):
    """Least k-means error of the 1-D points x over all assignments."""
    x = np.asarray(x, np.float64)
    labels = np.array(list(itertools.product(range(k), repeat=len(x))))
    total = np.zeros(len(labels))
    for j in range(k):
        mask = labels == j
        count = mask.sum(1)
        s1 = (mask * x).sum(1)
        total += (mask * x * x).sum(1) - np.divide(
            s1 * s1, count, out=np.zeros_like(s1), where=count > 0)
    return total.min()


@keras.saving.register_keras_serializable(package="lc_keras_tests")
class EncoderBlock(keras.layers.Layer):
    """A Transformer encoder block as keras.io writes it."""

    def __init__(self, dim=8, heads=2, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads = dim, heads
        self.att = keras.layers.MultiHeadAttention(heads, dim, name="att")
        self.ffn = keras.Sequential([keras.layers.Dense(16, activation="relu"),
                                     keras.layers.Dense(dim)], name="ffn")
        self.norm1 = keras.layers.LayerNormalization()
        self.norm2 = keras.layers.LayerNormalization()

    def call(self, x):
        h = self.norm1(x + self.att(x, x))
        return self.norm2(h + self.ffn(h))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads}


@keras.saving.register_keras_serializable(package="lc_keras_tests")
class Projection(keras.layers.Layer):
    """A custom layer with its own `add_weight` matrix and a Dense inside."""

    def __init__(self, units=6, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = keras.layers.Dense(4, name="inner")

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], self.units),
                                 name="kernel")
        self.b = self.add_weight(shape=(self.units,), name="bias")
        self.scale = self.add_weight(shape=(), name="scale")
        self.inner.build((None, self.units))

    def call(self, x):
        return self.inner(self.scale * (x @ self.w) + self.b)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def sequence_net():
    inputs = keras.Input((5, 8))
    h = EncoderBlock(name="block")(inputs)
    h = keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True), name="bi")(h)
    h = keras.layers.GRU(4, name="gru")(h)
    h = Projection(name="proj")(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    return keras.Model(inputs, outputs, name="seq")
