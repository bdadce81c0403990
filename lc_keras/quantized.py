"""The one result type of a C step: `QuantizedKernel`.

A C step turns a float kernel into a codebook and integer indices. The same
object flows from the C step to `LCModel.compression_state()`, the summary and
the TFLite exporter, so every consumer reads the same numbers.
"""

import dataclasses
import math

import numpy as np

#: Most entries a codebook may have (indices fit in 16 bits).
MAX_ENTRIES = 1 << 16


def channel_rows(shape, channel_axes):
    """The codebook row of each weight of a kernel, broadcastable to it.

    Per-channel codebooks number their rows by the row-major flattened
    index over `channel_axes`; this is the one place that numbering is
    written (the C step, `QuantizedKernel` and the exporter use it).

    Args:
        shape: The kernel's shape.
        channel_axes: The axes that select the row (`()` for one row).

    Returns:
        An int32 array with `shape`'s rank, of size 1 along every axis not in
        `channel_axes`: broadcast it against the kernel.

    Example:

    >>> channel_rows((2, 3), (1,)).tolist()
    [[0, 1, 2]]
    >>> channel_rows((2, 3), ()).tolist()
    [[0]]
    """
    shape = tuple(int(d) for d in shape)
    reduced = [shape[a] if a in channel_axes else 1 for a in range(len(shape))]
    grids = np.indices(reduced)
    rows = np.zeros(reduced, np.int64)
    for axis in channel_axes:
        rows = rows * shape[axis] + grids[axis]
    return rows.astype(np.int32)


def bits_for(k):
    """Bits needed to store one index into a codebook of `k` entries.

    Args:
        k: Number of codebook entries (>= 1).

    Returns:
        `ceil(log2(k))`, and 1 for `k <= 2`.

    Example:

    >>> bits_for(2), bits_for(3), bits_for(16), bits_for(256)
    (1, 2, 4, 8)
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"bits_for requires k >= 1. Received: k={k}")
    return max(1, math.ceil(math.log2(k)))


@dataclasses.dataclass(frozen=True)
class QuantizedKernel:
    """A compressed kernel: codebook, integer indices and layout.

    Attributes:
        name: Name of the kernel in its model, `"<layer path>/<attribute>"`
            (e.g. `"dense_1/kernel"`, or `"encoder/dense/kernel"` inside a
            nested model); the key under which `LCModel.compression_state()`
            returns it.
        layer_name: Name of the layer that owns the kernel.
        attribute: Attribute of the layer holding the kernel (`"kernel"`,
            `"depthwise_kernel"`, `"pointwise_kernel"` or `"embeddings"`).
        kind: Codebook type, the registered class name of the codebook
            (e.g. `"AdaptiveQuantization"`).
        codebook: float32 array of shape `(groups, k)`. `groups` is 1 for a
            per-layer (or shared) codebook and the number of output channels
            for a per-channel codebook. Entries are sorted ascending per row.
        indices: int32 array of the kernel's shape, values in `[0, k)`.
        channel_axes: Axes of the kernel whose (row-major) flattened index
            selects the codebook row, or `()` when `groups == 1`.
        group: Name of the codebook group. Kernels that share one codebook
            have the same `group`; otherwise it equals `name`.
        layer_type: The Keras layer class of the owning layer, of those
            `lc_keras.compressible_kernels` knows (e.g. `"Dense"`, also for a
            subclass of Dense); the exporter lays the kernel out by it.
            `""` when unknown.

    Example:

    >>> import numpy as np
    >>> q = QuantizedKernel(
    ...     name="dense/kernel", layer_name="dense", attribute="kernel",
    ...     kind="BinaryQuantization",
    ...     codebook=np.array([[-1.0, 1.0]], np.float32),
    ...     indices=np.array([[0, 1], [1, 1]], np.int32))
    >>> q.values().tolist()
    [[-1.0, 1.0], [1.0, 1.0]]
    >>> q.k, q.bits_per_weight, q.index_bytes
    (2, 1, 4)
    """

    name: str
    layer_name: str
    attribute: str
    kind: str
    codebook: np.ndarray
    indices: np.ndarray
    channel_axes: tuple = ()
    group: str = ""
    layer_type: str = ""

    def __post_init__(self):
        codebook = np.asarray(self.codebook, dtype=np.float32)
        if codebook.ndim == 1:
            codebook = codebook[None, :]
        if codebook.ndim != 2:
            raise ValueError(
                "QuantizedKernel requires a codebook of shape (groups, k). "
                f"Received: codebook.shape={codebook.shape}"
            )
        indices = np.asarray(self.indices, dtype=np.int32)
        object.__setattr__(self, "codebook", codebook)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "channel_axes", tuple(self.channel_axes))
        if not self.group:
            object.__setattr__(self, "group", self.name)
        if self.groups != self._channels():
            raise ValueError(
                f"QuantizedKernel '{self.name}' has {self.groups} codebook "
                f"rows but {self._channels()} channels along axes "
                f"{self.channel_axes} of shape {self.shape}."
            )

    def _channels(self):
        return int(np.prod([self.shape[a] for a in self.channel_axes]))

    @property
    def shape(self):
        """Shape of the kernel (tuple of ints)."""
        return tuple(self.indices.shape)

    @property
    def size(self):
        """Number of weights in the kernel."""
        return int(self.indices.size)

    @property
    def groups(self):
        """Number of codebook rows (1, or the number of channels)."""
        return int(self.codebook.shape[0])

    @property
    def k(self):
        """Number of codebook entries per row."""
        return int(self.codebook.shape[1])

    @property
    def per_channel(self):
        """Whether each output channel has its own codebook."""
        return bool(self.channel_axes)

    @property
    def bits_per_weight(self):
        """Bits of one stored index: `ceil(log2(k))`."""
        return bits_for(self.k)

    @property
    def index_bytes(self):
        """Bytes of the indices packed into int32 words."""
        return math.ceil(self.size * self.bits_per_weight / 32) * 4

    @property
    def codebook_bytes(self):
        """Bytes of the float32 codebook (counted once per shared group)."""
        return int(self.codebook.size) * 4

    def channel_index(self):
        """Codebook row of every weight, an int array of the kernel's shape."""
        return np.broadcast_to(channel_rows(self.shape, self.channel_axes),
                               self.shape)

    def values(self):
        """The quantized kernel Δ(Θ) as a float32 array of the kernel's shape."""
        return self.codebook[self.channel_index(), self.indices]
