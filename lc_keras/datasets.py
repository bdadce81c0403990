"""Offline-first dataset loaders.

Fashion-MNIST is read from standard IDX `.gz` files in a folder
(by default Debian's `dataset-fashion-mnist` package at
`/usr/share/datasets/fashion-mnist`); when no folder has them, the Keras
loader (which downloads) is used. Any dataset can also come from a `.npz`
file with `x_train`/`y_train`/`x_test`/`y_test` (or `x`/`y`) arrays.
"""

import gzip
import os
import struct

import numpy as np

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Reads one IDX file (optionally gzip-compressed) into a numpy array.

    Args:
        path: Path of a `.idx` or `.gz` IDX file.

    Returns:
        The array, with the shape stored in the file.

    Raises:
        ValueError: if the file is not a well-formed IDX file.

    Example:

    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.idx")
    >>> _ = open(path, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]))
    >>> read_idx(path).tolist()
    [7, 9]
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or \
            data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated: header incomplete.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path} is truncated or corrupt: expected "
            f"{count * dtype.itemsize} bytes of data for shape {shape}, "
            f"found {len(data) - header}.")
    return np.frombuffer(data, dtype, count, header).reshape(shape)


def _load_idx_dir(data_dir):
    arrays = {k: read_idx(os.path.join(data_dir, f))
              for k, f in _IDX_FILES.items()}
    return ((arrays["x_train"], arrays["y_train"].astype(np.int64)),
            (arrays["x_test"], arrays["y_test"].astype(np.int64)))


def _has_idx(data_dir):
    return data_dir and all(
        os.path.exists(os.path.join(data_dir, f)) for f in _IDX_FILES.values())


def load_npz(path):
    """Loads `(x_train, y_train), (x_test, y_test)` from a `.npz` file.

    The file holds `x_train`, `y_train`, `x_test`, `y_test`; or just `x`, `y`
    (then the test split is the same data).

    Args:
        path: Path of the `.npz` file.

    Returns:
        `((x_train, y_train), (x_test, y_test))`.

    Example:

    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, x=np.zeros((3, 2)), y=np.arange(3))
    >>> (x, y), _ = load_npz(path)
    >>> x.shape, y.tolist()
    ((3, 2), [0, 1, 2])
    """
    with np.load(path) as data:
        keys = set(data.files)
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            return ((data["x_train"], data["y_train"]),
                    (data["x_test"], data["y_test"]))
        if {"x", "y"} <= keys:
            return (data["x"], data["y"]), (data["x"], data["y"])
    raise ValueError(
        f"{path} must hold arrays x_train, y_train, x_test, y_test (or x, y). "
        f"Received: {sorted(keys)}")


def load_fashion_mnist(data_dir=None):
    """Loads Fashion-MNIST, offline when the IDX files are on disk.

    Args:
        data_dir: Folder with the four standard IDX `.gz` files. Default:
            Debian's `/usr/share/datasets/fashion-mnist` when present, else
            the Keras loader (downloads once, needs internet).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 images of shape
        `(n, 28, 28)` and int64 labels.

    Raises:
        FileNotFoundError: if `data_dir` is given but lacks the files.

    Example:

    >>> (x, y), (xt, yt) = load_fashion_mnist()
    >>> x.shape, xt.shape
    ((60000, 28, 28), (10000, 28, 28))
    """
    if data_dir is not None:
        if not _has_idx(data_dir):
            raise FileNotFoundError(
                f"No Fashion-MNIST IDX files in data_dir={data_dir!r}; "
                f"expected {sorted(_IDX_FILES.values())}.")
        return _load_idx_dir(data_dir)
    if _has_idx(DEBIAN_FASHION_MNIST):
        return _load_idx_dir(DEBIAN_FASHION_MNIST)
    import keras  # only for the downloading fallback

    return keras.datasets.fashion_mnist.load_data()


def flatten_images(x):
    """Scales uint8 images to [0, 1] float32 and flattens them.

    Args:
        x: Array of shape `(n, h, w)` or `(n, h, w, c)`.

    Returns:
        float32 array of shape `(n, h·w·c)`.

    Example:

    >>> import numpy as np
    >>> flatten_images(np.full((2, 2, 2), 255, np.uint8)).tolist()
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """
    return (np.asarray(x, np.float32) / 255.0).reshape(len(x), -1)
