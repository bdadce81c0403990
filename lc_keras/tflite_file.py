"""Reading, inspecting and verifying `.tflite` flatbuffers, without TF.

Files written by `lc_keras.export_tflite` store each compressed kernel as
packed int32 words plus a float32 codebook, decoded by builtin ops in the
graph. This module reads such files with the flatbuffer schema that ships
with ai-edge-litert (no converter, no interpreter):

* `TFLiteReader` parses the flatbuffer into the schema's object API and
  resolves tensor data; `pack_model` serializes an edited model back.
* `inspect_tflite` lists the ops, tensors and packed kernels of a file
  (`TFLiteSummary`, `TensorInfo`, `PackedKernelInfo`).
* Checksums: the exporter adds a metadata entry named `CHECKSUM_METADATA`
  holding the CRC32 of the whole file and of each kernel's packed words and
  codebook (`add_checksums`); `read_tflite_bytes` verifies it
  (`check_integrity`) before anything else reads the file, naming the kernel
  whose bytes changed.
* `verify_export` checks a converted file before the exporter writes it:
  builtin ops only, every kernel present as its exact packed words, no float
  copy of a kernel.
"""

import dataclasses
import json
import os
import struct
import zlib

import flatbuffers
import numpy as np

#: Name of the exporter's int32 zero that blocks constant folding of the
#: decoding (it is 0 whatever the input); `lc_keras.expand_tflite` finds the
#: decoding by it.
RUNTIME_ZERO_NAME = "lc_runtime_zero"

#: Name of the metadata entry holding the exporter's CRC32 checksums.
CHECKSUM_METADATA = "lc_keras_checksums"

_CHECKSUM_MARK = b'{"lc_keras_checksums": 1, "file_crc32": "'
_CRC_PLACEHOLDER = b"00000000"
_SIZE_WIDTH = 14


def _schema():
    # The flatbuffer schema ships with ai-edge-litert, a dependency.
    from ai_edge_litert import schema_py_generated as schema

    return schema


# ---------------------------------------------------------------------------
# Reader and writer
# ---------------------------------------------------------------------------


class TFLiteReader:
    """A `.tflite` flatbuffer, unpacked into the schema's object API.

    Args:
        data: The bytes of the file.

    Attributes:
        schema: The flatbuffer schema module
            (`ai_edge_litert.schema_py_generated`).
        model: The `schema.ModelT` (editable; see `pack_model`).
        buffers: The data of every buffer, as bytes (also for buffers stored
            after the flatbuffer, by offset).
        op_names: Builtin operator code -> name.
        type_names: Tensor type code -> name.

    Raises:
        ValueError: if `data` is not a TFLite flatbuffer (no `TFL3`
            identifier) or cannot be parsed.

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> data = pack_model(schema.ModelT(version=3), [b"", b"abcd"])
    >>> TFLiteReader(data).buffers
    [b'', b'abcd']
    >>> TFLiteReader(b"PK\\x03\\x04 not a model")
    Traceback (most recent call last):
    ...
    ValueError: Not a TFLite flatbuffer (no 'TFL3' identifier).
    """

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
        """Name of an operator code: `"ADD"`, or `"CUSTOM:<code>"`.

        Args:
            opcode_index: Index into the model's operator codes
                (`op.opcodeIndex`).

        Returns:
            The builtin's name, `"CUSTOM:<code>"` for a custom op, or
            `"BUILTIN_<n>"` for a code this schema does not name.
        """
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
        """The constant data of a tensor (`b""` if it has none)."""
        if tensor.buffer is None or tensor.buffer >= len(self.buffers):
            return b""
        return self.buffers[tensor.buffer]

    @staticmethod
    def name(tensor):
        """The name of a tensor (or metadata entry), as a str."""
        name = tensor.name
        return name.decode("utf-8", "replace") if isinstance(
            name, bytes) else str(name or "")

    def metadata_names(self):
        """Names of the model's metadata entries."""
        return [self.name(m) for m in self.model.metadata or []]


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


def pack_model(model, buffers):
    """Serializes a `ModelT` with `buffers`, 16-byte aligned.

    Args:
        model: A `schema.ModelT` (e.g. `TFLiteReader(data).model`, edited).
        buffers: The data of every buffer (a list of bytes); replaces
            `model.buffers`.

    Returns:
        The bytes of the `.tflite` file.

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> data = pack_model(schema.ModelT(version=3), [b""])
    >>> data[4:8]
    b'TFL3'
    """
    schema = _schema()
    model.buffers = [_AlignedBuffer(schema, b) for b in buffers]
    builder = flatbuffers.Builder(sum(len(b) for b in buffers) + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_tflite_bytes(path_or_bytes, what):
    """The bytes of a `.tflite` file given as a path or as bytes, verified.

    A file with an lc_keras checksum record is verified (`check_integrity`).

    Args:
        path_or_bytes: A path (str or path-like) or the bytes.
        what: Who asks, named in errors (e.g. `"inspect_tflite"`).

    Returns:
        `(data, source)`: the bytes and how to name them in errors.

    Raises:
        TypeError: if `path_or_bytes` is neither.
        ValueError: if the checksum record does not match.

    Example:

    >>> read_tflite_bytes(b"abc", "me")
    (b'abc', 'The given .tflite bytes')
    >>> read_tflite_bytes(3, "me")
    Traceback (most recent call last):
    ...
    TypeError: me expects a `.tflite` path or its bytes. Received: 3 of type int
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
    check_integrity(data, source)
    return data, source


def guarded_read(function, source):
    """Runs `function()`; a malformed flatbuffer becomes a ValueError.

    The object API of a corrupt flatbuffer fails late, with IndexError,
    struct.error and the like, wherever a bad offset is followed.

    Args:
        function: A callable of no arguments that reads the file.
        source: How to name the file in the error (`read_tflite_bytes`).

    Returns:
        What `function` returns.

    Raises:
        ValueError: saying that the file is truncated or corrupt.

    Example:

    >>> guarded_read(lambda: [][1], "The file 'x.tflite'")
    Traceback (most recent call last):
    ...
    ValueError: The file 'x.tflite' is not a valid TFLite file: truncated or corrupt (IndexError: list index out of range).
    """
    try:
        return function()
    except (IndexError, KeyError, TypeError, AttributeError, struct.error,
            UnicodeDecodeError, OverflowError) as error:
        raise ValueError(
            f"{source} is not a valid TFLite file: truncated or corrupt "
            f"({type(error).__name__}: {error}).") from None


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------


def _checksum_entries(buffers, plans):
    """Per kernel: the buffers holding its words and codebook, and CRC32s."""
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
    return kernels


def add_checksums(data, plans):
    """`data` with the `CHECKSUM_METADATA` metadata entry added.

    The entry (JSON) lists, per kernel, the buffers holding its packed words
    and its codebook with their CRC32, the file's size, and the CRC32 of the
    whole file computed with the entry's own CRC field set to zeros.

    Args:
        data: The bytes of a `.tflite` file that stores every kernel's words
            and codebook as constant buffers.
        plans: The `lc_keras.packing.KernelPlan` of every kernel.

    Returns:
        The bytes of the file with the record.

    Raises:
        ValueError: if a kernel's words or codebook are not stored.

    Example:

    >>> import numpy as np
    >>> from ai_edge_litert import schema_py_generated as schema
    >>> from lc_keras.packing import plan_kernel
    >>> from lc_keras.quantized import QuantizedKernel
    >>> plan = plan_kernel("k", QuantizedKernel(
    ...     "k", "d", "kernel", "x", np.array([-1.0, 1.0], np.float32),
    ...     np.array([[0, 1]])))
    >>> data = pack_model(schema.ModelT(version=3), [
    ...     b"", plan.words.tobytes(), plan.q.codebook.tobytes()])
    >>> checked = add_checksums(data, [plan])
    >>> check_integrity(checked, "m")["kernels"][0]["words"]["buffers"]
    [1]
    """
    reader = TFLiteReader(data)
    buffers = list(reader.buffers)
    kernels = _checksum_entries(buffers, plans)

    def record(size):
        text = json.dumps({"kernels": kernels}, sort_keys=True)[1:]
        return (_CHECKSUM_MARK + _CRC_PLACEHOLDER + b'", "file_bytes": '
                + str(size).rjust(_SIZE_WIDTH).encode() + b", "
                + text.encode("utf-8"))

    model = reader.model
    metadata = reader.schema.MetadataT()
    metadata.name = CHECKSUM_METADATA
    metadata.buffer = len(buffers)
    model.metadata = list(model.metadata or []) + [metadata]
    placeholder = record(0)
    out = pack_model(model, buffers + [placeholder])
    start = out.find(placeholder)
    out = out[:start] + record(len(out)) + out[start + len(placeholder):]
    crc = f"{zlib.crc32(out):08x}".encode()
    at = start + len(_CHECKSUM_MARK)
    return out[:at] + crc + out[at + len(crc):]


def _read_record(data, start, source):
    """`(record, file crc, size, kernels)` of the checksum record at start."""
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
    return record, expected_crc, size, kernels


def _name_changed_kernel(data, kernels, source):
    """Raises naming the first kernel whose words or codebook changed."""
    try:
        buffers = TFLiteReader(data).buffers
    except ValueError:
        return
    for kernel, layer, parts in kernels:
        for part, (indices, crc) in parts.items():
            if any(i >= len(buffers) or zlib.crc32(buffers[i]) != crc
                   for i in indices):
                what = ("packed indices" if part == "words" else "codebook")
                raise ValueError(
                    f"{source} is truncated or corrupt: the {what} of kernel "
                    f"'{kernel}' (layer '{layer}') do not match their CRC32 "
                    "checksum. Export it again.")


def check_integrity(data, source):
    """Verifies the `CHECKSUM_METADATA` record of a file, if it has one.

    Args:
        data: The bytes of the file.
        source: How to name the file in errors.

    Returns:
        The record (a dict), or None for a file without one.

    Raises:
        ValueError: naming the kernel whose packed words or codebook changed,
            or saying that the file is truncated or corrupt.

    Example:

    >>> check_integrity(b"no record here", "m") is None
    True
    >>> check_integrity(b"... lc_keras_checksums ...", "m")
    Traceback (most recent call last):
    ...
    ValueError: m is truncated or corrupt: its lc_keras checksum record cannot be read. Export it again.
    """
    start = data.find(_CHECKSUM_MARK)
    if start < 0:
        if CHECKSUM_METADATA.encode() in data:  # the record's start changed
            raise ValueError(
                f"{source} is truncated or corrupt: its lc_keras checksum "
                "record cannot be read. Export it again.")
        return None
    record, expected_crc, size, kernels = _read_record(data, start, source)
    if size != len(data):
        raise ValueError(
            f"{source} is truncated or corrupt: it has {len(data)} bytes, "
            f"but {size} were written by export_tflite.")
    at = start + len(_CHECKSUM_MARK)
    blank = data[:at] + _CRC_PLACEHOLDER + data[at + len(_CRC_PLACEHOLDER):]
    if zlib.crc32(blank) == expected_crc:
        return record
    _name_changed_kernel(data, kernels, source)
    raise ValueError(
        f"{source} is truncated or corrupt: its CRC32 checksum does not "
        "match its content (the change is outside the packed indices and "
        "codebooks: in the graph, the float constants or the checksum "
        "record). Export it again.")


def require_checksums(reader, has_packed, source, what):
    """Refuses a file with packed kernels but no `CHECKSUM_METADATA` record.

    Args:
        reader: The file's `TFLiteReader`.
        has_packed: Whether the file has packed (or decoded) kernels.
        source: How to name the file in the error.
        what: What it has, in the error (e.g. `"packed kernels (e.g. 'w')"`).

    Raises:
        ValueError: if `has_packed` and the record is missing.

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> reader = TFLiteReader(pack_model(schema.ModelT(version=3), [b""]))
    >>> require_checksums(reader, False, "m", "packed kernels")
    >>> require_checksums(reader, True, "m", "packed kernels")
    Traceback (most recent call last):
    ...
    ValueError: m has packed kernels but no 'lc_keras_checksums' record: it is corrupt, or was written by an lc_keras without checksums. Export it again.
    """
    if has_packed and CHECKSUM_METADATA not in reader.metadata_names():
        raise ValueError(
            f"{source} has {what} but no '{CHECKSUM_METADATA}' record: it is "
            "corrupt, or was written by an lc_keras without checksums. "
            "Export it again.")


# ---------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------


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


# Ops between the packed words and the GATHER of a decoded kernel.
_DECODE_OPS = frozenset((
    "ADD", "BITCAST", "CAST", "FLOOR_MOD", "GATHER", "MINIMUM", "MUL",
    "RANGE", "RESHAPE", "RIGHT_SHIFT", "SHAPE", "STRIDED_SLICE"))


class _Graph:
    """Producers and consumers of the tensors of one subgraph."""

    def __init__(self, reader, subgraph):
        self.reader = reader
        self.tensors = subgraph.tensors or []
        self.ops = subgraph.operators or []
        self.producer, self.consumers = {}, {}
        for op in self.ops:
            for t in op.outputs if op.outputs is not None else []:
                self.producer[int(t)] = op
            for t in op.inputs if op.inputs is not None else []:
                self.consumers.setdefault(int(t), []).append(op)

    def op_name(self, op):
        return self.reader.op_name(op.opcodeIndex)

    def data(self, i):
        return self.reader.data(self.tensors[i])

    def is_const(self, i, dtype):
        return self.tensors[i].type == dtype and bool(self.data(i))

    def _feeds_bitcast(self, op):
        return self.op_name(op) == "ADD" and any(
            self.op_name(c) == "BITCAST"
            for o in op.outputs for c in self.consumers.get(int(o), []))

    def words_of(self, start):
        """`(tensor, words)` of the largest packed int32 constant that the
        decoding ops computing tensor `start` read, or None."""
        int32 = self.reader.schema.TensorType.INT32
        best, stack, seen = None, [start], set()
        while stack:
            t = stack.pop()
            if t in seen or t not in self.producer:
                continue
            seen.add(t)
            op = self.producer[t]
            name = self.op_name(op)
            if name not in _DECODE_OPS:
                continue
            feeds_bitcast = self._feeds_bitcast(op)
            for position, i in enumerate(int(i) for i in op.inputs):
                if i < 0:
                    continue
                if not self.data(i):
                    stack.append(i)
                    continue
                packed = (feeds_bitcast or (
                    name in ("RIGHT_SHIFT", "GATHER") and position == 0))
                if packed and self.is_const(i, int32):
                    size = len(self.data(i)) // 4
                    if best is None or size > best[1]:
                        best = (i, size)
        return best

    def codebook(self, t):
        """The float constant that tensor `t` (GATHER params) comes from."""
        float32 = self.reader.schema.TensorType.FLOAT32
        if self.is_const(t, float32):
            return t
        # Or a per-byte table GATHERed from it (not a decoded kernel: the
        # table's positions do not come from packed words).
        op = self.producer.get(t)
        if op is not None and self.op_name(op) == "GATHER" and \
                self.words_of(int(op.inputs[1])) is None:
            table = int(op.inputs[0])
            if self.is_const(table, float32):
                return table
        return None

    def decoded(self, out):
        """Follows reshapes and the slice that drops padding indices."""
        while True:
            nxt = self.consumers.get(out, [])
            if len(nxt) == 1 and self.op_name(nxt[0]) in (
                    "RESHAPE", "STRIDED_SLICE") and int(
                        nxt[0].inputs[0]) == out:
                out = int(nxt[0].outputs[0])
            else:
                return out


def _packed_kernel(graph, subgraph_index, op):
    """The `PackedKernelInfo` of a GATHER that decodes a kernel, or None."""
    if graph.op_name(op) != "GATHER":
        return None
    out = int(op.outputs[0])
    if graph.tensors[out].type != graph.reader.schema.TensorType.FLOAT32:
        return None
    codebook = graph.codebook(int(op.inputs[0]))
    if codebook is None or graph.data(int(op.inputs[1])):
        return None
    words = graph.words_of(int(op.inputs[1]))
    if words is None:
        return None
    out = graph.decoded(out)
    shape = [int(d) for d in (graph.tensors[out].shape if graph.tensors[
        out].shape is not None else [])]
    weights = int(np.prod(shape)) if shape and min(shape) > 0 else 0
    return PackedKernelInfo(
        subgraph=subgraph_index, name=graph.reader.name(
            graph.tensors[words[0]]),
        weights=weights, words=words[1],
        codebook_entries=len(graph.data(codebook)) // 4)


def find_packed_kernels(reader):
    """Finds the decoded kernels of a file written by `export_tflite`.

    A kernel is a float GATHER whose positions are computed from an int32
    constant of packed words (one that is shifted by RIGHT_SHIFT, gathered
    from, or offset by ADD and then BITCAST to bytes) and whose params come
    from a float constant (the codebook, directly or through a GATHER that
    builds a per-byte table).

    Args:
        reader: A `TFLiteReader`.

    Returns:
        A list of `PackedKernelInfo`, in subgraph and op order.

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> find_packed_kernels(TFLiteReader(pack_model(
    ...     schema.ModelT(version=3, subgraphs=[schema.SubGraphT()]), [b""])))
    []
    """
    found = []
    for s, subgraph in enumerate(reader.model.subgraphs or []):
        graph = _Graph(reader, subgraph)
        for op in graph.ops:
            kernel = _packed_kernel(graph, s, op)
            if kernel is not None:
                found.append(kernel)
    return found


def inspect_tflite(path_or_bytes):
    """Reads the ops, tensors and packed kernels of a `.tflite` file.

    Args:
        path_or_bytes: Path of a `.tflite` file, or its bytes.

    Returns:
        A `TFLiteSummary`.

    Raises:
        ValueError: if the data is not a TFLite file, is truncated or
            corrupt, or has packed kernels but no checksum record.

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> add = schema.BuiltinOperator.ADD
    >>> model = schema.ModelT(
    ...     version=3, operatorCodes=[schema.OperatorCodeT(builtinCode=add)],
    ...     subgraphs=[schema.SubGraphT(operators=[schema.OperatorT()])])
    >>> inspect_tflite(pack_model(model, [b""])).ops
    ((0, 'ADD'),)
    """
    data, source = read_tflite_bytes(path_or_bytes, "inspect_tflite")
    return guarded_read(lambda: _summary(data, source), source)


def _tensor_infos(reader):
    tensors = []
    for s, subgraph in enumerate(reader.model.subgraphs or []):
        for i, t in enumerate(subgraph.tensors or []):
            shape = tuple(int(d) for d in (
                t.shapeSignature if t.shapeSignature is not None and len(
                    t.shapeSignature) else (t.shape if t.shape is not None
                                            else ())))
            tensors.append(TensorInfo(
                subgraph=s, index=i, name=reader.name(t),
                dtype=reader.type_names.get(t.type, str(t.type)),
                shape=shape, data_bytes=len(reader.data(t))))
    return tuple(tensors)


def _summary(data, source):
    reader = TFLiteReader(data)
    ops = tuple((s, reader.op_name(op.opcodeIndex))
                for s, subgraph in enumerate(reader.model.subgraphs or [])
                for op in subgraph.operators or [])
    tensors = _tensor_infos(reader)
    packed = tuple(find_packed_kernels(reader))
    if packed:
        require_checksums(reader, True, source,
                          f"packed kernels (e.g. '{packed[0].name}')")
    return TFLiteSummary(size_bytes=len(data), ops=ops, tensors=tensors,
                         packed_kernels=packed)


# ---------------------------------------------------------------------------
# Verification of an export
# ---------------------------------------------------------------------------


def _constant_buffers(reader):
    """`(int32 buffers, {size: float32 buffers}, float shapes assigned to
    variables)` over all subgraphs."""
    schema = reader.schema
    int32_buffers, float_buffers, assigned_shapes = set(), {}, set()
    for subgraph in reader.model.subgraphs or []:
        tensors = subgraph.tensors or []
        for t in tensors:
            chunk = reader.data(t)
            if not chunk:
                continue
            if t.type == schema.TensorType.INT32:
                int32_buffers.add(chunk)
            elif t.type == schema.TensorType.FLOAT32:
                float_buffers.setdefault(len(chunk), set()).add(chunk)
        # Float constants assigned to variables (the initial value of a
        # cache).
        for op in subgraph.operators or []:
            if reader.op_name(op.opcodeIndex) != "ASSIGN_VARIABLE":
                continue
            value = tensors[int(op.inputs[1])]
            if value.type == schema.TensorType.FLOAT32 and reader.data(value):
                assigned_shapes.add(tuple(int(d) for d in value.shape))
    return int32_buffers, float_buffers, assigned_shapes


def _verify_kernel(plan, int32_buffers, float_buffers, assigned_shapes):
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


def verify_export(data, plans):
    """Checks a converted file before the exporter writes it.

    Every op must be a builtin; every kernel must be stored as its exact
    packed int32 words, with no float copy of it (folded decoding) and no
    float initial value for its cache.

    Args:
        data: The bytes of the converted `.tflite` file.
        plans: The `lc_keras.packing.KernelPlan` of every kernel.

    Raises:
        ValueError: naming the non-builtin ops, or the layer and kernel
            that is not stored as packed words.

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> from lc_keras import packing, quantized
    >>> q = quantized.QuantizedKernel("k", "d", "kernel", "x", [-1.0, 1.0],
    ...                               [[0, 1]])
    >>> empty = pack_model(schema.ModelT(version=3), [b""])
    >>> verify_export(empty, [packing.plan_kernel("k", q)])
    Traceback (most recent call last):
    ...
    ValueError: The TFLite file does not store layer 'd' (kernel 'k', 2 weights, k=2) as 1 packed int32 words (4 bytes): the converter folded its decoding back into a float kernel or changed the words.
    """
    reader = TFLiteReader(data)
    custom = sorted({
        reader.op_name(op.opcodeIndex)
        for subgraph in reader.model.subgraphs or []
        for op in subgraph.operators or []
        if reader.op_name(op.opcodeIndex).startswith("CUSTOM")})
    if custom:
        raise ValueError(
            f"The converted model contains non-builtin ops {custom}; "
            "export_tflite allows builtin TFLite ops only.")
    buffers = _constant_buffers(reader)
    for plan in plans:
        _verify_kernel(plan, *buffers)
