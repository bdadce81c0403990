"""Tests of load-time expansion of exported files (lc_keras.runtime)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from test_export import MIXED_PLAN
from test_export import _conv1d
from test_export import _conv2d
from test_export import _conv2d_transpose
from test_export import _dense
from test_export import _depthwise
from test_export import _embedding
from test_export import make_input
from test_export import mixed_model
from test_export import quantize
from test_export import run_tflite

import lc_keras as lc
from lc_keras.export import export_quantized
from lc_keras.tflite_file import TFLiteReader

ATOL = 1e-5
# Nothing of the decoding or of the cache may survive the expansion.
DECODING_OPS = {"BITCAST", "RIGHT_SHIFT", "FLOOR_MOD", "RANGE", "CALL_ONCE",
                "IF", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}
WEIGHT_INPUT = {"FULLY_CONNECTED": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1,
                "TRANSPOSE_CONV": 1}


def ops_of(data):
    reader = TFLiteReader(data)
    return reader, [[reader.op_name(op.opcodeIndex) for op in s.operators]
                    for s in reader.model.subgraphs]


def assert_expanded(data):
    """One subgraph, no decoding op, every weight input a constant."""
    reader, ops = ops_of(data)
    assert len(ops) == 1, ops
    assert not DECODING_OPS & set(ops[0]), ops[0]
    main = reader.model.subgraphs[0]
    for op in main.operators:
        position = WEIGHT_INPUT.get(reader.op_name(op.opcodeIndex))
        if position is not None:
            weight = main.tensors[int(op.inputs[position])]
            assert reader.data(weight), reader.name(weight)
    names = [reader.name(t) for t in main.tensors]
    assert not [n for n in names if "packed_indices" in n], names


def compare(model, path, batches=(1, 8, 1), seed=1):
    """Expanded == stored file == Keras, at several batch sizes."""
    rng = np.random.default_rng(seed)
    expanded = lc.load_interpreter(path)
    stored = Interpreter(model_path=str(path))
    for batch in batches:
        x = make_input(model, batch, rng)
        want = keras.ops.convert_to_numpy(model(x, training=False))
        got = run_tflite(None, x, expanded)
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
        np.testing.assert_allclose(got, run_tflite(None, x, stored),
                                   rtol=0, atol=1e-6)


CASES = [
    (_dense, 2, "binary", False),
    (_dense, 8, "random", False),        # 3 bits: the shift decoding
    (_dense, 16, "random", True),
    (_conv1d, 256, "random", False),
    (_conv2d, 7, "powers_of_two", False),
    (_depthwise, 3, "scaled_ternary", True),
    (_embedding, 4, "random", True),
    (_conv2d_transpose, 4, "random", False),
]


@pytest.mark.parametrize("layout", ["packed", "cached"])
@pytest.mark.parametrize(
    "build,k,kind,per_channel", CASES,
    ids=[f"{c[0].__name__[1:]}-k{c[1]}-{c[2]}{'-pc' if c[3] else ''}"
         for c in CASES])
def test_expanded_matches_keras(tmp_path, build, k, kind, per_channel,
                                layout):
    model = build()
    variables, state = quantize(model, {"q": (k, kind, per_channel, None)})
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"), layout=layout)
    data = lc.expand_tflite(info.path)
    assert_expanded(data)
    compare(model, info.path)


@pytest.mark.parametrize("layout", ["packed", "cached"])
def test_mixed_model_expands(tmp_path, layout):
    model = mixed_model()
    variables, state = quantize(model, MIXED_PLAN, normalize=True)
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"), layout=layout)
    data = lc.expand_tflite(info.path)
    assert_expanded(data)
    # The float kernels are now in the model: at least 4 bytes per weight.
    weights = sum(q.size for q in state.values())
    assert len(data) > 4 * weights
    compare(model, info.path)


def test_expanded_equals_plain_float_conversion(tmp_path):
    # Same ops as converting the float model directly.
    model = keras.Sequential([keras.Input((20,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    variables, state = quantize(
        model, {layer.name: (4, "random", False, None)
                for layer in model.layers})
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"), layout="cached")
    frozen = [(v, tf.constant(v.numpy())) for v in model.variables]

    @tf.function(input_signature=[tf.TensorSpec((None, 20), tf.float32)])
    def forward(x):
        with keras.StatelessScope(state_mapping=frozen):
            return model(x, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [forward.get_concrete_function()], tf.Module())
    _, float_ops = ops_of(converter.convert())
    _, expanded_ops = ops_of(lc.expand_tflite(info.path))
    assert expanded_ops == float_ops


def test_static_batch_expands(tmp_path):
    # The runtime zero comes from the data here, not the batch size.
    model = keras.Sequential([keras.Input((6,), batch_size=2),
                              keras.layers.Dense(3, name="q")])
    variables, state = quantize(model, {"q": (4, "random", False, None)})
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    assert_expanded(lc.expand_tflite(info.path))
    compare(model, info.path, batches=(2,))


def test_signature_runner_after_expansion(tmp_path):
    model = _dense()
    variables, state = quantize(model, {"q": (4, "random", False, None)})
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    interpreter = lc.load_interpreter(info.path)
    runner = interpreter.get_signature_runner()
    x = np.random.default_rng(0).normal(size=(3, 12)).astype(np.float32)
    (out,) = runner(**{next(iter(runner.get_input_details())): x}).values()
    np.testing.assert_allclose(out, model(x), rtol=0, atol=ATOL)


def test_from_bytes_and_lcmodel(tmp_path):
    net = keras.Sequential([keras.Input((10,)), keras.layers.Dense(6),
                            keras.layers.Dense(3)])
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    model.direct_compression()
    path = str(tmp_path / "m.tflite")
    lc.export_tflite(model, path, layout="cached")
    with open(path, "rb") as f:
        stored = f.read()
    assert lc.expand_tflite(stored) == lc.expand_tflite(path)
    x = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    got = run_tflite(None, x, lc.load_interpreter(stored, num_threads=1))
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=0,
                               atol=ATOL)
    # expand=False: the file as stored (cache and all).
    assert "CALL_ONCE" in ops_of(stored)[1][0]
    got = run_tflite(None, x, lc.load_interpreter(path, expand=False))
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=0,
                               atol=ATOL)


def test_file_is_left_untouched(tmp_path):
    model = _dense()
    variables, state = quantize(model, {"q": (2, "binary", False, None)})
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    before = open(info.path, "rb").read()
    lc.expand_tflite(info.path)
    assert open(info.path, "rb").read() == before
    assert os.listdir(tmp_path) == ["m.tflite"]


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_float_model_is_refused():
    function = tf.function(lambda x: x * 2.0 + 1.0,
                           input_signature=[tf.TensorSpec([None, 3])])
    data = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()]).convert()
    with pytest.raises(ValueError, match="no kernel decoded at run time"):
        lc.expand_tflite(data)


def test_not_a_tflite_file(tmp_path):
    with pytest.raises(ValueError, match="Not a TFLite flatbuffer"):
        lc.expand_tflite(b"\x00" * 64)
    path = tmp_path / "x.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="Not a TFLite flatbuffer"):
        lc.load_interpreter(str(path))


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="expects a `.tflite` path or its "
                       "bytes. Received: 3"):
        lc.expand_tflite(3)
    missing = str(tmp_path / "missing.tflite")
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        lc.load_interpreter(missing)
    with pytest.raises(TypeError, match="inspect_tflite expects a `.tflite` "
                       "path or its bytes"):
        lc.inspect_tflite(None)


def test_file_without_the_zero_marker_is_refused(tmp_path, monkeypatch):
    # As written by lc_keras before the marker existed.
    from lc_keras import export

    monkeypatch.setattr(export, "RUNTIME_ZERO_NAME", "some_zero")
    model = _dense()
    variables, state = quantize(model, {"q": (4, "random", False, None)})
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    with pytest.raises(ValueError, match="no 'lc_runtime_zero' tensor.*"
                       "Export it again"):
        lc.expand_tflite(info.path)


# ---------------------------------------------------------------------------
# Evaluating only the decoding
# ---------------------------------------------------------------------------


def _whole_invoke(reader, kernels):
    """The previous evaluation: one invoke of the whole file on zero inputs,
    every tensor preserved."""
    from ai_edge_litert.interpreter import OpResolverType

    from lc_keras.tflite_file import pack_model

    interpreter = Interpreter(
        model_content=pack_model(reader.model, list(reader.buffers)),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"],
                               np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    return {i: np.array(interpreter.get_tensor(i)) for i in kernels}


@pytest.mark.parametrize("case", ["mixed-packed", "mixed-cached",
                                  "dense-k8", "static-batch"])
def test_decoding_only_is_bit_exact(tmp_path, monkeypatch, case):
    from lc_keras import runtime

    if case.startswith("mixed"):
        model, plan = mixed_model(), MIXED_PLAN
    elif case == "dense-k8":
        model, plan = _dense(), {"q": (8, "random", True, None)}
    else:
        model = keras.Sequential([keras.Input((6,), batch_size=2),
                                  keras.layers.Dense(3, name="q")])
        plan = {"q": (4, "random", False, None)}
    variables, state = quantize(model, plan, normalize=True)
    info = export_quantized(
        model, variables, state, str(tmp_path / "m.tflite"),
        layout="cached" if case.endswith("cached") else "packed")
    new = lc.expand_tflite(info.path)
    monkeypatch.setattr(runtime, "_evaluate", _whole_invoke)
    assert lc.expand_tflite(info.path) == new
