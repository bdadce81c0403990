"""Tests of the TFLite exporter (lc_keras.export): graph, converter, files.

Each exported file runs on the stock LiteRT interpreter and must match the
Keras model whose kernels hold the quantized values, at batch sizes 1 and 8.
Packing and layouts are tested in test_packing.py, reading and verifying
files in test_tflite_file.py.
"""

import dataclasses
import glob
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from lc_keras import export
from lc_keras import files
from lc_keras.export import export_quantized
from lc_keras.export import export_tflite
from lc_keras.packing import tflite_layout
from lc_keras.quantized import QuantizedKernel
from lc_keras.quantized import bits_for
from lc_keras.spec import compressible_kernels
from lc_keras.tflite_file import inspect_tflite

ATOL = 1e-5

# Codebook kinds: just codebook values (the exporter stores any codebook).
CODEBOOKS = {
    "binary": lambda rng, k: np.array([-1.0, 1.0]),
    "scaled_ternary": lambda rng, k: np.array([-0.37, 0.0, 0.37]),
    "powers_of_two": lambda rng, k: np.array(
        [-0.5, -0.25, -0.125, 0.0, 0.125, 0.25, 0.5]),
    "random": lambda rng, k: np.sort(rng.normal(size=k) * 0.3),
}

KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "pointwise_kernel",
                     "embeddings")

# Output-channel axes per layer kind (as the core's spec defines them).
_LAST = lambda ndim: (ndim - 1,)  # noqa: E731
_DEPTHWISE = lambda ndim: (ndim - 2, ndim - 1)  # noqa: E731


def _channel_axes(layer, attribute, ndim):
    L = keras.layers
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)) or (
            attribute == "depthwise_kernel"):
        return _DEPTHWISE(ndim)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose)):
        return (ndim - 2,)
    return _LAST(ndim)


def quantize(model, plan, seed=0, normalize=False):
    """Builds a compression state by hand and loads Δ(Θ) into the model.

    Args:
        model: A built Keras model.
        plan: `{layer name: (k, codebook kind, per_channel, group)}`; `group`
            names a shared codebook (None: own codebook).
        seed: Random seed.
        normalize: Scale each codebook by 1/sqrt(fan-in) so that deep
            models keep activations of order 1.

    Returns:
        `(variables, state)` dicts keyed by variable path.
    """
    rng = np.random.default_rng(seed)
    variables, state, shared = {}, {}, {}
    for layer in model.layers:
        if layer.name not in plan:
            continue
        k, kind, per_channel, group = plan[layer.name]
        for attribute in KERNEL_ATTRIBUTES:
            v = getattr(layer, attribute, None)
            if not isinstance(v, keras.Variable):
                continue
            shape = tuple(v.shape)
            axes = (_channel_axes(layer, attribute, len(shape))
                    if per_channel else ())
            groups = int(np.prod([shape[a] for a in axes])) if axes else 1
            if group is not None and group in shared:
                codebook = shared[group]
            else:
                rows = []
                for _ in range(groups):
                    row = np.asarray(CODEBOOKS[kind](rng, k), np.float32)
                    if kind != "random" and per_channel:
                        row = row * rng.uniform(0.5, 1.5)
                    rows.append(np.sort(row))
                codebook = np.stack(rows).astype(np.float32)
                if normalize:
                    fan_in = int(np.prod(shape)) // shape[-1]
                    codebook = codebook / np.float32(np.sqrt(fan_in))
                if group is not None:
                    shared[group] = codebook
            q = QuantizedKernel(
                name=v.path, layer_name=layer.name, attribute=attribute,
                kind=kind, codebook=codebook,
                indices=rng.integers(0, codebook.shape[1], shape),
                channel_axes=axes, group=group or "",
                layer_type=type(layer).__name__)
            v.assign(q.values())
            variables[v.path] = v
            state[v.path] = q
    return variables, state


def run_tflite(path, x, interpreter=None):
    interpreter = interpreter or Interpreter(model_path=path)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def make_input(model, batch, rng):
    shape = (batch,) + tuple(model.inputs[0].shape[1:])
    if "int" in str(model.inputs[0].dtype):
        return rng.integers(0, 20, shape).astype(np.int32)
    return rng.normal(size=shape).astype(np.float32)


def check_file(info, state):
    """Every kernel stored as exactly ceil(P·b/32) int32 words."""
    summary = inspect_tflite(info.path)
    assert summary.custom_ops == []
    int32_data = {}
    for t in summary.tensors:
        if t.dtype == "INT32" and "packed_indices" in t.name:
            int32_data.setdefault(t.data_bytes, []).append(t.name)
    for kernel in info.kernels:
        q = state[kernel.name]
        b = bits_for(q.k)
        expected = math.ceil(q.size * b / 32) * 4
        assert kernel.bits == b
        assert kernel.index_bytes == expected == q.index_bytes
        assert expected in int32_data, (kernel.name, int32_data)
    assert len(summary.packed_kernels) == len(info.kernels)
    assert sum(k.index_bytes for k in summary.packed_kernels) == sum(
        k.index_bytes for k in info.kernels)
    return summary


def assert_matches_keras(model, info, seed=1):
    rng = np.random.default_rng(seed)
    interpreter = Interpreter(model_path=info.path)
    for batch in (1, 8, 1):  # back to 1: the cache survives a resize
        x = make_input(model, batch, rng)
        expected = keras.ops.convert_to_numpy(model(x, training=False))
        got = run_tflite(info.path, x, interpreter)
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------
# Layers, codebook sizes and kinds
# ---------------------------------------------------------------------------


def _dense():
    return keras.Sequential([keras.Input((12,)),
                             keras.layers.Dense(10, name="q")])


def _conv1d():
    return keras.Sequential([keras.Input((9, 4)),
                             keras.layers.Conv1D(5, 3, name="q")])


def _conv2d():
    return keras.Sequential([keras.Input((7, 7, 3)),
                             keras.layers.Conv2D(6, 3, name="q")])


def _depthwise():
    return keras.Sequential([
        keras.Input((7, 7, 3)),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="q")])


def _embedding():
    return keras.Sequential([keras.Input((5,), dtype="int32"),
                             keras.layers.Embedding(20, 6, name="q")])


def _conv2d_transpose():
    return keras.Sequential([keras.Input((5, 5, 3)),
                             keras.layers.Conv2DTranspose(4, 3, name="q")])


def _separable():
    return keras.Sequential([keras.Input((7, 7, 3)),
                             keras.layers.SeparableConv2D(4, 3, name="q")])


SINGLE_LAYER_CASES = [
    # (model, k, codebook kind, per channel)
    (_dense, 2, "binary", False),
    (_dense, 3, "scaled_ternary", True),
    (_dense, 4, "random", False),
    (_dense, 16, "random", True),
    (_dense, 256, "random", False),
    (_dense, 8, "random", False),          # 3 bits: indices straddle words
    (_dense, 100, "random", True),         # 7 bits, per channel
    (_conv1d, 4, "random", True),
    (_conv1d, 256, "random", False),
    (_conv1d, 16, "random", False),
    (_conv2d, 16, "random", False),
    (_conv2d, 256, "random", True),
    (_conv2d, 7, "powers_of_two", False),
    (_depthwise, 16, "random", True),
    (_depthwise, 2, "binary", False),
    (_depthwise, 3, "scaled_ternary", True),
    (_embedding, 256, "random", False),
    (_embedding, 4, "random", True),
    (_embedding, 2, "binary", False),
    (_conv2d_transpose, 4, "random", False),
    (_separable, 3, "scaled_ternary", False),
]


@pytest.mark.parametrize(
    "build,k,kind,per_channel", SINGLE_LAYER_CASES,
    ids=[f"{c[0].__name__[1:]}-k{c[1]}-{c[2]}{'-pc' if c[3] else ''}"
         for c in SINGLE_LAYER_CASES])
def test_single_layer_matches_keras(tmp_path, build, k, kind, per_channel):
    model = build()
    variables, state = quantize(model, {"q": (k, kind, per_channel, None)})
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    assert os.path.getsize(info.path) == info.size_bytes
    summary = check_file(info, state)
    ops = {name for _, name in summary.ops}
    assert "TRANSPOSE" not in ops  # indices stored in TFLite's layout
    assert_matches_keras(model, info)


def mixed_model():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2d")(inputs)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2,
                                     name="depthwise")(x)
    x = keras.layers.Reshape((36, 16))(x)
    x = keras.layers.Conv1D(8, 3, activation="relu", name="conv1d")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="dense_a")(x)
    x = keras.layers.Dense(16, activation="relu", name="dense_b")(x)
    ids = keras.ops.cast(keras.ops.clip(
        keras.ops.abs(x[:, :4]) * 3.0, 0, 9), "int32")
    e = keras.layers.Embedding(10, 4, name="embedding")(ids)
    x = keras.layers.Concatenate()([x, keras.layers.Flatten()(e)])
    outputs = keras.layers.Dense(5, name="dense_out")(x)
    return keras.Model(inputs, outputs)


MIXED_PLAN = {
    "conv2d": (3, "scaled_ternary", True, None),
    "depthwise": (16, "random", True, None),
    "conv1d": (256, "random", False, None),
    "dense_a": (4, "random", False, "shared"),   # one codebook, two layers
    "dense_b": (4, "random", False, "shared"),
    "embedding": (7, "powers_of_two", False, None),
    "dense_out": (2, "binary", False, None),
}


@pytest.mark.parametrize("layout", ["packed", "cached"])
def test_mixed_model_matches_keras(tmp_path, layout):
    model = mixed_model()
    variables, state = quantize(model, MIXED_PLAN, normalize=True)
    info = export_quantized(model, variables, state,
                            str(tmp_path / f"{layout}.tflite"), layout=layout)
    assert info.layout == layout
    summary = check_file(info, state)
    ops = [name for _, name in summary.ops]
    assert "TRANSPOSE" not in ops
    if layout == "cached":
        for op in ("CALL_ONCE", "IF", "ASSIGN_VARIABLE", "READ_VARIABLE"):
            assert op in ops
    # The shared codebook is stored once.
    shared = [k for k in info.kernels if k.group == "shared"]
    assert len(shared) == 2
    assert info.codebook_bytes == sum(
        {q.group: q.codebook_bytes for q in state.values()}.values())
    assert_matches_keras(model, info)


def test_static_batch_small_kernel_not_folded(tmp_path):
    # No dynamic batch to anchor the decoding: the exporter uses the data.
    model = keras.Sequential([keras.Input((6,), batch_size=2),
                              keras.layers.Dense(3, name="q")])
    variables, state = quantize(model, {"q": (4, "random", False, None)})
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"))
    check_file(info, state)
    x = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    np.testing.assert_allclose(run_tflite(info.path, x), model(x),
                               rtol=0, atol=ATOL)


def test_file_sizes_are_close_to_the_bound(tmp_path):
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(64, name="q")])
    variables, state = quantize(model, {"q": (2, "binary", False, None)})
    packed = export_quantized(model, variables, state,
                              str(tmp_path / "p.tflite"))
    cached = export_quantized(model, variables, state,
                              str(tmp_path / "c.tflite"), layout="cached")
    float_bytes = 64 * 64 * 4
    assert packed.index_bytes == 64 * 64 // 8
    assert packed.size_bytes < float_bytes / 2
    assert cached.size_bytes < float_bytes / 2


def test_input_signature_argument(tmp_path, monkeypatch):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.q = keras.layers.Dense(3, name="q")

        def call(self, x):
            return self.q(x)

    net = Net()
    net(np.zeros((1, 5), np.float32))
    variables, state = {}, {}
    rng = np.random.default_rng(0)
    v = net.q.kernel
    q = QuantizedKernel(v.path, "q", "kernel", "random",
                        np.array([[-0.5, 0.1, 0.7]], np.float32),
                        rng.integers(0, 3, (5, 3)), layer_type="Dense")
    v.assign(q.values())
    variables[v.path], state[v.path] = v, q
    x = rng.normal(size=(8, 5)).astype(np.float32)
    # From the build config (float32 input).
    info = export_quantized(net, variables, state, str(tmp_path / "a.tflite"))
    np.testing.assert_allclose(run_tflite(info.path, x), net(x), atol=ATOL)
    # Explicit signature.
    info = export_quantized(
        net, variables, state, str(tmp_path / "b.tflite"),
        input_signature=tf.TensorSpec((None, 5), tf.float32))
    np.testing.assert_allclose(run_tflite(info.path, x), net(x), atol=ATOL)
    with pytest.raises(TypeError, match="input_signature"):
        export_quantized(net, variables, state, str(tmp_path / "c.tflite"),
                         input_signature=(None, 5))
    monkeypatch.setattr(net, "get_build_config", lambda: None)
    with pytest.raises(ValueError, match="input signature"):
        export_quantized(net, variables, state, str(tmp_path / "c.tflite"))


# ---------------------------------------------------------------------------
# Layouts by layer_type
# ---------------------------------------------------------------------------


def _isinstance_layout(layer, attribute, ndim):
    """The layout the exporter used when it looked each kernel's layer up
    in the model (`isinstance`), kept here as the reference."""
    L = keras.layers
    identity = tuple(range(ndim))
    if layer is None:
        return False, identity
    if isinstance(layer, L.Conv1DTranspose):
        return True, (2, 0, 1, 3)
    if isinstance(layer, (L.Conv2DTranspose, L.Conv3DTranspose)):
        return False, (ndim - 2,) + tuple(range(ndim - 2)) + (ndim - 1,)
    if isinstance(layer, L.SeparableConv1D):
        if attribute == "pointwise_kernel":
            return True, (3, 0, 1, 2)
        return False, identity
    if isinstance(layer, L.SeparableConv2D):
        if attribute == "pointwise_kernel":
            return False, (3, 0, 1, 2)
        return False, identity
    if isinstance(layer, L.Conv1D):
        return True, (3, 0, 1, 2)
    if isinstance(layer, (L.Dense, L.Conv2D)):
        return False, (ndim - 1,) + tuple(range(ndim - 1))
    return False, identity


def test_layer_type_gives_the_layout_of_the_layer():
    from test_packing import EXPECTED_LAYOUTS

    L = keras.layers

    class MyDense(L.Dense):
        pass

    layers = {
        "Dense": (L.Dense(3), (5,)),
        "MyDense": (MyDense(3), (5,)),
        "EinsumDense": (L.EinsumDense("ab,bcd->acd", (2, 3)), (4,)),
        "Conv1DTranspose": (L.Conv1DTranspose(2, 3), (6, 4)),
        "Conv2DTranspose": (L.Conv2DTranspose(2, 3), (6, 6, 4)),
        "Conv3DTranspose": (L.Conv3DTranspose(2, 2), (4, 4, 4, 3)),
        "Conv1D": (L.Conv1D(2, 3), (6, 4)),
        "Conv2D": (L.Conv2D(2, 3), (6, 6, 4)),
        "Conv3D": (L.Conv3D(2, 2), (4, 4, 4, 3)),
        "DepthwiseConv1D": (L.DepthwiseConv1D(3), (6, 4)),
        "DepthwiseConv2D": (L.DepthwiseConv2D(3), (6, 6, 4)),
        "SeparableConv1D": (L.SeparableConv1D(2, 3), (6, 4)),
        "SeparableConv2D": (L.SeparableConv2D(2, 3), (6, 6, 4)),
        "Embedding": (L.Embedding(10, 3), None),
    }
    seen = set()
    for name, (layer, shape) in layers.items():
        if shape is None:
            model = keras.Sequential([keras.Input((2,), dtype="int32"),
                                      layer])
        else:
            model = keras.Sequential([keras.Input(shape), layer])
        refs = compressible_kernels(model)
        assert refs, name
        for ref in refs:
            ndim = len(ref.variable.shape)
            got = tflite_layout(ref.layer_type, ref.attribute, ndim)
            assert got == _isinstance_layout(ref.layer, ref.attribute,
                                             ndim), (name, ref.attribute)
            assert got == EXPECTED_LAYOUTS[
                (ref.layer_type, ref.attribute, ndim)], name
            seen.add(ref.layer_type)
    assert seen == {t for t, _, _ in EXPECTED_LAYOUTS}
    # No layer (the old code's unknown owner) == unknown layer_type.
    assert _isinstance_layout(None, "kernel", 2) == tflite_layout(
        "", "kernel", 2)


@pytest.mark.parametrize("layout", ["packed", "cached"])
def test_unknown_layer_type_exports_in_keras_layout(tmp_path, layout):
    # Without a layer_type the indices keep the Keras layout: the graph has
    # nothing to transpose back, and the file computes the same.
    model = _conv1d()
    variables, state = quantize(model, {"q": (16, "random", True, None)})
    state = {key: dataclasses.replace(q, layer_type="")
             for key, q in state.items()}
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"), layout=layout)
    (kernel,) = info.kernels
    assert kernel.tflite_shape == kernel.shape == (3, 4, 5)
    check_file(info, state)
    assert_matches_keras(model, info)


# ---------------------------------------------------------------------------
# Atomic writes and errors
# ---------------------------------------------------------------------------


@pytest.fixture
def small():
    model = _dense()
    variables, state = quantize(model, {"q": (4, "random", False, None)})
    return model, variables, state


def test_failure_while_writing_keeps_previous_file(tmp_path, small,
                                                   monkeypatch):
    model, variables, state = small
    path = str(tmp_path / "m.tflite")
    export_quantized(model, variables, state, path)
    before = open(path, "rb").read()

    def broken_fsync(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(export.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated"):
        export_quantized(model, variables, state, path, layout="cached")
    assert open(path, "rb").read() == before
    assert glob.glob(str(tmp_path / ".*tmp*")) == []
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]


def test_failure_midway_through_the_data_keeps_previous_file(
        tmp_path, small, monkeypatch):
    model, variables, state = small
    path = str(tmp_path / "m.tflite")
    export_quantized(model, variables, state, path)
    before = open(path, "rb").read()
    real_open = open

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            raise OSError("connection lost (simulated)")

    monkeypatch.setattr(
        files, "open", lambda name, mode: HalfWriter(real_open(name, mode)),
        raising=False)
    with pytest.raises(OSError, match="simulated"):
        export_quantized(model, variables, state, path, layout="cached")
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["m.tflite"]
    Interpreter(model_path=path).allocate_tensors()  # still a valid model


def test_failed_verification_writes_nothing(tmp_path, small, monkeypatch):
    model, variables, state = small
    path = str(tmp_path / "m.tflite")
    # A converter that folds the decoding: a plain float model.
    f = tf.function(lambda x: model(x),
                    input_signature=[tf.TensorSpec((None, 12))])
    float_bytes = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function()], model).convert()
    monkeypatch.setattr(export, "_convert", lambda *a: float_bytes)
    with pytest.raises(ValueError, match="layer 'q'.*packed int32 words"):
        export_quantized(model, variables, state, path)
    assert not os.path.exists(path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path,match", [
    ("model.tfl", "must end in '.tflite'"),
    ("model.tflite.tmp", "must end in '.tflite'"),
    ("/no/such/folder/model.tflite", "folder '/no/such/folder' does not exist"),
])
def test_bad_paths(small, path, match):
    model, variables, state = small
    with pytest.raises(ValueError, match=match):
        export_quantized(model, variables, state, path)


def test_bad_layout(tmp_path, small):
    model, variables, state = small
    with pytest.raises(ValueError, match="layout='fast'"):
        export_quantized(model, variables, state,
                         str(tmp_path / "m.tflite"), layout="fast")


def test_empty_state(tmp_path, small):
    model, variables, _ = small
    with pytest.raises(ValueError, match="never ran a C step"):
        export_quantized(model, {}, {}, str(tmp_path / "m.tflite"))


def test_bad_states(tmp_path, small):
    model, variables, state = small
    (key, q), = state.items()
    path = str(tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="no variable"):
        export_quantized(model, {}, state, path)
    other = keras.Variable(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="no compression state"):
        export_quantized(model, {**variables, "other": other}, state, path)
    with pytest.raises(ValueError, match="not a variable of the exported"):
        export_quantized(model, {key: other}, state, path)
    wrong = QuantizedKernel(q.name, "q", "kernel", "x", q.codebook,
                            q.indices[:3])
    with pytest.raises(ValueError, match=r"layer 'q'.*shape \(3, 10\)"):
        export_quantized(model, variables, {key: wrong}, path)
    out_of_range = QuantizedKernel(q.name, "q", "kernel", "x",
                                   q.codebook[:, :2], q.indices)
    with pytest.raises(ValueError, match=r"layer 'q'.*outside \[0, 2\)"):
        export_quantized(model, variables, {key: out_of_range}, path)
    with pytest.raises(TypeError, match="LCModel"):
        export_tflite(model, path)
    assert not os.path.exists(path)


# ---------------------------------------------------------------------------
# End to end through LCModel
# ---------------------------------------------------------------------------


def test_lcmodel_end_to_end(tmp_path):
    import lc_keras as lc

    net = keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(12, activation="relu", name="dense_1"),
        keras.layers.Dense(3, name="out"),
    ])
    model = lc.LCModel(net, compression={
        "conv": lc.AdaptiveQuantization(4, per_channel=True),
        "dense_1": lc.AdaptiveQuantization(16),
        "out": lc.BinaryQuantization(),
    })
    with pytest.raises(ValueError, match="C step"):
        export_tflite(model, str(tmp_path / "early.tflite"))
    model.direct_compression()
    reference = model.quantized_model()
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 2)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(reference(x))
    state = model.compression_state()
    for layout in ("packed", "cached"):
        info = export_tflite(model, str(tmp_path / f"{layout}.tflite"),
                             layout=layout)
        assert [k.name for k in info.kernels] == list(state)
        assert [k.bits for k in info.kernels] == [2, 4, 1]
        check_file(info, state)
        np.testing.assert_allclose(run_tflite(info.path, x), expected,
                                   rtol=0, atol=ATOL)
    # A model reloaded from a .keras file exports the same numbers.
    model.save(str(tmp_path / "model.keras"))
    loaded = keras.models.load_model(str(tmp_path / "model.keras"))
    info = export_tflite(loaded, str(tmp_path / "loaded.tflite"))
    np.testing.assert_allclose(run_tflite(info.path, x), expected,
                               rtol=0, atol=ATOL)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("layout", ["packed", "cached"])
def test_mixed_precision_model_exports_in_float32(tmp_path, policy, layout):
    keras.config.set_dtype_policy(policy)
    try:
        model = keras.Sequential([
            keras.Input((7, 7, 3)), keras.layers.Conv2D(6, 3, name="c"),
            keras.layers.Flatten(), keras.layers.Dense(4, name="d")])
    finally:
        keras.config.set_dtype_policy("float32")
    variables, state = quantize(model, {"c": (4, "random", False, None),
                                        "d": (2, "binary", False, None)},
                                normalize=True)
    info = export_quantized(model, variables, state,
                            str(tmp_path / "m.tflite"), layout=layout)
    check_file(info, state)
    # The layers keep their policies.
    assert [layer.dtype_policy.name for layer in model.layers] == [policy] * 3
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype(np.float32)
    got = run_tflite(info.path, x)
    assert got.dtype == np.float32
    # Keras computes in 16 bits, the file in float32.
    np.testing.assert_allclose(got, model(x), rtol=0, atol=0.05)


def test_float16_kernels_are_refused(tmp_path):
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, name="q", dtype="float16")])
    variables, state = quantize(model, {"q": (2, "binary", False, None)})
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="layer 'q' has a float16 kernel"):
        export_quantized(model, variables, state, str(path))
    assert not path.exists()


def test_attention_and_custom_layer_kernels_export_and_run(tmp_path):
    """MultiHeadAttention projections, an add_weight matrix and a Dense
    inside a custom layer: stored packed, and the interpreter computes the
    Keras quantized net."""
    import lc_keras as lc
    from conftest import EncoderBlock
    from conftest import Projection

    inputs = keras.Input((5, 8))
    h = EncoderBlock(name="block")(inputs)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(3, name="head")(Projection(name="proj")(h))
    model = lc.LCModel(keras.Model(inputs, outputs),
                       compression=lc.AdaptiveQuantization(4))
    model.direct_compression()
    state = model.compression_state()
    assert len(state) == 9  # 4 attention, 2 feed-forward, 2 custom, head
    info = export_tflite(model, str(tmp_path / "block.tflite"))
    check_file(info, state)
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype(np.float32)
    expected = model.quantized_model().predict(x, verbose=0)
    for interpreter in (None, lc.load_interpreter(info.path)):
        got = run_tflite(info.path, x, interpreter)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_float_tflite_bytes_computes_the_keras_model(tmp_path):
    from lc_keras.export import float_tflite_bytes

    net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4),
                            keras.layers.BatchNormalization(),
                            keras.layers.Dense(2)])
    data = float_tflite_bytes(net)
    summary = inspect_tflite(data)
    assert summary.constant_bytes >= 4 * (6 * 4 + 4 * 2)  # weights stored
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    got = run_tflite(None, x, Interpreter(model_content=data))
    np.testing.assert_allclose(got, net.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
