"""C steps as pure projections onto quantized sets.

The C step of the LC algorithm projects, per codebook group, the vector
`v = w - lambda/mu` onto the feasible set of quantized vectors:

    Theta = argmin_{C, z} || v - Delta(C, z) ||**2,   Delta(C, z)_i = C[z_i].

Each function here solves that problem for one kind of codebook. It is a pure
TensorFlow function over a batch of rows `v` of shape `[G, n]` (one row per
codebook: per layer, per shared group or per output channel) that returns
`(codebook, indices)`: float32 `[G, K]` sorted ascending per row and int32
`[G, n]` in `[0, K)`. They run eagerly and inside `tf.function`.

`lc_keras.codebooks` wraps each one in a small serializable class
(`AdaptiveQuantization`, `BinaryQuantization`, ...) for `LCModel`.
"""

import numpy as np
import tensorflow as tf

from lc_keras.checks import check_bool
from lc_keras.checks import check_choice
from lc_keras.checks import check_distinct_numbers
from lc_keras.checks import check_flags
from lc_keras.checks import check_int
from lc_keras.checks import check_int_interval
from lc_keras.kmeans import DEFAULT_MAX_ITER
from lc_keras.kmeans import assign_nearest
from lc_keras.kmeans import exact_is_cheap
from lc_keras.kmeans import fixed_point
from lc_keras.kmeans import kmeans_1d
from lc_keras.kmeans import kmeans_1d_bounded
from lc_keras.kmeans import kmeans_1d_exact
from lc_keras.quantized import MAX_ENTRIES
from lc_keras.rows import as_rows
from lc_keras.rows import broadcast_rows
from lc_keras.rows import cluster_sums
from lc_keras.rows import long_rows
from lc_keras.rows import sort_rows
from lc_keras.rows import sorted_prefix_sums

__all__ = [
    "EXPONENT_RANGE",
    "METHODS",
    "projection_adaptive",
    "projection_binary",
    "projection_fixed_codebook",
    "projection_powers_of_two",
    "projection_scaled_binary",
    "projection_scaled_ternary",
    "projection_ternary",
    "projection_uniform",
    "uniform_levels",
    "UNIFORM_BITS",
    "UNIFORM_METHODS",
]

#: The methods of `projection_adaptive`.
METHODS = ("auto", "exact", "lloyd")
#: Allowed exponents of `projection_powers_of_two`: from the smallest normal
#: float32 power of two to the largest.
EXPONENT_RANGE = (-126, 127)
#: The bits `projection_uniform` accepts: LiteRT's integer weight types
#: INT2, INT4 and INT8 and everything between.
UNIFORM_BITS = (2, 8)
#: The methods of `projection_uniform`.
UNIFORM_METHODS = ("auto", "exact", "alternating")
#: `method="auto"` of `projection_uniform` is exact up to this many
#: breakpoints (rows * n * levels), else alternating.
_UNIFORM_EXACT_LIMIT = 1 << 20


# --------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------


def _rows(v, owner):
    return as_rows(v, "v", owner)


def _tile(values, v):
    """A constant codebook row `[K]` repeated for every row of `v`."""
    row = tf.constant(np.asarray(values, np.float32))[None, :]
    return tf.tile(row, tf.stack([tf.shape(v)[0], 1]))


def _previous(previous, v, k, owner):
    if previous is None:
        return None
    return broadcast_rows(previous, v, "previous", owner, k=k)


def _powers_of_two(min_exponent, max_exponent):
    pos = [2.0**e for e in range(min_exponent, max_exponent + 1)]
    return [-p for p in reversed(pos)] + [0.0] + pos



def _entry_bounds(sorted_values, sorted_mask):
    """Per-entry intervals for the constrained Lloyd update.

    A fixed entry gets `[value, value]`; a free entry is confined between its
    nearest fixed neighbours, which keeps fixed entries at their positions in
    the sorted codebook.
    """
    k = len(sorted_values)
    lower = np.full(k, -np.inf, np.float32)
    upper = np.full(k, np.inf, np.float32)
    below = -np.inf
    for j in range(k):
        if sorted_mask[j]:
            lower[j] = below
        else:
            below = lower[j] = upper[j] = sorted_values[j]
    above = np.inf
    for j in reversed(range(k)):
        if sorted_mask[j]:
            upper[j] = above
        else:
            above = sorted_values[j]
    return lower, upper


# --------------------------------------------------------------------------
# Projections (pure functions).
# --------------------------------------------------------------------------


def projection_adaptive(v, k, previous=None, method="auto",
                        max_iter=DEFAULT_MAX_ITER, seed=0):
    """Projection onto vectors with at most `k` distinct values (1-D k-means).

    Solves, for every row `g`,

        argmin_{c in R^k, z in {0..k-1}^n} sum_i (v[g, i] - c[z_i])**2

    `method="exact"` solves it globally by dynamic programming
    (`kmeans_1d_exact`, small rows only). `method="lloyd"` runs Lloyd's
    algorithm (`kmeans_1d`) from `previous` when given (warm start) or from
    k-means++ seeds. `method="auto"` uses "exact" when the DP is cheap for the
    static shape (`G * (n+1)**2 <= 2**20` and `G * (n+1)**2 * k <= 2**23`),
    else "lloyd".

    Args:
        v: float tensor `[G, n]`.
        k: Number of codebook entries (int >= 1).
        previous: Optional warm start `[G, k]` (used by Lloyd only).
        method: "auto", "exact" or "lloyd".
        max_iter: Maximum Lloyd iterations.
        seed: Seed of the k-means++ seeding.

    Returns:
        `(codebook [G, k] float32 sorted ascending, indices [G, n] int32)`.

    Example:

    >>> import tensorflow as tf
    >>> c, z = projection_adaptive(tf.constant([[0.0, 1.0, 4.0, 5.0]]), 2)
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[0.5, 4.5]], [[0, 0, 1, 1]])
    """
    owner = "projection_adaptive"
    method = check_choice(owner, "method", method, METHODS)
    v = _rows(v, owner)
    previous = _previous(previous, v, k, owner)
    if method == "auto":
        exact = exact_is_cheap(v.shape[0], v.shape[1], k)
        method = "exact" if exact else "lloyd"
    if method == "exact":
        return kmeans_1d_exact(v, k)
    return kmeans_1d(v, k, init=previous, max_iter=max_iter, seed=seed)


def projection_binary(v):
    """Projection onto {-1, +1}.

    Solves `argmin_{z in {0,1}^n} sum_i (v[g, i] - c[z_i])**2` with
    `c = [-1, +1]`: `z_i = 1` iff `v_i >= 0` (0 maps to +1).

    Args:
        v: float tensor `[G, n]`.

    Returns:
        `(codebook [G, 2] = [-1, 1], indices [G, n] int32)`.

    Example:

    >>> import tensorflow as tf
    >>> c, z = projection_binary(tf.constant([[-0.3, 0.0, 2.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-1.0, 1.0]], [[0, 1, 1]])
    """
    v = _rows(v, "projection_binary")
    return _tile([-1.0, 1.0], v), tf.cast(v >= 0, tf.int32)


def projection_scaled_binary(v):
    """Projection onto {-a, +a} with a learned scale `a >= 0`.

    Solves `argmin_{a >= 0, z} sum_i (v[g, i] - a * s_{z_i})**2` with
    `s = [-1, +1]`, in closed form: `z_i = 1` iff `v_i >= 0` and
    `a = mean_i |v_i|` (0 for an all-zero row).

    Args:
        v: float tensor `[G, n]`.

    Returns:
        `(codebook [G, 2] = [-a, a], indices [G, n] int32)`.

    Example:

    >>> import tensorflow as tf
    >>> c, z = projection_scaled_binary(tf.constant([[-1.0, 2.0, 3.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-2.0, 2.0]], [[0, 1, 1]])
    """
    v = _rows(v, "projection_scaled_binary")
    a = tf.cast(tf.reduce_mean(tf.abs(tf.cast(v, tf.float64)), axis=1),
                tf.float32)
    return tf.stack([-a, a], axis=1), tf.cast(v >= 0, tf.int32)


def projection_ternary(v):
    """Projection onto {-1, 0, +1}.

    Solves `argmin_z sum_i (v[g, i] - c[z_i])**2` with `c = [-1, 0, 1]`:
    `v_i -> sign(v_i)` if `|v_i| > 1/2`, else 0 (ties go to 0).

    Args:
        v: float tensor `[G, n]`.

    Returns:
        `(codebook [G, 3] = [-1, 0, 1], indices [G, n] int32)`.

    Example:

    >>> import tensorflow as tf
    >>> c, z = projection_ternary(tf.constant([[-0.7, 0.5, 0.6]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-1.0, 0.0, 1.0]], [[0, 1, 2]])
    """
    v = _rows(v, "projection_ternary")
    return _tile([-1.0, 0.0, 1.0], v), _ternary_indices(v, 0.5)


def _ternary_indices(v, half):
    one = tf.ones_like(v, tf.int32)
    big = tf.abs(v) > half
    return tf.where(big, tf.where(v > 0, 2 * one, 0 * one), one)


def _np_ternary_scale(v):
    """NumPy twin of the scale of `projection_scaled_ternary`, per row."""
    s = np.empty(v.shape, np.float64)
    s[:] = np.sort(np.abs(v), axis=1)[:, ::-1]
    np.cumsum(s, axis=1, out=s)
    j = np.arange(1, v.shape[1] + 1, dtype=np.float64)
    best = np.argmax(s / np.sqrt(j), axis=1)
    total = s[np.arange(v.shape[0]), best]
    return (total / (best + 1)).astype(np.float32)


def projection_scaled_ternary(v):
    """Projection onto {-a, 0, +a} with a learned scale `a >= 0`.

    Solves `argmin_{a >= 0, z} sum_i (v[g, i] - a * s_{z_i})**2` with
    `s = [-1, 0, 1]`, in closed form (Carreira-Perpinan & Idelbayev, 2017):
    sort `|v|` descending into `s_1 >= ... >= s_n`, take
    `j* = argmax_j (sum_{i<=j} s_i) / sqrt(j)` and
    `a = (1/j*) sum_{i<=j*} s_i`; then `v_i -> a * sign(v_i)` if
    `|v_i| > a/2`, else 0. An all-zero row gives `a = 0`.

    Args:
        v: float tensor `[G, n]`.

    Returns:
        `(codebook [G, 3] = [-a, 0, a], indices [G, n] int32)`.

    Example:

    >>> import tensorflow as tf
    >>> c, z = projection_scaled_ternary(tf.constant([[-2.0, 0.1, 2.0, 0.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-2.0, 0.0, 2.0]], [[0, 1, 2, 1]])
    """
    v = _rows(v, "projection_scaled_ternary")
    if long_rows(v):
        # Long rows: the same arithmetic in NumPy (tf.sort is slow on CPU).
        a = tf.numpy_function(_np_ternary_scale, [tf.cast(v, tf.float32)],
                              tf.float32, stateful=False)
        a = tf.ensure_shape(a, [v.shape[0]])
    else:
        s = tf.sort(tf.abs(tf.cast(v, tf.float64)), axis=1,
                    direction="DESCENDING")
        cum = tf.cumsum(s, axis=1)
        j = tf.cast(tf.range(1, tf.shape(s)[1] + 1), tf.float64)
        best = tf.argmax(cum / tf.sqrt(j), axis=1, output_type=tf.int32)
        total = tf.gather(cum, best[:, None], batch_dims=1)[:, 0]
        a = tf.cast(total / tf.cast(best + 1, tf.float64), tf.float32)
    zero = tf.zeros_like(a)
    codebook = tf.stack([-a, zero, a], axis=1)
    return codebook, _ternary_indices(v, 0.5 * a[:, None])


def projection_powers_of_two(v, min_exponent=-7, max_exponent=0, scaled=False,
                             previous=None, max_iter=DEFAULT_MAX_ITER):
    """Projection onto {0, +-2**e : min_exponent <= e <= max_exponent}.

    With `scaled=False` solves `argmin_z sum_i (v[g, i] - c[z_i])**2` for the
    fixed codebook `c` (nearest codeword). With `scaled=True` solves
    (locally) `argmin_{a > 0, z} sum_i (v[g, i] - a * c[z_i])**2` by
    alternating the nearest assignment for `a` and the closed-form
    least-squares scale `a = sum_i v_i c[z_i] / sum_i c[z_i]**2` until `a`
    stops changing (or `max_iter`). The scale starts from `previous` (its
    largest entry is `a * 2**max_exponent`) when given, else from
    `max|v| / 2**max_exponent`; an all-zero row keeps `a = 1`.

    Args:
        v: float tensor `[G, n]`.
        min_exponent: Smallest exponent (int).
        max_exponent: Largest exponent (int).
        scaled: Whether to learn the scale `a`.
        previous: Optional previous codebook `[G, K]` (warm start of `a`).
        max_iter: Maximum alternations when `scaled`.

    Returns:
        `(codebook [G, K] float32 sorted ascending, indices [G, n] int32)`
        with `K = 2 * (max_exponent - min_exponent + 1) + 1`.

    Example:

    >>> import tensorflow as tf
    >>> c, z = projection_powers_of_two(tf.constant([[0.3, -0.9, 0.01]]),
    ...                                 min_exponent=-2, max_exponent=0)
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]], [[4, 0, 3]])
    """
    owner = "projection_powers_of_two"
    lo, hi = check_int_interval(
        owner, ("min_exponent", "max_exponent"), (min_exponent, max_exponent),
        low=EXPONENT_RANGE[0], high=EXPONENT_RANGE[1])
    scaled = check_bool(owner, "scaled", scaled)
    max_iter = check_int(owner, "max_iter", max_iter, low=0)
    base = _powers_of_two(lo, hi)
    v = _rows(v, owner)
    previous = _previous(previous, v, len(base), owner)
    if not scaled:
        codebook = _tile(base, v)
        return codebook, assign_nearest(v, codebook)
    a = _scale_tf(v, previous, tf.constant(base, tf.float32),
                  tf.constant(max_iter, tf.int32))
    codebook = a[:, None] * tf.constant(base, tf.float32)[None, :]
    return codebook, assign_nearest(v, codebook)


def _fit_scale(v, previous, base, max_iter):
    """Alternating fit of the scale `a` of `a * base` on sorted rows.

    One alternation costs O(K log n): the cluster boundaries of `a * base` in
    the sorted row (`tf.searchsorted`), then `a = sum_j base_j S_j /
    sum_j base_j**2 n_j` with cluster sums `S_j` and sizes `n_j` read from
    float64 prefix sums.
    """
    top = base[-1]
    if previous is None:
        a = tf.reduce_max(tf.abs(v), axis=1) / top
    else:
        a = previous[:, -1] / top
    good = tf.logical_and(a > 0, tf.math.is_finite(a))
    a = tf.where(good, a, tf.ones_like(a))
    s, prefix = sorted_prefix_sums(v)
    mid = 0.5 * base[:-1] + 0.5 * base[1:]
    c = tf.cast(base, tf.float64)[None, :]

    def update(a):
        sums, count = cluster_sums(s, prefix, a[:, None] * mid[None, :])
        num = tf.reduce_sum(c * sums, axis=1)
        den = tf.reduce_sum(c * c * count, axis=1)
        new = tf.cast(tf.math.divide_no_nan(num, den), tf.float32)
        ok = tf.logical_and(num > 0, tf.math.is_finite(new))
        return tf.where(tf.logical_and(ok, new > 0), new, a)

    return fixed_point(update, a, max_iter)


_scale_tf = tf.function(_fit_scale, reduce_retracing=True, autograph=False)


def projection_fixed_codebook(v, values, trainable=None, previous=None,
                              max_iter=DEFAULT_MAX_ITER):
    """Projection onto a given codebook, optionally with learned entries.

    With no trainable entry solves `argmin_z sum_i (v[g, i] - c[z_i])**2`
    (nearest codeword). With trainable entries solves (locally)
    `argmin_{c_free, z} sum_i (v[g, i] - c[z_i])**2` where the fixed entries
    keep their values, by alternating the nearest assignment and the
    closed-form update of each free entry (the mean of its values, kept
    between its fixed neighbours so the layout of the sorted codebook does
    not change; an entry with no values keeps its value). Free entries start
    from `values`, or from `previous` (a codebook produced by this projection)
    when given.

    Args:
        v: float tensor `[G, n]`.
        values: Codebook entries, distinct finite numbers (any order; the
            returned codebook is sorted).
        trainable: None (all fixed), a bool (all entries) or one bool per
            entry of `values` (same order).
        previous: Optional previous codebook `[G, K]` (warm start).
        max_iter: Maximum alternations.

    Returns:
        `(codebook [G, K] float32 sorted ascending, indices [G, n] int32)`.

    Example:

    >>> import tensorflow as tf
    >>> v = tf.constant([[0.1, 2.0, 3.0, -1.0]])
    >>> c, z = projection_fixed_codebook(v, [0.0, 1.0],
    ...                                  trainable=[False, True])
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[0.0, 2.5]], [[0, 1, 1, 0]])
    """
    owner = "projection_fixed_codebook"
    values = check_distinct_numbers(owner, "values", values,
                                    max_size=MAX_ENTRIES)
    trainable = check_flags(owner, "trainable", trainable, len(values))
    max_iter = check_int(owner, "max_iter", max_iter, low=0)
    order = np.argsort(np.asarray(values, np.float32), kind="stable")
    sorted_values = np.asarray(values, np.float32)[order]
    if trainable is None or trainable is False:
        mask = np.zeros(len(values), bool)
    elif trainable is True:
        mask = np.ones(len(values), bool)
    else:
        mask = np.asarray(trainable, bool)[order]
    v = _rows(v, owner)
    previous = _previous(previous, v, len(values), owner)
    init = _tile(sorted_values, v)
    if not mask.any():
        return init, assign_nearest(v, init)
    if previous is not None:
        init = tf.where(tf.constant(mask)[None, :], previous, init)
    lower, upper = _entry_bounds(sorted_values, mask)
    return kmeans_1d_bounded(v, init, lower, upper, max_iter=max_iter)



def check_uniform_bits(owner, bits):
    """`bits` of a uniform grid: an int in `UNIFORM_BITS`, as a Python int.

    Example:

    >>> check_uniform_bits("UniformQuantization", 1)
    Traceback (most recent call last):
    ...
    ValueError: UniformQuantization requires bits in [2, 8]. Received: bits=1
    """
    bits = check_int(owner, "bits", bits)
    lo, hi = UNIFORM_BITS
    if not lo <= bits <= hi:
        raise ValueError(
            f"{owner} requires bits in [{lo}, {hi}]. Received: bits={bits}")
    return bits


def uniform_levels(bits):
    """Largest code `q = 2**(bits-1) - 1` of the symmetric `bits`-bit grid.

    The grid is `{-q, ..., q}` (`2q + 1` levels): the range LiteRT's
    quantization spec gives symmetric integer weights (zero point 0, the
    most negative code unused), so INT8 `[-127, 127]`, INT4 `[-7, 7]`, INT2
    `[-1, 1]`.

    Example:

    >>> [uniform_levels(b) for b in (2, 4, 8)]
    [1, 7, 127]
    """
    return (1 << (check_uniform_bits("uniform_levels", bits) - 1)) - 1


def _uniform_exact(v, q):
    """Globally optimal scale of `a * {-q..q}` by enumerating breakpoints.

    As `a` decreases, code `|z_i|` of weight `i` steps from `j - 1` to `j`
    at `a = |v_i| / (j - 1/2)` (`j = 1..q`). Sorting those `n * q`
    breakpoints descending, every prefix is an assignment `z` with
    `<|v|, |z|>` and `<z, z>` as cumulative sums; its best scale
    `<|v|, |z|> / <z, z>` leaves the distortion
    `sum v**2 - <|v|, |z|>**2 / <z, z>`, and the best prefix is optimal
    (every optimal pair's assignment is one of the prefixes).
    """
    s = tf.abs(tf.cast(v, tf.float64))  # [G, n]
    j = tf.range(1, q + 1, dtype=tf.float64)  # [q]
    g = tf.shape(s)[0]
    breaks = tf.reshape(s[:, :, None] / (j - 0.5), [g, -1])
    gain = tf.reshape(tf.broadcast_to(s[:, :, None], tf.shape(
        s[:, :, None] * j)), [g, -1])
    cost = tf.broadcast_to(tf.reshape(2.0 * j - 1.0, [1, -1]),
                           tf.shape(s[:, :, None] * j))
    cost = tf.reshape(cost, [g, -1])
    order = tf.argsort(breaks, axis=1, direction="DESCENDING", stable=True)
    num = tf.cumsum(tf.gather(gain, order, batch_dims=1), axis=1)
    den = tf.cumsum(tf.gather(cost, order, batch_dims=1), axis=1)
    best = tf.argmax(num * num / den, axis=1, output_type=tf.int32)
    num = tf.gather(num, best[:, None], batch_dims=1)[:, 0]
    den = tf.gather(den, best[:, None], batch_dims=1)[:, 0]
    return tf.cast(num / den, tf.float32)


def _uniform_start(v, q):
    """The exact scale of evenly spaced quantiles of `|v|` (a start)."""
    cap = max(1, _UNIFORM_EXACT_LIMIT // (max(1, v.shape[0] or 1) * q))
    n = tf.shape(v)[1]
    m = tf.minimum(n, cap)
    picks = tf.cast((tf.cast(tf.range(m), tf.float64) + 0.5)
                    * tf.cast(n, tf.float64) / tf.cast(m, tf.float64),
                    tf.int32)
    s = sort_rows(tf.abs(v))
    return _uniform_exact(tf.gather(s, picks, axis=1), q)


def projection_uniform(v, bits, previous=None, method="auto",
                       max_iter=DEFAULT_MAX_ITER):
    """Projection onto `a * {-q, ..., q}`, `q = 2**(bits-1) - 1`, `a >= 0`.

    Solves, for every row `g`,

        argmin_{a >= 0, z in {-q..q}^n} sum_i (v[g, i] - a * z_i)**2

    the symmetric integer grid of `bits` bits with a learned scale (see
    `uniform_levels` for the grid). For a given assignment the best scale
    is `<v, z> / <z, z>`; for a given scale the best code is
    `clip(round(v_i / a), -q, q)`.

    `method="exact"` finds the global optimum by enumerating the `n * q`
    scales where an assignment changes (`|v_i| / (j - 1/2)`, sorted), as
    the closed form of `projection_scaled_ternary` does for `q = 1`:
    O(n q log(n q)). `method="alternating"` alternates the two updates
    from `previous` (its largest entry is `a * q`) or from `a = max|v| / q`
    until the scale stops changing (a local optimum, O(q log n) per
    alternation); without `previous` it starts from the exact scale of
    `2**20 / (G q)` evenly spaced quantiles of `|v|` per row.
    `method="auto"` is exact when `G * n * q <= 2**20` (e.g. 4 bits up to
    ~150k weights, 8 bits up to ~8k), else alternating. An all-zero row
    gives `a = 0`.

    Args:
        v: float tensor `[G, n]`.
        bits: Bits of the grid, an int in [2, 8].
        previous: Optional previous codebook `[G, 2q + 1]` (warm start of
            the alternating method).
        method: "auto", "exact" or "alternating".
        max_iter: Maximum alternations.

    Returns:
        `(codebook [G, 2q + 1] = a * [-q, ..., q] float32, indices [G, n]
        int32)`; index `q + z` is code `z`.

    Example:

    >>> import tensorflow as tf
    >>> c, z = projection_uniform(tf.constant([[-0.9, 0.1, 0.35, 1.0]]), 2)
    >>> c.numpy().astype(float).round(4).tolist(), z.numpy().tolist()
    ([[-0.95, 0.0, 0.95]], [[0, 1, 1, 2]])
    """
    owner = "projection_uniform"
    q = uniform_levels(check_uniform_bits(owner, bits))
    method = check_choice(owner, "method", method, UNIFORM_METHODS)
    max_iter = check_int(owner, "max_iter", max_iter, low=0)
    v = _rows(v, owner)
    previous = _previous(previous, v, 2 * q + 1, owner)
    base = np.arange(-q, q + 1, dtype=np.float32)
    if method == "auto":
        size = (v.shape[0] or 0) * (v.shape[1] or 0) * q
        cheap = None not in v.shape and size <= _UNIFORM_EXACT_LIMIT
        method = "exact" if cheap else "alternating"
    if method == "exact":
        a = _uniform_exact(v, q)
    else:
        if previous is None:
            previous = _uniform_start(v, q)[:, None] * base[None, :]
        a = _scale_tf(v, previous, tf.constant(base),
                      tf.constant(max_iter, tf.int32))
        a = tf.where(tf.reduce_max(tf.abs(v), axis=1) > 0, a,
                     tf.zeros_like(a))
    codebook = a[:, None] * tf.constant(base)[None, :]
    scale = tf.where(a > 0, a, tf.ones_like(a))[:, None]
    codes = tf.clip_by_value(tf.round(v / scale), -q, q)
    return codebook, tf.cast(codes, tf.int32) + q
