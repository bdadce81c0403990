"""What an `LCModel` stores: per-kernel profiles, totals and a table.

`profile(model)` returns the numbers as data (`ModelProfile`, made of one
`LayerProfile` per compressed kernel and one `FloatWeightProfile` per weight
left in float); `summary(model)` renders them as a table.

Byte counts are those of the stored model, the ones `export_tflite` writes:
a compressed kernel of P weights and K codebook entries stores its indices in
`ceil(P·⌈log₂K⌉ / 32)` int32 words (`QuantizedKernel.index_bytes`) plus a
float32 codebook of `groups·K` entries (`QuantizedKernel.codebook_bytes`); a
codebook shared by several kernels is stored, and counted, once. Every other
weight (biases, normalisation) is stored at its own precision (float32: 4
bytes).

`compression_ratio(model)` is the paper's ρ, which counts bits exactly
(⌈log₂K⌉·P + 32·K per kernel, 32 per float weight) rather than whole int32
words; `ModelProfile.paper_ratio` is the same number and `ModelProfile.ratio`
the ratio of the stored bytes. They differ by at most a few bytes per kernel.
"""

import dataclasses

import numpy as np

from lc_keras import export
from lc_keras import spec as spec_lib
from lc_keras.file_bytes import file_bytes

# ---------------------------------------------------------------------------
# The paper's compression ratio
# ---------------------------------------------------------------------------


def compression_ratio(model):
    """The compression ratio ρ of an `LCModel` after a C step.

    ρ = 32·(compressed weights + float weights) /
    (Σ_kernels ⌈log₂K⌉·P + Σ_codebooks 32·K·rows + 32·float weights):
    `profile(model).paper_ratio`.

    Args:
        model: An `LCModel` that has run at least one C step.

    Returns:
        ρ as a float.

    Example:

    >>> import keras, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((784,)),
    ...     keras.layers.Dense(300), keras.layers.Dense(100),
    ...     keras.layers.Dense(10)])
    >>> model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    >>> _ = model.direct_compression()
    >>> round(compression_ratio(model), 1)
    30.5
    """
    return profile(model).paper_ratio


# ---------------------------------------------------------------------------
# Profiles (data)
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """One compressed kernel: its codebook, distortion and stored bytes.

    Attributes:
        name: Kernel path, the key of `LCModel.compression_state()` (e.g.
            `"dense_1/kernel"`).
        layer: Name of the layer that owns the kernel.
        shape: Kernel shape (tuple of ints).
        weights: Number of weights P.
        kind: Codebook type (e.g. `"AdaptiveQuantization"`).
        k: Codebook entries K (per row).
        bits_per_weight: Bits of one stored index, ⌈log₂K⌉.
        codebook: float32 array `(groups, k)`, the codebook values (one row
            per output channel when `per_channel`).
        distortion: ‖w − Δ(Θ)‖² of the kernel (continuous weights against
            the quantized ones).
        index_bytes: Bytes of the packed indices, `ceil(P·bits/32)·4`.
        codebook_bytes: Bytes of the float32 codebook charged to this row:
            `4·groups·K`, or 0 when the codebook is shared and already counted
            on the first kernel of its group (see `codebook_counted`).
        per_channel: Whether each output channel has its own codebook row.
        group: Codebook group (kernels sharing a codebook have the same one).
        shared: Whether other kernels share this codebook.
        codebook_counted: Whether this row carries the bytes of the codebook
            (True except for the second and later kernels of a shared group).
        dtype_bytes: Bytes of one weight of the float kernel (4 for float32).

    Example:

    >>> import numpy as np
    >>> p = LayerProfile(
    ...     name="d/kernel", layer="d", shape=(4, 8), weights=32,
    ...     kind="BinaryQuantization", k=2, bits_per_weight=1,
    ...     codebook=np.array([[-1.0, 1.0]], np.float32), distortion=0.5,
    ...     index_bytes=4, codebook_bytes=8, per_channel=False,
    ...     group="d/kernel")
    >>> p.stored_bytes, p.reference_bytes
    (12, 128)
    """

    name: str
    layer: str
    shape: tuple
    weights: int
    kind: str
    k: int
    bits_per_weight: int
    codebook: np.ndarray = dataclasses.field(compare=False, repr=False)
    distortion: float
    index_bytes: int
    codebook_bytes: int
    per_channel: bool
    group: str
    shared: bool = False
    codebook_counted: bool = True
    dtype_bytes: int = 4

    @property
    def stored_bytes(self):
        """Index bytes plus the codebook bytes charged to this row."""
        return self.index_bytes + self.codebook_bytes

    @property
    def reference_bytes(self):
        """Bytes of the same kernel in float: `weights·dtype_bytes`."""
        return self.weights * self.dtype_bytes

    @property
    def groups(self):
        """Codebook rows (1, or the number of output channels)."""
        return int(self.codebook.shape[0])


@dataclasses.dataclass(frozen=True)
class FloatWeightProfile:
    """A weight left in float (bias, normalisation, uncompressed kernel).

    Attributes:
        name: `"<layer path>/<variable name>"` (e.g. `"dense_1/bias"`).
        layer: Name of the layer that owns it.
        shape: Shape (tuple of ints).
        weights: Number of values.
        dtype: Data type name (e.g. `"float32"`).
        bytes: Stored bytes, `weights` times the size of `dtype`.

    Example:

    >>> FloatWeightProfile("d/bias", "d", (8,), 8, "float32", 32).bytes
    32
    """

    name: str
    layer: str
    shape: tuple
    weights: int
    dtype: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """Compressed kernels, float weights and totals of an `LCModel`.

    Attributes:
        name: Name of the model.
        layers: One `LayerProfile` per compressed kernel, in layer order.
        float_weights: One `FloatWeightProfile` per weight left in float.
        c_steps: C steps run so far (direct compression counts as 1).
        mu: The current penalty parameter μ.
        layout: The export layout measured (`profile(model, layout=...)`),
            or None.
        file: The `lc_keras.file_bytes.FileBytes` of the file
            `export_tflite` writes with that layout, or None.

    Example:

    >>> import keras, lc_keras as lc
    >>> from lc_keras.summary import profile
    >>> net = keras.Sequential([keras.Input((64,)),
    ...     keras.layers.Dense(32), keras.layers.Dense(10)])
    >>> model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    >>> _ = model.direct_compression()
    >>> p = profile(model)
    >>> p.compressed_weights, p.float_weight_count
    (2368, 42)
    >>> p.index_bytes, p.codebook_bytes, p.float_bytes
    (296, 16, 168)
    >>> p.reference_bytes, p.compressed_bytes, round(p.ratio, 2)
    (9640, 480, 20.08)
    """

    name: str
    layers: tuple
    float_weights: tuple
    c_steps: int = 0
    mu: float = 0.0
    layout: str = None
    file: object = dataclasses.field(default=None, compare=False)

    @property
    def compressed_weights(self):
        """Number of weights in compressed kernels."""
        return sum(p.weights for p in self.layers)

    @property
    def float_weight_count(self):
        """Number of weights left in float."""
        return sum(p.weights for p in self.float_weights)

    @property
    def large_float_weights(self):
        """The float weights of more than 1 % of all weights (the ones
        `LCModel` warns about when it is built)."""
        return tuple(f for f in self.float_weights
                     if f.weights > spec_lib.LARGE_FLOAT_SHARE
                     * self.total_weights)

    @property
    def total_weights(self):
        """All weights of the model (compressed and float)."""
        return self.compressed_weights + self.float_weight_count

    @property
    def index_bytes(self):
        """Bytes of all packed indices."""
        return sum(p.index_bytes for p in self.layers)

    @property
    def codebook_bytes(self):
        """Bytes of all codebooks, a shared codebook counted once."""
        return sum(p.codebook_bytes for p in self.layers)

    @property
    def float_bytes(self):
        """Bytes of the weights left in float."""
        return sum(p.bytes for p in self.float_weights)

    @property
    def reference_bytes(self):
        """Size of the model with every weight in float (the "float size")."""
        return sum(p.reference_bytes for p in self.layers) + self.float_bytes

    @property
    def compressed_bytes(self):
        """Size of the stored compressed model: indices, codebooks, floats."""
        return self.index_bytes + self.codebook_bytes + self.float_bytes

    @property
    def ratio(self):
        """ρ of the stored bytes: `reference_bytes / compressed_bytes`."""
        return self.reference_bytes / max(self.compressed_bytes, 1)

    @property
    def paper_ratio(self):
        """The paper's ρ (exact bits per kernel); equals `compression_ratio`.

        32·(all weights) / (Σ ⌈log₂K⌉·P + 32·codebook entries + 32·float
        weights), counting every float weight as 32 bits.
        """
        bits = sum(p.weights * p.bits_per_weight for p in self.layers)
        bits += 8 * self.codebook_bytes + 32 * self.float_weight_count
        return 32.0 * self.total_weights / max(bits, 1)

    def layer(self, name):
        """The `LayerProfile` of a kernel path or layer name.

        Args:
            name: A kernel path (`"dense_1/kernel"`) or a layer name.

        Returns:
            The matching `LayerProfile`.

        Raises:
            KeyError: if no compressed kernel matches, or a layer name matches
                several kernels.
        """
        exact = [p for p in self.layers if p.name == name]
        if exact:
            return exact[0]
        by_layer = [p for p in self.layers if p.layer == name]
        if len(by_layer) == 1:
            return by_layer[0]
        if by_layer:
            raise KeyError(
                f"Layer '{name}' has several compressed kernels: "
                f"{[p.name for p in by_layer]}; pass the kernel path.")
        raise KeyError(
            f"No compressed kernel '{name}'. Compressed kernels: "
            f"{[p.name for p in self.layers]}")


def _float_weights(model):
    """FloatWeightProfiles of every weight that is neither compressed nor LC
    state, named by the path of the innermost layer that owns it."""
    compressed = {id(v) for v in model.compressed_variables().values()}
    lc_state = {id(v) for v in model.lc_state.weights}
    root = model.net if model.net is not None else model
    owner = {}
    for layer, path, _ in spec_lib.owned_layers(root, skip=(model.lc_state,)):
        for v in spec_lib.own_weights(layer):
            owner.setdefault(id(v), (layer.name, f"{path}/{v.name}"))
    profiles = []
    for v in model.weights:
        if id(v) in compressed or id(v) in lc_state:
            continue
        layer, name = owner.get(id(v), ("", v.path))
        shape = tuple(int(d) for d in v.shape)
        size = int(np.prod(shape))
        dtype = np.dtype(str(v.dtype))
        profiles.append(FloatWeightProfile(
            name=name, layer=layer, shape=shape, weights=size,
            dtype=dtype.name, bytes=size * dtype.itemsize))
    return tuple(profiles)


def profile(model, layout=None, input_signature=None):
    """Measures what an `LCModel` stores, kernel by kernel.

    Args:
        model: An `LCModel` that has run at least one C step (also one loaded
            from a `.keras` file).
        layout: None, or `"packed"` / `"cached"`: also export the model to
            memory with that layout (the exporter's own code,
            `lc_keras.export.tflite_bytes`) and measure the file
            (`ModelProfile.file`: its parts sum to the size of the file
            `export_tflite` writes).
        input_signature: Passed to the exporter with `layout`.

    Returns:
        A `ModelProfile`.

    Raises:
        ValueError: if no C step has run yet (there are no codebooks).

    Example:

    >>> import keras, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((16,)),
    ...                         keras.layers.Dense(8, name="dense")])
    >>> model = lc.LCModel(net, compression=lc.TernaryQuantization())
    >>> _ = model.direct_compression()
    >>> p = profile(model)
    >>> [(l.name, l.k, l.bits_per_weight, l.index_bytes) for l in p.layers]
    [('dense/kernel', 3, 2, 32)]
    >>> [(f.name, f.bytes) for f in p.float_weights]
    [('dense/bias', 32)]
    """
    state = model.compression_state()
    distortions = model.distortions()
    variables = model.compressed_variables()
    members = {}
    for q in state.values():
        members.setdefault(q.group, []).append(q.name)
    layers = []
    for key, q in state.items():
        first = members[q.group][0] == key
        dtype = np.dtype(str(variables[key].dtype))
        layers.append(LayerProfile(
            name=key, layer=q.layer_name, shape=q.shape, weights=q.size,
            kind=q.kind, k=q.k, bits_per_weight=q.bits_per_weight,
            codebook=q.codebook.copy(), distortion=float(distortions[key]),
            index_bytes=q.index_bytes,
            codebook_bytes=q.codebook_bytes if first else 0,
            per_channel=q.per_channel, group=q.group,
            shared=len(members[q.group]) > 1, codebook_counted=first,
            dtype_bytes=dtype.itemsize))
    measured = None
    if layout is not None:
        measured = file_bytes(export.tflite_bytes(
            model, layout=layout, input_signature=input_signature))
    return ModelProfile(name=model.name, layers=tuple(layers),
                        float_weights=_float_weights(model),
                        c_steps=model.c_steps, mu=model.mu, layout=layout,
                        file=measured)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _num(value):
    return f"{value:.4g}"


def _values(codebook, max_values=4):
    """Abbreviated codebook: `[a, b, ..., z]`, plus the row count."""
    def row(r):
        r = [_num(float(v)) for v in r]
        if len(r) > max_values:
            r = r[:max_values - 1] + ["...", r[-1]]
        return "[" + ", ".join(r) + "]"

    codebook = np.asarray(codebook)
    text = row(codebook[0])
    if codebook.shape[0] > 1:
        text += f" +{codebook.shape[0] - 1} rows"
    return text


def _kind(p):
    kind = p.kind
    if kind.endswith("Quantization") and kind != "Quantization":
        kind = kind[:-len("Quantization")]
    if p.per_channel:
        kind += " per-channel"
    return kind


def _shape(shape):
    return str(tuple(int(d) for d in shape))


def _box(title, header, rows, footer, align):
    """A Larq-style box: a titled border, an optional header, rows, total."""
    table = ([header] if header else []) + rows + ([footer] if footer else [])
    widths = [max(len(r[i]) for r in table) for i in range(len(align))]

    def line(r):
        cells = [c.rjust(w) if a == ">" else c.ljust(w)
                 for c, w, a in zip(r, widths, align)]
        return "| " + "  ".join(cells) + " |"

    width = len(line(table[0])) - 2
    top = "+" + title + "-" * max(width - len(title), 0) + "+"
    rule = "+" + "-" * width + "+"
    out = [top]
    if header:
        out += [line(header), rule]
    out += [line(r) for r in rows]
    if footer:
        out += [rule, line(footer)]
    out.append(rule)
    return out


def _file_box(p):
    """The file's bytes, part by part, summing to its size."""
    f = p.file
    rows = [["Packed indices", "", f"{f.index_bytes:,}"],
            ["Codebooks", "", f"{f.codebook_bytes:,}"]]
    rows += [[c.name, f"{c.dtype} {_shape(c.shape)}", f"{c.bytes:,}"]
             for c in f.constants]
    rows += [[f"metadata {name}", "", f"{size:,}"]
             for name, size in f.metadata]
    rows.append(["Graph and padding", "", f"{f.graph_bytes:,}"])
    return _box(f"{p.name} file ({p.layout})", ["Part", "Tensor", "Bytes"],
                rows, ["Total (file size)", "", f"{f.size_bytes:,}"], "<<>")


def render(p, max_values=4):
    """Renders a `ModelProfile` as the lines of a table.

    Args:
        p: A `ModelProfile` (from `profile`).
        max_values: Codebook values shown per row before abbreviating.

    Returns:
        A list of strings, one per line.

    Example:

    >>> import numpy as np
    >>> row = LayerProfile(
    ...     name="d/kernel", layer="d", shape=(4, 8), weights=32,
    ...     kind="BinaryQuantization", k=2, bits_per_weight=1,
    ...     codebook=np.array([[-1.0, 1.0]], np.float32), distortion=0.5,
    ...     index_bytes=4, codebook_bytes=8, per_channel=False,
    ...     group="d/kernel")
    >>> lines = render(ModelProfile("net", (row,), ()))
    >>> print(lines[3])
    | d/kernel  (4, 8)        32  Binary     2     1  [-1, 1]          0.5        4           8 |
    """
    out = []
    header = ["Kernel", "Shape", "Weights", "Codebook", "K", "Bits",
              "Values", "Distortion", "Index B", "Codebook B"]
    rows = []
    shared_notes = {}
    for layer in p.layers:
        codebook_cell = f"{layer.codebook_bytes:,}"
        if layer.shared:
            shared_notes.setdefault(layer.group, []).append(layer.name)
            if not layer.codebook_counted:
                codebook_cell = "shared"
        rows.append([
            layer.name, _shape(layer.shape), f"{layer.weights:,}",
            _kind(layer), str(layer.k), str(layer.bits_per_weight),
            _values(layer.codebook, max_values), f"{layer.distortion:.3g}",
            f"{layer.index_bytes:,}", codebook_cell])
    footer = ["Total", "", f"{p.compressed_weights:,}", "", "", "", "", "",
              f"{p.index_bytes:,}", f"{p.codebook_bytes:,}"]
    out += _box(f"{p.name} compressed kernels", header, rows, footer,
                "<<><>><>>>")
    for group, names in shared_notes.items():
        out.append(f"Codebook '{group}' is shared by {', '.join(names)}; its "
                   f"bytes are counted once, on {names[0]}.")
    if p.float_weights:
        rows = [[f.name, _shape(f.shape), f"{f.weights:,}", f.dtype,
                 f"{f.bytes:,}"] for f in p.float_weights]
        footer = ["Total", "", f"{p.float_weight_count:,}", "",
                  f"{p.float_bytes:,}"]
        out += _box(f"{p.name} float weights",
                    ["Weight", "Shape", "Weights", "Dtype", "Bytes"], rows,
                    footer, "<<><>")
        large = p.large_float_weights
        if large:
            out.append(f"Float weights of more than 1% of the model's "
                       f"weights: {', '.join(f.name for f in large)}.")
    if p.file is not None:
        out += _file_box(p)
    rows = [
        ["Weights (compressed + float)",
         f"{p.total_weights:,} ({p.compressed_weights:,} + "
         f"{p.float_weight_count:,})"],
        ["Float size", f"{p.reference_bytes:,} B"],
        ["Compressed size",
         f"{p.compressed_bytes:,} B (indices {p.index_bytes:,} + codebooks "
         f"{p.codebook_bytes:,} + float {p.float_bytes:,})"],
        ["Compression ratio rho", f"{p.ratio:.2f} (paper's bit count: "
                                  f"{p.paper_ratio:.2f})"],
        ["C steps, mu", f"{p.c_steps}, {p.mu:.4g}"],
    ]
    if p.file is not None:
        rows.insert(3, [f"File size ({p.layout})",
                        f"{p.file.size_bytes:,} B"])
    out += _box(f"{p.name} summary", None, rows, None, "<<")
    return out


def summary(model, print_fn=print, max_values=4, layout=None):
    """Prints a table of what an `LCModel` stores, kernel by kernel.

    One row per compressed kernel (shape, weights, codebook type, K, bits per
    weight, abbreviated codebook values, distortion ‖w − Δ(Θ)‖², bytes of
    packed indices and of the codebook), one row per float weight with its
    bytes, and the totals: float size, compressed size, ρ. The numbers are
    those of `profile(model)`; the compressed-kernel bytes are what
    `export_tflite` stores.

    Args:
        model: An `LCModel` that has run at least one C step, or a
            `ModelProfile`.
        print_fn: Called with each line (default `print`).
        max_values: Codebook values shown per row before abbreviating.
        layout: None, or `"packed"` / `"cached"`: also list the bytes of
            the file `export_tflite` writes with that layout (`profile`).

    Returns:
        The `ModelProfile` that was rendered.

    Example:

    >>> import keras, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((16,)),
    ...                         keras.layers.Dense(8, name="dense")])
    >>> model = lc.LCModel(net, compression=lc.BinaryQuantization(),
    ...                    name="lc")
    >>> _ = model.direct_compression()
    >>> _ = summary(model)  # doctest: +ELLIPSIS
    +lc compressed kernels---...
    | Kernel        Shape    Weights  Codebook  K  Bits  Values   Distortion  Index B  Codebook B |
    ...
    | Compression ratio rho         ... |
    ...
    """
    p = model if isinstance(model, ModelProfile) else profile(
        model, layout=layout)
    for line in render(p, max_values=max_values):
        print_fn(line)
    return p
