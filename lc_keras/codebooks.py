"""C steps as small serializable classes: the codebooks of `LCModel`.

The C step of the LC algorithm projects, per codebook group, the vector
`v = w - lambda/mu` onto a set of quantized vectors (see
`lc_keras.projections`, which holds the pure projection functions). Each class
here names one such set and its arguments (`AdaptiveQuantization`,
`BinaryQuantization`, ...); all derive from `Quantization`, serialize with
Keras (`get_config` returns the constructor arguments) and are found by name
with `get`. The classes know nothing of Keras models: `per_channel` and
`shared` are stored for the model to read.
"""

import abc

import keras
import tensorflow as tf

from lc_keras import projections
from lc_keras.checks import check_bool
from lc_keras.checks import check_choice
from lc_keras.checks import check_distinct_numbers
from lc_keras.checks import check_flags
from lc_keras.checks import check_int
from lc_keras.checks import check_int_interval
from lc_keras.checks import check_seed
from lc_keras.kmeans import DEFAULT_MAX_ITER
from lc_keras.quantized import MAX_ENTRIES
from lc_keras.rows import as_rows
from lc_keras.rows import broadcast_rows

__all__ = [
    "AdaptiveQuantization",
    "BinaryQuantization",
    "DEFAULT_BITS",
    "DEFAULT_K",
    "FixedCodebook",
    "NAMES",
    "PowersOfTwoQuantization",
    "Quantization",
    "ScaledBinaryQuantization",
    "ScaledTernaryQuantization",
    "TernaryQuantization",
    "UniformQuantization",
    "get",
]

_EXPONENTS = ("min_exponent", "max_exponent")


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
        self.per_channel = check_bool(owner, "per_channel", per_channel)
        self.shared = check_bool(owner, "shared", shared)

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
        v = as_rows(v, "v", owner)
        if previous is not None:
            previous = broadcast_rows(previous, v, "previous", owner,
                                      k=self.num_entries)
        codebook, indices = self._project(v, previous)
        return (tf.ensure_shape(codebook, [v.shape[0], self.num_entries]),
                tf.ensure_shape(indices, [v.shape[0], v.shape[1]]))

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

    (see `projections.projection_adaptive`). `method`:

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

    def __init__(self, k, *, method="auto", max_iter=DEFAULT_MAX_ITER,
                 seed=0, per_channel=False, shared=False):
        super().__init__(per_channel=per_channel, shared=shared)
        owner = type(self).__name__
        self.k = check_int(owner, "k", k, low=2, high=MAX_ENTRIES)
        self.method = check_choice(owner, "method", method,
                                   projections.METHODS)
        self.max_iter = check_int(owner, "max_iter", max_iter, low=0)
        self.seed = check_seed(owner, seed)

    @property
    def num_entries(self):
        """Number of codebook entries, `k`."""
        return self.k

    def _project(self, v, previous):
        return projections.projection_adaptive(
            v, self.k, previous=previous, method=self.method,
            max_iter=self.max_iter, seed=self.seed)

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
        return projections.projection_binary(v)


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
        return projections.projection_scaled_binary(v)


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
        return projections.projection_ternary(v)


@keras.saving.register_keras_serializable(package="lc_keras")
class ScaledTernaryQuantization(Quantization):
    """Scaled ternary codebook {-a, 0, +a}, `a` in closed form.

    The C step solves `argmin_{a >= 0, z} sum_i (v_i - a * s_{z_i})**2`,
    `s = [-1, 0, 1]` (see `projections.projection_scaled_ternary`).

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
        return projections.projection_scaled_ternary(v)


@keras.saving.register_keras_serializable(package="lc_keras")
class PowersOfTwoQuantization(Quantization):
    """Powers-of-two codebook {0, +-2**e : min_exponent <= e <= max_exponent}.

    Optionally scaled by a learned `a > 0`.

    K = 2 * (max_exponent - min_exponent + 1) + 1 entries. The C step solves
    `argmin_z sum_i (v_i - c[z_i])**2` (nearest codeword), or with
    `scaled=True` `argmin_{a > 0, z} sum_i (v_i - a * c[z_i])**2` by
    alternating assignment and the closed-form scale, warm-started from the
    previous codebook (see `projections.projection_powers_of_two`).

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
                 max_iter=DEFAULT_MAX_ITER, per_channel=False,
                 shared=False):
        super().__init__(per_channel=per_channel, shared=shared)
        owner = type(self).__name__
        self.min_exponent, self.max_exponent = check_int_interval(
            owner, _EXPONENTS, (min_exponent, max_exponent),
            low=projections.EXPONENT_RANGE[0],
            high=projections.EXPONENT_RANGE[1])
        self.scaled = check_bool(owner, "scaled", scaled)
        self.max_iter = check_int(owner, "max_iter", max_iter, low=0)

    @property
    def num_entries(self):
        """`2 * (max_exponent - min_exponent + 1) + 1`."""
        return 2 * (self.max_exponent - self.min_exponent + 1) + 1

    def _project(self, v, previous):
        return projections.projection_powers_of_two(
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
    `projections.projection_fixed_codebook`). The returned codebook is
    sorted ascending.

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
                 max_iter=DEFAULT_MAX_ITER, per_channel=False,
                 shared=False):
        super().__init__(per_channel=per_channel, shared=shared)
        owner = type(self).__name__
        self.values = check_distinct_numbers(owner, "values", values,
                                             max_size=MAX_ENTRIES)
        self.trainable = check_flags(owner, "trainable", trainable,
                                     len(self.values))
        self.max_iter = check_int(owner, "max_iter", max_iter, low=0)

    @property
    def num_entries(self):
        """Number of values."""
        return len(self.values)

    def _project(self, v, previous):
        return projections.projection_fixed_codebook(
            v, self.values, trainable=self.trainable, previous=previous,
            max_iter=self.max_iter)

    def get_config(self):
        """Returns the constructor arguments as a dict."""
        return {"values": list(self.values), "trainable": (
            list(self.trainable) if isinstance(self.trainable, list)
            else self.trainable), "max_iter": self.max_iter,
            **super().get_config()}


@keras.saving.register_keras_serializable(package="lc_keras")
class UniformQuantization(Quantization):
    """Uniform grid `a * {-q, ..., q}`, `q = 2**(bits-1) - 1`, learned `a`.

    The symmetric integer grid of `bits` bits with zero point 0, the range
    LiteRT stores in its own INT2 / INT4 / INT8 weight types (the most
    negative code of two's complement is left out, as LiteRT's
    quantization spec asks of symmetric weights; at 2 bits the grid is
    `{-a, 0, a}`). The C step solves
    `argmin_{a >= 0, z in {-q..q}^n} sum_i (v_i - a * z_i)**2` (see
    `projections.projection_uniform`: exact by enumerating the scales where
    assignments change when that is cheap, else alternating from the
    previous scale). `export_tflite(..., layout="native")` stores it as
    LiteRT integers with the scale `a` per tensor, or per output channel.

    Args:
        bits: Bits per weight, an int in [2, 8] (2, 4 and 8 are LiteRT's
            types; 3, 5, 6 and 7 are stored in the next of them).
        symmetric: Must be True: an asymmetric grid (nonzero zero point)
            is refused, as LiteRT's integer weights have zero point 0.
        per_channel: One scale per output channel (read by the model).
        method: "auto", "exact" or "alternating" (see
            `projections.projection_uniform`).
        max_iter: Maximum alternations per C step.
        shared: One scale shared by several kernels (read by the model).

    Example:

    >>> import tensorflow as tf
    >>> q = UniformQuantization(2)
    >>> c, z = q.project(tf.constant([[-0.9, 0.1, 0.35, 1.0]]))
    >>> c.numpy().astype(float).round(4).tolist(), z.numpy().tolist()
    ([[-0.95, 0.0, 0.95]], [[0, 1, 1, 2]])
    >>> UniformQuantization(4).num_entries
    15
    """

    def __init__(self, bits, *, symmetric=True, per_channel=False,
                 method="auto", max_iter=DEFAULT_MAX_ITER, shared=False):
        super().__init__(per_channel=per_channel, shared=shared)
        owner = type(self).__name__
        self.bits = projections.check_uniform_bits(owner, bits)
        self.symmetric = check_bool(owner, "symmetric", symmetric)
        if not self.symmetric:
            raise ValueError(
                f"{owner} supports only symmetric=True: the grid "
                "a * {-q..q} with zero point 0, which LiteRT stores as its "
                "integer weight types; an asymmetric grid would need a "
                "zero point the runtime's integer weights do not have. "
                "Received: symmetric=False")
        self.method = check_choice(owner, "method", method,
                                   projections.UNIFORM_METHODS)
        self.max_iter = check_int(owner, "max_iter", max_iter, low=0)

    @property
    def num_entries(self):
        """`2 * q + 1` with `q = 2**(bits-1) - 1`."""
        return 2 * projections.uniform_levels(self.bits) + 1

    def _project(self, v, previous):
        return projections.projection_uniform(
            v, self.bits, previous=previous, method=self.method,
            max_iter=self.max_iter)

    def get_config(self):
        """Returns the constructor arguments as a dict."""
        return {"bits": self.bits, "symmetric": self.symmetric,
                "method": self.method, "max_iter": self.max_iter,
                **super().get_config()}


#: The codebook classes by snake-case name (the names of the command line's
#: `--codebook`), each built by `get(name, **kwargs)`.
_BY_NAME = {
    "adaptive": AdaptiveQuantization,
    "binary": BinaryQuantization,
    "scaled_binary": ScaledBinaryQuantization,
    "ternary": TernaryQuantization,
    "scaled_ternary": ScaledTernaryQuantization,
    "powers_of_two": PowersOfTwoQuantization,
    "uniform": UniformQuantization,
}
#: The snake-case names `get` accepts (besides the class names).
NAMES = tuple(_BY_NAME)
#: `k` of `get("adaptive")` when no `k` is given (2 entries, 1 bit).
DEFAULT_K = 2
#: `bits` of `get("uniform")` when no `bits` is given.
DEFAULT_BITS = 4
_CLASSES = {cls.__name__: cls for cls in (
    AdaptiveQuantization, BinaryQuantization, FixedCodebook,
    PowersOfTwoQuantization, ScaledBinaryQuantization,
    ScaledTernaryQuantization, TernaryQuantization, UniformQuantization)}
_PACKAGE = "lc_keras>"


def _class_of(name, owner):
    if isinstance(name, str):
        if name.startswith(_PACKAGE):
            name = name[len(_PACKAGE):]
        cls = _BY_NAME.get(name) or _CLASSES.get(name)
        if cls is not None:
            return cls
    accepted = ", ".join(repr(n) for n in NAMES + tuple(_CLASSES))
    raise ValueError(
        f"{owner} requires a codebook name, one of {accepted}. "
        f"Received: {name!r}")


def get(identifier, **kwargs):
    """Returns a codebook (`Quantization`) from a name, a config or itself.

    As `keras.quantizers.get`: the one table from names to codebook classes
    (the command line, the example and the benchmark tool use it).

    Args:
        identifier: One of

            * a `Quantization`: returned as is;
            * a config dict, as `keras.saving.serialize_keras_object(q)`
              returns it, or `{"class_name": "BinaryQuantization",
              "config": {...}}` (`"config"` may be left out): a new object
              from the config;
            * a name: a snake-case name of `NAMES` (`"adaptive"`,
              `"binary"`, `"scaled_binary"`, `"ternary"`, `"scaled_ternary"`,
              `"powers_of_two"`, `"uniform"`) or a class name (`"BinaryQuantization"`,
              also `"FixedCodebook"`, which needs `values`): a new object
              with the default arguments updated by `kwargs`.
              `"adaptive"` and `"AdaptiveQuantization"` take `k=DEFAULT_K`
              (2) unless `kwargs` give `k`, `"uniform"` and
              `"UniformQuantization"` `bits=DEFAULT_BITS` (4);
            * None: returns None (a kernel left float).
        **kwargs: Constructor arguments, only with a name (e.g.
            `get("adaptive", k=4, per_channel=True)`).

    Returns:
        A `Quantization`, or None.

    Raises:
        ValueError: for an unknown name or class name, a dict without
            `"class_name"`, or `kwargs` with anything but a name.
        TypeError: for any other type of `identifier`, or a constructor
            argument the codebook does not take.

    Example:

    >>> get("binary")
    BinaryQuantization(per_channel=False, shared=False)
    >>> get("adaptive", k=4, per_channel=True).get_config()["k"]
    4
    >>> get({"class_name": "TernaryQuantization", "config": {"shared": True}})
    TernaryQuantization(per_channel=False, shared=True)
    >>> get(None) is None
    True
    """
    owner = "lc_keras.codebooks.get"
    if kwargs and not isinstance(identifier, str):
        raise ValueError(
            f"{owner} takes keyword arguments only with a codebook name. "
            f"Received: identifier={identifier!r} with "
            f"{', '.join(sorted(kwargs))}")
    if identifier is None or isinstance(identifier, Quantization):
        return identifier
    if isinstance(identifier, str):
        cls = _class_of(identifier, owner)
        if cls is AdaptiveQuantization:
            kwargs.setdefault("k", DEFAULT_K)
        if cls is UniformQuantization:
            kwargs.setdefault("bits", DEFAULT_BITS)
        return cls(**kwargs)
    if isinstance(identifier, dict):
        name = identifier.get("registered_name") or identifier.get(
            "class_name")
        if name is None:
            raise ValueError(
                f"{owner} requires a config dict with a 'class_name'. "
                f"Received: identifier={identifier!r}")
        config = identifier.get("config") or {}
        if not isinstance(config, dict):
            raise TypeError(
                f"{owner} requires the 'config' of a config dict to be a "
                f"dict. Received: config={config!r}")
        return _class_of(name, owner).from_config(config)
    raise TypeError(
        f"{owner} requires a Quantization, a config dict, a codebook name "
        f"(one of {', '.join(repr(n) for n in NAMES)}, or a class name) or "
        f"None. Received: identifier={identifier!r} of type "
        f"{type(identifier).__name__}")
