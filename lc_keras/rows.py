"""Rows: the `[G, n]` batches that the C steps work on, sorted and summed.

One row per codebook (a kernel, or one channel of it); `as_rows` and
`broadcast_rows` check and shape them. On sorted rows, float64 prefix sums
give the sum of any run of values in O(1) (`prefix_sums`, `cluster_sums`), so
1-D k-means and the scale fits cost O(k log n) an iteration. `tf.sort` on CPU
is many times slower than NumPy's vectorized sort, so rows of
`FAST_SORT_MIN` values or more (`long_rows`) are sorted, and their prefix
sums formed, by NumPy through `tf.numpy_function`, on the host
(`sort_rows`, `sorted_prefix_sums`).
"""

import numpy as np
import tensorflow as tf

__all__ = [
    "FAST_SORT_MIN",
    "as_rows",
    "broadcast_rows",
    "cluster_sums",
    "long_rows",
    "prefix_sums",
    "sort_rows",
    "sorted_prefix_sums",
]

#: Rows at least this long are sorted by NumPy (see the module docstring).
FAST_SORT_MIN = 4096


# --------------------------------------------------------------------------
# Rows: the `[G, n]` batches of every C step.
# --------------------------------------------------------------------------


def as_rows(v, name="v", owner="as_rows"):
    """Converts `v` to a float32 tensor of rank 2 with at least one column.

    Args:
        v: Anything `tf.convert_to_tensor` takes, of shape `[G, n]`.
        name: The argument's name (in error messages).
        owner: The function or class that checks (in error messages).

    Returns:
        A float32 tensor of shape `[G, n]` (static rank 2).

    Raises:
        ValueError: for a rank other than 2, or rows with no value.

    Example:

    >>> as_rows([[1, 2, 3]]).dtype.name
    'float32'
    >>> as_rows([1.0, 2.0], owner="kmeans_1d")
    Traceback (most recent call last):
    ...
    ValueError: kmeans_1d requires v of rank 2 (one row per codebook, shape [G, n]). Received: v.shape=(2,)
    """
    v = tf.convert_to_tensor(v, dtype_hint=tf.float32)
    if v.dtype != tf.float32:
        v = tf.cast(v, tf.float32)
    if v.shape.rank is not None and v.shape.rank != 2:
        raise ValueError(
            f"{owner} requires {name} of rank 2 (one row per codebook, shape "
            f"[G, n]). Received: {name}.shape={tuple(v.shape)}"
        )
    if v.shape.rank is None:
        v = tf.ensure_shape(v, [None, None])
    if v.shape[1] == 0:
        raise ValueError(
            f"{owner} requires {name} with at least one value per row. "
            f"Received: {name}.shape={tuple(v.shape)}"
        )
    return v


def broadcast_rows(t, v, name, owner, k=None):
    """Gives a per-row tensor `t` (`[G, k]` or `[1, k]`) the rows of `v`.

    Args:
        t: Per-row values, e.g. a codebook or initial centers: `[G, k]`, or
            `[1, k]` for one row shared by all rows of `v`.
        v: The float rows `[G, n]` that `t` belongs to.
        name: The argument's name (in error messages).
        owner: The function or class that checks (in error messages).
        k: The number of columns `t` must have, or None for any.

    Returns:
        A float32 tensor of shape `[G, k]`.

    Raises:
        ValueError: for a rank other than 2, another number of columns than
            `k`, or a number of rows other than 1 and G.

    Example:

    >>> import tensorflow as tf
    >>> broadcast_rows([[0.0, 1.0]], tf.zeros([3, 5]), "init", "kmeans_1d",
    ...                k=2).shape
    TensorShape([3, 2])
    """
    t = as_rows(t, name, owner)
    if k is not None and t.shape[1] is not None and t.shape[1] != k:
        raise ValueError(
            f"{owner} requires {name} of shape [G, {k}] (one row per row of "
            f"v, or one row for all). Received: {name}.shape={tuple(t.shape)}"
        )
    rows, trows = v.shape[0], t.shape[0]
    if rows is not None and trows is not None and trows not in (1, rows):
        raise ValueError(
            f"{owner} requires {name} with 1 or {rows} rows (one per row of "
            f"v). Received: {name}.shape={tuple(t.shape)}"
        )
    return tf.broadcast_to(t, tf.stack([tf.shape(v)[0], tf.shape(t)[1]]))


# --------------------------------------------------------------------------
# Sorted rows and their sums.
# --------------------------------------------------------------------------


def prefix_sums(s):
    """float64 prefix sums of rows, with a leading 0.

    `prefix[g, j]` is the sum of the `j` first values of row `g`, so the sum
    of `s[g, i:j]` is `prefix[g, j] - prefix[g, i]` in O(1). On sorted rows
    that gives the sum of every cluster (see `cluster_sums`).

    Args:
        s: float tensor `[G, n]` (sorted ascending for `cluster_sums`).

    Returns:
        float64 tensor `[G, n + 1]`.

    Example:

    >>> import tensorflow as tf
    >>> prefix_sums(tf.constant([[1.0, 2.0, 4.0]])).numpy().tolist()
    [[0.0, 1.0, 3.0, 7.0]]
    """
    x = tf.cast(s, tf.float64)
    zeros = tf.zeros(tf.stack([tf.shape(x)[0], 1]), tf.float64)
    return tf.concat([zeros, tf.cumsum(x, axis=1)], axis=1)


def cluster_sums(s, prefix, cuts):
    """Sums and sizes of the clusters that `cuts` split sorted rows into.

    Cluster `j` of row `g` holds the values of `s[g]` in
    `[cuts[g, j-1], cuts[g, j])` (the first and last clusters are open
    below and above), found by `tf.searchsorted` in O(K log n); their sums
    come from the prefix sums in O(K). With the midpoints of a sorted
    codebook as `cuts`, the clusters are the nearest-codeword assignment
    (a value on a midpoint goes to the larger codeword).

    Args:
        s: float32 `[G, n]`, rows sorted ascending.
        prefix: float64 `[G, n + 1]`, `prefix_sums(s)`.
        cuts: float32 `[G, K - 1]`, sorted ascending per row.

    Returns:
        `(sums, counts)`: float64 tensors `[G, K]`.

    Example:

    >>> import tensorflow as tf
    >>> s = tf.constant([[0.0, 1.0, 4.0, 5.0]])
    >>> sums, counts = cluster_sums(s, prefix_sums(s), tf.constant([[2.5]]))
    >>> sums.numpy().tolist(), counts.numpy().tolist()
    ([[1.0, 9.0]], [[2.0, 2.0]])
    """
    rows = tf.shape(s)[0]
    first = tf.zeros(tf.stack([rows, 1]), tf.int32)
    last = tf.fill(tf.stack([rows, 1]), tf.shape(s)[1])
    b = tf.searchsorted(s, cuts, side="left", out_type=tf.int32)
    bounds = tf.concat([first, b, last], axis=1)
    sums = tf.gather(prefix, bounds, batch_dims=1)
    count = tf.cast(bounds[:, 1:] - bounds[:, :-1], tf.float64)
    return sums[:, 1:] - sums[:, :-1], count


def long_rows(v):
    """Whether the NumPy paths apply: rows of `FAST_SORT_MIN` or more values.

    Example:

    >>> import tensorflow as tf
    >>> long_rows(tf.zeros([2, 10])), long_rows(tf.zeros([1, FAST_SORT_MIN]))
    (False, True)

    An unknown static length counts as long: the internal `tf.function`s
    relax to `[G, None]` once they have seen several row lengths (all the
    layers of a model), and the NumPy paths are right for any length.
    """
    return v.shape[1] is None or v.shape[1] >= FAST_SORT_MIN


def _np_sort_and_prefix(v):
    s = np.sort(v, axis=1)
    prefix = np.empty((s.shape[0], s.shape[1] + 1), np.float64)
    prefix[:, 0] = 0.0
    # Cast first, then sum in place: the same values, several times faster
    # than a cumsum that casts as it goes.
    prefix[:, 1:] = s
    np.cumsum(prefix[:, 1:], axis=1, out=prefix[:, 1:])
    return s, prefix


def _np_sort(v):
    return np.sort(v, axis=1)


def sort_rows(v):
    """Every row sorted ascending (float32), NumPy's sort for long rows.

    `tf.sort` on CPU is many times slower than NumPy's vectorized sort, so
    rows of `FAST_SORT_MIN` values or more are sorted by NumPy through
    `tf.numpy_function` (on the host); shorter ones by `tf.sort`. Works
    eagerly and inside `tf.function`; not differentiable.

    Args:
        v: float tensor `[G, n]`.

    Returns:
        float32 tensor `[G, n]`.

    Example:

    >>> import tensorflow as tf
    >>> sort_rows(tf.constant([[3.0, 1.0, 2.0]])).numpy().tolist()
    [[1.0, 2.0, 3.0]]
    """
    v = tf.cast(v, tf.float32)
    if long_rows(v):
        s = tf.numpy_function(_np_sort, [v], tf.float32, stateful=False)
        return tf.ensure_shape(s, v.shape)
    return tf.sort(v, axis=1)


def sorted_prefix_sums(v):
    """Sorted rows (float32) and their float64 prefix sums `[G, n + 1]`.

    As `sort_rows` then `prefix_sums`, both in NumPy for long rows (one host
    call). The input of `cluster_sums`.

    Args:
        v: float tensor `[G, n]`.

    Returns:
        `(s, prefix)`: float32 `[G, n]` sorted ascending and float64
        `[G, n + 1]`.

    Example:

    >>> import tensorflow as tf
    >>> s, p = sorted_prefix_sums(tf.constant([[3.0, 1.0, 2.0]]))
    >>> s.numpy().tolist(), p.numpy().tolist()
    ([[1.0, 2.0, 3.0]], [[0.0, 1.0, 3.0, 6.0]])
    """
    v = tf.cast(v, tf.float32)
    if long_rows(v):
        s, prefix = tf.numpy_function(
            _np_sort_and_prefix, [v], (tf.float32, tf.float64),
            stateful=False)
        s = tf.ensure_shape(s, v.shape)
        n = v.shape[1]
        prefix = tf.ensure_shape(
            prefix, [v.shape[0], None if n is None else n + 1])
        return s, prefix
    s = tf.sort(v, axis=1)
    return s, prefix_sums(s)
