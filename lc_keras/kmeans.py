"""One-dimensional k-means as pure TensorFlow functions.

Every function works on a batch of rows `v` of shape `[G, n]` (one
independent problem per row, e.g. one per output channel) and returns
`(centers, indices)`: float32 centers of shape `[G, k]` sorted ascending per
row and int32 indices of shape `[G, n]` into them.

All functions are TensorFlow graphs (no Python loops over the data), so
they run eagerly and inside `tf.function`. Their heavy parts run as internal
`tf.function`s, traced once per input signature and then reused. The
exceptions to pure TF ops run on the host through `tf.numpy_function`: the
sort and prefix sums of long rows (`lc_keras.rows`), their Lloyd iterations
and their binary-search assignment to more than 16 centers, and the
recursion of the exact k-means.

Conventions shared by all functions:

* Nearest-center assignment compares each value with the midpoints of
  consecutive sorted centers (`tf.searchsorted`); a value exactly on a
  midpoint goes to the larger center.
* Sums over the data use float64 prefix sums of the sorted row, so cluster
  means stay accurate for rows of millions of values.
"""

import numpy as np
import tensorflow as tf

from lc_keras.checks import check_int
from lc_keras.checks import check_seed
from lc_keras.quantized import MAX_ENTRIES
from lc_keras.rows import as_rows
from lc_keras.rows import broadcast_rows
from lc_keras.rows import cluster_sums
from lc_keras.rows import long_rows
from lc_keras.rows import prefix_sums
from lc_keras.rows import sorted_prefix_sums

__all__ = [
    "DEFAULT_MAX_ITER",
    "MAX_SEED_SAMPLES",
    "assign_nearest",
    "exact_is_cheap",
    "fixed_point",
    "kmeans_1d",
    "kmeans_1d_bounded",
    "kmeans_1d_exact",
    "kmeans_plus_plus",
]

#: Default cap on Lloyd iterations. One iteration on sorted data costs
#: O(k log n), so the cap is generous: in 1-D, Lloyd moves information about
#: one cluster per iteration, so a large k from k-means++ needs many
#: iterations to converge; warm starts converge in a few.
DEFAULT_MAX_ITER = 1000

#: k-means++ seeds on at most this many evenly spaced order statistics of each
#: row (see `kmeans_plus_plus`).
MAX_SEED_SAMPLES = 4096

#: Up to this many centers, assignment counts midpoints below each value
#: (k − 1 vectorized comparisons) instead of a binary search.
_COMPARE_MAX_K = 16


def _fix_shape(t, rows, cols):
    """Restores static shape information lost in a generalized trace."""
    return tf.ensure_shape(t, [rows, cols])


# --------------------------------------------------------------------------
# Building blocks (traced functions on sorted rows).
# --------------------------------------------------------------------------


def _midpoints(c):
    # 0.5*a + 0.5*b cannot overflow, unlike (a + b) / 2.
    return 0.5 * c[:, :-1] + 0.5 * c[:, 1:]


def assign_nearest(v, codebook):
    """Assigns every value to its nearest codeword.

    Solves, independently for every value `v[g, i]`,

        z[g, i] = argmin_{j in [0, K)} (v[g, i] - codebook[g, j])**2

    by comparing `v` with the midpoints of consecutive codewords
    (`tf.searchsorted`, O(n log K) per row). A value exactly on a midpoint goes
    to the larger codeword. Duplicated codewords are allowed.

    Args:
        v: float tensor of shape `[G, n]`.
        codebook: float tensor of shape `[G, K]` (or `[1, K]`, shared by all
            rows), sorted ascending along each row.

    Returns:
        int32 tensor of shape `[G, n]` with values in `[0, K)`.

    Example:

    >>> import tensorflow as tf
    >>> assign_nearest(tf.constant([[-3.0, 0.2, 0.5, 9.0]]),
    ...                tf.constant([[-1.0, 0.0, 1.0]])).numpy().tolist()
    [[0, 1, 2, 2]]
    """
    v = as_rows(v, "v", "assign_nearest")
    codebook = as_rows(codebook, "codebook", "assign_nearest")
    mid = _midpoints(codebook)
    mid = tf.broadcast_to(mid, tf.stack([tf.shape(v)[0], tf.shape(mid)[1]]))
    return tf.searchsorted(mid, v, side="right", out_type=tf.int32)


def _lloyd_sorted(s, prefix, centers, max_iter, lower=None, upper=None):
    """Lloyd iterations on sorted rows.

    Each iteration assigns every value to its nearest center (cluster `j` holds
    the sorted values in `[mid_{j-1}, mid_j)`, found with `tf.searchsorted`),
    then moves each center to the mean of its cluster, clipped to
    `[lower_j, upper_j]` when bounds are given (that is the exact
    minimiser of the cluster's squared error over the interval; equal bounds
    pin an entry). Empty clusters keep their center. Stops when the centers
    no longer change or after `max_iter` iterations. Each step never increases
    the squared error.

    Args:
        s: float32 `[G, n]`, rows sorted ascending.
        prefix: float64 `[G, n + 1]` prefix sums of `s`.
        centers: float32 `[G, k]` sorted ascending.
        max_iter: int32 scalar tensor.
        lower, upper: optional float32 `[k]` bounds per entry.

    Returns:
        float32 `[G, k]` centers sorted ascending.
    """

    def step(c):
        sums, count = cluster_sums(s, prefix, _midpoints(c))
        mean = tf.math.divide_no_nan(sums, count)
        new = tf.where(count > 0, tf.cast(mean, tf.float32), c)
        if lower is not None:
            new = tf.clip_by_value(new, lower, upper)
        return tf.sort(new, axis=1)

    return fixed_point(step, centers, max_iter)


def _np_lloyd_sorted(s, prefix, centers, max_iter, lower=None,
                     upper=None):
    """NumPy twin of `_lloyd_sorted` (same iterations, same result)."""
    centers = np.array(centers, np.float32)
    n = s.shape[1]
    for g in range(s.shape[0]):
        c = centers[g]
        for _ in range(int(max_iter)):
            mid = (0.5 * c[1:] + 0.5 * c[:-1]).astype(np.float32)
            b = np.searchsorted(s[g], mid, side="left")
            bounds = np.concatenate([[0], b, [n]])
            sums = prefix[g][bounds]
            count = (bounds[1:] - bounds[:-1]).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = (sums[1:] - sums[:-1]) / count
            new = np.where(count > 0, mean.astype(np.float32), c)
            if lower is not None:
                new = np.clip(new, lower, upper)
            new = np.sort(new).astype(np.float32)
            if np.array_equal(new, c):
                break
            c = new
        centers[g] = c
    return centers


def fixed_point(update, x, max_iter):
    """Iterates `x ← update(x)` until it stops changing or `max_iter` times.

    A `tf.while_loop`, so it runs eagerly and inside `tf.function`; `update`
    must keep the shape and dtype of `x`.

    Args:
        update: Function of a tensor to a tensor of the same shape.
        x: The start.
        max_iter: Most updates (int or int32 scalar tensor).

    Returns:
        The last `x`: a fixed point of `update`, or `max_iter` updates on.

    Example:

    >>> import tensorflow as tf
    >>> float(fixed_point(lambda x: tf.minimum(x + 1.0, 3.0),
    ...                   tf.constant(0.0), 100))
    3.0
    """

    def cond(i, x, done):
        return tf.logical_and(i < max_iter, tf.logical_not(done))

    def body(i, x, done):
        new = update(x)
        return i + 1, new, tf.reduce_all(tf.equal(new, x))

    _, x, _ = tf.while_loop(
        cond, body, (tf.constant(0, tf.int32), x, tf.constant(False))
    )
    return x


def _seed_sorted(s, k, seed, max_samples):
    """k-means++ seeding on evenly spaced order statistics of sorted rows."""
    rows = tf.shape(s)[0]
    n = tf.shape(s)[1]
    m = tf.minimum(n, max_samples)
    pos = tf.cast(
        tf.round(tf.linspace(tf.constant(0.0, tf.float64),
                             tf.cast(n - 1, tf.float64), m)),
        tf.int32,
    )
    x = tf.cast(tf.gather(s, pos, axis=1), tf.float64)  # [G, m]

    def uniform(j):
        # One draw per step shared by all rows: a row's seeding then does not
        # depend on which other rows are in the batch.
        key = tf.stack([seed, tf.cast(j, tf.int64)])
        return tf.random.stateless_uniform([], seed=key, dtype=tf.float64)

    i0 = tf.minimum(
        tf.cast(tf.floor(uniform(0) * tf.cast(m, tf.float64)), tf.int32),
        m - 1,
    )
    c0 = tf.gather(x, i0, axis=1)  # [G]
    d2 = tf.square(x - c0[:, None])
    found = tf.TensorArray(tf.float64, size=k, element_shape=[None])
    found = found.write(0, c0)

    def body(j, d2, found):
        cum = tf.cumsum(d2, axis=1)
        # u < total, so the first index with cum > u has positive weight; when
        # every weight is 0 (all points are centers already) the clip picks the
        # last point, a duplicate: no 0/0 anywhere.
        u = uniform(j) * cum[:, -1]
        idx = tf.searchsorted(cum, u[:, None], side="right",
                              out_type=tf.int32)
        idx = tf.minimum(idx, m - 1)
        c = tf.gather(x, idx, batch_dims=1)  # [G, 1]
        d2 = tf.minimum(d2, tf.square(x - c))
        return j + 1, d2, found.write(j, c[:, 0])

    _, _, found = tf.while_loop(
        lambda j, d2, found: j < k, body, (tf.constant(1), d2, found)
    )
    centers = tf.transpose(found.stack())
    return tf.sort(tf.cast(centers, tf.float32), axis=1)


def _seed_fn(v, k, seed, max_samples):
    s, _ = sorted_prefix_sums(v)
    return _seed_sorted(s, k, seed, max_samples)


def _lloyd_fn(v, init, k, max_iter, seed, max_samples, lower, upper):
    s, prefix = sorted_prefix_sums(v)
    if init is None:
        init = _seed_sorted(s, k, seed, max_samples)
    else:
        init = tf.sort(init, axis=1)
        if lower is not None:
            init = tf.sort(tf.clip_by_value(init, lower, upper), axis=1)
    if long_rows(v):
        # Long rows: the same iterations in NumPy, without the per-op cost
        # of a TF while loop (which dominates when many iterations run).
        bounds = ([] if lower is None else
                  [tf.cast(lower, tf.float32), tf.cast(upper, tf.float32)])
        centers = tf.numpy_function(
            _np_lloyd_sorted, [s, prefix, init, max_iter] + bounds,
            tf.float32, stateful=False)
        centers = tf.ensure_shape(centers, init.shape)
    else:
        centers = _lloyd_sorted(s, prefix, init, max_iter, lower, upper)
    return centers, _assign_fn(v, centers)


def _assign_fn(v, centers):
    mid = _midpoints(centers)
    k = centers.shape[1]
    if k is not None and k <= _COMPARE_MAX_K:
        # Index = number of midpoints <= value: k − 1 streaming comparisons
        # beat a binary search per value for small k.
        index = tf.zeros(tf.shape(v), tf.int32)
        for j in range(k - 1):
            index += tf.cast(v >= mid[:, j:j + 1], tf.int32)
        return index
    if long_rows(v):
        index = tf.numpy_function(_np_searchsorted, [mid, v], tf.int32,
                                  stateful=False)
        return tf.ensure_shape(index, v.shape)
    return tf.searchsorted(mid, v, side="right", out_type=tf.int32)


def _np_searchsorted(mid, v):
    out = np.empty(v.shape, np.int32)
    for g in range(v.shape[0]):
        out[g] = np.searchsorted(mid[g], v[g], side="right")
    return out


def _np_sse(f1, f2, a, b, count):
    """Squared errors around their means of the sorted values `[a, b)`
    (flat positions into prefix sums `f1`, `f2`; `count = b - a`; 0 for an
    empty segment)."""
    count = np.asarray(count, np.float64)
    s1 = f1[b] - f1[a]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_sq = np.where(count > 0, s1 * s1 / count, 0.0)
    return np.maximum(f2[b] - f2[a] - mean_sq, 0.0)


def _np_segment_dp(prev, p1, p2):
    """One step of the 1-D k-means recursion, for every row at once.

    `best[g, j] = min_{i <= j} prev[g, i] + SSE_g(i, j)` and its leftmost
    argmin, where `SSE_g(i, j)` is the squared error of the sorted values
    `[i, j)` of row `g` around their mean (0 for an empty segment). The
    error satisfies the quadrangle inequality, so the argmin never decreases
    with `j`: divide and conquer over `j` (the middle `j` of a range first,
    its argmin bounding the candidates of both halves) needs O(n log n)
    evaluations instead of the table's O(n**2); every level of the recursion
    is one vectorized pass over all rows.

    Args:
        prev: float64 `[G, n + 1]`, the previous step's least errors.
        p1, p2: float64 `[G, n + 1]`, prefix sums of the sorted values and
            of their squares.

    Returns:
        `(best, arg)`: float64 and int64 arrays `[G, n + 1]`.
    """
    rows, width = prev.shape
    best = np.empty_like(prev)
    arg = np.empty(prev.shape, np.int64)
    flat_prev, f1, f2 = prev.ravel(), p1.ravel(), p2.ravel()
    # Tasks: rows g, target ranges [jlo, jhi] and candidate ranges [olo, ohi].
    g = np.arange(rows)
    jlo = np.zeros(rows, np.int64)
    jhi = np.full(rows, width - 1, np.int64)
    olo = np.zeros(rows, np.int64)
    ohi = np.full(rows, width - 1, np.int64)
    while g.size:
        mid = (jlo + jhi) // 2
        hi = np.minimum(ohi, mid)
        lens = hi - olo + 1
        starts = np.cumsum(lens) - lens
        task = np.repeat(np.arange(g.size), lens)
        i = np.arange(lens.sum()) - starts[task] + olo[task]
        base = g[task] * width
        j = mid[task]
        value = flat_prev[base + i] + _np_sse(f1, f2, base + i, base + j,
                                              j - i)
        low = np.minimum.reduceat(value, starts)
        # The leftmost candidate that reaches the minimum.
        position = np.where(value == low[task], np.arange(value.size),
                            value.size)
        first = np.minimum.reduceat(position, starts)
        opt = np.where(first < value.size, i[np.minimum(first, value.size - 1)],
                       olo)
        best[g, mid] = low
        arg[g, mid] = opt
        left = jlo <= mid - 1
        right = mid + 1 <= jhi
        g = np.concatenate([g[left], g[right]])
        jlo, jhi = (np.concatenate([jlo[left], (mid + 1)[right]]),
                    np.concatenate([(mid - 1)[left], jhi[right]]))
        olo, ohi = (np.concatenate([olo[left], opt[right]]),
                    np.concatenate([opt[left], ohi[right]]))
    return best, arg


def _np_exact_bounds(x, k):
    """Segment bounds `[G, k + 1]` of the exact k-means of sorted rows `x`
    (float64, centered).

    One cluster over the `j` smallest values has the closed-form error
    `SSE(0, j)`; clusters 2 to k - 1 are steps of `_np_segment_dp`; the last
    step needs only `j = n` (one scan over its start); the bounds are then
    followed back through the argmins.
    """
    rows, n = x.shape
    k = int(k)
    width = n + 1
    p1 = np.zeros((rows, width))
    p2 = np.zeros((rows, width))
    np.cumsum(x, axis=1, out=p1[:, 1:])
    np.cumsum(x * x, axis=1, out=p2[:, 1:])
    f1, f2 = p1.ravel(), p2.ravel()
    base = np.arange(rows)[:, None] * width
    j = np.arange(width)[None, :]
    bounds = np.zeros((rows, k + 1), np.int64)
    bounds[:, -1] = n
    if k == 1:
        return bounds.astype(np.int32)
    best = _np_sse(f1, f2, base + 0 * j, base + j, j + 0 * base)
    choices = []
    for _ in range(k - 2):
        best, arg = _np_segment_dp(best, p1, p2)
        choices.append(arg)
    # The last cluster [i, n): the leftmost i of least total error.
    total = best + _np_sse(f1, f2, base + j, base + n, n - j + 0 * base)
    bounds[:, k - 1] = np.argmin(total, axis=1)
    r = np.arange(rows)
    for m in range(k - 2, 0, -1):
        bounds[:, m] = choices[m - 1][r, bounds[:, m + 1]]
    return bounds.astype(np.int32)


def _exact_fn(v, k):
    s = tf.sort(v, axis=1)
    n = tf.shape(s)[1]
    # Centering the rows leaves the problem unchanged and reduces the
    # cancellation in the within-segment sum of squares.
    x = tf.cast(s, tf.float64)
    shift = tf.reduce_mean(x, axis=1, keepdims=True)
    x = x - shift
    bounds = tf.numpy_function(_np_exact_bounds, [x, k], tf.int32,
                               stateful=False)
    bounds = tf.ensure_shape(bounds, [v.shape[0], k + 1])  # bounds[:, 0] == 0
    p1 = prefix_sums(x)
    sums = tf.gather(p1, bounds, batch_dims=1)
    size = tf.cast(bounds[:, 1:] - bounds[:, :-1], tf.float64)
    mean = tf.math.divide_no_nan(sums[:, 1:] - sums[:, :-1], size) + shift
    # An empty segment [t, t) sits between the segment ending at t - 1 and the
    # one starting at t: the value s[t] keeps the centers sorted.
    fill = tf.gather(s, tf.minimum(bounds[:, :-1], n - 1), batch_dims=1)
    centers = tf.where(size > 0, tf.cast(mean, tf.float32), fill)
    centers = tf.sort(centers, axis=1)
    return centers, _assign_fn(v, centers)


_seed_tf = tf.function(_seed_fn, reduce_retracing=True, autograph=False)
_lloyd_tf = tf.function(_lloyd_fn, reduce_retracing=True, autograph=False)
_exact_tf = tf.function(_exact_fn, reduce_retracing=True, autograph=False)


# --------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------


def kmeans_plus_plus(v, k, seed=0, max_samples=MAX_SEED_SAMPLES):
    """k-means++ seeding (Arthur & Vassilvitskii, 2007) for 1-D rows.

    Picks `k` initial centers per row: the first uniformly at random, each next
    one at random with probability proportional to the squared distance to the
    nearest center picked so far. This approximately solves (within
    O(log k) in expectation)

        argmin_{c in R^k} sum_i min_j (v[g, i] - c[j])**2

    for every row `g`. To stay cheap on large rows (n = 1M, k = 256), the
    sampling runs on at most `max_samples` evenly spaced order statistics of
    each sorted row (the row's quantiles, including its min and max) rather
    than on all n values: O(n log n) for the sort plus O(k * max_samples).

    Randomness comes from `tf.random.stateless_uniform` keyed on `seed`, so
    the result is deterministic. The same uniform draws are used for all
    rows, so a row's centers do not depend on the other rows in the batch.
    Rows with fewer than `k` distinct values (e.g. constant or all-zero rows)
    get duplicated, finite centers.

    Args:
        v: float tensor of shape `[G, n]`.
        k: Number of centers, a Python int >= 1.
        seed: Python int seed of the stateless random generator.
        max_samples: Maximum number of order statistics per row to seed on.

    Returns:
        float32 tensor of shape `[G, k]`, sorted ascending along each row.

    Example:

    >>> import tensorflow as tf
    >>> c = kmeans_plus_plus(tf.constant([[0.0, 0.0, 10.0, 10.0]]), k=2)
    >>> c.numpy().tolist()
    [[0.0, 10.0]]
    """
    owner = "kmeans_plus_plus"
    k = check_int(owner, "k", k, low=1, high=MAX_ENTRIES)
    seed = check_seed(owner, seed)
    max_samples = check_int(owner, "max_samples", max_samples, low=1)
    v = as_rows(v, "v", owner)
    centers = _seed_tf(v, k, tf.constant(seed, tf.int64), max_samples)
    return _fix_shape(centers, v.shape[0], k)


def kmeans_1d(v, k=None, init=None, max_iter=DEFAULT_MAX_ITER, seed=0):
    """1-D k-means by Lloyd's algorithm on sorted rows.

    Solves (locally), independently for every row `g`,

        argmin_{c in R^k, z in {0..k-1}^n} sum_i (v[g, i] - c[z_i])**2

    Each row is sorted once and its float64 prefix sums are formed; one Lloyd
    iteration then costs O(k log n): midpoints of the sorted centers,
    `tf.searchsorted` of the midpoints in the sorted row for the cluster
    boundaries, cluster sums from the prefix sums, new centers = cluster means
    (an empty cluster keeps its center), re-sorted. Iterations stop when the
    centers no longer change or after `max_iter` iterations. Every iteration
    never increases the squared error, so the result is never worse than the
    initial centers.

    Args:
        v: float tensor of shape `[G, n]`.
        k: Number of centers (Python int >= 1). Optional when `init` is given.
        init: Optional warm start, float tensor of shape `[G, k]` (or
            `[1, k]`); when None, centers are seeded by `kmeans_plus_plus`.
        max_iter: Maximum number of Lloyd iterations (Python int >= 0).
        seed: Seed of the k-means++ seeding (unused with `init`).

    Returns:
        `(centers, indices)`: float32 `[G, k]` sorted ascending per row and
        int32 `[G, n]`, the nearest center of every value.

    Example:

    >>> import tensorflow as tf
    >>> centers, idx = kmeans_1d(tf.constant([[0.0, 1.0, 4.0, 5.0]]), k=2)
    >>> centers.numpy().tolist(), idx.numpy().tolist()
    ([[0.5, 4.5]], [[0, 0, 1, 1]])
    """
    owner = "kmeans_1d"
    max_iter = check_int(owner, "max_iter", max_iter, low=0)
    seed = check_seed(owner, seed)
    v = as_rows(v, "v", owner)
    if init is None:
        if k is None:
            raise ValueError(
                "kmeans_1d requires k or init. Received: k=None, init=None"
            )
        k = check_int(owner, "k", k, low=1, high=MAX_ENTRIES)
    else:
        init = as_rows(init, "init", owner)
        if init.shape[1] is None:
            raise ValueError(
                "kmeans_1d requires init with a static number of columns. "
                f"Received: init.shape={tuple(init.shape)}"
            )
        if k is None:
            k = init.shape[1]
        k = check_int(owner, "k", k, low=1, high=MAX_ENTRIES)
        init = broadcast_rows(init, v, "init", owner, k=k)
    centers, indices = _lloyd_tf(
        v, init, k, tf.constant(max_iter, tf.int32),
        tf.constant(seed, tf.int64), MAX_SEED_SAMPLES, None, None,
    )
    return (_fix_shape(centers, v.shape[0], k),
            _fix_shape(indices, v.shape[0], v.shape[1]))


def kmeans_1d_exact(v, k):
    """Exact 1-D k-means by dynamic programming (Wang & Song, Ckmeans.1d.dp).

    Solves exactly, independently for every row `g`,

        argmin_{c in R^k, z in {0..k-1}^n} sum_i (v[g, i] - c[z_i])**2

    In 1-D the optimal clusters are contiguous in the sorted row, so with
    `D[m, j]` the least error of `m` clusters over the `j` smallest values,
    `D[m, j] = min_{i <= j} D[m-1, i] + SSE(i, j)` where the within-segment
    error `SSE` comes in O(1) from float64 prefix sums of the (centered) row.
    The argmin `i` never decreases with `j` (the error satisfies the
    quadrangle inequality), so each of the k steps is a divide and conquer
    over `j` with O(n log n) evaluations, vectorized over rows (in NumPy),
    and memory O(G * n). `AdaptiveQuantization(method="auto")` uses it for
    rows with `G * n**2 <= 2**20` and `G * n**2 * k <= 2**23`
    (`exact_is_cheap`) and `kmeans_1d` beyond.

    Rows with fewer than `k` distinct values get a valid codebook with
    duplicated entries (never NaN).

    Args:
        v: float tensor of shape `[G, n]`.
        k: Number of centers (Python int >= 1).

    Returns:
        `(centers, indices)`: float32 `[G, k]` sorted ascending per row and
        int32 `[G, n]`, the nearest center of every value.

    Example:

    >>> import tensorflow as tf
    >>> centers, idx = kmeans_1d_exact(tf.constant([[0.0, 1.0, 4.0, 5.0]]), 2)
    >>> centers.numpy().tolist(), idx.numpy().tolist()
    ([[0.5, 4.5]], [[0, 0, 1, 1]])
    """
    owner = "kmeans_1d_exact"
    k = check_int(owner, "k", k, low=1, high=MAX_ENTRIES)
    v = as_rows(v, "v", owner)
    centers, indices = _exact_tf(v, k)
    return (_fix_shape(centers, v.shape[0], k),
            _fix_shape(indices, v.shape[0], v.shape[1]))


def kmeans_1d_bounded(v, init, lower, upper, max_iter=DEFAULT_MAX_ITER):
    """1-D k-means by Lloyd's algorithm with every center in an interval.

    Solves (locally), independently for every row `g`,

        argmin_{c, z} sum_i (v[g, i] - c[z_i])**2
            subject to lower[j] <= c[j] <= upper[j] for every j,

    by the iterations of `kmeans_1d` from `init`, except that each new center
    is its cluster's mean clipped to `[lower[j], upper[j]]` (the exact
    minimiser of the cluster's squared error over the interval). Equal bounds
    pin a center; bounds that follow the sorted order of the centers keep
    that order. Every iteration never increases the squared error.

    Args:
        v: float tensor of shape `[G, n]`.
        init: float tensor `[G, k]` (or `[1, k]`) of initial centers, sorted
            ascending, with a static number of columns `k`.
        lower, upper: float tensors `[k]` of per-center bounds.
        max_iter: Maximum number of Lloyd iterations (Python int >= 0).

    Returns:
        `(centers, indices)`: float32 `[G, k]` sorted ascending per row and
        int32 `[G, n]`, the nearest center of every value.

    Example:

    >>> import tensorflow as tf
    >>> inf = float("inf")
    >>> c, z = kmeans_1d_bounded(tf.constant([[0.0, 1.0, 4.0, 5.0]]),
    ...                          [[0.0, 3.0]], [0.0, -inf], [0.0, inf])
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[0.0, 4.5]], [[0, 0, 1, 1]])
    """
    owner = "kmeans_1d_bounded"
    max_iter = check_int(owner, "max_iter", max_iter, low=0)
    v = as_rows(v, "v", owner)
    init = as_rows(init, "init", owner)
    k = init.shape[1]
    if k is None:
        raise ValueError(
            f"{owner} requires init with a static number of columns. "
            f"Received: init.shape={tuple(init.shape)}"
        )
    init = _fix_shape(broadcast_rows(init, v, "init", owner, k=k),
                      v.shape[0], k)
    lower = tf.convert_to_tensor(lower, tf.float32)
    upper = tf.convert_to_tensor(upper, tf.float32)
    centers, indices = _lloyd_tf(
        v, init, k, tf.constant(max_iter, tf.int32),
        tf.constant(0, tf.int64), MAX_SEED_SAMPLES, lower, upper,
    )
    return (_fix_shape(centers, v.shape[0], k),
            _fix_shape(indices, v.shape[0], v.shape[1]))


def exact_is_cheap(rows, n, k):
    """Whether `kmeans_1d_exact` is cheap for a static shape.

    The test of `method="auto"` in `projection_adaptive`:
    `rows * (n + 1)**2 <= 2**20` and `rows * (n + 1)**2 * k <= 2**23`. (The
    bound of the full `(n + 1)**2` table; the divide-and-conquer recursion
    is cheaper than that, and the bound is kept so that "auto" picks the
    method it always picked.)

    Args:
        rows: Number of rows G, or None (unknown).
        n: Values per row, or None (unknown).
        k: Number of centers.

    Returns:
        A Python bool; False when the shape is not known.

    Example:

    >>> exact_is_cheap(1, 1000, 8), exact_is_cheap(1, 5000, 8)
    (True, False)
    >>> exact_is_cheap(None, 10, 2)
    False
    """
    if rows is None or n is None:
        return False
    cells = rows * (n + 1) ** 2
    return cells <= 2**20 and cells * k <= 2**23
