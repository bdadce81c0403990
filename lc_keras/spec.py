"""Which kernels are compressed, and how: resolving a compression spec.

A spec is either one `Quantization` object (applied to every compressible
kernel) or a dict mapping keys to a `Quantization` or `None` (leave float).
Keys are layer names, layer paths, `"layer/attribute"` kernel names, glob
patterns over those (`"conv*"`), or layer classes (`keras.layers.Dense`).

When several entries match a kernel, the most specific one wins: an exact
name beats a glob pattern, which beats a class. Two entries of the same
specificity matching one kernel is an error, and so is an entry that matches
no compressible kernel.
"""

import dataclasses
import fnmatch

import keras

from lc_keras.codebooks import AdaptiveQuantization
from lc_keras.codebooks import Quantization


#: A float weight above this share of a model's weights is named (in a
#: warning when an LCModel is built, and in its summary).
LARGE_FLOAT_SHARE = 0.01


def _compressible_types():
    """(layer class, kernel attributes, channel-axes function) triples."""
    L = keras.layers

    def last(ndim):
        return (ndim - 1,)

    def transposed(ndim):
        return (ndim - 2,)

    def depthwise(ndim):
        return (ndim - 2, ndim - 1)

    return (
        (L.Dense, ("kernel",), last),
        (L.EinsumDense, ("kernel",), None),
        (L.Conv1DTranspose, ("kernel",), transposed),
        (L.Conv2DTranspose, ("kernel",), transposed),
        (L.Conv3DTranspose, ("kernel",), transposed),
        (L.Conv1D, ("kernel",), last),
        (L.Conv2D, ("kernel",), last),
        (L.Conv3D, ("kernel",), last),
        (L.DepthwiseConv1D, ("kernel",), depthwise),
        (L.DepthwiseConv2D, ("kernel",), depthwise),
        (
            L.SeparableConv1D,
            ("depthwise_kernel", "pointwise_kernel"),
            {"depthwise_kernel": depthwise, "pointwise_kernel": last},
        ),
        (
            L.SeparableConv2D,
            ("depthwise_kernel", "pointwise_kernel"),
            {"depthwise_kernel": depthwise, "pointwise_kernel": last},
        ),
        (L.Embedding, ("embeddings",), None),
    )


@dataclasses.dataclass
class KernelRef:
    """One compressible kernel of a model.

    Attributes:
        layer: The Keras layer that owns the kernel.
        layer_path: The layer's path from the root model, layer names joined
            by `/` (e.g. `"encoder/dense_1"` for a layer of a nested model).
        attribute: The layer attribute that holds it (e.g. `"kernel"`).
        variable: The `keras.Variable` itself.
        channel_axes: Output-channel axes of the kernel, or `None` when the
            layer has no output channels (Embedding, EinsumDense).
        layer_type: The Keras layer class the layer is an instance of, of
            those `compressible_kernels` knows (e.g. `"Dense"` for a
            subclass of Dense): what decides how the kernel is laid out; for
            other layers, the layer's own class name.
        ancestors: The layers (not models) that enclose `layer`, outermost
            first: e.g. the MultiHeadAttention of a query projection, or
            the LSTM of an LSTM cell. A spec key naming one of them, or of
            their class, matches the kernel.
    """

    layer: keras.layers.Layer
    layer_path: str
    attribute: str
    variable: keras.Variable
    channel_axes: tuple = None
    layer_type: str = ""
    ancestors: tuple = ()

    @property
    def path(self):
        """`"<layer_path>/<attribute>"`: the key of every per-kernel result.

        Unlike `variable.path`, it does not depend on the name of the root
        model, so it is the same after saving and loading.
        """
        return f"{self.layer_path}/{self.attribute}"

    @property
    def size(self):
        """Number of weights."""
        n = 1
        for d in self.variable.shape:
            n *= int(d)
        return n

    @property
    def channels(self):
        """Number of output channels (1 when the layer has none)."""
        n = 1
        for axis in self.channel_axes or ():
            n *= int(self.variable.shape[axis])
        return n

    def ancestor_names(self):
        """The names and paths of the enclosing layers (`ancestors`)."""
        parts = self.layer_path.split("/")
        n = len(self.ancestors)
        found = []
        for i, layer in enumerate(self.ancestors):
            found += [layer.name, "/".join(parts[:len(parts) - (n - i)])]
        return found

    def names(self):
        """The strings a spec key is matched against."""
        return (
            self.layer.name,
            self.layer_path,
            self.layer.path,
            f"{self.layer.name}/{self.attribute}",
            self.path,
            self.variable.path,
        )


@dataclasses.dataclass
class CompressionGroup:
    """Kernels that are projected together by one `Quantization`.

    A group holds one kernel, or several when the quantization is `shared`.

    Attributes:
        name: Group name (the kernel path, or `"shared:<key>"`).
        quantization: The `Quantization` (C step) of the group.
        kernels: The `KernelRef`s of the group.
    """

    name: str
    quantization: Quantization
    kernels: list

    @property
    def per_channel(self):
        """Whether the group keeps one codebook per output channel."""
        return bool(self.quantization.per_channel)


def _is_model_like(layer):
    return isinstance(getattr(layer, "layers", None), list)


def walk_layers(model, skip=()):
    """Yields `(layer, path)` for every layer of a model, depth-first.

    Nested models (anything with a `layers` list) are walked; a layer
    reached twice (shared) is yielded once. `path` joins the layer names
    from the root with `/` (e.g. `"encoder/dense_1"`). This is the one walk
    over a model's layers that spec resolution, the summary and the
    exporter share.

    Args:
        model: A `keras.Model` (or any layer with a `layers` list).
        skip: Layers to leave out, with everything below them.

    Yields:
        `(layer, path)` pairs, in layer order.

    Example:

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((4,)),
    ...                           keras.layers.Dense(3, name="d")],
    ...                          name="inner")
    >>> net = keras.Sequential([keras.Input((4,)), inner])
    >>> [path for _, path in walk_layers(net)]
    ['inner', 'inner/d']
    """
    skipped = {id(layer) for layer in skip}
    seen = set()
    stack = [(layer, "") for layer in reversed(model.layers)]
    while stack:
        layer, prefix = stack.pop()
        if id(layer) in seen or id(layer) in skipped:
            continue
        seen.add(id(layer))
        yield layer, prefix + layer.name
        if _is_model_like(layer):
            stack.extend((sub, f"{prefix}{layer.name}/")
                         for sub in reversed(layer.layers))


def _sublayers(layer):
    """The layers a (non-Model) layer holds in its attributes, in order.

    Keras tracks the layers a layer assigns to its attributes (directly or in
    a list, tuple or dict); these are the same ones: the projections of a
    MultiHeadAttention, the cell of an RNN, the two directions of a
    Bidirectional, the layers a custom layer builds.
    """
    found = []
    for value in vars(layer).values():
        if isinstance(value, dict):
            value = list(value.values())
        items = value if isinstance(value, (list, tuple)) else [value]
        found.extend(v for v in items if isinstance(v, keras.layers.Layer))
    return found


def _owned(layer, path, seen):
    """`(owner, owner path, enclosing layers)` of `layer` and of every layer
    below it that is not walked by `walk_layers` (i.e. inside a layer that is
    not a model), depth-first."""
    stack = [(layer, path, ())]
    while stack:
        owner, owner_path, ancestors = stack.pop()
        if id(owner) in seen:
            continue
        seen.add(id(owner))
        yield owner, owner_path, ancestors
        if not _is_model_like(owner):
            subs = _sublayers(owner)
        elif ancestors:  # a model inside a layer: `walk_layers` misses it
            subs = owner.layers
        else:
            continue  # its layers are walked by `walk_layers`
        stack.extend(
            (sub, f"{owner_path}/{sub.name}", ancestors + (owner,))
            for sub in reversed(subs))


def owned_layers(model, skip=()):
    """Every layer of a model, also those inside layers, with its path.

    `walk_layers` goes down nested models; this also goes inside layers
    that are not models (the projections of a MultiHeadAttention, the cell
    of an RNN, the two directions of a Bidirectional, what a custom layer
    builds — the layers Keras tracks in their attributes).

    Args:
        model: A `keras.Model`.
        skip: Layers to leave out, with everything below them.

    Yields:
        `(layer, path, ancestors)`: `ancestors` are the layers (not models)
        that enclose `layer`, outermost first.

    Example:

    >>> import keras
    >>> rnn = keras.Sequential([keras.Input((5, 4)),
    ...                         keras.layers.GRU(3, name="gru")])
    >>> [(path, [a.name for a in up]) for _, path, up in owned_layers(rnn)]
    [('gru', []), ('gru/gru_cell', ['gru'])]
    """
    seen = {id(layer) for layer in skip}
    for layer, path in walk_layers(model, skip=skip):
        yield from _owned(layer, path, seen)


def own_weights(owner):
    """The variables of a layer that none of the layers inside it holds.

    Example:

    >>> import keras
    >>> rnn = keras.layers.LSTM(2)
    >>> rnn.build((None, 3, 4))
    >>> own_weights(rnn), [v.name for v in own_weights(rnn.cell)]
    ([], ['kernel', 'recurrent_kernel', 'bias'])
    """
    below = {id(v) for sub in _sublayers(owner) for v in sub.weights}
    return [v for v in owner.weights if id(v) not in below]


def _is_weight_matrix(variable):
    """A trainable float variable of rank >= 2 that is not a bias."""
    return (variable.trainable and len(variable.shape) >= 2
            and "float" in str(variable.dtype)
            and not variable.name.endswith("bias"))


def _known_kernels(layer):
    """`(attribute, variable, channel axes, layer type)` of a layer of a
    known class (`_compressible_types`), or None for other layers."""
    for cls, attributes, axes in _compressible_types():
        if not isinstance(layer, cls):
            continue
        found = []
        for attribute in attributes:
            variable = getattr(layer, attribute, None)
            if variable is None:
                continue
            if not isinstance(variable, keras.Variable):
                raise ValueError(
                    f"Layer '{layer.name}' has a `{attribute}` that is not "
                    "a plain variable (LoRA or Keras quantization is "
                    "enabled on it), which LC cannot compress. Received: "
                    f"{type(variable).__name__}"
                )
            fn = axes.get(attribute) if isinstance(axes, dict) else axes
            channel_axes = fn(len(variable.shape)) if fn is not None else None
            found.append((attribute, variable, channel_axes, cls.__name__))
        return found
    return None


def _kernels_of(owner):
    """`(attribute, variable, channel axes, layer type)` of one layer."""
    known = _known_kernels(owner)
    if known is not None:
        return known
    found = []
    for variable in own_weights(owner):
        if _is_weight_matrix(variable):
            # (in, out) matrices, as Dense and RNN cells keep them.
            axes = (1,) if len(variable.shape) == 2 else None
            found.append((variable.name, variable, axes,
                          type(owner).__name__))
    return found


def compressible_kernels(model):
    """Lists the compressible kernels of a built model, in layer order.

    A kernel is recognised in one of two ways:

    - by its layer's class: the kernels of Dense, EinsumDense, Conv1D/2D/3D,
      Conv*Transpose, DepthwiseConv1D/2D, SeparableConv1D/2D (depthwise and
      pointwise) and the matrices of Embedding layers (also when the layer
      is frozen, `trainable=False`);
    - as a variable, in any other layer: every trainable float variable of
      rank >= 2 whose name does not end in "bias" — the `kernel` and
      `recurrent_kernel` of LSTM/GRU/SimpleRNN cells (also inside
      Bidirectional, TimeDistributed or stacked cells), the weight matrices
      a custom layer makes with `add_weight`.

    Layers inside layers are walked (the projections of MultiHeadAttention,
    the cells of RNNs, the layers a custom layer builds), and so are nested
    models. Biases, normalisation parameters and scalars stay float. Leave
    a kernel float with `None` in the spec (`{"block/att/*": None}`).

    Args:
        model: A built `keras.Model`.

    Returns:
        A list of `KernelRef`.

    Example:

    >>> import keras
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> [k.attribute for k in compressible_kernels(net)]
    ['kernel']
    >>> rnn = keras.Sequential([keras.Input((5, 4)),
    ...                         keras.layers.LSTM(3, name="lstm")])
    >>> [k.path for k in compressible_kernels(rnn)]
    ['lstm/lstm_cell/kernel', 'lstm/lstm_cell/recurrent_kernel']
    """
    refs = []
    seen = set()
    for owner, path, ancestors in owned_layers(model):
        for attribute, variable, axes, kind in _kernels_of(owner):
            if id(variable) in seen:
                continue
            seen.add(id(variable))
            refs.append(KernelRef(owner, path, attribute, variable, axes,
                                  kind, ancestors))
    return refs


def _key_kind(key):
    """Specificity rank of a key's form: 0 exact name, 1 glob, 2 class."""
    if isinstance(key, type):
        return 2
    if any(c in key for c in "*?["):
        return 1
    return 0


def _key_str(key):
    return key.__name__ if isinstance(key, type) else repr(key)


def _match_rank(key, ref):
    """The specificity with which `key` matches kernel `ref`, or None.

    Lower is more specific: 0 the exact name of the kernel or its layer;
    0.5 + 0.01·d the exact name of an enclosing layer d levels up (the
    nearer one wins); 1 a glob; 2 the class of the layer, 2 + 0.01·d that
    of an enclosing layer.
    """
    outer = list(reversed(ref.ancestors))  # nearest first
    if isinstance(key, type):
        if isinstance(ref.layer, key):
            return 2
        hits = [d for d, layer in enumerate(outer, 1)
                if isinstance(layer, key)]
        return 2 + 0.01 * hits[0] if hits else None
    names = [n for n in ref.names() if n is not None]
    outer_names = ref.ancestor_names()  # outermost first, two per layer
    if _key_kind(key) == 1:
        hit = any(fnmatch.fnmatchcase(n, key) for n in names + outer_names)
        return 1 if hit else None
    if key in names:
        return 0
    n = len(ref.ancestors)
    for i in reversed(range(n)):  # nearest first
        if key in outer_names[2 * i:2 * i + 2]:
            return 0.5 + 0.01 * (n - i)
    return None


def _validate_value(key, value):
    if value is not None and not isinstance(value, Quantization):
        raise TypeError(
            f"Compression spec entry {_key_str(key)} must be an "
            "`lc_keras.Quantization` (e.g. `lc_keras.AdaptiveQuantization(2)`) "
            f"or None. Received: {value!r} of type {type(value).__name__}"
        )


def _check_key(key):
    if isinstance(key, str):
        return
    if isinstance(key, type) and issubclass(key, keras.layers.Layer):
        return
    raise TypeError(
        "Compression spec keys must be layer names, glob patterns or layer "
        f"classes. Received: {key!r} of type {type(key).__name__}"
    )


def resolve_spec(model, compression):
    """Resolves a compression spec against a built model.

    Args:
        model: A built `keras.Model`.
        compression: A `Quantization` for every compressible kernel, or a
            dict `{key: Quantization or None}` (see the module docstring).
            `None` means the default `AdaptiveQuantization(k=2)` for every
            compressible kernel.

    Returns:
        A list of `CompressionGroup`, in layer order.

    Raises:
        TypeError: for a spec value that is not a `Quantization` or `None`,
            or a key that is neither a string nor a layer class.
        ValueError: for a key matching no compressible kernel, two keys of
            equal specificity matching one kernel, a model with nothing to
            compress, per-channel on a layer without channels, a shared
            codebook over kernels of different dtypes, or a codebook larger
            than the number of weights it quantizes.

    Example:

    >>> import keras, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
    ...                         keras.layers.Dense(2)])
    >>> groups = resolve_spec(net, {"dense*": lc.AdaptiveQuantization(2)})
    >>> len(groups)
    2
    """
    if compression is None:
        compression = AdaptiveQuantization(2)
    refs = compressible_kernels(model)
    if not refs:
        raise ValueError(
            "LCModel requires a model with at least one compressible kernel "
            "(Dense, Conv*, DepthwiseConv*, SeparableConv*, Embedding). "
            f"Received: model '{model.name}' with layers "
            f"{[layer.name for layer, _ in walk_layers(model)]}"
        )
    entries = _entries(compression)
    chosen = _choose(model, refs, entries)
    groups = _group(refs, chosen)
    if not groups:
        raise ValueError(
            "The compression spec leaves every kernel float: nothing to "
            f"compress. Received: {compression!r}"
        )
    for group in groups:
        _check_group(group)
    return groups


def _entries(compression):
    """The `(key, Quantization or None)` entries of a spec, checked."""
    if isinstance(compression, Quantization):
        entries = [("*", compression)]
    elif isinstance(compression, dict):
        if not compression:
            raise ValueError(
                "The compression spec dict is empty: it must map at least one "
                "layer name, pattern or class to a Quantization."
            )
        entries = list(compression.items())
    else:
        raise TypeError(
            "`compression` must be a `lc_keras.Quantization` or a dict "
            f"mapping layer names/patterns/classes to one. Received: "
            f"{compression!r} of type {type(compression).__name__}"
        )
    for key, value in entries:
        _check_key(key)
        _validate_value(key, value)
    return entries


def _no_match(model, refs, key):
    """The error for a spec key that matches no compressible kernel."""
    compressible = sorted({r.layer.name for r in refs})
    named = [
        layer for layer, _ in walk_layers(model)
        if isinstance(key, str)
        and any(fnmatch.fnmatchcase(n, key)
                for n in (layer.name, layer.path) if n is not None)
    ]
    if named:
        return ValueError(
            f"Compression spec key {_key_str(key)} matches layer(s) "
            f"{[f'{l.name} ({type(l).__name__})' for l in named]} "
            f"that have no compressible kernel. Compressible layers: "
            f"{compressible}"
        )
    return ValueError(
        f"Compression spec key {_key_str(key)} matches no layer of "
        f"model '{model.name}'. Compressible layers: {compressible}"
    )


def _choose(model, refs, entries):
    """`{kernel path: (rank, key, value)}`: the most specific entry of each
    kernel that an entry matches."""
    chosen = {}
    for key, value in entries:
        hits = [(r, _match_rank(key, r)) for r in refs]
        hits = [(r, rank) for r, rank in hits if rank is not None]
        if not hits:
            raise _no_match(model, refs, key)
        for ref, rank in hits:
            previous = chosen.get(ref.path)
            if previous is None or rank < previous[0]:
                chosen[ref.path] = (rank, key, value)
            elif rank == previous[0]:
                raise ValueError(
                    f"Kernel '{ref.path}' is matched by two compression spec "
                    f"entries of equal specificity: {_key_str(previous[1])} "
                    f"and {_key_str(key)}. Use an exact layer name to "
                    "disambiguate."
                )
    return chosen


def _group(refs, chosen):
    """The `CompressionGroup`s of the chosen entries, in layer order."""
    groups = []
    shared = {}
    for ref in refs:
        if ref.path not in chosen:
            continue
        _, key, quantization = chosen[ref.path]
        if quantization is None:
            continue
        if quantization.per_channel and ref.channel_axes is None:
            raise ValueError(
                f"Per-channel quantization needs output channels, but layer "
                f"'{ref.layer.name}' ({type(ref.layer).__name__}) has none. "
                f"Received: {quantization!r} for kernel '{ref.path}'"
            )
        if not quantization.shared:
            groups.append(CompressionGroup(ref.path, quantization, [ref]))
            continue
        if quantization.per_channel:
            raise ValueError(
                "A codebook cannot be both shared and per-channel. "
                f"Received: {quantization!r}"
            )
        gid = (id(quantization), _key_str(key))
        if gid not in shared:
            shared[gid] = CompressionGroup(
                f"shared:{key if isinstance(key, str) else key.__name__}",
                quantization, [])
            groups.append(shared[gid])
        shared[gid].kernels.append(ref)
    return groups


def _check_group(group):
    """Refuses a group of mixed dtypes, or a codebook it cannot fill."""
    dtypes = {r.variable.dtype for r in group.kernels}
    if len(dtypes) > 1:
        raise ValueError(
            f"A shared codebook needs kernels of one dtype. Group "
            f"'{group.name}' has {sorted(dtypes)} over "
            f"{[r.path for r in group.kernels]}"
        )
    if not isinstance(group.quantization, AdaptiveQuantization):
        return
    k = group.quantization.num_entries
    if group.per_channel:
        rows = min(r.size // r.channels for r in group.kernels)
    else:
        rows = sum(r.size for r in group.kernels)
    if k > rows:
        raise ValueError(
            f"AdaptiveQuantization(k={k}) on '{group.name}' needs k "
            f"<= the number of weights per codebook ({rows}). "
            f"Received: k={k}"
        )
    _check_exact_fits(group, rows)


#: Largest dynamic-programming table of `AdaptiveQuantization(method=
#: "exact")`, in bytes: several float64 tables of codebooks × (n + 1)² cells.
EXACT_MAX_BYTES = 2 ** 31


def _check_exact_fits(group, rows):
    """Refuses an exact C step whose tables would not fit in memory."""
    if group.quantization.method != "exact":
        return
    codebooks = group.kernels[0].channels if group.per_channel else 1
    needed = 4 * 8 * codebooks * (rows + 1) ** 2  # seg1, seg2, cost, where
    if needed > EXACT_MAX_BYTES:
        largest = int((EXACT_MAX_BYTES / (32 * codebooks)) ** 0.5) - 1
        raise ValueError(
            f"AdaptiveQuantization(method='exact') on '{group.name}' needs "
            f"dynamic-programming tables of {needed / 2**30:.3g} GiB for its "
            f"{rows:,} weights per codebook ({codebooks} codebook(s) × "
            f"(n + 1)² float64 cells, several times): it is for codebooks of "
            f"up to {largest:,} weights. Received: method='exact'. Use "
            "method='auto' (exact where that is cheap, Lloyd elsewhere) or "
            "'lloyd'.")


def serialize_spec(compression):
    """Turns a compression spec into JSON-compatible data.

    Args:
        compression: A spec as accepted by `resolve_spec`.

    Returns:
        A dict that `deserialize_spec` turns back into an equal spec.

    Example:

    >>> import lc_keras as lc
    >>> data = serialize_spec({"dense": lc.BinaryQuantization()})
    >>> deserialize_spec(data)
    {'dense': BinaryQuantization(per_channel=False, shared=False)}
    """
    if compression is None or isinstance(compression, Quantization):
        return {
            "kind": "single",
            "value": keras.saving.serialize_keras_object(compression),
        }
    entries = []
    for key, value in compression.items():
        if isinstance(key, type):
            key_data = {"class": keras.saving.get_registered_name(key)}
        else:
            key_data = {"name": key}
        entries.append(
            [key_data, keras.saving.serialize_keras_object(value)])
    return {"kind": "dict", "entries": entries}


def _resolve_class(name):
    cls = keras.saving.get_registered_object(name)
    if cls is None:
        cls = getattr(keras.layers, name, None)
    if cls is None:
        raise ValueError(
            f"Cannot resolve layer class {name!r} of a saved compression "
            "spec: register it with `keras.saving.register_keras_serializable`."
        )
    return cls


def deserialize_spec(data):
    """Inverse of `serialize_spec`.

    Args:
        data: The output of `serialize_spec`.

    Returns:
        The compression spec.

    Example:

    >>> import lc_keras as lc
    >>> deserialize_spec(serialize_spec(lc.TernaryQuantization()))
    TernaryQuantization(per_channel=False, shared=False)
    """
    if data["kind"] == "single":
        return keras.saving.deserialize_keras_object(data["value"])
    spec = {}
    for key_data, value in data["entries"]:
        if "class" in key_data:
            key = _resolve_class(key_data["class"])
        else:
            key = key_data["name"]
        spec[key] = keras.saving.deserialize_keras_object(value)
    return spec
