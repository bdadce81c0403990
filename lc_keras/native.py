"""LiteRT's own integer weights: the `"native"` layout of `export_tflite`.

A kernel whose codebook lies on an integer grid with a scale, `c = s * m`
with integers `m` in `[-(2**(b-1) - 1), 2**(b-1) - 1]` (per row:
`UniformQuantization`, binary, ternary, scaled binary and ternary, or any
fixed or adaptive codebook that happens to be affine with zero point 0), is
stored as LiteRT's `INT2`, `INT4` or `INT8` tensor of the fewest bits that
holds its codes, with one scale per output channel and zero point 0. The
stock interpreter runs such a filter with its dynamic-range kernels
(`FULLY_CONNECTED`, `CONV_2D`, `DEPTHWISE_CONV_2D`; XNNPACK's when the
default delegates are on): they quantize the float activations to int8 per
batch row at run time, so the outputs differ from the Keras quantized net
by that activation rounding (relative ~1e-2), not by the weights, which are
stored exactly.

How: the exporter converts the net with these kernels as float constants
Δ(Θ); `store_integers` then finds each one as the filter of such an op
(its exact float32 bytes in TFLite layout) and rewrites the tensor in
place: integer type, per-channel scales, the codes packed as LiteRT packs
them (INT4 two and INT2 four per byte, low bits first).
`verify_integers` checks the result (types, scales, zero points, no float
copy, scale * code == Δ(Θ) exactly in float32).
"""

import dataclasses

import numpy as np

from lc_keras.packing import ExportedKernel
from lc_keras.packing import packed_words
from lc_keras.packing import plan_kernel
from lc_keras.tflite_file import TFLiteReader
from lc_keras.tflite_file import pack_model

__all__ = [
    "FILTER_OPS",
    "IntegerKernel",
    "NATIVE_BITS",
    "integer_kernel",
    "pack_codes",
    "store_integers",
    "unpack_codes",
    "verify_integers",
]

#: LiteRT's integer weight widths, fewest first.
NATIVE_BITS = (2, 4, 8)
#: Ops whose float-input kernels take integer filters: the filter's
#: output-channel dimension (the quantized dimension) and the widths the
#: stock interpreter (ai-edge-litert 2.3) runs. A kernel needing fewer bits
#: is stored in the op's next width (CONV_2D's INT2 computes garbage and
#: DEPTHWISE_CONV_2D refuses INT2/INT4 filters with float input).
FILTER_OPS = {"FULLY_CONNECTED": (0, (2, 4, 8)), "CONV_2D": (0, (4, 8)),
              "DEPTHWISE_CONV_2D": (3, (8,))}
_TYPES = {2: "INT2", 4: "INT4", 8: "INT8"}


@dataclasses.dataclass(frozen=True)
class IntegerKernel:
    """A quantized kernel as integer codes times a scale per codebook row.

    Attributes:
        key: Key of the kernel in the compression state.
        q: Its `QuantizedKernel`.
        bits: Storage bits, one of `NATIVE_BITS`.
        scales: float32 `[groups]`, the scale of each codebook row.
        codes: int8 array of the kernel's (Keras) shape.

    Example:

    >>> import numpy as np
    >>> from lc_keras.quantized import QuantizedKernel
    >>> q = QuantizedKernel("d/kernel", "d", "kernel", "x",
    ...                     np.array([-0.5, 0.0, 0.5], np.float32),
    ...                     np.array([[0, 1], [2, 2]]), layer_type="Dense")
    >>> k = integer_kernel("d/kernel", q)
    >>> k.bits, k.scales.tolist(), k.codes.tolist()
    (2, [0.5], [[-1, 0], [1, 1]])
    """

    key: str
    q: object
    bits: int
    scales: np.ndarray
    codes: np.ndarray

    def exported(self):
        """The `lc_keras.packing.ExportedKernel` record: `bits` is the
        storage width, `words` the int32 words its bytes would fill."""
        plan = plan_kernel(self.key, self.q)
        return ExportedKernel(
            name=self.key, layer_name=self.q.layer_name, shape=self.q.shape,
            tflite_shape=plan.tflite_shape, k=self.q.k,
            groups=self.q.groups, bits=self.bits,
            words=packed_words(self.q.size, self.bits), group=self.q.group)

    def values(self):
        """`scale * code` in float32, the kernel's (Keras) shape."""
        return (self.scales[self.q.channel_index()]
                * self.codes.astype(np.float32)).astype(np.float32)


def _row_grid(row):
    """`(scale, codes)` of a sorted float32 codebook row on `s * {-m..m}`,
    the largest such scale (fewest codes), or None."""
    if not np.any(row):
        return np.float32(1.0), np.zeros(row.shape, np.int64)
    limit = (1 << (NATIVE_BITS[-1] - 1)) - 1
    smallest = np.min(np.abs(row[row != 0])).astype(np.float64)
    base = (smallest / np.arange(1, limit + 1)).astype(np.float32)
    candidates = np.concatenate([np.nextafter(base, np.float32(0)), base,
                                 np.nextafter(base, np.float32(np.inf))])
    codes = np.rint(row[None, :].astype(np.float64)
                    / candidates[:, None].astype(np.float64))
    fits = np.all(np.abs(codes) <= limit, axis=1) & np.all(
        candidates[:, None] * codes.astype(np.float32) == row[None, :],
        axis=1) & (candidates > 0)
    if not fits.any():
        return None
    best = int(np.argmax(np.where(fits, candidates, -np.inf)))
    return candidates[best], codes[best].astype(np.int64)


def integer_kernel(key, q):
    """The kernel as integer codes and scales, or None if not affine.

    Each codebook row must be `s * m` for integers `|m| <= 127` and a
    float32 scale `s > 0`, exactly in float32 (`s * m == c`); the bits are
    the fewest of `NATIVE_BITS` with `|m| <= 2**(bits-1) - 1`.

    Args:
        key: Key of the kernel in the compression state.
        q: Its `QuantizedKernel`.

    Returns:
        An `IntegerKernel`, or None.

    Example:

    >>> import numpy as np
    >>> from lc_keras.quantized import QuantizedKernel
    >>> q = QuantizedKernel("k", "d", "kernel", "x", [-0.3, 0.1], [[0, 1]])
    >>> integer_kernel("k", q).codes.tolist()
    [[-3, 1]]
    >>> print(integer_kernel("k", QuantizedKernel(
    ...     "k", "d", "kernel", "x", [-0.3, 0.31415927], [[0, 1]])))
    None
    """
    if q.k > (1 << NATIVE_BITS[-1]):
        return None
    scales, tables = [], []
    for row in q.codebook:
        found = _row_grid(np.asarray(row, np.float32))
        if found is None:
            return None
        scales.append(found[0])
        tables.append(found[1])
    tables = np.stack(tables)
    top = int(np.abs(tables).max())
    bits = next(b for b in NATIVE_BITS if top <= (1 << (b - 1)) - 1)
    codes = tables[q.channel_index(), q.indices].astype(np.int8)
    return IntegerKernel(key=key, q=q, bits=bits,
                         scales=np.asarray(scales, np.float32), codes=codes)


def pack_codes(codes, bits):
    """Signed codes as LiteRT stores an INT2/INT4/INT8 tensor's bytes.

    INT8 one code per byte; INT4 two and INT2 four per byte, the first code
    in the lowest bits (two's complement), the last byte zero-padded.

    Args:
        codes: Integer array (flattened in C order).
        bits: 2, 4 or 8.

    Returns:
        The bytes.

    Example:

    >>> pack_codes([1, -1, 0, 1], 2).hex(), pack_codes([-8, 7], 4).hex()
    ('4d', '78')
    """
    codes = np.asarray(codes).reshape(-1).astype(np.int64)
    if bits == 8:
        return codes.astype(np.int8).tobytes()
    per = 8 // bits
    codes = np.concatenate([codes & ((1 << bits) - 1),
                            np.zeros(-codes.size % per, np.int64)])
    shifts = np.arange(per, dtype=np.int64) * bits
    packed = np.bitwise_or.reduce(codes.reshape(-1, per) << shifts, axis=1)
    return packed.astype(np.uint8).tobytes()


def unpack_codes(data, bits, count):
    """Inverse of `pack_codes`: `count` signed codes as int8.

    Example:

    >>> unpack_codes(bytes.fromhex("4d"), 2, 4).tolist()
    [1, -1, 0, 1]
    """
    raw = np.frombuffer(bytes(data), np.uint8).astype(np.int64)
    if bits == 8:
        return raw[:count].astype(np.uint8).view(np.int8)
    per = 8 // bits
    shifts = np.arange(per, dtype=np.int64) * bits
    fields = ((raw[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)
    fields = np.where(fields >= 1 << (bits - 1), fields - (1 << bits), fields)
    return fields[:count].astype(np.int8)


def _tflite_arrays(kernel):
    """`(values, codes, rows)` of a kernel in TFLite layout, C order."""
    plan = plan_kernel(kernel.key, kernel.q)
    return (np.ascontiguousarray(plan.to_tflite(kernel.q.values()),
                                 np.float32),
            np.ascontiguousarray(plan.to_tflite(kernel.codes)),
            np.ascontiguousarray(plan.to_tflite(kernel.q.channel_index())))


def _channel_scales(kernel, rows, shape, dim):
    """Per-channel scales along `dim` of the TFLite tensor, or None when a
    channel mixes codebook rows."""
    rows = rows.reshape(shape)
    moved = np.moveaxis(rows, dim, 0).reshape(shape[dim], -1)
    if moved.size and not np.all(moved == moved[:, :1]):
        return None
    return kernel.scales[moved[:, 0]] if moved.size else None


def _filters(reader):
    """`{float32 bytes: [(tensor, dim)]}` of every float filter of an op
    in `FILTER_OPS`, and the number of tensors using each buffer."""
    schema = reader.schema
    filters, users = {}, {}
    for subgraph in reader.model.subgraphs or []:
        tensors = subgraph.tensors or []
        for t in tensors:
            users[t.buffer] = users.get(t.buffer, 0) + 1
        for op in subgraph.operators or []:
            spec = FILTER_OPS.get(reader.op_name(op.opcodeIndex))
            if spec is None or len(op.inputs) < 2 or op.inputs[1] < 0:
                continue
            t = tensors[int(op.inputs[1])]
            if t.type == schema.TensorType.FLOAT32 and reader.data(t):
                filters.setdefault(reader.data(t), []).append((t, spec))
    return filters, users


def store_integers(data, kernels):
    """Rewrites the float filters of `kernels` as LiteRT integer tensors.

    Args:
        data: The bytes of a converted `.tflite` file that holds each
            kernel's values Δ(Θ) as the float32 filter of a `FILTER_OPS` op.
        kernels: `IntegerKernel`s.

    Returns:
        `(bytes, stored, missing)`: the rewritten file, the `IntegerKernel`s
        stored (with `bits` widened to what their op runs) and the keys of
        the kernels not found as such a filter (left float).

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> empty = pack_model(schema.ModelT(version=3), [b""])
    >>> store_integers(empty, [])[1:]
    ([], [])
    """
    reader = TFLiteReader(data)
    schema = reader.schema
    filters, users = _filters(reader)
    buffers = list(reader.buffers)
    stored, missing = [], []
    for kernel in kernels:
        values, codes, rows = _tflite_arrays(kernel)
        found = filters.get(values.tobytes(), [])
        scales = None
        if len(found) == 1 and users[found[0][0].buffer] == 1:
            tensor, (dim, widths) = found[0]
            shape = tuple(int(d) for d in tensor.shape)
            scales = _channel_scales(kernel, rows, shape, dim)
        if scales is None:
            missing.append(kernel.key)
            continue
        kernel = dataclasses.replace(
            kernel, bits=min(b for b in widths if b >= kernel.bits))
        stored.append(kernel)
        tensor.type = getattr(schema.TensorType, _TYPES[kernel.bits])
        quantization = schema.QuantizationParametersT()
        quantization.scale = [float(s) for s in scales]
        quantization.zeroPoint = [0] * len(scales)
        quantization.quantizedDimension = dim
        tensor.quantization = quantization
        buffers[tensor.buffer] = pack_codes(codes, kernel.bits)
    return pack_model(reader.model, buffers), stored, missing


def _integer_tensors(reader):
    """`{(type name, packed bytes): [tensor]}` of the integer constants."""
    found = {}
    for subgraph in reader.model.subgraphs or []:
        for t in subgraph.tensors or []:
            name = reader.type_names.get(t.type, "")
            if name in _TYPES.values() and reader.data(t):
                found.setdefault((name, reader.data(t)), []).append(t)
    return found


def verify_integers(data, kernels):
    """Checks that every kernel is stored as its exact integer tensor.

    For each kernel: a tensor of type `INT<bits>` holding its packed codes,
    with zero points 0 and per-channel scales such that `scale * code`
    equals Δ(Θ) exactly in float32; and no float32 copy of Δ(Θ) left.

    Args:
        data: The bytes of the `.tflite` file.
        kernels: `IntegerKernel`s.

    Raises:
        ValueError: naming the kernel that is not stored so.

    Example:

    >>> from ai_edge_litert import schema_py_generated as schema
    >>> verify_integers(pack_model(schema.ModelT(version=3), [b""]), [])
    """
    reader = TFLiteReader(data)
    tensors = _integer_tensors(reader)
    floats = {reader.data(t) for s in reader.model.subgraphs or []
              for t in s.tensors or [] if t.type == 0 and reader.data(t)}
    for kernel in kernels:
        where = (f"kernel '{kernel.key}' of layer '{kernel.q.layer_name}' "
                 f"({kernel.q.size} weights, {_TYPES[kernel.bits]})")
        values, codes, _ = _tflite_arrays(kernel)
        raw = pack_codes(codes, kernel.bits)
        found = tensors.get((_TYPES[kernel.bits], raw), [])
        if len(found) != 1:
            raise ValueError(
                f"The TFLite file does not store {where} as one integer "
                f"tensor of its codes (found {len(found)}).")
        _check_tensor(found[0], raw, kernel, values, where)
        if values.tobytes() in floats:
            raise ValueError(
                f"The TFLite file also stores {where} as a float kernel.")


def _check_tensor(tensor, raw, kernel, values, where):
    quant = tensor.quantization
    shape = tuple(int(d) for d in tensor.shape)
    if quant is None or quant.scale is None:
        raise ValueError(f"The integer tensor of {where} has no scales.")
    scales = np.asarray(quant.scale, np.float32)
    zero = np.asarray(quant.zeroPoint if quant.zeroPoint is not None
                      else [], np.int64)
    dim = int(quant.quantizedDimension)
    if scales.size != shape[dim] or zero.size != scales.size or zero.any():
        raise ValueError(
            f"The integer tensor of {where} has {scales.size} scales and "
            f"zero points {sorted(set(zero.tolist()))} along dimension "
            f"{dim} of shape {shape}; expected one scale per channel and "
            "zero point 0.")
    codes = unpack_codes(raw, kernel.bits, values.size).reshape(shape)
    bshape = [1] * len(shape)
    bshape[dim] = shape[dim]
    decoded = scales.reshape(bshape) * codes.astype(np.float32)
    if not np.array_equal(decoded.astype(np.float32), values.reshape(shape)):
        raise ValueError(
            f"The integer tensor of {where} does not decode to the quantized "
            "kernel: scale * code differs from Δ(Θ).")

