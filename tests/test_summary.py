"""Profiles and the summary table: numbers, golden text, the exported file."""

import os

import keras
import numpy as np
import pytest

import lc_keras as lc
from lc_keras.summary import FloatWeightProfile
from lc_keras.summary import LayerProfile
from lc_keras.summary import ModelProfile
from lc_keras.summary import compression_ratio
from lc_keras.summary import profile
from lc_keras.summary import summary


def golden_model(batch_norm=True):
    """A small LCModel with fixed weights: shared, per-channel, K=5 kernels."""
    layers = [keras.Input((6,)), keras.layers.Dense(5, name="a"),
              keras.layers.Dense(4, name="b")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    layers += [keras.layers.Dense(3, name="c"), keras.layers.Dense(2, name="d")]
    net = keras.Sequential(layers, name="golden")
    for i, v in enumerate(net.weights):
        n = int(np.prod(v.shape))
        v.assign((0.5 * np.sin(0.7 * np.arange(n) + i)).reshape(v.shape))
    model = lc.LCModel(net, compression={
        "[ab]": lc.AdaptiveQuantization(2, shared=True),
        "c": lc.ScaledTernaryQuantization(per_channel=True),
        "d": lc.AdaptiveQuantization(5)}, name="lc_golden")
    model.direct_compression()
    return model


GOLDEN = """\
+lc_golden compressed kernels------------------------------------------------------------------------------------------------------------+
| Kernel    Shape   Weights  Codebook                   K  Bits  Values                                  Distortion  Index B  Codebook B |
+----------------------------------------------------------------------------------------------------------------------------------------+
| a/kernel  (6, 5)       30  Adaptive                   2     1  [-0.272, 0.358]                              0.789        4           8 |
| b/kernel  (5, 4)       20  Adaptive                   2     1  [-0.272, 0.358]                              0.439        4      shared |
| c/kernel  (4, 3)       12  ScaledTernary per-channel  3     2  [-0.4335, 0, 0.4335] +2 rows                0.0986        4          36 |
| d/kernel  (3, 2)        6  Adaptive                   5     3  [-0.469, -0.272, -0.2248, ..., 0.4019]    0.000174        4          20 |
+----------------------------------------------------------------------------------------------------------------------------------------+
| Total                  68                                                                                               16          64 |
+----------------------------------------------------------------------------------------------------------------------------------------+
Codebook 'shared:[ab]' is shared by a/kernel, b/kernel; its bytes are counted once, on a/kernel.
+lc_golden float weights-----------------------------+
| Weight              Shape  Weights  Dtype    Bytes |
+----------------------------------------------------+
| a/bias              (5,)         5  float32     20 |
| b/bias              (4,)         4  float32     16 |
| bn/gamma            (4,)         4  float32     16 |
| bn/beta             (4,)         4  float32     16 |
| bn/moving_mean      (4,)         4  float32     16 |
| bn/moving_variance  (4,)         4  float32     16 |
| c/bias              (3,)         3  float32     12 |
| d/bias              (2,)         2  float32      8 |
+----------------------------------------------------+
| Total                           30             120 |
+----------------------------------------------------+
Float weights of more than 1% of the model's weights: a/bias, b/bias, bn/gamma, bn/beta, bn/moving_mean, bn/moving_variance, c/bias, d/bias.
+lc_golden summary------------------------------------------------------------+
| Weights (compressed + float)  98 (68 + 30)                                  |
| Float size                    392 B                                         |
| Compressed size               200 B (indices 16 + codebooks 64 + float 120) |
| Compression ratio rho         1.96 (paper's bit count: 2.01)                |
| C steps, mu                   1, 0                                          |
+-----------------------------------------------------------------------------+"""


def test_golden_table():
    lines = []
    result = summary(golden_model(), print_fn=lines.append)
    assert "\n".join(lines) == GOLDEN
    assert isinstance(result, ModelProfile)


def test_summary_of_a_profile_prints_the_same():
    p = profile(golden_model())
    lines = []
    assert summary(p, print_fn=lines.append) is p
    assert "\n".join(lines) == GOLDEN


def test_profile_numbers():
    model = golden_model()
    p = profile(model)
    assert [l.name for l in p.layers] == [
        "a/kernel", "b/kernel", "c/kernel", "d/kernel"]
    a, b, c, d = p.layers
    assert all(isinstance(l, LayerProfile) for l in p.layers)
    assert (a.shape, a.weights, a.k, a.bits_per_weight) == ((6, 5), 30, 2, 1)
    assert a.kind == "AdaptiveQuantization" and not a.per_channel
    # Shared codebook: counted on the first kernel only.
    assert a.shared and b.shared and a.group == b.group
    assert (a.codebook_bytes, b.codebook_bytes) == (8, 0)
    assert a.codebook_counted and not b.codebook_counted
    np.testing.assert_array_equal(a.codebook, b.codebook)
    # Per-channel: one codebook row per output channel.
    assert c.per_channel and c.groups == 3 and c.codebook.shape == (3, 3)
    assert c.codebook_bytes == 3 * 3 * 4
    assert (d.k, d.bits_per_weight, d.index_bytes) == (5, 3, 4)
    # The byte counts are the QuantizedKernel's.
    state = model.compression_state()
    for layer in p.layers:
        q = state[layer.name]
        assert layer.index_bytes == q.index_bytes
        np.testing.assert_array_equal(layer.codebook, q.codebook)
    # Distortions are the model's.
    for layer in p.layers:
        assert layer.distortion == pytest.approx(
            model.distortions()[layer.name])
    # Float weights: everything else, LC state excluded.
    assert all(isinstance(f, FloatWeightProfile) for f in p.float_weights)
    assert [f.name for f in p.float_weights][:3] == [
        "a/bias", "b/bias", "bn/gamma"]
    assert p.float_weight_count == 30 and p.float_bytes == 120
    assert p.compressed_weights == 68 and p.total_weights == 98
    assert p.reference_bytes == 4 * 98
    assert p.compressed_bytes == p.index_bytes + p.codebook_bytes + 120
    assert p.ratio == pytest.approx(p.reference_bytes / p.compressed_bytes)
    assert p.c_steps == 1
    assert p.layer("c") is c and p.layer("d/kernel") is d
    with pytest.raises(KeyError, match="No compressed kernel"):
        p.layer("zzz")


def test_paper_ratio_is_compression_ratio():
    net = keras.Sequential([keras.Input((100,)), keras.layers.Dense(30),
                            keras.layers.Dense(10)])
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(4))
    model.direct_compression()
    p = profile(model)
    assert p.paper_ratio == pytest.approx(compression_ratio(model))
    # Stored words: ceil(3000·2/32) and ceil(300·2/32) int32 words.
    assert p.index_bytes == 4 * (188 + 19)
    assert p.codebook_bytes == 2 * 4 * 4
    assert p.ratio == pytest.approx(
        4 * 3340 / (p.index_bytes + 32 + 4 * 40))
    assert p.ratio < p.paper_ratio  # whole words cost a few bits more
    golden = golden_model()
    assert profile(golden).paper_ratio == pytest.approx(
        compression_ratio(golden))


def test_profile_before_a_c_step_is_an_error():
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model = lc.LCModel(net)
    with pytest.raises(ValueError, match="has not run a C step"):
        profile(model)


def test_long_codebooks_are_abbreviated():
    net = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16)])
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(16))
    model.direct_compression()
    lines = []
    summary(model, print_fn=lines.append, max_values=3)
    row = next(l for l in lines if l.startswith("| dense/kernel"))
    values = row[row.index("["):row.index("]") + 1]
    assert values.count(",") == 3 and "..." in values  # 2 first, ..., last


def test_profile_of_a_loaded_model(tmp_path):
    model = golden_model()
    model(np.zeros((1, 6), np.float32))  # built, so that it saves quietly
    path = os.path.join(tmp_path, "lc.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    before, after = [], []
    summary(model, print_fn=before.append)
    summary(loaded, print_fn=after.append)
    assert after == before


def test_bytes_match_the_exported_file(tmp_path):
    from lc_keras.export import export_tflite
    from lc_keras.tflite_file import inspect_tflite

    model = golden_model(batch_norm=False)
    p = profile(model)
    path = os.path.join(tmp_path, "golden.tflite")
    info = export_tflite(model, path)
    assert info.index_bytes == p.index_bytes
    assert info.codebook_bytes == p.codebook_bytes
    # Read back from the file itself.
    found = inspect_tflite(path)
    assert found.size_bytes == os.path.getsize(path)
    packed = {k.name: k for k in found.packed_kernels}
    for layer in p.layers:
        k = packed[f"lc/{layer.name}/packed_indices"]
        assert k.index_bytes == layer.index_bytes, layer.name
        assert k.weights == layer.weights
        assert k.codebook_entries == layer.groups * layer.k
    floats = [t for t in found.tensors if t.constant and t.dtype == "FLOAT32"]
    codebooks = [t for t in floats if t.name.endswith("/codebook")]
    # One codebook tensor per group: the shared one is stored once.
    assert len(codebooks) == 3
    assert sum(t.data_bytes for t in codebooks) == p.codebook_bytes
    # The biases (distinct, non-zero) are the other float constants.
    assert sum(t.data_bytes for t in floats) - p.codebook_bytes == \
        p.float_bytes
    assert p.compressed_bytes < found.size_bytes


def test_large_float_weights_are_named():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(64, name="wide")(inputs)
    outputs = keras.layers.Dense(2, name="head")(h)
    model = lc.LCModel(keras.Model(inputs, outputs),
                       compression={"head": lc.AdaptiveQuantization(2)})
    model.direct_compression()
    p = lc.profile(model)
    assert [f.name for f in p.large_float_weights] == ["wide/kernel",
                                                       "wide/bias"]
    lines = []
    lc.summary(model, print_fn=lines.append)
    assert any("more than 1% of the model's weights: wide/kernel, wide/bias"
               in line for line in lines)
