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
