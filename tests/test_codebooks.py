"""Tests of lc_keras.codebooks: the serializable codebook classes and `get`.

The projections they call are tested in test_projections.py."""

import doctest
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_valid_projection

import lc_keras as lc
from lc_keras import codebooks
from lc_keras import projections
from lc_keras.codebooks import AdaptiveQuantization
from lc_keras.codebooks import BinaryQuantization
from lc_keras.codebooks import FixedCodebook
from lc_keras.codebooks import PowersOfTwoQuantization
from lc_keras.codebooks import Quantization
from lc_keras.codebooks import ScaledBinaryQuantization
from lc_keras.codebooks import ScaledTernaryQuantization
from lc_keras.codebooks import TernaryQuantization
from lc_keras.codebooks import UniformQuantization

ALL = {
    "adaptive_auto": lambda: codebooks.get("adaptive", k=3),
    "adaptive_exact": lambda: codebooks.get("adaptive", k=4, method="exact"),
    "adaptive_lloyd": lambda: codebooks.get("adaptive", k=5, method="lloyd",
                                            seed=2),
    "binary": lambda: codebooks.get("binary"),
    "scaled_binary": lambda: codebooks.get("scaled_binary"),
    "ternary": lambda: codebooks.get("ternary"),
    "scaled_ternary": lambda: codebooks.get("scaled_ternary"),
    "pow2": lambda: codebooks.get("powers_of_two", min_exponent=-3,
                                  max_exponent=1),
    "pow2_scaled": lambda: codebooks.get("powers_of_two", min_exponent=-3,
                                         max_exponent=0, scaled=True),
    "fixed": lambda: FixedCodebook([0.5, -1.0, 0.0, 2.0]),
    "fixed_trainable": lambda: FixedCodebook(
        [1.0, 0.0, -1.0], trainable=[True, False, True]),
    "fixed_all_trainable": lambda: FixedCodebook([-1.0, 1.0], trainable=True),
    "uniform": lambda: codebooks.get("uniform"),
    "uniform_2_alternating": lambda: UniformQuantization(
        2, method="alternating"),
    "uniform_8": lambda: codebooks.get("uniform", bits=8),
}
# The projection function each class calls, with the class's arguments.
FUNCTIONS = {
    AdaptiveQuantization: lambda q, v, p: projections.projection_adaptive(
        v, q.k, previous=p, method=q.method, max_iter=q.max_iter,
        seed=q.seed),
    BinaryQuantization: lambda q, v, p: projections.projection_binary(v),
    ScaledBinaryQuantization: (
        lambda q, v, p: projections.projection_scaled_binary(v)),
    TernaryQuantization: lambda q, v, p: projections.projection_ternary(v),
    ScaledTernaryQuantization: (
        lambda q, v, p: projections.projection_scaled_ternary(v)),
    PowersOfTwoQuantization: (
        lambda q, v, p: projections.projection_powers_of_two(
            v, q.min_exponent, q.max_exponent, scaled=q.scaled, previous=p,
            max_iter=q.max_iter)),
    FixedCodebook: lambda q, v, p: projections.projection_fixed_codebook(
        v, q.values, trainable=q.trainable, previous=p, max_iter=q.max_iter),
    UniformQuantization: lambda q, v, p: projections.projection_uniform(
        v, q.bits, previous=p, method=q.method, max_iter=q.max_iter),
}


@pytest.fixture(autouse=True)
def _seed_and_clear():
    """Overrides the conftest fixture: no Keras model is built here, so the
    (slow) `keras.backend.clear_session()` after every test is not needed."""
    yield


def make(name):
    return ALL[name]()


def data(g=3, n=64, seed=0, scale=0.7):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(g, n))).astype(np.float32)


def check(q, v, codebook, indices):
    assert_valid_projection(v, codebook, indices, q.num_entries)


# ----------------------------------------------------------------------------
# Generic properties, every class.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
def test_valid_output(name):
    q = make(name)
    v = data()
    c, z = q.project(tf.constant(v))
    check(q, v, c, z)
    assert isinstance(q, Quantization)
    assert q.kind == type(q).__name__


@pytest.mark.parametrize("name", sorted(ALL))
def test_project_is_the_projection_function(name):
    q = make(name)
    v = data(seed=3)
    c, z = q.project(v)
    fc, fz = FUNCTIONS[type(q)](q, v, None)
    np.testing.assert_array_equal(c.numpy(), fc.numpy())
    np.testing.assert_array_equal(z.numpy(), fz.numpy())
    v2 = v + data(seed=4, scale=0.05)
    c2, z2 = q.project(v2, previous=c)
    fc, fz = FUNCTIONS[type(q)](q, v2, c)
    np.testing.assert_array_equal(c2.numpy(), fc.numpy())
    np.testing.assert_array_equal(z2.numpy(), fz.numpy())


@pytest.mark.parametrize("name", sorted(ALL))
def test_traceable_in_tf_function(name):
    q = make(name)
    k = q.num_entries

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None, k], tf.float32)])
    def step(v, previous):
        c, z = q.project(v)
        c2, z2 = q.project(v, previous=previous)
        return c, z, c2, z2

    v = data(g=2, n=30, seed=5)
    c, z, c2, z2 = step(tf.constant(v), tf.constant(q.project(v)[0]))
    check(q, v, c, z)
    check(q, v, c2, z2)
    if name == "adaptive_auto":
        # Unknown static shape: "auto" cannot bound the DP and uses Lloyd.
        q = AdaptiveQuantization(q.k, method="lloyd")
    eager_c, eager_z = q.project(v)
    np.testing.assert_allclose(c.numpy(), eager_c.numpy(), rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_array_equal(z.numpy(), eager_z.numpy())


def test_auto_uses_exact_in_tf_function_with_static_shapes():
    q = AdaptiveQuantization(3)
    v = data(g=2, n=30, seed=5)
    c, z = tf.function(q.project)(tf.constant(v))
    exact = AdaptiveQuantization(3, method="exact").project(v)
    np.testing.assert_allclose(c.numpy(), exact[0].numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(ALL))
def test_config_round_trip(name):
    q = make(name)
    config = q.get_config()
    assert config["per_channel"] is False and config["shared"] is False
    clone = type(q).from_config(config)
    assert clone.get_config() == config
    assert repr(clone) == repr(q)
    assert repr(q).startswith(q.kind + "(")
    serialized = keras.saving.serialize_keras_object(q)
    serialized = json.loads(json.dumps(serialized))
    assert serialized["registered_name"] == f"lc_keras>{q.kind}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(q)
    assert restored.get_config() == config
    v = data(g=1, n=20)
    np.testing.assert_array_equal(restored.project(v)[0].numpy(),
                                  q.project(v)[0].numpy())


def test_config_is_exactly_the_constructor_arguments():
    assert AdaptiveQuantization(
        4, method="lloyd", max_iter=7, seed=3, per_channel=True).get_config(
    ) == {"k": 4, "method": "lloyd", "max_iter": 7, "seed": 3,
          "per_channel": True, "shared": False}
    assert BinaryQuantization(shared=True).get_config() == {
        "per_channel": False, "shared": True}
    assert PowersOfTwoQuantization(-2, 1, scaled=True).get_config() == {
        "min_exponent": -2, "max_exponent": 1, "scaled": True,
        "max_iter": 1000, "per_channel": False, "shared": False}
    assert FixedCodebook([1, -1], trainable=[True, False]).get_config() == {
        "values": [1.0, -1.0], "trainable": [True, False], "max_iter": 1000,
        "per_channel": False, "shared": False}


def test_num_entries():
    assert AdaptiveQuantization(256).num_entries == 256
    assert BinaryQuantization().num_entries == 2
    assert ScaledBinaryQuantization().num_entries == 2
    assert TernaryQuantization().num_entries == 3
    assert ScaledTernaryQuantization().num_entries == 3
    assert PowersOfTwoQuantization().num_entries == 17
    assert PowersOfTwoQuantization(0, 0).num_entries == 3
    assert FixedCodebook([3.0, 1.0, 2.0]).num_entries == 3


def test_uniform_config_entries_and_errors():
    assert UniformQuantization(8, per_channel=True).get_config() == {
        "bits": 8, "symmetric": True, "method": "auto", "max_iter": 1000,
        "per_channel": True, "shared": False}
    assert [UniformQuantization(b).num_entries for b in (2, 3, 4, 8)] == [
        3, 7, 15, 255]
    assert UniformQuantization(4).kind == "UniformQuantization"
    assert codebooks.get("uniform", bits=2).bits == 2
    with pytest.raises(ValueError, match=r"UniformQuantization requires bits "
                       r"in \[2, 8\]. Received: bits=1"):
        UniformQuantization(1)
    with pytest.raises(ValueError, match="symmetric=True.*Received: "
                       "symmetric=False"):
        UniformQuantization(4, symmetric=False)
    with pytest.raises(TypeError, match="symmetric to be a bool"):
        UniformQuantization(4, symmetric=1)
    with pytest.raises(ValueError, match="method to be one of"):
        UniformQuantization(4, method="exactly")
    with pytest.raises(TypeError, match="bits to be an int"):
        codebooks.get("uniform", bits="4")


def test_uniform_codebook_is_on_its_grid():
    v = data(g=2, n=200, seed=4)
    for bits in (2, 4, 8):
        q = UniformQuantization(bits)
        c, z = q.project(v)
        top = (1 << (bits - 1)) - 1
        np.testing.assert_allclose(
            c.numpy(), c.numpy()[:, -1:] / top * np.arange(-top, top + 1),
            rtol=1e-6, atol=1e-12)
        again = q.project(np.take_along_axis(c.numpy(), z.numpy(), 1))
        np.testing.assert_array_equal(again[1].numpy(), z.numpy())


def test_adaptive_lloyd_warm_start_is_used():
    v = data(g=1, n=200, seed=9)
    q = AdaptiveQuantization(3, method="lloyd", max_iter=0)
    previous = np.array([[-5.0, 0.0, 5.0]], np.float32)
    c, _ = q.project(v, previous=previous)
    np.testing.assert_array_equal(c.numpy(), previous)


def test_previous_shape_is_checked():
    q = AdaptiveQuantization(3, method="lloyd")
    with pytest.raises(ValueError, match=r"previous of shape \[G, 3\]"):
        q.project(data(g=2), previous=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="1 or 2 rows"):
        q.project(data(g=2), previous=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="rank 2"):
        q.project(np.zeros(5, np.float32))


# ----------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------


def test_adaptive_errors():
    with pytest.raises(ValueError) as e:
        AdaptiveQuantization(1)
    assert str(e.value) == ("AdaptiveQuantization requires k >= 2. "
                            "Received: k=1")
    with pytest.raises(ValueError, match=r"k <= 65536. Received: k=65537"):
        AdaptiveQuantization(65537)
    for bad in (True, 2.0, "4", None):
        with pytest.raises(TypeError, match="k to be an int"):
            AdaptiveQuantization(bad)
    assert AdaptiveQuantization(np.int64(4)).get_config()["k"] == 4
    with pytest.raises(ValueError,
                       match=r"method to be one of 'auto', 'exact', 'lloyd'. "
                             r"Received: method='kmeans'"):
        AdaptiveQuantization(4, method="kmeans")
    with pytest.raises(ValueError,
                       match=r"max_iter >= 0. Received: max_iter=-1"):
        AdaptiveQuantization(4, max_iter=-1)
    with pytest.raises(TypeError, match="seed to be an int"):
        AdaptiveQuantization(4, seed=0.5)
    with pytest.raises(TypeError, match=r"per_channel to be a bool "
                                        r"\(True or False\). "
                                        r"Received: per_channel=1"):
        AdaptiveQuantization(4, per_channel=1)
    with pytest.raises(TypeError, match="shared to be a bool"):
        BinaryQuantization(shared="yes")


def test_powers_of_two_errors():
    with pytest.raises(ValueError,
                       match=r"min_exponent <= max_exponent. Received: "
                             r"min_exponent=1, max_exponent=0"):
        PowersOfTwoQuantization(1, 0)
    with pytest.raises(ValueError, match=r"min_exponent >= -126"):
        PowersOfTwoQuantization(-200, 0)
    with pytest.raises(TypeError, match="max_exponent to be an int"):
        PowersOfTwoQuantization(-1, 0.5)
    with pytest.raises(TypeError, match="scaled to be a bool"):
        PowersOfTwoQuantization(scaled="no")


def test_fixed_codebook_errors():
    with pytest.raises(ValueError, match=r"at least one value. Received: "
                                         r"values=\[\]"):
        FixedCodebook([])
    with pytest.raises(ValueError, match=r"distinct values .* value 1.0 more "
                                         r"than once"):
        FixedCodebook([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"finite float32 values. Received: "
                                         r"values\[1\]=nan"):
        FixedCodebook([0.0, float("nan")])
    with pytest.raises(ValueError, match=r"values\[0\]=inf"):
        FixedCodebook([float("inf"), 0.0])
    with pytest.raises(ValueError, match=r"values\[1\]=1e\+39"):
        FixedCodebook([0.0, 1e39])
    with pytest.raises(ValueError, match="flat list"):
        FixedCodebook([[0.0, 1.0]])
    with pytest.raises(TypeError, match="list of numbers"):
        FixedCodebook(["a", "b"])
    with pytest.raises(ValueError, match=r"at most 65536 values"):
        FixedCodebook(np.arange(65537))
    with pytest.raises(ValueError,
                       match=r"one trainable flag per value \(2\). "
                             r"Received: trainable=\[True\] \(length 1\)"):
        FixedCodebook([0.0, 1.0], trainable=[True])
    with pytest.raises(TypeError, match=r"trainable\[1\]=1"):
        FixedCodebook([0.0, 1.0], trainable=[True, 1])
    with pytest.raises(TypeError, match="trainable to be None, a bool"):
        FixedCodebook([0.0, 1.0], trainable=3)


def test_base_class_is_abstract():
    with pytest.raises(TypeError):
        Quantization()


def test_docstring_examples():
    result = doctest.testmod(codebooks,
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


# ----------------------------------------------------------------------------
# get: the one table from names to codebooks.
# ----------------------------------------------------------------------------

DEFAULTS = {
    "adaptive": AdaptiveQuantization(2),
    "binary": BinaryQuantization(),
    "scaled_binary": ScaledBinaryQuantization(),
    "ternary": TernaryQuantization(),
    "scaled_ternary": ScaledTernaryQuantization(),
    "powers_of_two": PowersOfTwoQuantization(),
    "uniform": UniformQuantization(4),
}


def test_names_are_the_command_line_choices():
    from lc_keras import cli

    assert codebooks.NAMES == tuple(DEFAULTS)
    assert tuple(cli.CODEBOOKS) == codebooks.NAMES


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_get_every_name_gives_the_default_codebook(name):
    q = codebooks.get(name)
    expected = DEFAULTS[name]
    assert type(q) is type(expected)
    assert q.get_config() == expected.get_config()
    by_class = codebooks.get(expected.kind)
    assert type(by_class) is type(q)
    assert by_class.get_config() == q.get_config()
    assert codebooks.get(f"lc_keras>{expected.kind}").kind == expected.kind


def test_get_names_with_arguments():
    q = codebooks.get("adaptive", k=4, per_channel=True, method="lloyd")
    assert q.get_config() == AdaptiveQuantization(
        4, per_channel=True, method="lloyd").get_config()
    assert codebooks.get("AdaptiveQuantization", k=8).k == 8
    assert codebooks.get("ternary", shared=True).shared is True
    assert codebooks.get("powers_of_two", min_exponent=-2,
                         scaled=True).num_entries == 7
    q = codebooks.get("FixedCodebook", values=[1.0, -1.0])
    assert q.get_config() == FixedCodebook([1.0, -1.0]).get_config()


@pytest.mark.parametrize("name", sorted(ALL))
def test_get_config_round_trip(name):
    q = make(name)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(q)))
    for identifier in (serialized,
                       {"class_name": q.kind, "config": q.get_config()}):
        restored = codebooks.get(identifier)
        assert type(restored) is type(q)
        assert restored.get_config() == q.get_config()
    if not isinstance(q, (AdaptiveQuantization, FixedCodebook,
                          UniformQuantization)):
        # No required argument: the config may be left out.
        assert codebooks.get({"class_name": q.kind}).kind == q.kind


def test_get_instance_passthrough_and_none():
    q = AdaptiveQuantization(3)
    assert codebooks.get(q) is q
    assert codebooks.get(None) is None
    assert lc.get_codebook is codebooks.get
    c, _ = lc.projections.projection_binary([[0.5]])
    np.testing.assert_array_equal(c.numpy(), [[-1.0, 1.0]])


def test_get_errors():
    accepted = r"one of 'adaptive', 'binary', .*'BinaryQuantization'"
    with pytest.raises(ValueError, match=accepted + r".*Received: 'octal'"):
        codebooks.get("octal")
    with pytest.raises(ValueError, match=r"Received: 'Quantization'"):
        codebooks.get("Quantization")
    with pytest.raises(ValueError, match=r"Received: 'Binary'"):
        codebooks.get({"class_name": "Binary", "config": {}})
    with pytest.raises(ValueError, match=r"config dict with a 'class_name'. "
                                         r"Received: identifier=\{'config'"):
        codebooks.get({"config": {}})
    with pytest.raises(TypeError, match=r"'config' of a config dict to be a "
                                        r"dict. Received: config=3"):
        codebooks.get({"class_name": "BinaryQuantization", "config": 3})
    with pytest.raises(TypeError, match=r"a Quantization, a config dict, a "
                                        r"codebook name \(one of 'adaptive'"
                                        r".*Received: identifier=3 of type "
                                        r"int"):
        codebooks.get(3)
    with pytest.raises(TypeError, match=r"Received: identifier=.*of type "
                                        r"ABCMeta"):
        codebooks.get(BinaryQuantization)
    q = BinaryQuantization()
    with pytest.raises(ValueError, match=r"keyword arguments only with a "
                                         r"codebook name. Received: "
                                         r"identifier=BinaryQuantization"
                                         r"\(.*\) with k, shared"):
        codebooks.get(q, shared=True, k=2)
    with pytest.raises(ValueError, match="keyword arguments only"):
        codebooks.get(None, k=2)
    with pytest.raises(TypeError, match="k"):
        codebooks.get("binary", k=4)
    with pytest.raises(ValueError, match=r"requires k >= 2. Received: k=1"):
        codebooks.get("adaptive", k=1)
    with pytest.raises(TypeError, match="values"):
        codebooks.get("FixedCodebook")
