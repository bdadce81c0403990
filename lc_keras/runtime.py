"""Running exported files at float speed: expand the kernels at load time.

A file written by `export_tflite` is small because its kernels are packed
indices plus codebooks, decoded by builtin ops in the graph. The stock LiteRT
interpreter runs it as is, but its XNNPACK delegate (the fast CPU path) only
takes weights that are constants of the file, so decoded kernels run on the
slower builtin kernels (see BENCHMARKS.md for the numbers).

`expand_tflite` rewrites such a file, in memory, into the equivalent float
model: it evaluates every input-independent decoded kernel once, stores it as
a constant, and drops the decoding ops, the kernel caches and their
subgraphs. The file stays small on disk and in transit; after loading, the
model runs exactly as the float model would, delegates included.
`load_interpreter` is the one-line version.

The rewrite is a flatbuffer edit with the schema that ships with
ai-edge-litert: no TensorFlow, no converter.
"""

import numpy as np

from lc_keras.tflite_file import CHECKSUM_METADATA
from lc_keras.tflite_file import RUNTIME_ZERO_NAME
from lc_keras.tflite_file import TFLiteReader
from lc_keras.tflite_file import find_packed_kernels
from lc_keras.tflite_file import guarded_read
from lc_keras.tflite_file import pack_model
from lc_keras.tflite_file import read_tflite_bytes
from lc_keras.tflite_file import require_checksums

# Ops whose outputs are computed once at load time when all their inputs
# are: the decoding ops of both layouts, and the reads of the kernel caches.
_FOLDABLE = frozenset((
    "ADD", "BITCAST", "CAST", "CONCATENATION", "EXPAND_DIMS", "FLOOR_MOD",
    "GATHER", "MINIMUM", "MUL", "RANGE", "RESHAPE", "RIGHT_SHIFT", "SHAPE",
    "SLICE", "SQUEEZE", "STRIDED_SLICE", "SUB", "TRANSPOSE", "VAR_HANDLE",
    "READ_VARIABLE"))
# Ops that reference other subgraphs.
_CONTROL_FLOW = frozenset(("CALL_ONCE", "IF", "WHILE"))
# Ops of the main subgraph that the cached layout's kernels depend on by
# their side effects (initialising and filling the caches), not their data.
_SIDE_EFFECTS = frozenset(("CALL_ONCE", "IF", "ASSIGN_VARIABLE"))
_CACHE_PREFIX = "lc/cache_"


def _decoding_ops(reader, main, kernels):
    """The ops of the main subgraph that the decoded kernels need: their
    producers, transitively, and the exporter's cache control flow (the
    `CALL_ONCE` that initialises it, the `IF` that fills it), in order."""
    needed = set(kernels)
    kept = []
    for op in reversed(main.operators or []):
        if set(_ints(op.outputs)) & needed or reader.op_name(
                op.opcodeIndex) in _SIDE_EFFECTS:
            kept.append(op)
            needed.update(i for i in _ints(op.inputs) if i >= 0)
    kept.reverse()
    return kept


def _evaluate(reader, kernels):
    """Values of the decoded kernels, tensor index -> array.

    One invoke, on zero inputs, of the file cut down to the ops that
    compute the kernels (`_decoding_ops`): the rest of the network does
    not run. The same builtin kernels compute the same values as a whole
    invoke of the file would.
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    model = reader.model
    main = model.subgraphs[0]
    saved = main.operators, main.outputs, model.signatureDefs
    try:
        main.operators = _decoding_ops(reader, main, kernels)
        main.outputs = list(kernels)
        model.signatureDefs = None
        data = pack_model(model, reader.buffers)
    finally:
        main.operators, main.outputs, model.signatureDefs = saved
    interpreter = Interpreter(
        model_content=data, experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"],
                               np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    return {int(detail["index"]): np.array(
        interpreter.get_tensor(detail["index"]))
        for detail in interpreter.get_output_details()}


def expand_tflite(path_or_bytes):
    """Rewrites a file of `export_tflite` into the equivalent float model.

    Finds, in the main subgraph, every float tensor that depends on nothing
    but constants, the exporter's runtime zero and the kernel caches (the
    decoded kernels), evaluates them once with the interpreter, stores them
    as constants, and removes what only served to compute them: decoding
    ops, packed words, codebooks and, in the cached layout, the caches and
    their subgraphs. Inputs, outputs and signatures are unchanged; the
    result runs on the stock interpreter with its default delegates.

    Args:
        path_or_bytes: Path of a `.tflite` file written by `export_tflite`,
            or its bytes.

    Returns:
        The bytes of the expanded (float) model; nothing is written to disk.

    Raises:
        ValueError: If the data is not a TFLite file, is truncated or
            corrupt (its checksum does not match: the error names the kernel
            whose packed indices or codebook changed), or has no kernel
            decoded at run time (not written by `export_tflite`).

    Example:

    >>> import os, tempfile
    >>> from keras import Input, Sequential, layers
    >>> import lc_keras as lc
    >>> model = lc.LCModel(Sequential([Input((64,)), layers.Dense(32)]),
    ...                    compression=lc.AdaptiveQuantization(4))
    >>> _ = model.direct_compression()
    >>> path = os.path.join(tempfile.mkdtemp(), "net.tflite")
    >>> info = lc.export_tflite(model, path)
    >>> expanded = lc.expand_tflite(path)
    >>> len(expanded) > os.path.getsize(path)  # float kernels, in memory
    True
    """
    data, source = read_tflite_bytes(path_or_bytes, "expand_tflite")
    return guarded_read(lambda: _expand(data, source), source)


def _expand(data, source):
    reader = TFLiteReader(data)
    model = reader.model
    main = model.subgraphs[0]
    kernels = _decoded_kernels(reader, main, source)
    values = _evaluate(reader, kernels)
    buffers = _store_constants(reader, main, kernels, values)
    _prune_ops(reader, model, kernels)
    _renumber_tensors(model)
    return pack_model(model, _compact_buffers(reader, model, buffers))


def _ints(values):
    return [int(v) for v in (values if values is not None else [])]


def _cache_handles(reader, ops):
    """Outputs of the VAR_HANDLE ops of the exporter's kernel caches."""
    handles = set()
    for op in ops:
        if reader.op_name(op.opcodeIndex) == "VAR_HANDLE":
            shared = op.builtinOptions.sharedName
            if isinstance(shared, bytes):
                shared = shared.decode("utf-8", "replace")
            if str(shared or "").startswith(_CACHE_PREFIX):
                handles.update(_ints(op.outputs))
    return handles


def _static_tensors(reader, main):
    """Tensors computable at load time (a forward pass over the ops)."""
    tensors = main.tensors or []
    cache_handles = _cache_handles(reader, main.operators or [])
    static = {i for i, t in enumerate(tensors) if reader.data(t)}
    static.update(
        i for i, t in enumerate(tensors)
        if RUNTIME_ZERO_NAME in reader.name(t).split(";"))
    for op in main.operators or []:
        name = reader.op_name(op.opcodeIndex)
        inputs = [i for i in _ints(op.inputs) if i >= 0]
        if name not in _FOLDABLE:
            continue
        if name == "VAR_HANDLE" and not set(
                _ints(op.outputs)) & cache_handles:
            continue
        if name == "READ_VARIABLE" and inputs[0] not in cache_handles:
            continue
        if all(i in static for i in inputs):
            static.update(_ints(op.outputs))
    return static


def _decoded_kernels(reader, main, source):
    """Computed (not stored) float tensors that a runtime op or the graph
    output reads: the decoded kernels, checked against the file's kind."""
    tensors = main.tensors or []
    static = _static_tensors(reader, main)
    needed_by_runtime = set(_ints(main.outputs))
    for op in main.operators or []:
        if not set(_ints(op.outputs)) <= static or not _ints(op.outputs):
            needed_by_runtime.update(i for i in _ints(op.inputs) if i >= 0)
    schema = reader.schema
    float_types = {getattr(schema.TensorType, name) for name in (
        "FLOAT32", "FLOAT16", "BFLOAT16", "FLOAT64")
        if hasattr(schema.TensorType, name)}
    kernels = sorted(
        i for i in static & needed_by_runtime
        if not reader.data(tensors[i]) and tensors[i].type in float_types)
    require_checksums(reader, bool(kernels), source,
                      "kernels decoded at run time")
    if not kernels and any("packed_indices" in reader.name(t)
                           for t in tensors):
        raise ValueError(
            "expand_tflite cannot tell this file's decoding from its data: "
            f"it has packed kernels but no '{RUNTIME_ZERO_NAME}' tensor (it "
            "was written by an older lc_keras). Export it again.")
    if not kernels:
        raise ValueError(
            "expand_tflite expects a file written by `lc_keras.export_tflite`"
            ": this one has no kernel decoded at run time (it may already be "
            "a float model).")
    return kernels


def _store_constants(reader, main, kernels, values):
    """Gives every decoded kernel a buffer holding its value.

    Returns:
        The file's buffers with the new ones appended.
    """
    buffers = list(reader.buffers)
    for i in kernels:
        tensor = main.tensors[i]
        tensor.buffer = len(buffers)
        tensor.isVariable = False
        value = values[i]
        if value.dtype.byteorder == ">":
            value = value.byteswap()
        buffers.append(np.ascontiguousarray(value).tobytes())
    return buffers


def _prune_ops(reader, model, kernels):
    """Keeps only the ops the outputs need (the exporter's graphs have no
    side effects but the cache's), and drops the other subgraphs when no
    control flow remains."""
    main = model.subgraphs[0]
    tensors = main.tensors or []
    needed = set(_ints(main.outputs))
    kept = []
    for op in reversed(main.operators or []):
        outputs = _ints(op.outputs)
        if any(o in needed for o in outputs):
            kept.append(op)
            needed.update(i for i in _ints(op.inputs)
                          if i >= 0 and not reader.data(tensors[i])
                          and i not in kernels)
    kept.reverse()
    main.operators = kept
    if not any(reader.op_name(op.opcodeIndex) in _CONTROL_FLOW
               for op in kept):
        model.subgraphs = [main]


def _renumber_tensors(model):
    """Drops the main subgraph's unused tensors and renumbers the rest."""
    main = model.subgraphs[0]
    tensors = main.tensors or []
    kept = main.operators
    used = set(_ints(main.inputs)) | set(_ints(main.outputs))
    for op in kept:
        used.update(i for i in _ints(op.inputs) + _ints(op.outputs)
                    if i >= 0)
    order = sorted(used)
    new_index = {old: new for new, old in enumerate(order)}

    def remap(values):
        return [new_index[i] if i >= 0 else i for i in _ints(values)]

    main.tensors = [tensors[i] for i in order]
    main.inputs = remap(main.inputs)
    main.outputs = remap(main.outputs)
    for op in kept:
        op.inputs = remap(op.inputs)
        op.outputs = remap(op.outputs)
        op.intermediates = None
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == 0:
            for item in (signature.inputs or []) + (signature.outputs or []):
                item.tensorIndex = new_index[int(item.tensorIndex)]


def _compact_buffers(reader, model, buffers):
    """Keeps buffer 0 (the empty sentinel), the tensors' and the metadata's
    (but the checksums, which describe the packed file); renumbers them.

    Returns:
        The kept buffers, in their new order.
    """
    model.metadata = [m for m in model.metadata or []
                      if reader.name(m) != CHECKSUM_METADATA]
    keep = {0}
    for subgraph in model.subgraphs:
        keep.update(int(t.buffer) for t in subgraph.tensors or []
                    if t.buffer is not None)
    keep.update(int(m.buffer) for m in model.metadata or [])
    buffer_order = sorted(b for b in keep if b < len(buffers))
    new_buffer = {old: new for new, old in enumerate(buffer_order)}
    for subgraph in model.subgraphs:
        for t in subgraph.tensors or []:
            if t.buffer is not None:
                t.buffer = new_buffer.get(int(t.buffer), 0)
    for m in model.metadata or []:
        m.buffer = new_buffer[int(m.buffer)]
    return [buffers[b] for b in buffer_order]


def load_interpreter(path_or_bytes, *, expand=True, **kwargs):
    """A LiteRT interpreter for a file of `export_tflite`, at float speed.

    Args:
        path_or_bytes: Path of a `.tflite` file written by `export_tflite`,
            or its bytes.
        expand: Whether to expand the kernels to float constants first
            (`expand_tflite`); False runs the file as stored. A file of
            `layout="native"` with no packed kernel always runs as stored
            (its integer weights are the fast path).
        **kwargs: Passed to `ai_edge_litert.interpreter.Interpreter`
            (e.g. `num_threads`).

    Returns:
        An `ai_edge_litert.interpreter.Interpreter` (tensors not allocated).

    Example:

    >>> import os, tempfile, numpy as np
    >>> from keras import Input, Sequential, layers
    >>> import lc_keras as lc
    >>> net = Sequential([Input((8,)), layers.Dense(4)])
    >>> model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    >>> _ = model.direct_compression()
    >>> folder = tempfile.mkdtemp()
    >>> _ = lc.export_tflite(model, os.path.join(folder, "net.tflite"))
    >>> interpreter = lc.load_interpreter(os.path.join(folder, "net.tflite"))
    >>> interpreter.allocate_tensors()
    >>> x = np.ones((1, 8), np.float32)
    >>> interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    >>> interpreter.invoke()
    >>> out = interpreter.get_tensor(
    ...     interpreter.get_output_details()[0]["index"])
    >>> bool(np.allclose(out, model.predict(x, verbose=0), atol=1e-5))
    True
    """
    from ai_edge_litert.interpreter import Interpreter

    data, _ = read_tflite_bytes(path_or_bytes, "load_interpreter")
    if expand and not _integers_only(data):
        data = expand_tflite(data)
    return Interpreter(model_content=data, **kwargs)


def _integers_only(data):
    """Whether a file (of `layout="native"`) has LiteRT integer weights and
    no kernel decoded at run time: it runs as stored, at its fastest."""
    reader = TFLiteReader(data)
    if find_packed_kernels(reader):
        return False
    return any(
        reader.type_names.get(t.type) in ("INT2", "INT4", "INT8")
        and reader.data(t) and t.quantization is not None
        and t.quantization.scale is not None
        for subgraph in reader.model.subgraphs or []
        for t in subgraph.tensors or [])
