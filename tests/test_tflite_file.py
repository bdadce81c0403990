"""Tests of reading, inspecting and verifying `.tflite` files
(lc_keras.tflite_file).

The synthetic files are built with the flatbuffer schema (no converter);
the others are written by the exporter.
"""

import importlib.util
import math
import os

import keras
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from test_export import _dense
from test_export import quantize

import lc_keras as lc
from lc_keras.export import export_quantized
from lc_keras.packing import plan_kernel
from lc_keras.quantized import QuantizedKernel
from lc_keras.tflite_file import CHECKSUM_METADATA
from lc_keras.tflite_file import TFLiteReader
from lc_keras.tflite_file import add_checksums
from lc_keras.tflite_file import check_integrity
from lc_keras.tflite_file import find_packed_kernels
from lc_keras.tflite_file import guarded_read
from lc_keras.tflite_file import inspect_tflite
from lc_keras.tflite_file import pack_model
from lc_keras.tflite_file import read_tflite_bytes
from lc_keras.tflite_file import verify_export

T = schema.TensorType
OPS = schema.BuiltinOperator


def _plan(k=4, shape=(6, 3), seed=0):
    rng = np.random.default_rng(seed)
    q = QuantizedKernel("d/kernel", "d", "kernel", "x",
                        np.sort(rng.normal(size=(1, k))).astype(np.float32),
                        rng.integers(0, k, shape), layer_type="Dense")
    return plan_kernel("d/kernel", q)


def _model(tensors=(), ops=(), codes=()):
    """A ModelT of one subgraph; `tensors` as `(type, buffer, shape)`."""
    return schema.ModelT(
        version=3,
        operatorCodes=[schema.OperatorCodeT(builtinCode=c) for c in codes],
        subgraphs=[schema.SubGraphT(
            tensors=[schema.TensorT(type=t, buffer=b, shape=list(s),
                                    name=f"t{i}")
                     for i, (t, b, s) in enumerate(tensors)],
            operators=list(ops))])


def _stored(plan):
    """Bytes of a file that stores the plan's words and codebook."""
    buffers = [b"", plan.words.astype("<i4").tobytes(),
               plan.q.codebook.reshape(-1).astype("<f4").tobytes()]
    model = _model([(T.INT32, 1, plan.words.shape),
                    (T.FLOAT32, 2, (plan.q.k,))])
    return pack_model(model, buffers)


# ---------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------


def test_reader_round_trip():
    model = _model([(T.INT32, 1, (2,)), (T.FLOAT32, 0, (3,))],
                   ops=[schema.OperatorT(opcodeIndex=0),
                        schema.OperatorT(opcodeIndex=1)],
                   codes=[OPS.ADD, OPS.CUSTOM])
    model.operatorCodes[1].customCode = "MyOp"
    data = pack_model(model, [b"", b"\x01\x00\x00\x00\x02\x00\x00\x00"])
    reader = TFLiteReader(data)
    assert reader.schema is schema
    assert reader.buffers == [b"", b"\x01\x00\x00\x00\x02\x00\x00\x00"]
    tensors = reader.model.subgraphs[0].tensors
    assert [reader.name(t) for t in tensors] == ["t0", "t1"]
    assert reader.data(tensors[0]) == reader.buffers[1]
    assert reader.data(tensors[1]) == b""
    assert [reader.op_name(i) for i in (0, 1)] == ["ADD", "CUSTOM:MyOp"]
    assert reader.metadata_names() == []
    # 16-byte aligned buffers, as the converter writes them.
    assert data.find(reader.buffers[1]) % 16 == 0
    summary = inspect_tflite(data)
    assert summary.ops == ((0, "ADD"), (0, "CUSTOM:MyOp"))
    assert summary.custom_ops == ["CUSTOM:MyOp"]
    assert [(t.name, t.dtype, t.shape, t.data_bytes)
            for t in summary.tensors] == [("t0", "INT32", (2,), 8),
                                          ("t1", "FLOAT32", (3,), 0)]
    assert summary.constant_bytes == 8 and summary.packed_kernels == ()


def test_not_a_tflite_file():
    with pytest.raises(ValueError, match="no 'TFL3' identifier"):
        TFLiteReader(b"\x00" * 64)
    data = pack_model(_model([(T.INT32, 1, (2,))]), [b"", b"12345678"])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        guarded_read(lambda: TFLiteReader(data[:20]).model.subgraphs[0]
                     .tensors[0], "x")


def test_read_tflite_bytes(tmp_path):
    data = _stored(_plan())
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    assert read_tflite_bytes(data, "me") == (data, "The given .tflite bytes")
    assert read_tflite_bytes(str(path), "me") == (data,
                                                  f"The file {str(path)!r}")
    assert read_tflite_bytes(path, "me")[0] == data
    with pytest.raises(TypeError, match="me expects a `.tflite` path"):
        read_tflite_bytes(None, "me")
    with pytest.raises(FileNotFoundError):
        read_tflite_bytes(str(tmp_path / "missing.tflite"), "me")


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------


def test_checksums_round_trip():
    plan = _plan()
    data = add_checksums(_stored(plan), [plan])
    reader = TFLiteReader(data)
    assert reader.metadata_names() == [CHECKSUM_METADATA]
    record = check_integrity(data, "m")
    assert record["file_bytes"] == len(data)
    (kernel,) = record["kernels"]
    assert (kernel["kernel"], kernel["layer"]) == ("d/kernel", "d")
    assert kernel["words"]["buffers"] == [1]
    assert kernel["codebook"]["buffers"] == [2]
    assert read_tflite_bytes(data, "me")[0] == data
    # A file without the record passes unverified.
    assert check_integrity(_stored(plan), "m") is None


def test_checksums_need_the_kernels_stored():
    plan, other = _plan(), _plan(seed=1)
    with pytest.raises(ValueError, match="does not store the words of "
                       "kernel 'd/kernel'.*cannot be checksummed"):
        add_checksums(_stored(other), [plan])


@pytest.mark.parametrize("part,what", [("words", "packed indices"),
                                       ("codebook", "codebook")])
def test_a_changed_kernel_is_named(part, what):
    plan = _plan()
    data = add_checksums(_stored(plan), [plan])
    content = (plan.words.astype("<i4").tobytes() if part == "words"
               else plan.q.codebook.reshape(-1).astype("<f4").tobytes())
    at = data.find(content)
    bad = bytearray(data)
    bad[at] ^= 0x01
    with pytest.raises(ValueError, match=f"m is truncated or corrupt: the "
                       f"{what} of kernel 'd/kernel' \\(layer 'd'\\)"):
        check_integrity(bytes(bad), "m")


def test_corrupt_files_are_refused():
    plan = _plan()
    data = add_checksums(_stored(plan), [plan])
    start = data.find(b'{"lc_keras_checksums"')
    cut = data.index(b"}]}", start) + 8  # the record itself is intact
    with pytest.raises(ValueError, match=f"it has {cut} bytes, but "
                       f"{len(data)} were written"):
        check_integrity(data[:cut], "m")
    broken = data[:start] + b"[" + data[start + 1:]
    with pytest.raises(ValueError, match="checksum record cannot be read"):
        check_integrity(broken, "m")
    # A change outside the kernels: the record's own bytes.
    at = data.find(b'"file_bytes"')
    changed = data[:at] + b"'" + data[at + 1:]
    with pytest.raises(ValueError, match="cannot be read"):
        check_integrity(changed, "m")
    # The first byte is outside every buffer.
    outside = bytes([data[0] ^ 0x01]) + data[1:]
    with pytest.raises(ValueError, match="CRC32 checksum does not match its "
                       "content"):
        check_integrity(outside, "m")


def test_packed_kernels_without_checksums_are_refused(tmp_path, small):
    model, variables, state = small
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    reader = TFLiteReader(open(info.path, "rb").read())
    assert len(find_packed_kernels(reader)) == 1
    (record,) = [m for m in reader.model.metadata
                 if reader.name(m) == CHECKSUM_METADATA]
    assert record.buffer == len(reader.buffers) - 1  # added last
    reader.model.metadata.remove(record)
    stripped = pack_model(reader.model, reader.buffers[:-1])
    with pytest.raises(ValueError, match="has packed kernels \\(e.g. "
                       "'lc/.*packed_indices'\\) but no 'lc_keras_checksums'"
                       " record"):
        inspect_tflite(stripped)


# ---------------------------------------------------------------------------
# Verification of an export
# ---------------------------------------------------------------------------


@pytest.fixture
def small():
    model = _dense()
    variables, state = quantize(model, {"q": (4, "random", False, None)})
    return model, variables, state


def test_rejects_non_builtin_ops(tmp_path, small, monkeypatch):
    model, variables, state = small
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    data = open(info.path, "rb").read()
    plans = [plan_kernel(key, q) for key, q in state.items()]
    verify_export(data, plans)  # the real file passes
    monkeypatch.setattr(TFLiteReader, "op_name",
                        lambda self, index: "CUSTOM:FlexMatMul")
    with pytest.raises(ValueError, match="non-builtin ops.*FlexMatMul"):
        verify_export(data, plans)


def test_verify_finds_float_copies_of_a_kernel():
    plan = _plan()
    words = plan.words.astype("<i4").tobytes()
    for values in (plan.q.values(), plan.to_tflite(plan.q.values())):
        floats = values.astype("<f4").tobytes()
        data = pack_model(
            _model([(T.INT32, 1, plan.words.shape),
                    (T.FLOAT32, 2, values.shape)]), [b"", words, floats])
        with pytest.raises(ValueError, match="layer 'd' \\(kernel "
                           "'d/kernel', 18 weights, k=4\\) as a float"):
            verify_export(data, [plan])
    # A float initial value assigned to the kernel's cache.
    zeros = np.zeros(plan.tflite_shape, "<f4").tobytes()
    assign = schema.OperatorT(opcodeIndex=0, inputs=[0, 2], outputs=[])
    data = pack_model(
        _model([(T.INT32, 1, plan.words.shape), (T.INT32, 0, ()),
                (T.FLOAT32, 2, plan.tflite_shape)], ops=[assign],
               codes=[OPS.ASSIGN_VARIABLE]), [b"", words, zeros])
    with pytest.raises(ValueError, match="initial float value for the cache"):
        verify_export(data, [plan])
    # Words and codebook only: fine.
    verify_export(_stored(plan), [plan])


# ---------------------------------------------------------------------------
# Inspection of exported files
# ---------------------------------------------------------------------------


def test_inspect_tool_report(tmp_path, small):
    model, variables, state = small
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    spec = importlib.util.spec_from_file_location(
        "inspect_tflite_tool",
        os.path.join(os.path.dirname(__file__), "..", "tools",
                     "inspect_tflite.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = tool.report(info.path)
    assert f"Size: {info.size_bytes:,} bytes" in text
    assert "FULLY_CONNECTED" in text
    assert "packed_indices" in text
    assert "non-builtin ops: none" in text
    (kernel,) = info.kernels
    assert kernel.bits == 2 and kernel.words == math.ceil(120 * 2 / 32)
    assert f"{32 * kernel.words / kernel.size:.3f}" in text  # bits/weight


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_tflite_is_refused_clearly(tmp_path, cut):
    net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    model.direct_compression()
    path = str(tmp_path / "m.tflite")
    lc.export_tflite(model, path)
    data = open(path, "rb").read()
    with pytest.raises(ValueError, match="truncated or corrupt"):
        lc.inspect_tflite(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match="TFL3"):
        lc.inspect_tflite(b"PK\x03\x04ZIP!" + data[8:64])
