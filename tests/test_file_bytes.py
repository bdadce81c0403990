"""Tests of the byte budget of exported files (lc_keras.file_bytes) and of
the summary's file lines (profile(model, layout=...))."""

import os

import keras
import numpy as np
import pytest
from conftest import EncoderBlock

import lc_keras as lc
from lc_keras.file_bytes import file_bytes
from lc_keras.summary import profile


def _mlp():
    return keras.Sequential([
        keras.Input((784,)), keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)],
        name="lenet300")


def _convnet():
    return keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3),
        keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.DepthwiseConv2D(3), keras.layers.Flatten(),
        keras.layers.Dense(4)], name="convnet")


def _attention():
    inputs = keras.Input((5, 8))
    h = keras.layers.Flatten()(EncoderBlock(name="block")(inputs))
    return keras.Model(inputs, keras.layers.Dense(3)(h), name="mha")


@pytest.mark.parametrize("build,layout", [
    (_mlp, "packed"), (_convnet, "cached"), (_attention, "packed")])
def test_summary_total_is_the_file_size(tmp_path, build, layout):
    model = lc.LCModel(build(), compression=lc.AdaptiveQuantization(4))
    model.direct_compression()
    p = profile(model, layout=layout)
    path = str(tmp_path / "m.tflite")
    info = lc.export_tflite(model, path, layout=layout)
    # The same bytes as the file written.
    assert p.file.size_bytes == os.path.getsize(path) == info.size_bytes
    assert file_bytes(path) == p.file
    f = p.file
    assert f.index_bytes == info.index_bytes == p.index_bytes
    assert f.codebook_bytes == info.codebook_bytes == p.codebook_bytes
    assert (f.index_bytes + f.codebook_bytes + f.constant_bytes
            + f.metadata_bytes + f.graph_bytes) == f.size_bytes
    assert f.graph_bytes > 0 and f.constant_bytes > 0
    assert [name for name, _ in f.metadata] [-1] == "lc_keras_checksums"
    lines = []
    lc.summary(p, print_fn=lines.append)
    text = "\n".join(lines)
    total = next(line for line in lines if "Total (file size)" in line)
    assert f"{f.size_bytes:,}" in total
    assert f"File size ({layout})" in text
    for c in f.constants:  # every float tensor on its own line
        assert c.name in text
    assert "Graph and padding" in text


def test_without_a_layout_nothing_is_exported():
    net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    model.direct_compression()
    p = profile(model)
    assert p.file is None and p.layout is None
    with pytest.raises(ValueError, match="layout='fast'"):
        profile(model, layout="fast")


def test_float_file_has_only_graph_and_constants():
    import tensorflow as tf

    f = tf.function(lambda x: x * 2.0 + tf.constant(np.arange(3.0, dtype=(
        np.float32))), input_signature=[tf.TensorSpec([None, 3])])
    data = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function()]).convert()
    result = file_bytes(data)
    assert result.index_bytes == result.codebook_bytes == 0
    assert result.constant_bytes + result.metadata_bytes + \
        result.graph_bytes == len(data)
