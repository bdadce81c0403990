import gzip
import os

import numpy as np
import pytest

from lc_keras import datasets


def write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 255, (5, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, (5,)),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 255, (3, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, (3,)),
    }
    for name, a in arrays.items():
        write_idx(os.path.join(tmp_path, name), a.astype(np.uint8))
    return tmp_path, arrays


def test_load_from_idx_dir(idx_dir):
    path, arrays = idx_dir
    (x, y), (xt, yt) = datasets.load_fashion_mnist(str(path))
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte.gz"])
    assert x.dtype == np.uint8 and y.dtype == np.int64
    assert datasets.flatten_images(x).shape == (5, 784)


def test_missing_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir"):
        datasets.load_fashion_mnist(str(tmp_path))


def test_truncated_idx_is_refused(idx_dir):
    path, _ = idx_dir
    name = os.path.join(path, "train-images-idx3-ubyte.gz")
    with gzip.open(name, "rb") as f:
        data = f.read()
    with gzip.open(name, "wb") as f:
        f.write(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        datasets.read_idx(name)


def test_bad_magic_is_refused(tmp_path):
    name = os.path.join(tmp_path, "x.idx")
    with open(name, "wb") as f:
        f.write(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX"):
        datasets.read_idx(name)


def test_npz(tmp_path):
    name = os.path.join(tmp_path, "d.npz")
    np.savez(name, x_train=np.ones((2, 3)), y_train=np.arange(2),
             x_test=np.zeros((1, 3)), y_test=np.arange(1))
    (x, y), (xt, yt) = datasets.load_npz(name)
    assert x.shape == (2, 3) and xt.shape == (1, 3)
    bad = os.path.join(tmp_path, "bad.npz")
    np.savez(bad, a=np.ones(2))
    with pytest.raises(ValueError, match="x_train"):
        datasets.load_npz(bad)


@pytest.mark.skipif(not os.path.exists(datasets.DEBIAN_FASHION_MNIST),
                    reason="Debian dataset-fashion-mnist not installed")
def test_debian_fashion_mnist():
    (x, y), (xt, yt) = datasets.load_fashion_mnist()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert set(np.unique(y)) == set(range(10))
