import keras
import numpy as np
import pytest

import lc_keras as lc
from lc_keras import spec as spec_lib
from conftest import EncoderBlock
from conftest import sequence_net


def net():
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(4, 3, name="conv_a"),
        keras.layers.Conv2D(4, 3, name="conv_b"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(5, name="dense_1"),
        keras.layers.Dense(2, name="dense_2"),
    ], name="net")


def by_layer(groups):
    return {r.layer.name: g.quantization for g in groups for r in g.kernels}


def test_single_codebook_applies_to_every_kernel():
    q = lc.AdaptiveQuantization(2)
    groups = spec_lib.resolve_spec(net(), q)
    assert by_layer(groups) == {n: q for n in
                                ["conv_a", "conv_b", "dense_1", "dense_2"]}
    assert all(len(g.kernels) == 1 for g in groups)


def test_names_globs_classes_and_none():
    a, b, c = (lc.AdaptiveQuantization(2), lc.BinaryQuantization(),
               lc.TernaryQuantization())
    groups = spec_lib.resolve_spec(net(), {
        keras.layers.Dense: a, "conv*": b, "conv_b": c, "dense_2": None})
    assert by_layer(groups) == {"conv_a": b, "conv_b": c, "dense_1": a}


def test_kernel_path_and_attribute_keys_match():
    model = net()
    q = lc.AdaptiveQuantization(2)
    groups = spec_lib.resolve_spec(model, {"dense_1/kernel": q})
    assert by_layer(groups) == {"dense_1": q}
    path = model.get_layer("dense_2").kernel.path
    groups = spec_lib.resolve_spec(model, {path: q})
    assert by_layer(groups) == {"dense_2": q}


def test_shared_entry_makes_one_group():
    groups = spec_lib.resolve_spec(net(), {
        "conv*": lc.AdaptiveQuantization(2, shared=True)})
    assert len(groups) == 1 and len(groups[0].kernels) == 2
    assert groups[0].name == "shared:conv*"


def test_channel_axes_per_layer_type():
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, name="c"),
        keras.layers.Conv2DTranspose(5, 3, name="t"),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="d"),
        keras.layers.SeparableConv2D(3, 3, name="s"),
        keras.layers.Flatten(),
        keras.layers.Dense(2, name="f"),
    ])
    refs = {(r.layer.name, r.attribute): r
            for r in spec_lib.compressible_kernels(model)}
    assert refs["c", "kernel"].channel_axes == (3,)
    assert refs["t", "kernel"].channel_axes == (2,)
    assert refs["t", "kernel"].channels == 5
    assert refs["d", "kernel"].channel_axes == (2, 3)
    assert refs["d", "kernel"].channels == 10
    assert refs["s", "depthwise_kernel"].channel_axes == (2, 3)
    assert refs["s", "pointwise_kernel"].channel_axes == (3,)
    assert refs["f", "kernel"].channel_axes == (1,)


@pytest.mark.parametrize("compression, error, match", [
    ({"nothing_here": lc.AdaptiveQuantization(2)}, ValueError,
     "matches no layer"),
    ({"flat": lc.AdaptiveQuantization(2)}, ValueError,
     "no compressible kernel"),
    ({"dense_1": "binary"}, TypeError, "must be an"),
    ({3: lc.AdaptiveQuantization(2)}, TypeError, "keys must be"),
    ("binary", TypeError, "must be a"),
    ({}, ValueError, "empty"),
    ({"*": None}, ValueError, "nothing to compress"),
    ({"dense_*": lc.BinaryQuantization(), "*_1": lc.TernaryQuantization()},
     ValueError, "equal specificity"),
    ({"dense_2": lc.AdaptiveQuantization(11)}, ValueError, "k <= "),
    ({"dense_2": lc.AdaptiveQuantization(6, per_channel=True)}, ValueError,
     "k <= "),
    ({"dense_*": lc.AdaptiveQuantization(2, shared=True, per_channel=True)},
     ValueError, "both shared and per-channel"),
])
def test_bad_specs(compression, error, match):
    with pytest.raises(error, match=match):
        spec_lib.resolve_spec(net(), compression)


def test_model_without_compressible_kernel():
    model = keras.Sequential([keras.Input((3,)), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="at least one compressible"):
        spec_lib.resolve_spec(model, lc.AdaptiveQuantization(2))


def test_per_channel_on_embedding_is_an_error():
    model = keras.Sequential([keras.Input((3,), dtype="int32"),
                              keras.layers.Embedding(10, 4, name="emb")])
    with pytest.raises(ValueError, match="has none"):
        spec_lib.resolve_spec(model, lc.AdaptiveQuantization(
            2, per_channel=True))


def test_shared_codebook_over_different_dtypes_is_an_error():
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(4, name="a", dtype="float32"),
        keras.layers.Dense(4, name="b", dtype="float64"),
    ])
    with pytest.raises(ValueError, match="one dtype"):
        spec_lib.resolve_spec(model, lc.AdaptiveQuantization(2, shared=True))


@pytest.mark.parametrize("compression", [
    None,
    lc.ScaledTernaryQuantization(),
    {"dense_1": lc.AdaptiveQuantization(4), keras.layers.Conv2D:
     lc.BinaryQuantization(per_channel=True), "dense_2": None},
])
def test_spec_serialization_round_trip(compression):
    data = spec_lib.serialize_spec(compression)
    back = spec_lib.deserialize_spec(data)
    if isinstance(compression, dict):
        assert list(back) == list(compression)
        for key in compression:
            value = compression[key]
            assert (back[key] is None) == (value is None)
            if value is not None:
                assert back[key].get_config() == value.get_config()
    elif compression is None:
        assert back is None
    else:
        assert back.get_config() == compression.get_config()


def test_exact_method_on_a_large_layer_is_refused_by_name():
    import keras

    net = keras.Sequential([keras.Input((300,)),
                            keras.layers.Dense(100, name="big"),
                            keras.layers.Dense(3, name="small")])
    spec = {"big": lc.AdaptiveQuantization(2, method="exact"),
            "small": lc.AdaptiveQuantization(2, method="exact")}
    with pytest.raises(ValueError, match="method='exact'\\) on 'big/kernel' "
                       "needs dynamic-programming tables of 26.8 GiB for its "
                       "30,000 weights per codebook"):
        lc.LCModel(net, compression=spec)
    # A small layer is fine with the exact method.
    lc.LCModel(net, compression={"big": None, "small": spec["small"]})


def test_a_key_matching_nothing_in_a_functional_model_is_a_value_error():
    """The InputLayer of a Functional model has no path: the error is the
    documented ValueError, not a TypeError from fnmatch."""
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(inputs)
    net = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match="key 'nothing\\*' matches no layer"):
        spec_lib.resolve_spec(net, {"nothing*": lc.AdaptiveQuantization(2)})
    with pytest.raises(ValueError, match="key 'nothing' matches no layer"):
        spec_lib.resolve_spec(net, {"nothing": lc.AdaptiveQuantization(2)})


def test_walk_layers_yields_nested_paths_once():
    inner = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, name="d")], name="inner")
    inputs = keras.Input((4,))
    net = keras.Model(inputs, [inner(inputs), inner(inputs)], name="outer")
    paths = [path for _, path in spec_lib.walk_layers(net)]
    assert paths[-2:] == ["inner", "inner/d"]
    assert len(paths) == len(set(paths))
    assert [p for _, p in spec_lib.walk_layers(net, skip=(inner,))] == \
        paths[:-2]


# Kernels found as variables (issue 12) -------------------------------------


EXPECTED = [
    "block/att/query/kernel", "block/att/key/kernel", "block/att/value/kernel",
    "block/att/attention_output/kernel", "block/ffn/dense/kernel",
    "block/ffn/dense_1/kernel",
    "bi/forward_lstm/lstm_cell/kernel",
    "bi/forward_lstm/lstm_cell/recurrent_kernel",
    "bi/backward_lstm/lstm_cell/kernel",
    "bi/backward_lstm/lstm_cell/recurrent_kernel",
    "gru/gru_cell/kernel", "gru/gru_cell/recurrent_kernel",
    "proj/kernel", "proj/inner/kernel", "head/kernel"]


def test_every_weight_matrix_is_found():
    refs = spec_lib.compressible_kernels(sequence_net())
    assert [r.path for r in refs] == EXPECTED
    kinds = {r.path: r.layer_type for r in refs}
    assert kinds["block/att/query/kernel"] == "EinsumDense"
    assert kinds["gru/gru_cell/recurrent_kernel"] == "GRUCell"
    assert kinds["proj/kernel"] == "Projection"
    # Biases, normalisation and scalars stay float.
    for r in refs:
        assert len(r.variable.shape) >= 2
        assert not r.variable.name.endswith(("bias", "gamma", "beta"))


@pytest.mark.parametrize("key, expected", [
    (keras.layers.MultiHeadAttention, EXPECTED[:4]),
    (keras.layers.LSTM, EXPECTED[6:10]),
    (EncoderBlock, EXPECTED[:6]),
    ("block", EXPECTED[:6]),
    ("att", EXPECTED[:4]),
    ("block/att/*kernel", EXPECTED[:4]),
    ("*recurrent_kernel", [EXPECTED[7], EXPECTED[9], EXPECTED[11]]),
    ("proj", EXPECTED[12:14]),
    ("proj/kernel", EXPECTED[12:13]),
])
def test_enclosing_layers_names_classes_and_globs_reach_kernels(key,
                                                                expected):
    groups = spec_lib.resolve_spec(sequence_net(),
                                   {key: lc.AdaptiveQuantization(2)})
    assert [g.name for g in groups] == expected


def test_an_exact_kernel_name_beats_its_enclosing_layer():
    groups = spec_lib.resolve_spec(sequence_net(), {
        "block": lc.AdaptiveQuantization(2),
        "block/att/query/kernel": lc.BinaryQuantization(),
        "ffn": None})
    kinds = {g.name: g.quantization.kind for g in groups}
    assert kinds == {
        "block/att/query/kernel": "BinaryQuantization",
        "block/att/key/kernel": "AdaptiveQuantization",
        "block/att/value/kernel": "AdaptiveQuantization",
        "block/att/attention_output/kernel": "AdaptiveQuantization"}


def test_enclosing_names_beat_globs_and_the_nearer_one_wins():
    groups = spec_lib.resolve_spec(sequence_net(), {
        "*": lc.AdaptiveQuantization(2), "block": lc.BinaryQuantization(),
        "att": lc.TernaryQuantization(),
        keras.layers.LSTM: lc.ScaledBinaryQuantization()})
    kinds = {g.name: g.quantization.kind for g in groups}
    assert {kinds[p] for p in EXPECTED[:4]} == {"TernaryQuantization"}
    assert {kinds[p] for p in EXPECTED[4:6]} == {"BinaryQuantization"}
    # A class (of an enclosing layer too) is less specific than "*".
    assert {kinds[p] for p in EXPECTED[6:]} == {"AdaptiveQuantization"}


def test_frozen_custom_matrices_stay_float():
    net = sequence_net()
    net.get_layer("proj").trainable = False
    paths = [r.path for r in spec_lib.compressible_kernels(net)]
    # The add_weight matrix is recognised only while trainable; the Dense
    # inside is a known layer class, kept (and frozen) as before.
    assert "proj/kernel" not in paths and "proj/inner/kernel" in paths


def test_every_resnet50_weight_matrix_is_found():
    net = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
                                      classes=10)
    refs = spec_lib.compressible_kernels(net)
    expected = [layer for layer in net.layers
                if isinstance(layer, (keras.layers.Conv2D,
                                      keras.layers.Dense))]
    assert [r.layer.name for r in refs] == [layer.name for layer in expected]
    compressed = sum(r.size for r in refs)
    total = sum(int(np.prod(v.shape)) for v in net.weights)
    assert compressed / total > 0.99
