"""Index packing and TFLite weight layouts (NumPy only).

Every compressed kernel is stored as its codebook indices, `ceil(log2 K)`
bits each, packed into int32 words: index `i` occupies bits
`[i*b, (i+1)*b)` of the little-endian bit stream formed by the words (bit
`j` of the stream is bit `j % 32` of word `j // 32`).

The indices are packed in TFLite's own kernel layout (`FULLY_CONNECTED`
`[out, in]`, `CONV_2D` OHWI, also for Conv1D, `TRANSPOSE_CONV`
`[out, H, W, in]`; `DEPTHWISE_CONV_2D`, Conv3D, EinsumDense and Embedding
keep the Keras layout), chosen from `QuantizedKernel.layer_type`. The
exporter's graph transposes them back to the Keras layout, and the converter
cancels that transpose against its own, so none runs at inference time.

`plan_kernel` computes everything the exporter stores for one kernel (its
layout, packed words and per-channel codebook row offsets), `ExportedKernel`
describes the result.
"""

import dataclasses

import numpy as np

from lc_keras.quantized import MAX_ENTRIES
from lc_keras.quantized import QuantizedKernel
from lc_keras.quantized import bits_for
from lc_keras.quantized import channel_rows


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
# Kernel layouts
# ---------------------------------------------------------------------------


def _out_first(ndim):
    """(..., out) -> (out, ...): Dense `[out, in]`, Conv2D OHWI."""
    return (ndim - 1,) + tuple(range(ndim - 1))


def _transposed(ndim):
    """Keras (*spatial, out, in) -> (out, *spatial, in)."""
    return (ndim - 2,) + tuple(range(ndim - 2)) + (ndim - 1,)


# layer_type -> function (attribute, ndim) -> (one_d, perm). Types not listed
# (DepthwiseConv*, Conv3D: TFLite CONV_3D keeps DHWIO, EinsumDense,
# Embedding, unknown "") keep the Keras layout.
_LAYOUTS = {
    "Dense": lambda attribute, ndim: (False, _out_first(ndim)),
    "Conv2D": lambda attribute, ndim: (False, _out_first(ndim)),
    "Conv1D": lambda attribute, ndim: (True, (3, 0, 1, 2)),
    "Conv1DTranspose": lambda attribute, ndim: (True, (2, 0, 1, 3)),
    "Conv2DTranspose": lambda attribute, ndim: (False, _transposed(ndim)),
    "Conv3DTranspose": lambda attribute, ndim: (False, _transposed(ndim)),
    "SeparableConv1D": lambda attribute, ndim: (
        (True, (3, 0, 1, 2)) if attribute == "pointwise_kernel"
        else (False, tuple(range(ndim)))),
    "SeparableConv2D": lambda attribute, ndim: (
        (False, (3, 0, 1, 2)) if attribute == "pointwise_kernel"
        else (False, tuple(range(ndim)))),
}


def tflite_layout(layer_type, attribute, ndim):
    """How TFLite stores a kernel: `(one_d, perm)`.

    `one_d` says a unit axis is added in front of the Keras kernel (1-D
    convolutions run as 2-D ones); `perm` then maps that kernel to TFLite's
    layout (`FULLY_CONNECTED` `[out, in]`, `CONV_2D` OHWI, `TRANSPOSE_CONV`
    `[out, H, W, in]`, `DEPTHWISE_CONV_2D` unchanged).

    This is only a performance choice: the exporter's graph transposes back,
    so any layout gives the same numbers, but this one lets the converter
    cancel the transposes, so none runs at inference time.

    Args:
        layer_type: Keras class name of the owning layer
            (`QuantizedKernel.layer_type`); `""` (unknown) keeps the Keras
            layout.
        attribute: The layer attribute holding the kernel (`"kernel"`,
            `"pointwise_kernel"`, ...).
        ndim: Rank of the Keras kernel.

    Returns:
        `(one_d, perm)`: a bool and a permutation of `ndim + one_d` axes.

    Example:

    >>> tflite_layout("Dense", "kernel", 2)
    (False, (1, 0))
    >>> tflite_layout("Conv1D", "kernel", 3)
    (True, (3, 0, 1, 2))
    >>> tflite_layout("", "kernel", 2)
    (False, (0, 1))
    """
    layout = _LAYOUTS.get(layer_type)
    if layout is None:
        return False, tuple(range(ndim))
    return layout(attribute, ndim)


# ---------------------------------------------------------------------------
# Plans and results
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
class KernelPlan:
    """Everything needed to store and decode one kernel.

    Attributes:
        key: Key of the kernel in the compression state.
        q: Its `QuantizedKernel`.
        one_d: Whether a unit axis is added in front (see `tflite_layout`).
        perm: Permutation from the (unit-extended) Keras layout to TFLite's.
        tflite_shape: Shape of the kernel in TFLite layout.
        bits: Bits per stored index.
        words: The packed int32 words of the indices in TFLite layout.
        offsets: int32 per-channel codebook row offsets (`row * k`) in
            TFLite layout, broadcastable to `tflite_shape`; None for one
            codebook row.
        codebook_key: `(group, codebook bytes)`: kernels with equal keys
            share one stored codebook.

    Example:

    >>> import numpy as np
    >>> from lc_keras.quantized import QuantizedKernel
    >>> q = QuantizedKernel("d/kernel", "d", "kernel", "x",
    ...                     np.array([-1.0, 1.0], np.float32),
    ...                     np.array([[0, 1, 1], [1, 0, 0]]),
    ...                     layer_type="Dense")
    >>> plan = plan_kernel("d/kernel", q)
    >>> plan.tflite_shape, plan.bits, plan.words.tolist()
    ((3, 2), 1, [22])
    """

    key: str
    q: QuantizedKernel
    one_d: bool
    perm: tuple
    tflite_shape: tuple
    bits: int
    words: np.ndarray
    offsets: np.ndarray
    codebook_key: tuple

    def to_tflite(self, array):
        """A Keras-layout array in TFLite layout.

        Args:
            array: An array of the kernel's Keras shape.

        Returns:
            The array transposed to `tflite_shape`.
        """
        shape = ((1,) if self.one_d else ()) + self.q.shape
        return np.transpose(np.reshape(array, shape), self.perm)

    def exported(self):
        """The `ExportedKernel` record of this plan."""
        return ExportedKernel(
            name=self.key, layer_name=self.q.layer_name, shape=self.q.shape,
            tflite_shape=self.tflite_shape, k=self.q.k, groups=self.q.groups,
            bits=self.bits, words=int(self.words.size), group=self.q.group)


def plan_kernel(key, q):
    """Lays out, checks and packs one quantized kernel.

    Args:
        key: Key of the kernel in the compression state (named in errors).
        q: Its `QuantizedKernel`.

    Returns:
        A `KernelPlan`.

    Raises:
        ValueError: if the codebook has more than
            `lc_keras.quantized.MAX_ENTRIES` entries or is not finite, or an
            index is outside `[0, k)`.

    Example:

    >>> import numpy as np
    >>> from lc_keras.quantized import QuantizedKernel
    >>> q = QuantizedKernel("d/kernel", "d", "kernel", "x",
    ...                     np.array([[-1.0, 1.0], [-2.0, 2.0]], np.float32),
    ...                     np.array([[0, 1], [1, 1], [1, 0]]),
    ...                     channel_axes=(1,), layer_type="Dense")
    >>> plan_kernel("d/kernel", q).offsets.tolist()  # rows in [out, in]
    [[0], [2]]
    """
    where = f"kernel '{key}' of layer '{q.layer_name}'"
    if q.k > MAX_ENTRIES:
        raise ValueError(
            f"The codebook of {where} has k={q.k} entries; export_tflite "
            f"supports at most {MAX_ENTRIES}.")
    if q.size and (q.indices.min() < 0 or q.indices.max() >= q.k):
        raise ValueError(
            f"The indices of {where} are outside [0, {q.k}): found "
            f"[{q.indices.min()}, {q.indices.max()}].")
    if not np.all(np.isfinite(q.codebook)):
        raise ValueError(f"The codebook of {where} is not finite.")
    one_d, perm = tflite_layout(q.layer_type, q.attribute, len(q.shape))
    unit = (1,) if one_d else ()
    shape = unit + q.shape
    offsets = None
    if q.groups > 1:
        rows = channel_rows(q.shape, q.channel_axes).astype(np.int64)
        offsets = np.transpose((rows * q.k).reshape(unit + rows.shape),
                               perm).astype(np.int32)
    bits = bits_for(q.k)
    return KernelPlan(
        key=key, q=q, one_d=one_d, perm=perm,
        tflite_shape=tuple(shape[a] for a in perm), bits=bits,
        words=pack_indices(np.transpose(q.indices.reshape(shape), perm),
                           bits),
        offsets=offsets, codebook_key=(q.group, q.codebook.tobytes()))
