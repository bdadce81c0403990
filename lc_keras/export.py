"""TFLite export that stores integer indices plus a codebook.

Every compressed kernel is written as its codebook indices, `ceil(log2 K)`
bits each, packed into int32 words (index `i` at bits `[i*b, (i+1)*b)` of the
little-endian word stream), next to its float32 codebook. The graph decodes
the words with builtin TFLite ops only, so the file runs on the stock LiteRT
interpreter and is small on disk as written, with no gzip:

* b in {1, 2, 4, 8}: `BITCAST` the words to bytes, then one `GATHER` of a
  256-row table (each byte value's 8/b codebook values, built at run time
  from the codebook) decodes 8/b weights per byte.
* other b (indices straddle words): `GATHER` the two words of each index,
  `RIGHT_SHIFT` + `FLOOR_MOD`, then `GATHER` the codebook.
* per-channel codebooks add each channel's row offset to the indices before
  the codebook `GATHER`.

Two layouts:

* `"packed"` decodes the kernels on every invoke: smallest memory, slowest.
* `"cached"` decodes them once, on the first invoke, into float resource
  variables (a `CALL_ONCE` initializer sets a flag to 0, an `IF` decodes and
  `ASSIGN_VARIABLE`s the kernels while it is 0); later invokes only
  `READ_VARIABLE` them. The file is ~2.5 KB larger (the extra subgraphs);
  resident memory holds the float kernels (twice, with the read copies).

Speed, measured with LiteRT 2.3 (see `tools/benchmark_export.py`): the
interpreter's XNNPACK delegate only takes convolutions whose filter is a
constant, and copies no resource variable in place, so a network whose
kernels are decoded at run time runs at the speed of the builtin kernels:
about the float model without delegates for conv nets, and 4-5x the
XNNPACK float time for a weight-bound MLP in the cached layout.
`lc_keras.load_interpreter` (`lc_keras.runtime`) expands the kernels to
float constants at load time instead, and runs at the float model's speed.

How the decoding survives conversion. The TFLite converter constant-folds
any chain of ops whose inputs are all constants back into a float kernel
(small kernels always; every kernel on the SavedModel conversion path). The
decoding therefore takes one runtime int32 that is always zero: the batch
size clipped at zero (`min(shape(x)[0], 0)`; with a static batch, a value
derived from the input data) in the packed layout, or the cache flag (0 while
decoding) in the cached layout. Adding it to the words costs one `ADD` per
kernel and makes every op downstream a runtime op, while the words stay
constants in the file.

The indices are stored in TFLite's own kernel layout (`FULLY_CONNECTED`
`[out, in]`, `CONV_2D` OHWI, also for Conv1D, `TRANSPOSE_CONV`
`[out, H, W, in]`; `DEPTHWISE_CONV_2D` and Embedding keep the Keras layout),
then transposed to the Keras layout in the TensorFlow graph; the converter
cancels that transpose against its own, so no runtime `TRANSPOSE` remains.

After conversion the file itself is checked (every op a builtin, every
compressed kernel present as its exact packed int32 words, no float copy of
a kernel) and only then written, atomically, with a checksum: a metadata
entry `lc_keras_checksums` holds the CRC32 of the whole file and of each
kernel's packed words and codebook, which `inspect_tflite`, `expand_tflite`
and `load_interpreter` verify before reading anything else, naming the
kernel whose bytes changed.
"""

import contextlib
import dataclasses
import json
import math
import os
import re
import struct
import zlib

import flatbuffers
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lc_keras import files
from lc_keras import spec as spec_lib
from lc_keras.quantized import QuantizedKernel
from lc_keras.quantized import bits_for

# Name of the int32 zero that blocks constant folding of the decoding.
RUNTIME_ZERO_NAME = "lc_runtime_zero"

LAYOUTS = ("packed", "cached")

# Largest supported codebook: 16-bit indices keep every mask in int32.
MAX_CODEBOOK_SIZE = 1 << 16

# ---------------------------------------------------------------------------
# Packing (NumPy reference, also used to check the file)
# ---------------------------------------------------------------------------


def packed_words(count, bits):
    """Number of int32 words that hold `count` indices of `bits` bits.

    Args:
        count: Number of indices.
        bits: Bits per index.

    Returns:
        `ceil(count * bits / 32)`.

    Example:

    >>> packed_words(266200 // 2, 1), packed_words(10, 3)
    (4160, 1)
    """
    return -(-int(count) * int(bits) // 32)


def pack_indices(indices, bits):
    """Packs integer indices into int32 words, `bits` bits each.

    Index `i` occupies bits `[i*bits, (i+1)*bits)` of the little-endian bit
    stream formed by the words (bit `j` of the stream is bit `j % 32` of word
    `j // 32`); an index may straddle two words when `bits` does not divide
    32. Unused high bits of the last word are zero.

    Args:
        indices: Integer array-like (flattened in C order), values in
            `[0, 2**bits)`.
        bits: Bits per index, 1 to 16.

    Returns:
        An int32 array of `ceil(indices.size * bits / 32)` words.

    Raises:
        ValueError: if `bits` is out of range or an index does not fit.

    Example:

    >>> pack_indices([1, 0, 1, 1], 1).tolist()
    [13]
    >>> unpack_indices(pack_indices([5, 2, 7, 0, 3], 3), 3, 5).tolist()
    [5, 2, 7, 0, 3]
    """
    bits = int(bits)
    if not 1 <= bits <= 16:
        raise ValueError(
            f"pack_indices supports 1 to 16 bits per index. Received: "
            f"bits={bits}")
    values = np.asarray(indices).reshape(-1).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= (1 << bits)):
        raise ValueError(
            f"pack_indices got indices in [{values.min()}, {values.max()}], "
            f"which do not fit in bits={bits}.")
    n_words = packed_words(values.size, bits)
    if values.size == 0:
        return np.zeros(0, np.int32)
    start = np.arange(values.size, dtype=np.int64) * bits
    word = start // 32
    shifted = values << (start % 32)  # < 2**47: exact in float64 below
    # Fields are disjoint, so summing them is OR-ing them.
    low = np.bincount(word, weights=(shifted & 0xFFFFFFFF).astype(np.float64),
                      minlength=n_words + 1)
    high = np.bincount(word + 1, weights=(shifted >> 32).astype(np.float64),
                       minlength=n_words + 2)
    total = (low[:n_words + 1] + high[:n_words + 1]).astype(np.uint64)
    if total[n_words]:
        raise AssertionError("pack_indices overflowed its last word.")
    return total[:n_words].astype(np.uint32).view(np.int32)


def unpack_indices(words, bits, count):
    """Inverse of `pack_indices`.

    Args:
        words: int32 array-like of packed words.
        bits: Bits per index, 1 to 16.
        count: Number of indices to read.

    Returns:
        An int32 array of `count` indices.

    Example:

    >>> unpack_indices([13], 1, 4).tolist()
    [1, 0, 1, 1]
    """
    bits, count = int(bits), int(count)
    words = np.asarray(words, dtype=np.int32).reshape(-1).view(np.uint32)
    stream = np.concatenate([words, np.zeros(1, np.uint32)]).astype(np.uint64)
    start = np.arange(count, dtype=np.int64) * bits
    word = start // 32
    both = stream[word] | (stream[np.minimum(word + 1, stream.size - 1)] << 32)
    out = (both >> (start % 32).astype(np.uint64)) & ((1 << bits) - 1)
    return out.astype(np.int32)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExportedKernel:
    """How one compressed kernel is stored in an exported `.tflite` file.

    Attributes:
        name: Key of the kernel in the compression state.
        layer_name: Name of the layer that owns it.
        shape: Kernel shape in Keras layout.
        tflite_shape: Shape of the stored indices (TFLite kernel layout).
        k: Codebook entries per row.
        groups: Codebook rows (1, or the number of output channels).
        bits: Bits per stored index, `ceil(log2 k)`.
        words: Number of int32 words of packed indices.
        group: Codebook group; kernels of one group share one codebook.

    Example:

    >>> e = ExportedKernel("d/kernel", "d", (784, 300), (300, 784), 2, 1, 1,
    ...                    7350, "d/kernel")
    >>> e.index_bytes, e.codebook_bytes, e.size
    (29400, 8, 235200)
    """

    name: str
    layer_name: str
    shape: tuple
    tflite_shape: tuple
    k: int
    groups: int
    bits: int
    words: int
    group: str

    @property
    def size(self):
        """Number of weights."""
        return int(np.prod(self.shape))

    @property
    def index_bytes(self):
        """Bytes of packed indices: `ceil(size * bits / 32) * 4`."""
        return self.words * 4

    @property
    def codebook_bytes(self):
        """Bytes of the float32 codebook (once per group)."""
        return self.groups * self.k * 4


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """What `export_tflite` wrote.

    Attributes:
        path: The `.tflite` file.
        layout: `"packed"` or `"cached"`.
        size_bytes: File size.
        kernels: One `ExportedKernel` per compressed kernel, in state order.

    Example:

    >>> TFLiteExport("m.tflite", "packed", 1000, ()).index_bytes
    0
    """

    path: str
    layout: str
    size_bytes: int
    kernels: tuple

    @property
    def index_bytes(self):
        """Total bytes of packed indices."""
        return sum(k.index_bytes for k in self.kernels)

    @property
    def codebook_bytes(self):
        """Total bytes of codebooks, shared codebooks counted once."""
        return sum({k.group: k.codebook_bytes for k in self.kernels}.values())


# ---------------------------------------------------------------------------
# Kernel layouts
# ---------------------------------------------------------------------------


def _tflite_layout(layer, attribute, ndim):
    """How TFLite stores a kernel: `(one_d, perm)`.

    `one_d` says the TensorFlow graph adds a unit axis in front of the Keras
    kernel (1-D convolutions run as 2-D ones); `perm` then maps that kernel
    to TFLite's layout (`FULLY_CONNECTED` `[out, in]`, `CONV_2D` OHWI,
    `TRANSPOSE_CONV` `[out, H, W, in]`, `DEPTHWISE_CONV_2D` unchanged).

    This is only a performance choice: the graph transposes back, so any
    layout gives the same numbers, but this one lets the converter cancel
    the transposes, so none runs at inference time.
    """
    L = keras.layers
    identity = tuple(range(ndim))
    if layer is None:
        return False, identity
    if isinstance(layer, L.Conv1DTranspose):
        return True, (2, 0, 1, 3)
    if isinstance(layer, (L.Conv2DTranspose, L.Conv3DTranspose)):
        # Keras (*spatial, out, in) -> (out, *spatial, in).
        return False, (ndim - 2,) + tuple(range(ndim - 2)) + (ndim - 1,)
    if isinstance(layer, L.SeparableConv1D):
        if attribute == "pointwise_kernel":
            return True, (3, 0, 1, 2)
        return False, identity
    if isinstance(layer, L.SeparableConv2D):
        if attribute == "pointwise_kernel":
            return False, (3, 0, 1, 2)
        return False, identity
    if isinstance(layer, L.Conv1D):
        return True, (3, 0, 1, 2)
    if isinstance(layer, (L.Dense, L.Conv2D)):
        # Dense (in, out) -> (out, in); Conv2D HWIO -> OHWI.
        return False, (ndim - 1,) + tuple(range(ndim - 1))
    # DepthwiseConv*, Embedding, Conv3D (TFLite CONV_3D keeps DHWIO), others.
    return False, identity


def _layers_by_variable(model):
    """Maps `id(variable)` to `(layer, attribute)` over nested layers."""
    found = {}
    seen = set()
    stack = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        for attribute in ("kernel", "depthwise_kernel", "pointwise_kernel",
                          "embeddings"):
            try:
                value = getattr(layer, attribute, None)
            except Exception:  # pylint: disable=broad-except
                value = None
            if isinstance(value, keras.Variable):
                found.setdefault(id(value), (layer, attribute))
        sublayers = getattr(layer, "layers", None)
        if isinstance(sublayers, (list, tuple)):
            stack.extend(sublayers)
    return found


@dataclasses.dataclass
class _Plan:
    """Everything needed to store and decode one kernel."""

    key: str
    q: QuantizedKernel
    variable: object
    one_d: bool
    perm: tuple
    tflite_shape: tuple
    bits: int
    words: np.ndarray
    offsets: np.ndarray  # per-channel row offsets (broadcast shape) or None
    codebook_key: tuple

    def to_tflite(self, array):
        """A Keras-layout array in TFLite layout."""
        shape = ((1,) if self.one_d else ()) + self.q.shape
        return np.transpose(np.reshape(array, shape), self.perm)

    def exported(self):
        return ExportedKernel(
            name=self.key, layer_name=self.q.layer_name, shape=self.q.shape,
            tflite_shape=self.tflite_shape, k=self.q.k, groups=self.q.groups,
            bits=self.bits, words=int(self.words.size), group=self.q.group)


def _plan(keras_model, variables, state):
    if not isinstance(state, dict) or not state:
        raise ValueError(
            "export_tflite needs the compression state of at least one "
            "kernel, but the model has none: it never ran a C step. Run "
            "`model.direct_compression()` or `fit` with a `MuSchedule` "
            f"first. Received: state={state!r}")
    if not isinstance(variables, dict):
        raise TypeError(
            "export_tflite expects `variables` as a dict {kernel path: "
            f"keras.Variable}}. Received: {type(variables).__name__}")
    missing = [key for key in state if key not in variables]
    if missing:
        raise ValueError(
            f"export_tflite has no variable for the compressed kernels "
            f"{missing}. Received variables for: {sorted(variables)}")
    unquantized = [key for key in variables if key not in state]
    if unquantized:
        raise ValueError(
            f"export_tflite has no compression state (codebook and indices) "
            f"for the kernels {unquantized}: run a C step first.")
    owners = _layers_by_variable(keras_model)
    model_variables = {id(v) for v in keras_model.variables}
    plans = []
    for key, q in state.items():
        if not isinstance(q, QuantizedKernel):
            raise TypeError(
                f"export_tflite expects QuantizedKernel values in the state. "
                f"Received for '{key}': {type(q).__name__}")
        variable = variables[key]
        where = f"kernel '{key}' of layer '{q.layer_name}'"
        if id(variable) not in model_variables:
            raise ValueError(
                f"The variable of {where} ({variable.path}) is not a "
                "variable of the exported model.")
        if tuple(variable.shape) != q.shape:
            raise ValueError(
                f"The indices of {where} have shape {q.shape} but the "
                f"variable has shape {tuple(variable.shape)}.")
        if q.k > MAX_CODEBOOK_SIZE:
            raise ValueError(
                f"The codebook of {where} has k={q.k} entries; export_tflite "
                f"supports at most {MAX_CODEBOOK_SIZE}.")
        if q.size and (q.indices.min() < 0 or q.indices.max() >= q.k):
            raise ValueError(
                f"The indices of {where} are outside [0, {q.k}): found "
                f"[{q.indices.min()}, {q.indices.max()}].")
        if not np.all(np.isfinite(q.codebook)):
            raise ValueError(f"The codebook of {where} is not finite.")
        layer, attribute = owners.get(id(variable), (None, q.attribute))
        one_d, perm = _tflite_layout(layer, attribute, len(q.shape))
        shape = ((1,) if one_d else ()) + q.shape
        bits = bits_for(q.k)
        words = pack_indices(np.transpose(q.indices.reshape(shape), perm),
                             bits)
        offsets = None
        if q.groups > 1:
            reduced = [q.shape[a] if a in q.channel_axes else 1
                       for a in range(len(q.shape))]
            grids = np.indices(reduced)
            rows = np.zeros(reduced, np.int64)
            for axis in q.channel_axes:
                rows = rows * q.shape[axis] + grids[axis]
            offsets = np.transpose(
                (rows * q.k).reshape(((1,) if one_d else ()) + tuple(reduced)),
                perm).astype(np.int32)
        plans.append(_Plan(
            key=key, q=q, variable=variable, one_d=one_d, perm=perm,
            tflite_shape=tuple(shape[a] for a in perm), bits=bits,
            words=words, offsets=offsets,
            codebook_key=(q.group, q.codebook.tobytes())))
    return plans


# ---------------------------------------------------------------------------
# Graph
# ---------------------------------------------------------------------------


def _safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", text).strip("/") or "kernel"


def _codebook(plan, codebooks):
    if plan.codebook_key not in codebooks:
        codebooks[plan.codebook_key] = tf.constant(
            plan.q.codebook.reshape(-1), tf.float32,
            name=f"lc/{_safe_name(plan.q.group)}/codebook")
    return codebooks[plan.codebook_key]


def _words_name(plan):
    return f"lc/{_safe_name(plan.key)}/packed_indices"


def _first(flat, count, shape):
    """The first `count` entries of `flat`, reshaped."""
    if flat.shape[0] != count:
        flat = flat[:count]
    return tf.reshape(flat, shape)


def _decode_by_bytes(plan, zero, codebooks):
    """b in {1, 2, 4, 8}: BITCAST the words to bytes, then GATHER rows of a
    256-entry table (one row per byte value: its 8/b indices or values)."""
    bits, k = plan.bits, plan.q.k
    per_byte = 8 // bits
    words = tf.constant(plan.words, tf.int32, name=_words_name(plan))
    # Little-endian bytes of the bit stream (TFLite targets are LE).
    data = tf.cast(tf.bitcast(words + zero, tf.uint8), tf.int32)  # [W, 4]
    codebook = _codebook(plan, codebooks)
    count = plan.q.size
    if bits == 8:  # one index per byte (padding bytes are index 0)
        if plan.offsets is None:
            return _first(tf.reshape(tf.gather(codebook, data), [-1]), count,
                          plan.tflite_shape)
        indices = _first(tf.reshape(data, [-1]), count, plan.tflite_shape)
        return tf.gather(codebook, indices + tf.constant(plan.offsets))
    # Shared by all kernels: [256, 8/b], the indices packed in each byte.
    if ("fields", bits) not in codebooks:
        if "bytes" not in codebooks:
            codebooks["bytes"] = tf.reshape(tf.range(zero, 256 + zero),
                                            [-1, 1])
        codebooks[("fields", bits)] = tf.math.floormod(
            tf.bitwise.right_shift(
                codebooks["bytes"],
                tf.constant(np.arange(per_byte, dtype=np.int32) * bits)),
            1 << bits)
    fields = codebooks[("fields", bits)]
    if plan.offsets is None:
        # Per codebook: [256, 8/b] values. Byte values that never occur can
        # hold indices >= k: clip them.
        key = ("table", plan.codebook_key, bits)
        if key not in codebooks:
            codebooks[key] = tf.gather(
                codebook, fields if k == 1 << bits else tf.minimum(
                    fields, k - 1))
        return _first(tf.reshape(tf.gather(codebooks[key], data), [-1]),
                      count, plan.tflite_shape)
    indices = _first(tf.reshape(tf.gather(fields, data), [-1]), count,
                     plan.tflite_shape)
    return tf.gather(codebook, indices + tf.constant(plan.offsets))


def _decode_by_shifts(plan, zero, codebooks):
    """Any b: RIGHT_SHIFT + FLOOR_MOD on the words, then GATHER."""
    bits, count = plan.bits, plan.q.size
    n_words = int(plan.words.size)
    if 32 % bits == 0:
        per_word = 32 // bits
        # Stored as [words, 1] so that no folded reshape renames it.
        words = tf.constant(plan.words.reshape(-1, 1), tf.int32,
                            name=_words_name(plan))
        shifts = tf.constant(np.arange(per_word, dtype=np.int32) * bits) + zero
        fields = tf.bitwise.right_shift(words, shifts)
        flat = tf.reshape(tf.math.floormod(fields, 1 << bits), [-1])
    else:
        words = tf.constant(plan.words, tf.int32, name=_words_name(plan))
        # Indices straddle words: a block of n words holds m indices.
        g = math.gcd(bits, 32)
        per_block, words_per_block = 32 // g, bits // g
        blocks = -(-count // per_block)
        start = np.arange(per_block, dtype=np.int64) * bits
        word_of = (start // 32).astype(np.int32)
        shift = (start % 32).astype(np.int32)
        low_bits = np.minimum(bits, 32 - shift)
        high_bits = bits - low_bits
        # A runtime range: a folded one would store `blocks` int32s.
        base = tf.reshape(
            tf.range(zero, blocks + zero) * words_per_block, [-1, 1])
        low_at = tf.minimum(base + word_of, n_words - 1)
        high_at = tf.minimum(low_at + 1, n_words - 1)
        low = tf.math.floormod(
            tf.bitwise.right_shift(tf.gather(words, low_at), shift),
            (1 << low_bits).astype(np.int32))
        high = tf.math.floormod(tf.gather(words, high_at),
                                (1 << high_bits).astype(np.int32))
        flat = tf.reshape(low + high * (1 << low_bits).astype(np.int32),
                          [-1])
    indices = _first(flat, count, plan.tflite_shape)
    if plan.offsets is not None:
        indices = indices + tf.constant(plan.offsets)
    return tf.gather(_codebook(plan, codebooks), indices)


def _decode_kernel(plan, zero, codebooks):
    """TF ops: packed int32 words -> float kernel in TFLite layout.

    `zero` is a runtime int32 scalar equal to 0; it keeps the converter from
    folding the decoding into a float constant. `codebooks` caches tensors
    shared between kernels (codebooks, byte tables) within one trace.
    """
    if plan.bits in (1, 2, 4, 8):
        return _decode_by_bytes(plan, zero, codebooks)
    return _decode_by_shifts(plan, zero, codebooks)


def _to_keras_layout(plan, value):
    if plan.perm != tuple(range(len(plan.perm))):
        value = tf.transpose(value, np.argsort(plan.perm).tolist())
    if plan.one_d:
        value = tf.reshape(value, plan.q.shape)
    dtype = tf.as_dtype(plan.variable.dtype)
    return value if dtype == tf.float32 else tf.cast(value, dtype)


def _runtime_zero(flat_inputs):
    """An int32 scalar 0 that the converter cannot fold.

    Named `RUNTIME_ZERO_NAME`, so that `lc_keras.expand_tflite` can tell it
    from data (it is 0 whatever the input).
    """
    x = flat_inputs[0]
    if x.shape.rank and x.shape[0] is None:
        return tf.minimum(tf.shape(x)[0], 0, name=RUNTIME_ZERO_NAME)
    # Static batch: derive it from the data instead. (v == v) or (v != v) is
    # true for every value, NaN included.
    first = tf.reshape(x, [-1])[:1]
    always = tf.logical_or(tf.equal(first, first), tf.not_equal(first, first))
    return tf.reshape(1 - tf.cast(always, tf.int32), [],
                      name=RUNTIME_ZERO_NAME)


class _KernelCache(keras.layers.Layer):
    """Float caches of the decoded kernels (cached layout).

    Held as Keras weights on purpose: the TFLite converter gives them their
    static shape but stores no initial value for them (a `tf.Variable` would
    get its full zero value written into the file). The first invoke assigns
    every cache before anything reads it. `_verify` checks that no float
    copy of a kernel ended up in the file.
    """

    def __init__(self, shapes, **kwargs):
        super().__init__(**kwargs)
        self.caches = [
            self.add_weight(shape=shape, initializer="zeros", trainable=False,
                            name=f"cache_{i}")
            for i, shape in enumerate(shapes)]


class _ExportModule(tf.Module):
    """Holds the state of the cached layout: a flag and the caches."""

    def __init__(self, plans, cached):
        super().__init__(name="lc_export")
        self.decoded = None
        self.kernel_cache = None
        if cached:
            # Initialised to 0 by the converter's CALL_ONCE initializer.
            self.decoded = tf.Variable(0, dtype=tf.int32, trainable=False,
                                       name="lc_decoded")
            self.kernel_cache = _KernelCache(
                [p.tflite_shape for p in plans], name="lc")


def _input_signature(keras_model, input_signature):
    if input_signature is not None:
        specs = tf.nest.flatten(input_signature)
        if not specs or not all(isinstance(s, tf.TensorSpec) for s in specs):
            raise TypeError(
                "export_tflite expects input_signature as a tf.TensorSpec or "
                "a list of them. Received: "
                f"input_signature={input_signature!r}")
        return input_signature
    candidates = [keras_model, getattr(keras_model, "net", None)]
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            inputs = candidate.inputs
        except (AttributeError, ValueError):
            inputs = None
        if inputs:
            specs = []
            for i, t in enumerate(inputs):
                name = re.sub(r"[^A-Za-z0-9_]", "_",
                              getattr(t, "name", "") or f"input_{i}")
                specs.append(tf.TensorSpec(t.shape, tf.as_dtype(t.dtype),
                                           name=name))
            return specs[0] if len(specs) == 1 else specs
    config = None
    try:
        config = keras_model.get_build_config()
    except Exception:  # pylint: disable=broad-except
        config = None
    shape = (config or {}).get("input_shape")
    if shape is not None:
        def spec(s):
            return tf.TensorSpec(s, tf.float32)
        if isinstance(shape, (list, tuple)) and shape and all(
                isinstance(s, (list, tuple)) for s in shape):
            return [spec(s) for s in shape]
        if isinstance(shape, dict):
            return {k: spec(s) for k, s in shape.items()}
        return spec(shape)
    raise ValueError(
        f"Cannot infer the input signature of model '{keras_model.name}': it "
        "has no `inputs` and no build config. Pass "
        "`input_signature=tf.TensorSpec((None, ...), tf.float32)`.")


@contextlib.contextmanager
def _float32_compute(keras_model):
    """Traces mixed-precision layers in float32 (TFLite builtins are float32).

    Layers with a mixed policy (float32 variables, float16/bfloat16 compute)
    get the float32 policy while the export traces them, and their own back
    afterwards. The file then computes what the quantized net computes, in
    float32.
    """
    changed = []
    layers = [keras_model] + [layer for layer, _ in spec_lib.walk_layers(keras_model)]
    for layer in layers:
        policy = getattr(layer, "dtype_policy", None)
        if policy is None or policy.quantization_mode is not None:
            continue
        if policy.variable_dtype == "float32" and policy.compute_dtype in (
                "float16", "bfloat16"):
            changed.append((layer, policy))
            layer.dtype_policy = "float32"
    try:
        yield
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


def _trace(keras_model, plans, signature, cached):
    module = _ExportModule(plans, cached)
    compressed = {id(p.variable) for p in plans}
    frozen = [(v, tf.constant(keras.ops.convert_to_numpy(v.value)))
              for v in keras_model.variables if id(v) not in compressed]

    def forward(*args):
        inputs = args[0] if len(args) == 1 else list(args)
        flat = tf.nest.flatten(inputs)
        codebooks = {}
        if not cached:
            zero = _runtime_zero(flat)
            kernels = [_decode_kernel(p, zero, codebooks) for p in plans]
        else:
            flag = module.decoded.read_value()

            caches = module.kernel_cache.caches

            def decode_all():
                # `flag` is 0 here: it is the zero that blocks folding.
                assigns = [
                    cache.value.assign(_decode_kernel(p, flag, codebooks))
                    for cache, p in zip(caches, plans)]
                with tf.control_dependencies(assigns):
                    return tf.identity(module.decoded.assign(1))

            done = tf.cond(tf.equal(flag, 0), decode_all,
                           lambda: tf.identity(flag))
            with tf.control_dependencies([done]):
                kernels = [tf.convert_to_tensor(cache.value)
                           for cache in caches]
        mapping = list(frozen) + [
            (p.variable, _to_keras_layout(p, w))
            for p, w in zip(plans, kernels)]
        with keras.StatelessScope(state_mapping=mapping):
            return keras_model(inputs, training=False)

    specs = signature if isinstance(signature, (list, tuple)) else [signature]
    function = tf.function(forward, input_signature=list(specs),
                           autograph=False)
    return module, function.get_concrete_function()


def _convert(module, concrete):
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [concrete], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = True
    try:
        return bytes(converter.convert())
    except Exception as error:  # ConverterError is not public API.
        raise RuntimeError(
            "TFLite conversion with builtin ops only failed. The model uses "
            f"an op that has no TFLite builtin: {error}") from error


# ---------------------------------------------------------------------------
# Reading .tflite files
# ---------------------------------------------------------------------------


def _schema():
    # The flatbuffer schema ships with ai-edge-litert, a dependency.
    from ai_edge_litert import schema_py_generated as schema

    return schema


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of a `.tflite` file.

    Attributes:
        subgraph: Subgraph index.
        index: Tensor index in the subgraph.
        name: Tensor name.
        dtype: Type name (`"FLOAT32"`, `"INT32"`, ...).
        shape: Static shape (tuple; -1 for unknown where the file says so).
        data_bytes: Bytes of constant data stored in the file (0 if none).

    Example:

    >>> TensorInfo(0, 3, "w", "INT32", (10,), 40).constant
    True
    """

    subgraph: int
    index: int
    name: str
    dtype: str
    shape: tuple
    data_bytes: int

    @property
    def constant(self):
        """Whether the file stores data for this tensor."""
        return self.data_bytes > 0


@dataclasses.dataclass(frozen=True)
class PackedKernelInfo:
    """A packed kernel found in a `.tflite` file by `inspect_tflite`.

    Attributes:
        subgraph: Subgraph that decodes it.
        name: Name of the packed-indices tensor.
        weights: Number of weights it decodes to.
        words: Number of int32 words of packed indices.
        codebook_entries: Entries of its (flattened) codebook tensor.

    Example:

    >>> PackedKernelInfo(0, "w", 1000, 32, 2).bits_per_weight
    1.024
    """

    subgraph: int
    name: str
    weights: int
    words: int
    codebook_entries: int

    @property
    def index_bytes(self):
        """Bytes of packed indices."""
        return self.words * 4

    @property
    def codebook_bytes(self):
        """Bytes of the float32 codebook."""
        return self.codebook_entries * 4

    @property
    def bits_per_weight(self):
        """Stored index bits per weight (codebook not included)."""
        return 32.0 * self.words / max(self.weights, 1)


@dataclasses.dataclass(frozen=True)
class TFLiteSummary:
    """Ops, tensors and packed kernels of a `.tflite` file.

    Attributes:
        size_bytes: Size of the file.
        ops: `(subgraph, op name)` pairs in execution order; custom ops
            appear as `"CUSTOM:<code>"`.
        tensors: `TensorInfo` of every tensor.
        packed_kernels: `PackedKernelInfo` of every decoded kernel.

    Example:

    >>> s = TFLiteSummary(100, ((0, "ADD"),), (), ())
    >>> s.custom_ops, s.constant_bytes
    ([], 0)
    """

    size_bytes: int
    ops: tuple
    tensors: tuple
    packed_kernels: tuple

    @property
    def custom_ops(self):
        """Names of the non-builtin ops (should be empty)."""
        return [name for _, name in self.ops if name.startswith("CUSTOM")]

    @property
    def constant_bytes(self):
        """Bytes of constant tensor data (buffers shared once)."""
        return sum(t.data_bytes for t in self.tensors)


class _Model:
    """Thin reader over the flatbuffer object API."""

    def __init__(self, data):
        schema = _schema()
        self.schema = schema
        raw = bytearray(data)
        if len(raw) < 8 or bytes(raw[4:8]) != b"TFL3":
            raise ValueError("Not a TFLite flatbuffer (no 'TFL3' identifier).")
        try:
            model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(raw, 0))
        except Exception as error:  # flatbuffers raises struct.error & co.
            raise ValueError(
                f"Not a valid TFLite file ({len(raw)} bytes): truncated or "
                f"corrupt flatbuffer ({type(error).__name__}: {error}).") \
                from error
        self.model = model
        self.buffers = []
        for buffer in model.buffers or []:
            if getattr(buffer, "offset", 0):
                start = int(buffer.offset)
                chunk = bytes(raw[start:start + int(buffer.size)])
            elif buffer.data is not None:
                chunk = np.asarray(buffer.data, np.uint8).tobytes()
            else:
                chunk = b""
            self.buffers.append(chunk)
        self.op_names = {
            v: k for k, v in vars(schema.BuiltinOperator).items()
            if not k.startswith("_")}
        self.type_names = {
            v: k for k, v in vars(schema.TensorType).items()
            if not k.startswith("_")}

    def op_name(self, opcode_index):
        code = self.model.operatorCodes[opcode_index]
        builtin = max(int(code.builtinCode or 0),
                      int(code.deprecatedBuiltinCode or 0))
        if builtin == self.schema.BuiltinOperator.CUSTOM:
            custom = code.customCode
            if isinstance(custom, bytes):
                custom = custom.decode("utf-8", "replace")
            return f"CUSTOM:{custom}"
        return self.op_names.get(builtin, f"BUILTIN_{builtin}")

    def data(self, tensor):
        if tensor.buffer is None or tensor.buffer >= len(self.buffers):
            return b""
        return self.buffers[tensor.buffer]

    @staticmethod
    def name(tensor):
        name = tensor.name
        return name.decode("utf-8", "replace") if isinstance(
            name, bytes) else str(name or "")


_DECODE_OPS = frozenset((
    "ADD", "BITCAST", "CAST", "FLOOR_MOD", "GATHER", "MINIMUM", "MUL",
    "RANGE", "RESHAPE", "RIGHT_SHIFT", "SHAPE", "STRIDED_SLICE"))


def _find_packed(reader):
    """Finds the decoded kernels of a file written by `export_tflite`.

    A kernel is a float GATHER whose positions are computed from an int32
    constant of packed words (one that is shifted by RIGHT_SHIFT, gathered
    from, or offset by ADD and then BITCAST to bytes) and whose params come
    from a float constant (the codebook, directly or through a GATHER that
    builds a per-byte table).
    """
    found = []
    schema = reader.schema
    for s, subgraph in enumerate(reader.model.subgraphs or []):
        tensors = subgraph.tensors or []
        ops = subgraph.operators or []
        producer, consumers = {}, {}
        for op in ops:
            for t in op.outputs if op.outputs is not None else []:
                producer[int(t)] = op
            for t in op.inputs if op.inputs is not None else []:
                consumers.setdefault(int(t), []).append(op)

        def name_of(op):
            return reader.op_name(op.opcodeIndex)

        def is_const(i, dtype):
            return tensors[i].type == dtype and bool(
                reader.data(tensors[i]))

        def words_of(start):
            best, stack, seen = None, [start], set()
            while stack:
                t = stack.pop()
                if t in seen or t not in producer:
                    continue
                seen.add(t)
                op = producer[t]
                name = name_of(op)
                if name not in _DECODE_OPS:
                    continue
                feeds_bitcast = name == "ADD" and any(
                    name_of(c) == "BITCAST"
                    for o in op.outputs for c in consumers.get(int(o), []))
                for position, i in enumerate(int(i) for i in op.inputs):
                    if i < 0:
                        continue
                    if not reader.data(tensors[i]):
                        stack.append(i)
                        continue
                    packed = (feeds_bitcast or (
                        name in ("RIGHT_SHIFT", "GATHER") and position == 0))
                    if packed and is_const(i, schema.TensorType.INT32):
                        size = len(reader.data(tensors[i])) // 4
                        if best is None or size > best[1]:
                            best = (i, size)
            return best

        def codebook_of(t):
            if is_const(t, schema.TensorType.FLOAT32):
                return t
            # Or a per-byte table GATHERed from it (not a decoded kernel:
            # the table's positions do not come from packed words).
            op = producer.get(t)
            if op is not None and name_of(op) == "GATHER" and words_of(
                    int(op.inputs[1])) is None:
                table = int(op.inputs[0])
                if is_const(table, schema.TensorType.FLOAT32):
                    return table
            return None

        for op in ops:
            if name_of(op) != "GATHER":
                continue
            out = int(op.outputs[0])
            if tensors[out].type != schema.TensorType.FLOAT32:
                continue
            codebook = codebook_of(int(op.inputs[0]))
            if codebook is None or reader.data(tensors[int(op.inputs[1])]):
                continue
            words = words_of(int(op.inputs[1]))
            if words is None:
                continue
            # Follow reshapes and the slice that drops padding indices.
            while True:
                nxt = consumers.get(out, [])
                if len(nxt) == 1 and name_of(nxt[0]) in (
                        "RESHAPE", "STRIDED_SLICE") and int(
                            nxt[0].inputs[0]) == out:
                    out = int(nxt[0].outputs[0])
                else:
                    break
            shape = [int(d) for d in (tensors[out].shape if tensors[
                out].shape is not None else [])]
            weights = int(np.prod(shape)) if shape and min(shape) > 0 else 0
            found.append(PackedKernelInfo(
                subgraph=s, name=reader.name(tensors[words[0]]),
                weights=weights, words=words[1],
                codebook_entries=len(reader.data(tensors[codebook])) // 4))
    return found


def _tflite_bytes(path_or_bytes, what):
    """The bytes of a `.tflite` file given as a path or as bytes, verified.

    Returns `(data, source)`: the bytes and how to name them in errors. A
    file with an lc_keras checksum record is verified (`_check_integrity`).
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, source = bytes(path_or_bytes), "The given .tflite bytes"
    else:
        try:
            path = os.fspath(path_or_bytes)
        except TypeError:
            raise TypeError(
                f"{what} expects a `.tflite` path or its bytes. Received: "
                f"{path_or_bytes!r} of type {type(path_or_bytes).__name__}"
            ) from None
        with open(path, "rb") as f:
            data = f.read()
        source = f"The file {path!r}"
    _check_integrity(data, source)
    return data, source


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------

CHECKSUM_METADATA = "lc_keras_checksums"
_CHECKSUM_MARK = b'{"lc_keras_checksums": 1, "file_crc32": "'
_CRC_PLACEHOLDER = b"00000000"
_SIZE_WIDTH = 14


class _AlignedBuffer:
    """Packs a buffer's bytes 16-byte aligned, as the TFLite converter does.

    (The generated `BufferT.Pack` aligns byte vectors to 1 only.)
    """

    def __init__(self, schema, data):
        self.schema = schema
        self.data = data

    def Pack(self, builder):  # noqa: N802 (flatbuffers object API)
        schema = self.schema
        offset = None
        if self.data:
            size = len(self.data)
            builder.StartVector(1, size, 16)
            builder.head -= size
            builder.Bytes[builder.head:builder.head + size] = self.data
            builder.vectorNumElems = size
            offset = builder.EndVector()
        schema.BufferStart(builder)
        if offset is not None:
            schema.BufferAddData(builder, offset)
        return schema.BufferEnd(builder)


def _pack(schema, model, buffers):
    """Serializes a `ModelT` with `buffers` (a list of bytes)."""
    model.buffers = [_AlignedBuffer(schema, b) for b in buffers]
    builder = flatbuffers.Builder(sum(len(b) for b in buffers) + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _add_checksums(data, plans):
    """`data` with the `lc_keras_checksums` metadata entry added.

    The entry (JSON) lists, per kernel, the buffers holding its packed words
    and its codebook with their CRC32, the file's size, and the CRC32 of the
    whole file computed with the entry's own CRC field set to zeros.
    """
    reader = _Model(data)
    schema = reader.schema
    buffers = list(reader.buffers)
    kernels = []
    for plan in plans:
        entry = {"kernel": plan.key, "layer": plan.q.layer_name}
        for part, content in (
                ("words", plan.words.astype("<i4").tobytes()),
                ("codebook", plan.q.codebook.reshape(-1).astype(
                    "<f4").tobytes())):
            found = [i for i, b in enumerate(buffers) if b == content]
            if not found:
                raise ValueError(
                    f"The TFLite file does not store the {part} of kernel "
                    f"'{plan.key}' (layer '{plan.q.layer_name}') as a "
                    "constant; it cannot be checksummed.")
            entry[part] = {"buffers": found, "crc32": zlib.crc32(content)}
        kernels.append(entry)

    def record(size):
        text = json.dumps({"kernels": kernels}, sort_keys=True)[1:]
        return (_CHECKSUM_MARK + _CRC_PLACEHOLDER + b'", "file_bytes": '
                + str(size).rjust(_SIZE_WIDTH).encode() + b", "
                + text.encode("utf-8"))

    model = reader.model
    metadata = schema.MetadataT()
    metadata.name = CHECKSUM_METADATA
    metadata.buffer = len(buffers)
    model.metadata = list(model.metadata or []) + [metadata]
    placeholder = record(0)
    out = _pack(schema, model, buffers + [placeholder])
    start = out.find(placeholder)
    out = out[:start] + record(len(out)) + out[start + len(placeholder):]
    crc = f"{zlib.crc32(out):08x}".encode()
    at = start + len(_CHECKSUM_MARK)
    return out[:at] + crc + out[at + len(crc):]


def _check_integrity(data, source):
    """Verifies the `lc_keras_checksums` record of a file, if it has one.

    Returns:
        The record (a dict), or None for a file without one.

    Raises:
        ValueError: naming the kernel whose packed words or codebook changed,
            or saying that the file is truncated or corrupt.
    """
    start = data.find(_CHECKSUM_MARK)
    if start < 0:
        if CHECKSUM_METADATA.encode() in data:  # the record's start changed
            raise ValueError(
                f"{source} is truncated or corrupt: its lc_keras checksum "
                "record cannot be read. Export it again.")
        return None
    try:
        record, _ = json.JSONDecoder().raw_decode(
            data[start:].decode("latin-1"))
        expected_crc = int(record["file_crc32"], 16)
        size = int(record["file_bytes"])
        kernels = [(str(k["kernel"]), str(k["layer"]),
                    {part: ([int(i) for i in k[part]["buffers"]],
                            int(k[part]["crc32"]))
                     for part in ("words", "codebook")})
                   for k in record["kernels"]]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{source} is truncated or corrupt: its lc_keras checksum record "
            f"cannot be read ({type(error).__name__}). Export it again."
        ) from None
    if size != len(data):
        raise ValueError(
            f"{source} is truncated or corrupt: it has {len(data)} bytes, "
            f"but {size} were written by export_tflite.")
    at = start + len(_CHECKSUM_MARK)
    blank = data[:at] + _CRC_PLACEHOLDER + data[at + len(_CRC_PLACEHOLDER):]
    if zlib.crc32(blank) == expected_crc:
        return record
    try:
        buffers = _Model(data).buffers
    except ValueError:
        buffers = None
    for kernel, layer, parts in kernels:
        for part, (indices, crc) in parts.items():
            if buffers is None or any(
                    i >= len(buffers) or zlib.crc32(buffers[i]) != crc
                    for i in indices):
                what = ("packed indices" if part == "words" else "codebook")
                if buffers is None:
                    break
                raise ValueError(
                    f"{source} is truncated or corrupt: the {what} of kernel "
                    f"'{kernel}' (layer '{layer}') do not match their CRC32 "
                    "checksum. Export it again.")
    raise ValueError(
        f"{source} is truncated or corrupt: its CRC32 checksum does not "
        "match its content (the change is outside the packed indices and "
        "codebooks: in the graph, the float constants or the checksum "
        "record). Export it again.")


def _readable(function, source):
    """Runs `function()`; a malformed flatbuffer becomes a ValueError."""
    try:
        return function()
    except (IndexError, KeyError, TypeError, AttributeError, struct.error,
            UnicodeDecodeError, OverflowError) as error:
        raise ValueError(
            f"{source} is not a valid TFLite file: truncated or corrupt "
            f"({type(error).__name__}: {error}).") from None


def inspect_tflite(path_or_bytes):
    """Reads the ops, tensors and packed kernels of a `.tflite` file.

    Args:
        path_or_bytes: Path of a `.tflite` file, or its bytes.

    Returns:
        A `TFLiteSummary`.

    Example:

    >>> import tensorflow as tf
    >>> f = tf.function(lambda x: x + 1.0,
    ...                 input_signature=[tf.TensorSpec([None, 2])])
    >>> data = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [f.get_concrete_function()], f).convert()
    >>> [name for _, name in inspect_tflite(data).ops]
    ['ADD']
    """
    data, source = _tflite_bytes(path_or_bytes, "inspect_tflite")
    return _readable(lambda: _summary(data, source), source)


def _summary(data, source):
    reader = _Model(data)
    ops, tensors = [], []
    for s, subgraph in enumerate(reader.model.subgraphs or []):
        for op in subgraph.operators or []:
            ops.append((s, reader.op_name(op.opcodeIndex)))
        for i, t in enumerate(subgraph.tensors or []):
            shape = tuple(int(d) for d in (
                t.shapeSignature if t.shapeSignature is not None and len(
                    t.shapeSignature) else (t.shape if t.shape is not None
                                            else ())))
            tensors.append(TensorInfo(
                subgraph=s, index=i, name=reader.name(t),
                dtype=reader.type_names.get(t.type, str(t.type)),
                shape=shape, data_bytes=len(reader.data(t))))
    packed = tuple(_find_packed(reader))
    _require_checksums(reader, packed, source)
    return TFLiteSummary(size_bytes=len(data), ops=tuple(ops),
                         tensors=tuple(tensors), packed_kernels=packed)


def _require_checksums(reader, packed, source):
    """Refuses packed kernels in a file without an lc_keras checksum."""
    names = [reader.name(m) for m in reader.model.metadata or []]
    if packed and CHECKSUM_METADATA not in names:
        raise ValueError(
            f"{source} has packed kernels (e.g. '{packed[0].name}') but no "
            f"'{CHECKSUM_METADATA}' record: it is corrupt, or was written "
            "by an lc_keras without checksums. Export it again.")


def _verify(data, plans):
    """Checks the converted bytes; raises ValueError naming the layer."""
    reader = _Model(data)
    custom = sorted({
        reader.op_name(op.opcodeIndex)
        for subgraph in reader.model.subgraphs or []
        for op in subgraph.operators or []
        if reader.op_name(op.opcodeIndex).startswith("CUSTOM")})
    if custom:
        raise ValueError(
            f"The converted model contains non-builtin ops {custom}; "
            "export_tflite allows builtin TFLite ops only.")
    schema = reader.schema
    int32_buffers, float_buffers = set(), {}
    for subgraph in reader.model.subgraphs or []:
        for t in subgraph.tensors or []:
            chunk = reader.data(t)
            if not chunk:
                continue
            if t.type == schema.TensorType.INT32:
                int32_buffers.add(chunk)
            elif t.type == schema.TensorType.FLOAT32:
                float_buffers.setdefault(len(chunk), set()).add(chunk)
    # Float constants assigned to variables (the initial value of a cache).
    assigned_shapes = set()
    for subgraph in reader.model.subgraphs or []:
        tensors = subgraph.tensors or []
        for op in subgraph.operators or []:
            if reader.op_name(op.opcodeIndex) != "ASSIGN_VARIABLE":
                continue
            value = tensors[int(op.inputs[1])]
            if value.type == schema.TensorType.FLOAT32 and reader.data(value):
                assigned_shapes.add(tuple(int(d) for d in value.shape))
    for plan in plans:
        where = (f"layer '{plan.q.layer_name}' (kernel '{plan.key}', "
                 f"{plan.q.size} weights, k={plan.q.k})")
        if plan.tflite_shape in assigned_shapes:
            raise ValueError(
                f"The TFLite file stores an initial float value for the cache "
                f"of {where}: the cached layout would not be small.")
        expected = plan.words.astype("<i4").tobytes()
        if expected not in int32_buffers:
            raise ValueError(
                f"The TFLite file does not store {where} as "
                f"{plan.words.size} packed int32 words ({len(expected)} "
                "bytes): the converter folded its decoding back into a float "
                "kernel or changed the words.")
        values = plan.q.values()
        candidates = float_buffers.get(values.size * 4, ())
        if candidates:
            as_float = {values.astype("<f4").tobytes(),
                        plan.to_tflite(values).astype("<f4").tobytes()}
            if as_float & set(candidates):
                raise ValueError(
                    f"The TFLite file also stores {where} as a float kernel: "
                    "the converter folded its decoding.")


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _check_path(path):
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"export_tflite expects a file path. Received: path={path!r}"
        ) from None
    if not str(path).endswith(".tflite"):
        raise ValueError(
            "export_tflite writes a `.tflite` file; the path must end in "
            f"'.tflite'. Received: path={path!r}")
    try:
        files.check_writable(path, "export_tflite")
    except OSError as error:
        raise ValueError(f"{error} Received: path={path!r}") from None
    return path


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


def export_quantized(keras_model, variables, state, path, *, layout="packed",
                     input_signature=None):
    """Exports a Keras model with quantized kernels to a small `.tflite`.

    The model runs as `keras_model(x, training=False)` with each kernel in
    `variables` replaced by its decoded `state` (codebook[indices]); every
    other variable is frozen at its current value.

    Args:
        keras_model: A built `keras.Model`.
        variables: `{key: keras.Variable}`, the compressed kernels of the
            model.
        state: `{key: QuantizedKernel}` with the same keys.
        path: Output path, ending in `.tflite`.
        layout: `"packed"` (decode every invoke) or `"cached"` (decode on
            the first invoke into float resource variables).
        input_signature: A `tf.TensorSpec` (or a list, one per input). By
            default taken from `keras_model.inputs`, else from its build
            config (float32).

    Returns:
        A `TFLiteExport` describing the file.

    Raises:
        ValueError: for a bad path, layout or state, or if the converted file
            does not store a kernel as packed int32 words.
        RuntimeError: if conversion with builtin ops fails.

    Example:

    >>> import keras, numpy as np, os, tempfile
    >>> from lc_keras.quantized import QuantizedKernel
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> kernel = net.layers[0].kernel
    >>> q = QuantizedKernel(
    ...     name="k", layer_name="dense", attribute="kernel",
    ...     kind="BinaryQuantization",
    ...     codebook=np.array([-1.0, 1.0], np.float32),
    ...     indices=np.random.randint(0, 2, (8, 4)))
    >>> out = os.path.join(tempfile.mkdtemp(), "net.tflite")
    >>> info = export_quantized(net, {"k": kernel}, {"k": q}, out)
    >>> info.kernels[0].words, info.index_bytes
    (1, 4)
    """
    if layout not in LAYOUTS:
        raise ValueError(
            f"export_tflite supports layout in {LAYOUTS}. Received: "
            f"layout={layout!r}")
    path = _check_path(path)
    if not isinstance(keras_model, keras.Model):
        raise TypeError(
            "export_tflite expects a keras.Model. Received: "
            f"{type(keras_model).__name__}")
    if not keras_model.built and not keras_model.variables:
        raise ValueError(
            f"Model '{keras_model.name}' is not built; build it (or call it "
            "on a batch) before exporting.")
    plans = _plan(keras_model, variables, state)
    for plan in plans:
        if plan.variable.dtype != "float32":
            raise ValueError(
                "export_tflite writes float32 models (TFLite's builtin ops "
                "compute in float32); mixed-precision policies are fine, but "
                f"layer '{plan.q.layer_name}' has a {plan.variable.dtype} "
                f"kernel. Received: kernel '{plan.key}' of dtype "
                f"{plan.variable.dtype}. Build the model with float32 or a "
                "mixed policy.")
    signature = _input_signature(keras_model, input_signature)
    with _float32_compute(keras_model):
        module, concrete = _trace(keras_model, plans, signature,
                                  cached=(layout == "cached"))
    data = _convert(module, concrete)
    _verify(data, plans)
    data = _add_checksums(data, plans)
    _verify(data, plans)  # the repacked file too
    files.atomic_write_bytes(path, data)
    result = TFLiteExport(path=path, layout=layout, size_bytes=len(data),
                          kernels=tuple(p.exported() for p in plans))
    logging.info(
        "Wrote %s (%d bytes, layout=%s): %d kernels, %d bytes of packed "
        "indices, %d bytes of codebooks.", path, len(data), layout,
        len(plans), result.index_bytes, result.codebook_bytes)
    return result


def export_tflite(model, path, *, layout="packed", input_signature=None):
    """Exports a trained `LCModel` to a `.tflite` file of packed indices.

    Each compressed kernel is stored as its codebook indices, `ceil(log2 K)`
    bits each, packed into int32 words, plus its float32 codebook (per
    layer, shared or per channel), and decoded in the graph with builtin ops
    only. The file is checked after conversion and written atomically.

    Args:
        model: An `LCModel` that ran at least one C step (also after loading
            it from a `.keras` file).
        path: Output path, ending in `.tflite`.
        layout: `"packed"` decodes the kernels on every invoke; `"cached"`
            decodes them on the first invoke into float resource variables
            and reuses them (faster; ~2.5 KB larger file; the float kernels
            stay in memory).
        input_signature: Optional `tf.TensorSpec` (or list) for models whose
            inputs cannot be inferred.

    Returns:
        A `TFLiteExport` (path, size, per-kernel storage).

    Raises:
        ValueError: path not ending in `.tflite`, unknown layout, no C step
            yet, or a kernel not stored as packed words.

    Example:

    >>> import keras, numpy as np, os, tempfile, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    >>> _ = model.direct_compression()
    >>> out = os.path.join(tempfile.mkdtemp(), "net.tflite")
    >>> info = export_tflite(model, out)
    >>> info.kernels[0].bits, info.kernels[0].words
    (1, 1)
    """
    if layout not in LAYOUTS:
        raise ValueError(
            f"export_tflite supports layout in {LAYOUTS}. Received: "
            f"layout={layout!r}")
    _check_path(path)
    for method in ("compression_state", "compressed_variables"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                "export_tflite expects an LCModel (with compression_state() "
                "and compressed_variables()); use export_quantized for a "
                f"plain Keras model. Received: {type(model).__name__}")
    return export_quantized(
        model, model.compressed_variables(), model.compression_state(), path,
        layout=layout, input_signature=input_signature)
