"""Tests of the exporter's trace rewrites (lc_keras.rewrites): recurrent
layers with the default signature, batch normalisation folded into the
decoded kernels."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import sequence_net
from test_export import check_file
from test_export import quantize
from test_export import run_tflite
from test_runtime import ops_of

import lc_keras as lc
from lc_keras.export import export_quantized
from lc_keras.export import float_tflite_bytes


def _lstm_net():
    inputs = keras.Input((5, 8))
    h = keras.layers.LSTM(4, return_sequences=True, name="lstm")(inputs)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(h))
    return keras.Model(inputs, outputs, name="lstm_net")


def _assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("build,layout", [
    (_lstm_net, "packed"), (sequence_net, "packed"),
    (sequence_net, "cached")])
def test_rnn_exports_with_the_default_signature(tmp_path, build, layout):
    model = lc.LCModel(build(), compression=lc.AdaptiveQuantization(4))
    model.direct_compression()
    state = model.compression_state()
    info = lc.export_tflite(model, str(tmp_path / "m.tflite"), layout=layout)
    check_file(info, state)  # packed words = the indices of Δ(Θ)
    reference = model.quantized_model()
    expanded = lc.load_interpreter(info.path)
    for batch in (1, 8):  # the batch stays dynamic: the RNNs are unrolled
        x = np.random.default_rng(batch).normal(size=(batch, 5, 8)).astype(
            np.float32)
        want = reference.predict(x, verbose=0)
        _assert_close(run_tflite(info.path, x), want)
        _assert_close(run_tflite(None, x, expanded), want)
    # The layers are left as they were.
    assert not any(getattr(layer, "unroll", False)
                   for layer, _, _ in lc.spec.owned_layers(model))


def test_rnn_over_unknown_lengths(tmp_path):
    inputs = keras.Input((None, 8))
    net = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GRU(4)(
        inputs)))
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(4))
    model.direct_compression()
    # Default signature: a loop, batch 1, any length.
    info = lc.export_tflite(model, str(tmp_path / "m.tflite"))
    check_file(info, model.compression_state())
    x = np.random.default_rng(0).normal(size=(1, 7, 8)).astype(np.float32)
    _assert_close(run_tflite(info.path, x), model.quantized_model()(x))
    # A dynamic batch asked for explicitly: the error names the fix.
    with pytest.raises(RuntimeError, match=r"input_signature=\[tf.TensorSpec"
                       r"\(\(1, None, 8\)\)\]"):
        lc.export_tflite(model, str(tmp_path / "n.tflite"),
                         input_signature=[tf.TensorSpec((None, None, 8))])


# ---------------------------------------------------------------------------
# Batch normalisation
# ---------------------------------------------------------------------------


def _randomize_norms(net, seed=0):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(size=n) * 0.1)
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=n))
            layer.gamma.assign(rng.uniform(0.5, 1.5, size=n))
            layer.beta.assign(rng.normal(size=n) * 0.1)


def _float_file(net, shape):
    """A plain float conversion of the Keras net (the converter folds the
    normalisations into the constant kernels)."""
    return float_tflite_bytes(net, tf.TensorSpec((None,) + shape))


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    keras.utils.set_random_seed(0)
    net = keras.applications.MobileNetV2(
        alpha=0.35, input_shape=(96, 96, 3), weights=None, classes=10,
        classifier_activation=None)
    _randomize_norms(net)
    plan = {layer.name: (16, "random", False, None) for layer in net.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense,
                                  keras.layers.DepthwiseConv2D))}
    variables, state = quantize(net, plan, normalize=True)
    path = str(tmp_path_factory.mktemp("mobilenet") / "m.tflite")
    info = export_quantized(net, variables, state, path)
    return net, state, info


def test_mobilenet_norms_fold_into_the_decoded_kernels(mobilenet):
    net, state, info = mobilenet
    check_file(info, state)
    _, stored = ops_of(open(info.path, "rb").read())
    _, expanded = ops_of(lc.expand_tflite(info.path))
    _, floats = ops_of(_float_file(net, (96, 96, 3)))
    # 52 normalisations folded: a MUL on each decoded kernel, none on the
    # activations; expanded, the ops of the float conversion.
    assert collections.Counter(stored[0])["MUL"] == 52
    assert collections.Counter(expanded[0]) == collections.Counter(floats[0])
    assert expanded == floats
    x = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype(
        np.float32)
    want = keras.ops.convert_to_numpy(net(x, training=False))
    _assert_close(run_tflite(info.path, x), want)
    _assert_close(run_tflite(None, x, lc.load_interpreter(info.path)), want)


@pytest.mark.parametrize("layout", ["packed", "cached"])
def test_fold_cases(tmp_path, layout):
    # Folded: a conv with a bias, a dense without one, a depthwise conv.
    # Not folded: a norm after an activation, after an uncompressed layer,
    # after a conv whose output is also read elsewhere.
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    h = keras.layers.BatchNormalization(name="n1")(h)
    h = keras.layers.DepthwiseConv2D(3, use_bias=False, name="dw")(h)
    h = keras.layers.BatchNormalization(name="n2")(h)
    h = keras.layers.Conv2D(4, 1, activation="relu", name="c2")(h)
    h = keras.layers.BatchNormalization(name="n3")(h)
    h2 = keras.layers.Conv2D(4, 1, name="c3")(h)
    h = keras.layers.BatchNormalization(name="n4")(h2) + h2
    h = keras.layers.Conv2D(4, 1, name="free")(h)
    h = keras.layers.BatchNormalization(name="n5")(h)
    h = keras.layers.Dense(5, use_bias=False, name="d")(
        keras.layers.Flatten()(h))
    outputs = keras.layers.BatchNormalization(name="n6")(h)
    net = keras.Model(inputs, outputs)
    _randomize_norms(net)
    plan = {name: (4, "random", True, None)
            for name in ("c1", "dw", "c2", "c3", "d")}
    variables, state = quantize(net, plan, normalize=True)
    info = export_quantized(net, variables, state,
                            str(tmp_path / "m.tflite"), layout=layout)
    check_file(info, state)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    want = keras.ops.convert_to_numpy(net(x, training=False))
    _assert_close(run_tflite(info.path, x), want)
    _assert_close(run_tflite(None, x, lc.load_interpreter(info.path)), want)
    _, expanded = ops_of(lc.expand_tflite(info.path))
    _, floats = ops_of(_float_file(net, (8, 8, 3)))
    assert collections.Counter(expanded[0]) == collections.Counter(floats[0])
    # The model is left as it was.
    assert all("call" not in vars(layer) for layer in net.layers)
