"""Tests of lc_keras.codebooks: C steps as projections and their classes."""

import doctest
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import brute_force_kmeans
from conftest import assert_valid_projection
from conftest import nearest_sse
from conftest import sse
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from lc_keras import codebooks
from lc_keras.codebooks import AdaptiveQuantization
from lc_keras.codebooks import BinaryQuantization
from lc_keras.codebooks import FixedCodebook
from lc_keras.codebooks import PowersOfTwoQuantization
from lc_keras.codebooks import Quantization
from lc_keras.codebooks import ScaledBinaryQuantization
from lc_keras.codebooks import ScaledTernaryQuantization
from lc_keras.codebooks import TernaryQuantization

ALL = {
    "adaptive_auto": lambda: AdaptiveQuantization(3),
    "adaptive_exact": lambda: AdaptiveQuantization(4, method="exact"),
    "adaptive_lloyd": lambda: AdaptiveQuantization(5, method="lloyd", seed=2),
    "binary": BinaryQuantization,
    "scaled_binary": ScaledBinaryQuantization,
    "ternary": TernaryQuantization,
    "scaled_ternary": ScaledTernaryQuantization,
    "pow2": lambda: PowersOfTwoQuantization(-3, 1),
    "pow2_scaled": lambda: PowersOfTwoQuantization(-3, 0, scaled=True),
    "fixed": lambda: FixedCodebook([0.5, -1.0, 0.0, 2.0]),
    "fixed_trainable": lambda: FixedCodebook(
        [1.0, 0.0, -1.0], trainable=[True, False, True]),
    "fixed_all_trainable": lambda: FixedCodebook([-1.0, 1.0], trainable=True),
}
# Codebooks whose result depends on `previous` (the others ignore it).
WARM = {"adaptive_lloyd", "pow2_scaled", "fixed_trainable",
        "fixed_all_trainable"}



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


def values(codebook, indices):
    return np.take_along_axis(np.asarray(codebook), np.asarray(indices), 1)


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
@pytest.mark.parametrize("fill", [0.0, 1.25, -3.0])
def test_constant_rows_no_nan(name, fill):
    q = make(name)
    v = np.full((2, 9), fill, np.float32)
    c, z = q.project(v)
    check(q, v, c, z)
    c, z = q.project(v, previous=c)
    check(q, v, c, z)


@pytest.mark.parametrize("name", sorted(ALL))
def test_idempotent(name):
    q = make(name)
    v = data(seed=1)
    c, z = q.project(v)
    w = values(c, z)
    c2, z2 = q.project(w, previous=c)
    np.testing.assert_allclose(values(c2, z2), w, rtol=1e-6, atol=1e-7)
    if name not in WARM:
        c3, z3 = q.project(w)
        np.testing.assert_allclose(values(c3, z3), w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(ALL))
def test_batch_equals_rows(name):
    q = make(name)
    v = data(g=4, n=40, seed=2)
    c, z = q.project(v)
    for g in range(4):
        c1, z1 = q.project(v[g:g + 1])
        np.testing.assert_allclose(c1.numpy(), c.numpy()[g:g + 1], rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_array_equal(z1.numpy(), z.numpy()[g:g + 1])


@pytest.mark.parametrize("name", sorted(ALL))
def test_warm_start_not_worse_than_previous(name):
    q = make(name)
    v = data(seed=3)
    c, _ = q.project(v)
    v2 = v + data(seed=4, scale=0.05)
    c2, z2 = q.project(v2, previous=c)
    check(q, v2, c2, z2)
    if name in WARM:
        assert np.all(sse(v2, c2, z2)
                      <= nearest_sse(v2, c.numpy()) * (1 + 1e-6) + 1e-9)


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


# ----------------------------------------------------------------------------
# Against brute force.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "auto"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("n", [3, 6, 8])
def test_adaptive_matches_exhaustive_search(method, k, n):
    q = AdaptiveQuantization(k, method=method)
    v = data(g=2, n=n, seed=n + k)
    c, z = q.project(v)
    check(q, v, c, z)
    got = sse(v, c, z)
    for g in range(2):
        assert got[g] == pytest.approx(brute_force_kmeans(v[g], k), rel=1e-5,
                                       abs=1e-7)


def test_adaptive_auto_picks_lloyd_on_large_rows():
    v = data(g=1, n=5000, seed=8)
    auto = AdaptiveQuantization(8).project(v)
    lloyd = AdaptiveQuantization(8, method="lloyd").project(v)
    np.testing.assert_array_equal(auto[0].numpy(), lloyd[0].numpy())


def test_adaptive_lloyd_warm_start_is_used():
    v = data(g=1, n=200, seed=9)
    q = AdaptiveQuantization(3, method="lloyd", max_iter=0)
    previous = np.array([[-5.0, 0.0, 5.0]], np.float32)
    c, _ = q.project(v, previous=previous)
    np.testing.assert_array_equal(c.numpy(), previous)


def grid_best(v, codebook_of_a, grid):
    return min(nearest_sse(v, codebook_of_a(a)[None])[0] for a in grid)


@pytest.mark.parametrize("seed", range(4))
def test_scaled_binary_against_grid(seed):
    v = data(g=1, n=15, seed=seed)
    c, z = ScaledBinaryQuantization().project(v)
    a = c.numpy()[0, 1]
    assert a == pytest.approx(np.abs(v).mean(), rel=1e-6)
    np.testing.assert_array_equal(c.numpy(), [[-a, a]])
    grid = np.linspace(0, 2 * np.abs(v).max(), 4001)
    best = grid_best(v, lambda a: np.array([-a, a]), grid)
    assert sse(v, c, z)[0] <= best + 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_scaled_ternary_against_grid(seed):
    v = data(g=1, n=15, seed=seed)
    c, z = ScaledTernaryQuantization().project(v)
    a = c.numpy()[0, 2]
    np.testing.assert_array_equal(c.numpy(), [[-a, 0.0, a]])
    grid = np.linspace(0, 2 * np.abs(v).max(), 4001)
    best = grid_best(v, lambda a: np.array([-a, 0.0, a]), grid)
    assert sse(v, c, z)[0] <= best + 1e-6


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-8, 8, width=32, allow_subnormal=False),
                min_size=1, max_size=12))
def test_property_scaled_ternary_and_binary_optimal(xs):
    v = np.asarray(xs, np.float32)[None]
    top = float(np.abs(v).max())
    grid = np.linspace(0, 2 * top + 1, 801)
    c, z = ScaledTernaryQuantization().project(v)
    check(ScaledTernaryQuantization(), v, c, z)
    best = grid_best(v, lambda a: np.array([-a, 0.0, a]), grid)
    assert sse(v, c, z)[0] <= best + 1e-5 * (1 + best)
    c, z = ScaledBinaryQuantization().project(v)
    best = grid_best(v, lambda a: np.array([-a, a]), grid)
    assert sse(v, c, z)[0] <= best + 1e-5 * (1 + best)


def test_fixed_codebooks_are_nearest_codeword():
    v = data(g=2, n=100, seed=6) * 3
    cases = [
        (BinaryQuantization(), [-1.0, 1.0]),
        (TernaryQuantization(), [-1.0, 0.0, 1.0]),
        (PowersOfTwoQuantization(-2, 1),
         [-2, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 2]),
        (FixedCodebook([0.3, -2.0, 1.0]), [-2.0, 0.3, 1.0]),
    ]
    for q, book in cases:
        c, z = q.project(v)
        np.testing.assert_array_equal(c.numpy(),
                                      np.tile(np.float32(book), (2, 1)))
        expected = np.abs(v[:, :, None] - np.float32(book)).argmin(2)
        np.testing.assert_array_equal(z.numpy(), expected)


def test_binary_and_ternary_ties():
    v = np.array([[0.0, -0.0, 0.5, -0.5, 1e-8]], np.float32)
    _, z = BinaryQuantization().project(v)
    np.testing.assert_array_equal(z.numpy(), [[1, 1, 1, 0, 1]])
    _, z = TernaryQuantization().project(v)
    np.testing.assert_array_equal(z.numpy(), [[1, 1, 1, 1, 1]])
    _, z = ScaledBinaryQuantization().project(np.zeros((1, 3), np.float32))
    np.testing.assert_array_equal(z.numpy(), [[1, 1, 1]])


def test_scaled_binary_and_ternary_of_zeros():
    zeros = np.zeros((2, 5), np.float32)
    c, _ = ScaledBinaryQuantization().project(zeros)
    np.testing.assert_array_equal(c.numpy(), np.zeros((2, 2)))
    c, z = ScaledTernaryQuantization().project(zeros)
    np.testing.assert_array_equal(c.numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(z.numpy(), np.ones((2, 5)))


def test_scaled_powers_of_two():
    q = PowersOfTwoQuantization(-2, 0, scaled=True)
    base = np.array([-1, -0.5, -0.25, 0, 0.25, 0.5, 1], np.float32)
    a_true = 0.37
    rng = np.random.default_rng(7)
    v = (a_true * base[rng.integers(0, 7, size=(1, 300))]).astype(np.float32)
    c, z = q.project(v)
    np.testing.assert_allclose(c.numpy(), a_true * base[None], rtol=1e-6)
    # Noisy data: the scale is the least-squares scale of its assignment, and
    # the result is not worse than the initial scale max|v| / 2**max.
    v = v + 0.02 * rng.normal(size=v.shape).astype(np.float32)
    c, z = q.project(v)
    check(q, v, c, z)
    a = c.numpy()[0, -1]
    cz = base[z.numpy()[0]]
    assert a == pytest.approx((v[0] * cz).sum() / (cz * cz).sum(), rel=1e-5)
    a0 = np.abs(v).max()
    assert sse(v, c, z)[0] <= nearest_sse(v, (a0 * base)[None])[0] + 1e-9
    # All-zero rows keep the scale 1.
    c, z = q.project(np.zeros((1, 4), np.float32))
    np.testing.assert_array_equal(c.numpy(), base[None])


def test_fixed_codebook_trainable_entries():
    q = FixedCodebook([1.0, 0.0, -1.0], trainable=[True, False, True])
    v = data(g=2, n=300, seed=11)
    c, z = q.project(v)
    check(q, v, c, z)
    c, z = c.numpy(), z.numpy()
    np.testing.assert_array_equal(c[:, 1], [0.0, 0.0])
    for g in range(2):
        for j in (0, 2):
            members = v[g][z[g] == j]
            np.testing.assert_allclose(c[g, j], members.mean(), rtol=1e-5)


def test_fixed_codebook_free_entries_stay_between_fixed_ones():
    q = FixedCodebook([0.0, 0.1, 1.0], trainable=[False, True, False])
    v = np.array([[0.0, 5.0, 5.0, 0.9, 0.95]], np.float32)
    c, _ = q.project(v)
    assert 0.0 <= c.numpy()[0, 1] <= 1.0
    np.testing.assert_array_equal(c.numpy()[0, [0, 2]], [0.0, 1.0])


def test_fixed_codebook_warm_start_keeps_fixed_entries():
    q = FixedCodebook([-1.0, 0.0, 1.0], trainable=[True, False, True],
                      max_iter=0)
    v = data(g=1, n=10)
    previous = np.array([[-0.3, 7.0, 0.4]], np.float32)  # fixed entry ignored
    c, _ = q.project(v, previous=previous)
    np.testing.assert_array_equal(c.numpy(),
                                  np.float32([[-0.3, 0.0, 0.4]]))


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
    with pytest.raises(TypeError, match=r"per_channel to be a bool. "
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


def test_projection_function_errors():
    with pytest.raises(ValueError, match="method to be one of"):
        codebooks.projection_adaptive(data(), 2, method="x")
    with pytest.raises(ValueError, match="min_exponent <= max_exponent"):
        codebooks.projection_powers_of_two(data(), 3, 2)
    with pytest.raises(ValueError, match="distinct values"):
        codebooks.projection_fixed_codebook(data(), [1, 1])


def test_base_class_is_abstract():
    with pytest.raises(TypeError):
        Quantization()


def test_docstring_examples():
    result = doctest.testmod(codebooks,
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
