"""C steps as projections onto quantized sets.

The C step of the LC algorithm projects, per codebook group, the vector
`v = w - lambda/mu` onto the feasible set of quantized vectors:

    Theta = argmin_{C, z} || v - Delta(C, z) ||**2,   Delta(C, z)_i = C[z_i].

Each projection here is a pure TensorFlow function over a batch of rows `v` of
shape `[G, n]` (one row per codebook: per layer, per shared group or per
output channel) that returns `(codebook, indices)`: float32 `[G, K]` sorted
ascending per row and int32 `[G, n]` in `[0, K)`. They run eagerly and inside
`tf.function`.

A small serializable class wraps each projection (`AdaptiveQuantization`,
`BinaryQuantization`, ...); all derive from `Quantization`. The classes know
nothing of Keras models: `per_channel` and `shared` are stored for the model
to read.
"""

import abc

import keras
import numpy as np
import tensorflow as tf

from lc_keras import kmeans as _km
from lc_keras.kmeans import assign_nearest

__all__ = [
    "AdaptiveQuantization",
    "BinaryQuantization",
    "FixedCodebook",
    "PowersOfTwoQuantization",
    "Quantization",
    "ScaledBinaryQuantization",
    "ScaledTernaryQuantization",
    "TernaryQuantization",
    "assign_nearest",
    "projection_adaptive",
    "projection_binary",
    "projection_fixed_codebook",
    "projection_powers_of_two",
    "projection_scaled_binary",
    "projection_scaled_ternary",
    "projection_ternary",
]

MAX_ENTRIES = 65536
_METHODS = ("auto", "exact", "lloyd")
_MIN_EXPONENT = -126  # smallest normal float32 power of two
_MAX_EXPONENT = 127


# --------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------


def _rows(v, owner):
    return _km._as_rows(v, "v", owner)


def _tile(values, v):
    """A constant codebook row `[K]` repeated for every row of `v`."""
    row = tf.constant(np.asarray(values, np.float32))[None, :]
    return tf.tile(row, tf.stack([tf.shape(v)[0], 1]))


def _previous(previous, v, k, owner):
    if previous is None:
        return None
    previous = _km._as_rows(previous, "previous", owner)
    if previous.shape[1] is not None and previous.shape[1] != k:
        raise ValueError(
            f"{owner} requires previous of shape [G, {k}] (one codebook row "
            f"per row of v). Received: previous.shape={tuple(previous.shape)}"
        )
    return _km._broadcast_rows(previous, v, "previous", owner)


def _row_sum64(x):
    return tf.reduce_sum(tf.cast(x, tf.float64), axis=1)


def _check_method(method, owner):
    if method not in _METHODS:
        raise ValueError(
            f"{owner} requires method to be one of "
            f"{', '.join(repr(m) for m in _METHODS)}. "
            f"Received: method={method!r}"
        )
    return method


def _check_exponents(min_exponent, max_exponent, owner):
    lo = _km._check_int(min_exponent, "min_exponent", owner,
                        minimum=_MIN_EXPONENT, maximum=_MAX_EXPONENT)
    hi = _km._check_int(max_exponent, "max_exponent", owner,
                        minimum=_MIN_EXPONENT, maximum=_MAX_EXPONENT)
    if lo > hi:
        raise ValueError(
            f"{owner} requires min_exponent <= max_exponent. Received: "
            f"min_exponent={lo}, max_exponent={hi}"
        )
    return lo, hi


def _powers_of_two(min_exponent, max_exponent):
    pos = [2.0**e for e in range(min_exponent, max_exponent + 1)]
    return [-p for p in reversed(pos)] + [0.0] + pos


def _check_values(values, owner):
    """Validates a fixed codebook; returns the float32 values as a list."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{owner} requires values to be a list of numbers. "
            f"Received: values={values!r}"
        ) from None
    if array.ndim != 1:
        raise ValueError(
            f"{owner} requires values to be a flat list of numbers. "
            f"Received: values={values!r} (shape {array.shape})"
        )
    if array.size == 0:
        raise ValueError(
            f"{owner} requires at least one value. Received: values={values!r}"
        )
    if array.size > MAX_ENTRIES:
        raise ValueError(
            f"{owner} requires at most {MAX_ENTRIES} values. "
            f"Received: {array.size} values"
        )
    for i, x in enumerate(array):
        if not np.isfinite(x) or abs(x) > np.finfo(np.float32).max:
            raise ValueError(
                f"{owner} requires finite float32 values. Received: "
                f"values[{i}]={float(x)!r} in values={values!r}"
            )
    as32 = array.astype(np.float32)
    unique, counts = np.unique(as32, return_counts=True)
    if np.any(counts > 1):
        dup = float(unique[np.argmax(counts > 1)])
        raise ValueError(
            f"{owner} requires distinct values (in float32). Received: "
            f"value {dup!r} more than once in values={values!r}"
        )
    return [float(x) for x in array]


def _check_trainable(trainable, size, owner):
    if trainable is None or isinstance(trainable, (bool, np.bool_)):
        return trainable if trainable is None else bool(trainable)
    try:
        flags = list(trainable)
    except TypeError:
        raise TypeError(
            f"{owner} requires trainable to be None, a bool or a list of "
            f"bools. Received: trainable={trainable!r}"
        ) from None
    if len(flags) != size:
        raise ValueError(
            f"{owner} requires one trainable flag per value ({size}). "
            f"Received: trainable={trainable!r} (length {len(flags)})"
        )
    for i, flag in enumerate(flags):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(
                f"{owner} requires trainable to hold bools. Received: "
                f"trainable[{i}]={flag!r} (of type {type(flag).__name__})"
            )
    return [bool(f) for f in flags]


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
                        max_iter=_km.DEFAULT_MAX_ITER, seed=0):
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
    method = _check_method(method, owner)
    v = _rows(v, owner)
    previous = _previous(previous, v, k, owner)
    if method == "auto":
        exact = _km._exact_is_cheap(v.shape[0], v.shape[1], k)
        method = "exact" if exact else "lloyd"
    if method == "exact":
        return _km.kmeans_1d_exact(v, k)
    return _km.kmeans_1d(v, k, init=previous, max_iter=max_iter, seed=seed)


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
    s = tf.sort(tf.abs(tf.cast(v, tf.float64)), axis=1, direction="DESCENDING")
    cum = tf.cumsum(s, axis=1)
    j = tf.cast(tf.range(1, tf.shape(s)[1] + 1), tf.float64)
    best = tf.argmax(cum / tf.sqrt(j), axis=1, output_type=tf.int32)
    total = tf.gather(cum, best[:, None], batch_dims=1)[:, 0]
    a = tf.cast(total / tf.cast(best + 1, tf.float64), tf.float32)
    zero = tf.zeros_like(a)
    codebook = tf.stack([-a, zero, a], axis=1)
    return codebook, _ternary_indices(v, 0.5 * a[:, None])


def projection_powers_of_two(v, min_exponent=-7, max_exponent=0, scaled=False,
                             previous=None, max_iter=_km.DEFAULT_MAX_ITER):
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
    lo, hi = _check_exponents(min_exponent, max_exponent, owner)
    scaled = _km._check_bool(scaled, "scaled", owner)
    max_iter = _km._check_int(max_iter, "max_iter", owner, minimum=0)
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
    s = tf.sort(v, axis=1)
    prefix = _km._prefix_sums(s)
    rows = tf.shape(s)[0]
    first = tf.zeros(tf.stack([rows, 1]), tf.int32)
    last = tf.fill(tf.stack([rows, 1]), tf.shape(s)[1])
    mid = 0.5 * base[:-1] + 0.5 * base[1:]
    c = tf.cast(base, tf.float64)[None, :]

    def update(a):
        b = tf.searchsorted(s, a[:, None] * mid[None, :], side="left",
                            out_type=tf.int32)
        bounds = tf.concat([first, b, last], axis=1)
        sums = tf.gather(prefix, bounds, batch_dims=1)
        sums = sums[:, 1:] - sums[:, :-1]
        count = tf.cast(bounds[:, 1:] - bounds[:, :-1], tf.float64)
        num = tf.reduce_sum(c * sums, axis=1)
        den = tf.reduce_sum(c * c * count, axis=1)
        new = tf.cast(tf.math.divide_no_nan(num, den), tf.float32)
        ok = tf.logical_and(num > 0, tf.math.is_finite(new))
        return tf.where(tf.logical_and(ok, new > 0), new, a)

    return _km._fixed_point(update, a, max_iter)


_scale_tf = tf.function(_fit_scale, reduce_retracing=True, autograph=False)


def projection_fixed_codebook(v, values, trainable=None, previous=None,
                              max_iter=_km.DEFAULT_MAX_ITER):
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
    values = _check_values(values, owner)
    trainable = _check_trainable(trainable, len(values), owner)
    max_iter = _km._check_int(max_iter, "max_iter", owner, minimum=0)
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
    return _km._lloyd(v, init, len(values), max_iter,
                      lower=tf.constant(lower), upper=tf.constant(upper))


# --------------------------------------------------------------------------
# Classes.
# --------------------------------------------------------------------------


class Quantization(abc.ABC):
    """Base class of the C steps: a serializable projection onto a codebook.

    Subclasses define `num_entries` (K) and `_project(v, previous)`, and list
    their constructor arguments in `get_config`.

    Args:
        per_channel: Whether the model keeps one codebook per output channel
            (rows of `v`) instead of one per kernel. Read by the model.
        shared: Whether the model shares one codebook among all kernels using
            this object. Read by the model.

    Example:

    >>> q = BinaryQuantization(per_channel=True)
    >>> q.kind, q.num_entries, q.get_config()
    ('BinaryQuantization', 2, {'per_channel': True, 'shared': False})
    """

    def __init__(self, *, per_channel=False, shared=False):
        owner = type(self).__name__
        self.per_channel = _km._check_bool(per_channel, "per_channel", owner)
        self.shared = _km._check_bool(shared, "shared", owner)

    @property
    def kind(self):
        """The codebook type: the class name (e.g. "AdaptiveQuantization")."""
        return type(self).__name__

    @property
    @abc.abstractmethod
    def num_entries(self):
        """Number of codebook entries K (a Python int)."""

    @abc.abstractmethod
    def _project(self, v, previous):
        """Projects float32 `v` `[G, n]`; `previous` is `[G, K]` or None."""

    def project(self, v, previous=None):
        """Runs the C step on a batch of rows.

        Args:
            v: float tensor `[G, n]`, one row per codebook.
            previous: The previous codebook `[G, K]` (or `[1, K]`) for a warm
                start, or None (first C step / direct compression).

        Returns:
            `(codebook, indices)`: float32 `[G, K]` sorted ascending per row
            and int32 `[G, n]` with values in `[0, K)`.

        Example:

        >>> import tensorflow as tf
        >>> c, z = TernaryQuantization().project(tf.constant([[0.9, -0.2]]))
        >>> c.numpy().tolist(), z.numpy().tolist()
        ([[-1.0, 0.0, 1.0]], [[2, 1]])
        """
        owner = f"{self.kind}.project"
        v = _rows(v, owner)
        previous = _previous(previous, v, self.num_entries, owner)
        codebook, indices = self._project(v, previous)
        return (_km._fix_shape(codebook, v.shape[0], self.num_entries),
                _km._fix_shape(indices, v.shape[0], v.shape[1]))

    def get_config(self):
        """Returns the constructor arguments as a dict."""
        return {"per_channel": self.per_channel, "shared": self.shared}

    @classmethod
    def from_config(cls, config):
        """Creates an instance from `get_config()` output."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.kind}({args})"


@keras.saving.register_keras_serializable(package="lc_keras")
class AdaptiveQuantization(Quantization):
    """Adaptive codebook of `k` entries learned by 1-D k-means.

    The C step solves, per row `g` of `v`,

        argmin_{c in R^k, z in {0..k-1}^n} sum_i (v[g, i] - c[z_i])**2

    (see `projection_adaptive`). `method`:

    * `"lloyd"`: Lloyd's algorithm on sorted rows, seeded by k-means++ at the
      first C step and warm-started from the previous codebook afterwards.
    * `"exact"`: global optimum by dynamic programming, O(k * n**2) per row.
    * `"auto"` (default): `"exact"` when the static shape makes the DP cheap,
      `G * (n+1)**2 <= 2**20` and `G * (n+1)**2 * k <= 2**23` (e.g. one row
      of up to ~1000 weights at k <= 8, or ~180 weights at k=256), else
      `"lloyd"`.

    Args:
        k: Number of entries, an int in [2, 65536].
        method: "auto", "exact" or "lloyd".
        max_iter: Maximum Lloyd iterations per C step.
        seed: Seed of the (stateless, deterministic) k-means++ seeding.
        per_channel: One codebook per output channel (read by the model).
        shared: One codebook shared by several kernels (read by the model).

    Example:

    >>> import tensorflow as tf
    >>> q = AdaptiveQuantization(2)
    >>> c, z = q.project(tf.constant([[0.0, 1.0, 4.0, 5.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[0.5, 4.5]], [[0, 0, 1, 1]])
    >>> q
    AdaptiveQuantization(k=2, method='auto', max_iter=1000, seed=0,
        per_channel=False, shared=False)
    """

    def __init__(self, k, *, method="auto", max_iter=_km.DEFAULT_MAX_ITER,
                 seed=0, per_channel=False, shared=False):
        super().__init__(per_channel=per_channel, shared=shared)
        owner = type(self).__name__
        self.k = _km._check_int(k, "k", owner, minimum=2, maximum=MAX_ENTRIES)
        self.method = _check_method(method, owner)
        self.max_iter = _km._check_int(max_iter, "max_iter", owner, minimum=0)
        self.seed = _km._check_seed(seed, owner)

    @property
    def num_entries(self):
        """Number of codebook entries, `k`."""
        return self.k

    def _project(self, v, previous):
        return projection_adaptive(v, self.k, previous=previous,
                                   method=self.method, max_iter=self.max_iter,
                                   seed=self.seed)

    def get_config(self):
        """Returns the constructor arguments as a dict."""
        return {"k": self.k, "method": self.method, "max_iter": self.max_iter,
                "seed": self.seed, **super().get_config()}


@keras.saving.register_keras_serializable(package="lc_keras")
class BinaryQuantization(Quantization):
    """Fixed binary codebook {-1, +1}: `v_i -> sign(v_i)`, 0 -> +1.

    The C step solves `argmin_z sum_i (v_i - c[z_i])**2`, `c = [-1, 1]`.

    Args:
        per_channel: Stored for the model (the codebook is the same anyway).
        shared: Stored for the model.

    Example:

    >>> import tensorflow as tf
    >>> c, z = BinaryQuantization().project(tf.constant([[-0.3, 0.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-1.0, 1.0]], [[0, 1]])
    """

    @property
    def num_entries(self):
        """2."""
        return 2

    def _project(self, v, previous):
        return projection_binary(v)


@keras.saving.register_keras_serializable(package="lc_keras")
class ScaledBinaryQuantization(Quantization):
    """Scaled binary codebook {-a, +a} with `a = mean |v|`.

    The C step solves `argmin_{a >= 0, z} sum_i (v_i - a * s_{z_i})**2`,
    `s = [-1, 1]` (closed form, see `projection_scaled_binary`).

    Args:
        per_channel: One scale per output channel (read by the model).
        shared: One scale shared by several kernels (read by the model).

    Example:

    >>> import tensorflow as tf
    >>> c, z = ScaledBinaryQuantization().project(tf.constant([[-1.0, 3.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-2.0, 2.0]], [[0, 1]])
    """

    @property
    def num_entries(self):
        """2."""
        return 2

    def _project(self, v, previous):
        return projection_scaled_binary(v)


@keras.saving.register_keras_serializable(package="lc_keras")
class TernaryQuantization(Quantization):
    """Fixed ternary codebook {-1, 0, +1} (nearest codeword, ties to 0).

    The C step solves `argmin_z sum_i (v_i - c[z_i])**2`, `c = [-1, 0, 1]`.

    Args:
        per_channel: Stored for the model.
        shared: Stored for the model.

    Example:

    >>> import tensorflow as tf
    >>> c, z = TernaryQuantization().project(tf.constant([[-0.7, 0.2]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-1.0, 0.0, 1.0]], [[0, 1]])
    """

    @property
    def num_entries(self):
        """3."""
        return 3

    def _project(self, v, previous):
        return projection_ternary(v)


@keras.saving.register_keras_serializable(package="lc_keras")
class ScaledTernaryQuantization(Quantization):
    """Scaled ternary codebook {-a, 0, +a}, `a` in closed form.

    The C step solves `argmin_{a >= 0, z} sum_i (v_i - a * s_{z_i})**2`,
    `s = [-1, 0, 1]` (see `projection_scaled_ternary`).

    Args:
        per_channel: One scale per output channel (read by the model).
        shared: One scale shared by several kernels (read by the model).

    Example:

    >>> import tensorflow as tf
    >>> q = ScaledTernaryQuantization()
    >>> c, z = q.project(tf.constant([[-2.0, 0.1, 2.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-2.0, 0.0, 2.0]], [[0, 1, 2]])
    """

    @property
    def num_entries(self):
        """3."""
        return 3

    def _project(self, v, previous):
        return projection_scaled_ternary(v)


@keras.saving.register_keras_serializable(package="lc_keras")
class PowersOfTwoQuantization(Quantization):
    """Powers-of-two codebook {0, +-2**e : min_exponent <= e <= max_exponent}.

    Optionally scaled by a learned `a > 0`.

    K = 2 * (max_exponent - min_exponent + 1) + 1 entries. The C step solves
    `argmin_z sum_i (v_i - c[z_i])**2` (nearest codeword), or with
    `scaled=True` `argmin_{a > 0, z} sum_i (v_i - a * c[z_i])**2` by
    alternating assignment and the closed-form scale, warm-started from the
    previous codebook (see `projection_powers_of_two`).

    Args:
        min_exponent: Smallest exponent, an int in [-126, 127].
        max_exponent: Largest exponent, an int in [min_exponent, 127].
        scaled: Whether to learn a scale `a > 0`.
        max_iter: Maximum alternations when `scaled`.
        per_channel: One codebook per output channel (read by the model).
        shared: One codebook shared by several kernels (read by the model).

    Example:

    >>> import tensorflow as tf
    >>> q = PowersOfTwoQuantization(min_exponent=-1, max_exponent=0)
    >>> q.num_entries
    5
    >>> c, z = q.project(tf.constant([[0.6, -2.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-1.0, -0.5, 0.0, 0.5, 1.0]], [[3, 0]])
    """

    def __init__(self, min_exponent=-7, max_exponent=0, scaled=False, *,
                 max_iter=_km.DEFAULT_MAX_ITER, per_channel=False,
                 shared=False):
        super().__init__(per_channel=per_channel, shared=shared)
        owner = type(self).__name__
        self.min_exponent, self.max_exponent = _check_exponents(
            min_exponent, max_exponent, owner)
        self.scaled = _km._check_bool(scaled, "scaled", owner)
        self.max_iter = _km._check_int(max_iter, "max_iter", owner, minimum=0)

    @property
    def num_entries(self):
        """`2 * (max_exponent - min_exponent + 1) + 1`."""
        return 2 * (self.max_exponent - self.min_exponent + 1) + 1

    def _project(self, v, previous):
        return projection_powers_of_two(
            v, self.min_exponent, self.max_exponent, scaled=self.scaled,
            previous=previous, max_iter=self.max_iter)

    def get_config(self):
        """Returns the constructor arguments as a dict."""
        return {"min_exponent": self.min_exponent,
                "max_exponent": self.max_exponent, "scaled": self.scaled,
                "max_iter": self.max_iter, **super().get_config()}


@keras.saving.register_keras_serializable(package="lc_keras")
class FixedCodebook(Quantization):
    """A given codebook, with optionally learned entries.

    The C step solves `argmin_z sum_i (v_i - c[z_i])**2` (nearest codeword);
    with trainable entries it also learns those entries (the others stay
    fixed), by alternating assignment and the closed-form mean update,
    warm-started from the previous codebook (see
    `projection_fixed_codebook`). The returned codebook is sorted ascending.

    Args:
        values: Distinct finite numbers (any order), at most 65536.
        trainable: None (all fixed), a bool (all entries) or a list of bools,
            one per entry of `values`.
        max_iter: Maximum alternations when some entry is trainable.
        per_channel: One codebook per output channel (read by the model).
        shared: One codebook shared by several kernels (read by the model).

    Example:

    >>> import tensorflow as tf
    >>> q = FixedCodebook([1.0, 0.0, -1.0], trainable=[True, False, True])
    >>> c, z = q.project(tf.constant([[0.1, 2.0, 3.0, -2.0]]))
    >>> c.numpy().tolist(), z.numpy().tolist()
    ([[-2.0, 0.0, 2.5]], [[1, 2, 2, 0]])
    """

    def __init__(self, values, trainable=None, *,
                 max_iter=_km.DEFAULT_MAX_ITER, per_channel=False,
                 shared=False):
        super().__init__(per_channel=per_channel, shared=shared)
        owner = type(self).__name__
        self.values = _check_values(values, owner)
        self.trainable = _check_trainable(trainable, len(self.values), owner)
        self.max_iter = _km._check_int(max_iter, "max_iter", owner, minimum=0)

    @property
    def num_entries(self):
        """Number of values."""
        return len(self.values)

    def _project(self, v, previous):
        return projection_fixed_codebook(
            v, self.values, trainable=self.trainable, previous=previous,
            max_iter=self.max_iter)

    def get_config(self):
        """Returns the constructor arguments as a dict."""
        return {"values": list(self.values), "trainable": (
            list(self.trainable) if isinstance(self.trainable, list)
            else self.trainable), "max_iter": self.max_iter,
            **super().get_config()}
