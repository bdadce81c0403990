"""Tests of lc_keras.native and `export_tflite(layout="native")`.

Kernels on an integer grid are stored as LiteRT INT2/INT4/INT8 filters with
per-channel scales. The interpreter runs them with its dynamic-range kernels,
which quantize the float activations to int8 per batch row at run time: the
weights are exact (checked bit for bit), the outputs differ from the Keras
quantized net by that activation rounding, about 1/127 of each layer's input
range per layer, so outputs are compared within 4 % of their largest value.
"""

import doctest
import os
import warnings

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from test_export import run_tflite

import lc_keras as lc
from lc_keras import native
from lc_keras.native import integer_kernel
from lc_keras.native import pack_codes
from lc_keras.native import unpack_codes
from lc_keras.quantized import QuantizedKernel
from lc_keras.tflite_file import TFLiteReader
from lc_keras.tflite_file import pack_model

# Dynamic-range kernels quantize activations to int8 (see the docstring).
RTOL_OF_MAX = 4e-2


def kernel(codebook, indices=None, channel_axes=(), layer_type="Dense"):
    codebook = np.asarray(codebook, np.float32)
    k = codebook.shape[-1]
    if indices is None:
        indices = np.arange(12).reshape(4, 3) % k
    return QuantizedKernel("d/kernel", "d", "kernel", "x", codebook, indices,
                           channel_axes=channel_axes, layer_type=layer_type)


@pytest.mark.parametrize("codebook,bits,scale", [
    ([-1.0, 1.0], 2, 1.0),
    ([-0.25, 0.0, 0.25], 2, 0.25),
    ([-0.3, 0.1], 4, 0.1),
    (np.arange(-7, 8) * np.float32(0.013), 4, np.float32(0.013)),
    (np.arange(-127, 128) * np.float32(0.002), 8, np.float32(0.002)),
    ([0.0, 0.0], 2, 1.0),
])
def test_integer_kernel_finds_the_grid(codebook, bits, scale):
    q = kernel([codebook])
    found = integer_kernel("k", q)
    assert found.bits == bits
    np.testing.assert_allclose(found.scales, [scale], rtol=1e-6)
    np.testing.assert_array_equal(found.values(), q.values())


@pytest.mark.parametrize("codebook", [
    [-0.3, 0.31415927], [0.1, 0.2, 0.31415927], [-1.0, 200.0],
    list(range(-200, 56))])
def test_integer_kernel_refuses_other_codebooks(codebook):
    q = kernel([codebook], indices=np.zeros((4, 3), np.int32))
    assert integer_kernel("k", q) is None


def test_integer_kernel_per_channel_rows():
    q = kernel([[-0.5, 0.0, 0.5], [-3.0, 1.0, 2.0], [0.0, 0.0, 0.0]],
               channel_axes=(1,))
    found = integer_kernel("k", q)
    assert found.bits == 4
    np.testing.assert_allclose(found.scales, [0.5, 1.0, 1.0])
    np.testing.assert_array_equal(found.values(), q.values())


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pack_codes_round_trip(bits):
    top = (1 << (bits - 1)) - 1
    codes = np.random.default_rng(bits).integers(-top - 1, top + 1, 37)
    data = pack_codes(codes, bits)
    assert len(data) == -(-37 * bits // 8)
    np.testing.assert_array_equal(unpack_codes(data, bits, 37), codes)


# ----------------------------------------------------------------------------
# Exported files.
# ----------------------------------------------------------------------------


def net():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, activation="relu", name="dw")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(12, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(4, name="fc2")(x)
    return keras.Model(inputs, outputs)


CODEBOOKS = {
    "uniform4": (lambda: lc.UniformQuantization(4), (4, 8, 4, 4)),
    "uniform8_per_channel": (
        lambda: lc.UniformQuantization(8, per_channel=True), (8, 8, 8, 8)),
    "uniform2": (lambda: lc.UniformQuantization(2), (4, 8, 2, 2)),
    "scaled_ternary": (lc.ScaledTernaryQuantization, (4, 8, 2, 2)),
    "binary": (lc.BinaryQuantization, (4, 8, 2, 2)),
    "ternary": (lc.TernaryQuantization, (4, 8, 2, 2)),
    "scaled_binary_per_channel": (
        lambda: lc.ScaledBinaryQuantization(per_channel=True), (4, 8, 2, 2)),
    "affine_fixed": (
        lambda: lc.FixedCodebook([-0.3, 0.0, 0.1, 0.2]), (4, 8, 4, 4)),
}


def export(codebook, tmp_path):
    model = lc.LCModel(net(), compression=codebook)
    model.direct_compression()
    path = os.path.join(tmp_path, "n.tflite")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = lc.export_tflite(model, path, layout="native")
    mine = [str(w.message) for w in caught
            if "layout='native'" in str(w.message)]
    return model, path, info, mine


def run(path, x):
    return run_tflite(path, x, Interpreter(model_path=path, num_threads=1))


def filters(path):
    """{op name: (type name, scales, zero points, quantized dim)}."""
    reader = TFLiteReader(open(path, "rb").read())
    graph = reader.model.subgraphs[0]
    out = {}
    for op in graph.operators:
        name = reader.op_name(op.opcodeIndex)
        if name in native.FILTER_OPS:
            t = graph.tensors[op.inputs[1]]
            quant = t.quantization
            out.setdefault(name, []).append((
                reader.type_names[t.type],
                None if quant is None or quant.scale is None
                else np.asarray(quant.scale),
                None if quant is None or quant.zeroPoint is None
                else np.asarray(quant.zeroPoint),
                None if quant is None else quant.quantizedDimension,
                tuple(t.shape)))
    return out


@pytest.mark.parametrize("name", sorted(CODEBOOKS))
def test_native_export_types_scales_and_outputs(name, tmp_path):
    make, bits = CODEBOOKS[name]
    model, path, info, mine = export(make(), tmp_path)
    assert not mine
    assert info.layout == "native"
    assert tuple(k.bits for k in info.kernels) == bits
    state = model.compression_state()
    found = filters(path)
    ops = [("CONV_2D", 0), ("DEPTHWISE_CONV_2D", 0), ("FULLY_CONNECTED", 0),
           ("FULLY_CONNECTED", 1)]
    for (op, i), b, q in zip(ops, bits, state.values()):
        type_name, scales, zeros, dim, shape = found[op][i]
        assert type_name == f"INT{b}"
        assert dim == native.FILTER_OPS[op][0]
        assert scales.size == shape[dim] and not zeros.any()
        expected = integer_kernel("k", q).scales
        if q.groups == 1:
            np.testing.assert_array_equal(scales, np.full(shape[dim],
                                                          expected[0]))
    x = np.random.default_rng(0).normal(size=(3, 10, 10, 3)).astype("f4")
    want = keras.ops.convert_to_numpy(model.quantized_model()(x))
    got = run(path, x)
    assert np.abs(got - want).max() <= RTOL_OF_MAX * np.abs(want).max()
    assert lc.inspect_tflite(path).size_bytes == info.size_bytes
    # lc.load_interpreter runs it as stored.
    np.testing.assert_array_equal(
        run_tflite(path, x, lc.load_interpreter(path)), got)


def test_non_affine_kernels_fall_back_to_packed_with_a_warning(tmp_path):
    model = lc.LCModel(net(), compression={
        "fc1": lc.AdaptiveQuantization(3), "*": lc.UniformQuantization(4)})
    model.direct_compression()
    path = os.path.join(tmp_path, "n.tflite")
    with pytest.warns(UserWarning, match="stores these kernels packed.*fc1"):
        info = lc.export_tflite(model, path, layout="native")
    assert {k.name: k.bits for k in info.kernels}["fc1/kernel"] == 2
    packed = [p.name for p in lc.inspect_tflite(path).packed_kernels]
    assert len(packed) == 1 and "fc1/kernel" in packed[0]
    assert filters(path)["FULLY_CONNECTED"][1][0] == "INT4"
    x = np.random.default_rng(1).normal(size=(2, 10, 10, 3)).astype("f4")
    want = keras.ops.convert_to_numpy(model.quantized_model()(x))
    assert np.abs(run(path, x) - want).max() <= RTOL_OF_MAX * np.abs(
        want).max()
    # lc.load_interpreter expands the packed kernel.
    np.testing.assert_allclose(
        run_tflite(path, x, lc.load_interpreter(path)), run(path, x),
        rtol=1e-5, atol=1e-5)


def test_verify_integers_names_a_changed_scale(tmp_path):
    model, path, _, _ = export(lc.UniformQuantization(4), tmp_path)
    state = model.compression_state()
    kernels = [integer_kernel(key, q) for key, q in state.items()]
    data = open(path, "rb").read()
    reader = TFLiteReader(data)
    graph = reader.model.subgraphs[0]
    for op in graph.operators:
        if reader.op_name(op.opcodeIndex) == "FULLY_CONNECTED":
            t = graph.tensors[op.inputs[1]]
            t.quantization.scale = [s * 1.5 for s in t.quantization.scale]
            break
    changed = pack_model(reader.model, list(reader.buffers))
    # As stored: the depthwise kernel widened to INT8.
    fixed = [native.IntegerKernel(k.key, k.q, b, k.scales, k.codes)
             for k, b in zip(kernels, (4, 8, 4, 4))]
    native.verify_integers(data, fixed)
    with pytest.raises(ValueError, match="kernel 'fc1/kernel'.*does not "
                       "decode to the quantized kernel"):
        native.verify_integers(changed, fixed)


def test_native_layout_is_listed():
    from lc_keras import export as export_module

    assert export_module.LAYOUTS == ("packed", "cached", "native")


def test_docstring_examples():
    result = doctest.testmod(native, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
