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
