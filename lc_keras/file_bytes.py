"""Where the bytes of an exported `.tflite` file go, summing to its size.

`file_bytes` splits a file written by `lc_keras.export_tflite` into its
packed indices and codebooks (found through the file's own checksum record,
`lc_keras.tflite_file.CHECKSUM_METADATA`), every other constant tensor
(biases, normalisation, folded batch-norm shifts, tables), the metadata
entries, and the rest: the graph (operators, tensors, subgraphs, signatures)
and the flatbuffer's alignment padding. The parts add up to the file size
exactly. No TensorFlow.
"""

import dataclasses

from lc_keras.tflite_file import TFLiteReader
from lc_keras.tflite_file import check_integrity
from lc_keras.tflite_file import guarded_read
from lc_keras.tflite_file import read_tflite_bytes


@dataclasses.dataclass(frozen=True)
class ConstantBytes:
    """A constant stored in a `.tflite` file (one buffer).

    Attributes:
        name: The name of the (first) tensor that holds it.
        dtype: Its type name (`"FLOAT32"`, `"INT32"`, ...).
        shape: Its shape.
        bytes: Bytes of data.

    Example:

    >>> ConstantBytes("dense/bias", "FLOAT32", (4,), 16).bytes
    16
    """

    name: str
    dtype: str
    shape: tuple
    bytes: int


@dataclasses.dataclass(frozen=True)
class FileBytes:
    """The byte budget of one `.tflite` file.

    Attributes:
        size_bytes: The file size.
        index_bytes: Bytes of packed indices.
        codebook_bytes: Bytes of codebooks (each stored one once).
        constants: `ConstantBytes` of every other constant, largest first.
        metadata: `(name, bytes)` of every metadata entry.

    Example:

    >>> f = FileBytes(100, 8, 4, (ConstantBytes("b", "FLOAT32", (2,), 8),),
    ...               (("lc_keras_checksums", 30),))
    >>> f.constant_bytes, f.metadata_bytes, f.graph_bytes
    (8, 30, 50)
    """

    size_bytes: int
    index_bytes: int
    codebook_bytes: int
    constants: tuple
    metadata: tuple

    @property
    def constant_bytes(self):
        """Bytes of the other constants."""
        return sum(c.bytes for c in self.constants)

    @property
    def metadata_bytes(self):
        """Bytes of the metadata entries."""
        return sum(size for _, size in self.metadata)

    @property
    def graph_bytes(self):
        """Everything else: the graph and the alignment padding."""
        return (self.size_bytes - self.index_bytes - self.codebook_bytes
                - self.constant_bytes - self.metadata_bytes)


def file_bytes(path_or_bytes):
    """Splits an exported `.tflite` file into what its bytes store.

    Args:
        path_or_bytes: Path of a `.tflite` file written by `export_tflite`,
            or its bytes.

    Returns:
        A `FileBytes`, whose parts sum to the file size.

    Raises:
        ValueError: if the data is not a TFLite file or is corrupt.

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> from lc_keras.tflite_file import pack_model
    >>> f = file_bytes(pack_model(schema.ModelT(version=3), [b""]))
    >>> f.graph_bytes == f.size_bytes
    True
    """
    data, source = read_tflite_bytes(path_or_bytes, "file_bytes")
    return guarded_read(lambda: _split(data, source), source)


def _split(data, source):
    reader = TFLiteReader(data)
    record = check_integrity(data, source) or {"kernels": []}
    words, codebooks = set(), set()
    for kernel in record["kernels"]:
        words.update(int(i) for i in kernel["words"]["buffers"])
        codebooks.update(int(i) for i in kernel["codebook"]["buffers"])
    codebooks -= words
    metadata, metadata_buffers = [], set()
    for entry in reader.model.metadata or []:
        metadata_buffers.add(int(entry.buffer))
        metadata.append((reader.name(entry),
                         len(reader.buffers[int(entry.buffer)])))
    constants, seen = [], words | codebooks | metadata_buffers
    for subgraph in reader.model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            buffer = tensor.buffer
            if buffer is None or int(buffer) in seen or not reader.data(
                    tensor):
                continue
            seen.add(int(buffer))
            constants.append(ConstantBytes(
                name=reader.name(tensor),
                dtype=reader.type_names.get(tensor.type, str(tensor.type)),
                shape=tuple(int(d) for d in (
                    tensor.shape if tensor.shape is not None else ())),
                bytes=len(reader.data(tensor))))
    constants.sort(key=lambda c: -c.bytes)
    return FileBytes(
        size_bytes=len(data),
        index_bytes=sum(len(reader.buffers[i]) for i in words),
        codebook_bytes=sum(len(reader.buffers[i]) for i in codebooks),
        constants=tuple(constants), metadata=tuple(metadata))
