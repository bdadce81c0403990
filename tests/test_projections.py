"""Tests of lc_keras.projections: the C steps as pure projection functions."""

import doctest
import itertools

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

from lc_keras import projections
from lc_keras.rows import FAST_SORT_MIN
from lc_keras.projections import projection_adaptive
from lc_keras.projections import projection_binary
from lc_keras.projections import projection_fixed_codebook
from lc_keras.projections import projection_powers_of_two
from lc_keras.projections import projection_scaled_binary
from lc_keras.projections import projection_scaled_ternary
from lc_keras.projections import projection_ternary
from lc_keras.projections import projection_uniform

# name -> (projection of (v, previous), number of entries K).
ALL = {
    "adaptive_auto": (
        lambda v, p: projection_adaptive(v, 3, previous=p), 3),
    "adaptive_exact": (
        lambda v, p: projection_adaptive(v, 4, previous=p, method="exact"), 4),
    "adaptive_lloyd": (
        lambda v, p: projection_adaptive(v, 5, previous=p, method="lloyd",
                                         seed=2), 5),
    "binary": (lambda v, p: projection_binary(v), 2),
    "scaled_binary": (lambda v, p: projection_scaled_binary(v), 2),
    "ternary": (lambda v, p: projection_ternary(v), 3),
    "scaled_ternary": (lambda v, p: projection_scaled_ternary(v), 3),
    "pow2": (lambda v, p: projection_powers_of_two(v, -3, 1, previous=p), 11),
    "pow2_scaled": (
        lambda v, p: projection_powers_of_two(v, -3, 0, scaled=True,
                                              previous=p), 9),
    "fixed": (
        lambda v, p: projection_fixed_codebook(v, [0.5, -1.0, 0.0, 2.0],
                                               previous=p), 4),
    "fixed_trainable": (
        lambda v, p: projection_fixed_codebook(
            v, [1.0, 0.0, -1.0], trainable=[True, False, True],
            previous=p), 3),
    "fixed_all_trainable": (
        lambda v, p: projection_fixed_codebook(v, [-1.0, 1.0], trainable=True,
                                               previous=p), 2),
    "uniform_exact": (
        lambda v, p: projection_uniform(v, 3, previous=p, method="exact"), 7),
    "uniform_alternating": (
        lambda v, p: projection_uniform(v, 4, previous=p,
                                        method="alternating"), 15),
    "uniform_auto_8": (lambda v, p: projection_uniform(v, 8, previous=p), 255),
}
# Projections whose result depends on `previous` (the others ignore it).
WARM = {"adaptive_lloyd", "pow2_scaled", "fixed_trainable",
        "fixed_all_trainable", "uniform_alternating"}


@pytest.fixture(autouse=True)
def _seed_and_clear():
    """Overrides the conftest fixture: no Keras model is built here, so the
    (slow) `keras.backend.clear_session()` after every test is not needed."""
    yield


def project(name, v, previous=None):
    return ALL[name][0](v, previous)


def data(g=3, n=64, seed=0, scale=0.7):
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(g, n))).astype(np.float32)


def values(codebook, indices):
    return np.take_along_axis(np.asarray(codebook), np.asarray(indices), 1)


def check(name, v, codebook, indices):
    assert_valid_projection(v, codebook, indices, ALL[name][1])


# ----------------------------------------------------------------------------
# Generic properties, every projection.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
def test_valid_output(name):
    v = data()
    c, z = project(name, tf.constant(v))
    check(name, v, c, z)


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("fill", [0.0, 1.25, -3.0])
def test_constant_rows_no_nan(name, fill):
    v = np.full((2, 9), fill, np.float32)
    c, z = project(name, v)
    check(name, v, c, z)
    c, z = project(name, v, previous=c)
    check(name, v, c, z)


@pytest.mark.parametrize("name", sorted(ALL))
def test_idempotent(name):
    v = data(seed=1)
    c, z = project(name, v)
    w = values(c, z)
    c2, z2 = project(name, w, previous=c)
    np.testing.assert_allclose(values(c2, z2), w, rtol=1e-6, atol=1e-7)
    if name not in WARM:
        c3, z3 = project(name, w)
        np.testing.assert_allclose(values(c3, z3), w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(ALL))
def test_batch_equals_rows(name):
    v = data(g=4, n=40, seed=2)
    c, z = project(name, v)
    for g in range(4):
        c1, z1 = project(name, v[g:g + 1])
        np.testing.assert_allclose(c1.numpy(), c.numpy()[g:g + 1], rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_array_equal(z1.numpy(), z.numpy()[g:g + 1])


@pytest.mark.parametrize("name", sorted(ALL))
def test_warm_start_not_worse_than_previous(name):
    v = data(seed=3)
    c, _ = project(name, v)
    v2 = v + data(seed=4, scale=0.05)
    c2, z2 = project(name, v2, previous=c)
    check(name, v2, c2, z2)
    if name in WARM:
        assert np.all(sse(v2, c2, z2)
                      <= nearest_sse(v2, c.numpy()) * (1 + 1e-6) + 1e-9)


# ----------------------------------------------------------------------------
# Against brute force.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "auto"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("n", [3, 6, 8])
def test_adaptive_matches_exhaustive_search(method, k, n):
    v = data(g=2, n=n, seed=n + k)
    c, z = projection_adaptive(v, k, method=method)
    assert_valid_projection(v, c, z, k)
    got = sse(v, c, z)
    for g in range(2):
        assert got[g] == pytest.approx(brute_force_kmeans(v[g], k), rel=1e-5,
                                       abs=1e-7)


def test_adaptive_auto_picks_lloyd_on_large_rows():
    v = data(g=1, n=5000, seed=8)
    auto = projection_adaptive(v, 8)
    lloyd = projection_adaptive(v, 8, method="lloyd")
    np.testing.assert_array_equal(auto[0].numpy(), lloyd[0].numpy())


def test_adaptive_lloyd_warm_start_is_used():
    v = data(g=1, n=200, seed=9)
    previous = np.array([[-5.0, 0.0, 5.0]], np.float32)
    c, _ = projection_adaptive(v, 3, previous=previous, method="lloyd",
                               max_iter=0)
    np.testing.assert_array_equal(c.numpy(), previous)


def grid_best(v, codebook_of_a, grid):
    return min(nearest_sse(v, codebook_of_a(a)[None])[0] for a in grid)


@pytest.mark.parametrize("seed", range(4))
def test_scaled_binary_against_grid(seed):
    v = data(g=1, n=15, seed=seed)
    c, z = projection_scaled_binary(v)
    a = c.numpy()[0, 1]
    assert a == pytest.approx(np.abs(v).mean(), rel=1e-6)
    np.testing.assert_array_equal(c.numpy(), [[-a, a]])
    grid = np.linspace(0, 2 * np.abs(v).max(), 4001)
    best = grid_best(v, lambda a: np.array([-a, a]), grid)
    assert sse(v, c, z)[0] <= best + 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_scaled_ternary_against_grid(seed):
    v = data(g=1, n=15, seed=seed)
    c, z = projection_scaled_ternary(v)
    a = c.numpy()[0, 2]
    np.testing.assert_array_equal(c.numpy(), [[-a, 0.0, a]])
    grid = np.linspace(0, 2 * np.abs(v).max(), 4001)
    best = grid_best(v, lambda a: np.array([-a, 0.0, a]), grid)
    assert sse(v, c, z)[0] <= best + 1e-6


def test_scaled_ternary_long_rows():
    # Rows of FAST_SORT_MIN values or more take the NumPy path: each row's
    # scale is the best top-j mean over every j, scanned here.
    v = data(g=2, n=FAST_SORT_MIN + 7, seed=3)
    c, z = projection_scaled_ternary(v)
    for g in range(2):
        s = np.sort(np.abs(v[g].astype(np.float64)))[::-1]
        cum = np.cumsum(s)
        j = int(np.argmax(cum / np.sqrt(np.arange(1, s.size + 1))))
        assert c.numpy()[g, 2] == pytest.approx(cum[j] / (j + 1), rel=1e-6)
    assert_valid_projection(v, c.numpy(), z.numpy(), 3)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-8, 8, width=32, allow_subnormal=False),
                min_size=1, max_size=12))
def test_property_scaled_ternary_and_binary_optimal(xs):
    v = np.asarray(xs, np.float32)[None]
    top = float(np.abs(v).max())
    grid = np.linspace(0, 2 * top + 1, 801)
    c, z = projection_scaled_ternary(v)
    assert_valid_projection(v, c, z, 3)
    best = grid_best(v, lambda a: np.array([-a, 0.0, a]), grid)
    assert sse(v, c, z)[0] <= best + 1e-5 * (1 + best)
    c, z = projection_scaled_binary(v)
    best = grid_best(v, lambda a: np.array([-a, a]), grid)
    assert sse(v, c, z)[0] <= best + 1e-5 * (1 + best)


def test_fixed_codebooks_are_nearest_codeword():
    v = data(g=2, n=100, seed=6) * 3
    cases = [
        (projection_binary(v), [-1.0, 1.0]),
        (projection_ternary(v), [-1.0, 0.0, 1.0]),
        (projection_powers_of_two(v, -2, 1),
         [-2, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 2]),
        (projection_fixed_codebook(v, [0.3, -2.0, 1.0]), [-2.0, 0.3, 1.0]),
    ]
    for (c, z), book in cases:
        np.testing.assert_array_equal(c.numpy(),
                                      np.tile(np.float32(book), (2, 1)))
        expected = np.abs(v[:, :, None] - np.float32(book)).argmin(2)
        np.testing.assert_array_equal(z.numpy(), expected)


def test_binary_and_ternary_ties():
    v = np.array([[0.0, -0.0, 0.5, -0.5, 1e-8]], np.float32)
    _, z = projection_binary(v)
    np.testing.assert_array_equal(z.numpy(), [[1, 1, 1, 0, 1]])
    _, z = projection_ternary(v)
    np.testing.assert_array_equal(z.numpy(), [[1, 1, 1, 1, 1]])
    _, z = projection_scaled_binary(np.zeros((1, 3), np.float32))
    np.testing.assert_array_equal(z.numpy(), [[1, 1, 1]])


def test_scaled_binary_and_ternary_of_zeros():
    zeros = np.zeros((2, 5), np.float32)
    c, _ = projection_scaled_binary(zeros)
    np.testing.assert_array_equal(c.numpy(), np.zeros((2, 2)))
    c, z = projection_scaled_ternary(zeros)
    np.testing.assert_array_equal(c.numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(z.numpy(), np.ones((2, 5)))


def test_scaled_powers_of_two():
    base = np.array([-1, -0.5, -0.25, 0, 0.25, 0.5, 1], np.float32)
    a_true = 0.37
    rng = np.random.default_rng(7)
    v = (a_true * base[rng.integers(0, 7, size=(1, 300))]).astype(np.float32)
    c, z = projection_powers_of_two(v, -2, 0, scaled=True)
    np.testing.assert_allclose(c.numpy(), a_true * base[None], rtol=1e-6)
    # Noisy data: the scale is the least-squares scale of its assignment, and
    # the result is not worse than the initial scale max|v| / 2**max.
    v = v + 0.02 * rng.normal(size=v.shape).astype(np.float32)
    c, z = projection_powers_of_two(v, -2, 0, scaled=True)
    assert_valid_projection(v, c, z, 7)
    a = c.numpy()[0, -1]
    cz = base[z.numpy()[0]]
    assert a == pytest.approx((v[0] * cz).sum() / (cz * cz).sum(), rel=1e-5)
    a0 = np.abs(v).max()
    assert sse(v, c, z)[0] <= nearest_sse(v, (a0 * base)[None])[0] + 1e-9
    # All-zero rows keep the scale 1.
    c, z = projection_powers_of_two(np.zeros((1, 4), np.float32), -2, 0,
                                    scaled=True)
    np.testing.assert_array_equal(c.numpy(), base[None])


def test_fixed_codebook_trainable_entries():
    v = data(g=2, n=300, seed=11)
    c, z = projection_fixed_codebook(v, [1.0, 0.0, -1.0],
                                     trainable=[True, False, True])
    assert_valid_projection(v, c, z, 3)
    c, z = c.numpy(), z.numpy()
    np.testing.assert_array_equal(c[:, 1], [0.0, 0.0])
    for g in range(2):
        for j in (0, 2):
            members = v[g][z[g] == j]
            np.testing.assert_allclose(c[g, j], members.mean(), rtol=1e-5)


def test_fixed_codebook_free_entries_stay_between_fixed_ones():
    v = np.array([[0.0, 5.0, 5.0, 0.9, 0.95]], np.float32)
    c, _ = projection_fixed_codebook(v, [0.0, 0.1, 1.0],
                                     trainable=[False, True, False])
    assert 0.0 <= c.numpy()[0, 1] <= 1.0
    np.testing.assert_array_equal(c.numpy()[0, [0, 2]], [0.0, 1.0])


def test_fixed_codebook_warm_start_keeps_fixed_entries():
    v = data(g=1, n=10)
    previous = np.array([[-0.3, 7.0, 0.4]], np.float32)  # fixed entry ignored
    c, _ = projection_fixed_codebook(v, [-1.0, 0.0, 1.0],
                                     trainable=[True, False, True],
                                     previous=previous, max_iter=0)
    np.testing.assert_array_equal(c.numpy(),
                                  np.float32([[-0.3, 0.0, 0.4]]))


def _uniform_brute_force(v, q):
    """Least distortion over every code vector in {-q..q}^n, best scale."""
    best = float(np.sum(np.asarray(v, np.float64) ** 2))
    for codes in itertools.product(range(-q, q + 1), repeat=len(v)):
        z = np.asarray(codes, np.float64)
        zz = float(z @ z)
        if zz:
            a = max(0.0, float(v @ z) / zz)
            best = min(best, float(np.sum((v - a * z) ** 2)))
    return best


@pytest.mark.parametrize("bits,n", [(2, 7), (3, 5), (4, 4)])
@pytest.mark.parametrize("seed", range(3))
def test_uniform_exact_matches_brute_force(bits, n, seed):
    rng = np.random.default_rng(seed)
    v = (rng.normal(size=(2, n)) * rng.uniform(0.1, 3)).astype(np.float32)
    c, z = projection_uniform(v, bits, method="exact")
    q = (1 << (bits - 1)) - 1
    check_grid(c, z, q)
    got = sse(v, c, z)
    for g in range(2):
        want = _uniform_brute_force(v[g].astype(np.float64), q)
        assert got[g] <= want * (1 + 1e-5) + 1e-9


def check_grid(c, z, q):
    c, z = np.asarray(c), np.asarray(z)
    a = c[:, -1:] / q
    np.testing.assert_allclose(c, a * np.arange(-q, q + 1), rtol=1e-6,
                               atol=1e-12)
    assert z.min() >= 0 and z.max() <= 2 * q


def test_uniform_two_bits_is_scaled_ternary():
    v = data(g=4, n=50, seed=5)
    c, z = projection_uniform(v, 2)
    c3, z3 = projection_scaled_ternary(v)
    np.testing.assert_allclose(sse(v, c, z), sse(v, c3, z3), rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-5, 5, width=32), min_size=1, max_size=4),
       st.sampled_from([2, 3]))
def test_property_uniform_exact_optimal(xs, bits):
    v = np.asarray([xs], np.float32)
    c, z = projection_uniform(v, bits, method="exact")
    q = (1 << (bits - 1)) - 1
    want = _uniform_brute_force(v[0].astype(np.float64), q)
    assert sse(v, c, z)[0] <= want * (1 + 1e-5) + 1e-9


def test_uniform_alternating_close_to_exact_and_auto_switches():
    v = data(g=1, n=3000, seed=6)
    exact = sse(v, *projection_uniform(v, 8, method="exact"))
    alternating = sse(v, *projection_uniform(v, 8, method="alternating"))
    assert exact[0] <= alternating[0] <= exact[0] * 1.05
    big = data(g=1, n=(1 << 20) // 127 + 10, seed=7)
    auto = projection_uniform(big, 8)
    np.testing.assert_allclose(
        sse(big, *auto), sse(big, *projection_uniform(
            big, 8, method="alternating")), rtol=1e-6)


def test_uniform_errors():
    with pytest.raises(ValueError, match=r"requires bits in \[2, 8\]. "
                       r"Received: bits=1"):
        projection_uniform(data(), 1)
    with pytest.raises(ValueError, match=r"Received: bits=9"):
        projection_uniform(data(), 9)
    with pytest.raises(TypeError, match="bits to be an int"):
        projection_uniform(data(), 4.0)
    with pytest.raises(ValueError, match="method to be one of"):
        projection_uniform(data(), 4, method="lloyd")


# ----------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------


def test_projection_function_errors():
    with pytest.raises(ValueError, match="method to be one of"):
        projection_adaptive(data(), 2, method="x")
    with pytest.raises(ValueError, match="min_exponent <= max_exponent"):
        projection_powers_of_two(data(), 3, 2)
    with pytest.raises(ValueError, match=r"min_exponent >= -126"):
        projection_powers_of_two(data(), -127, 0)
    with pytest.raises(TypeError, match="scaled to be a bool"):
        projection_powers_of_two(data(), scaled=1)
    with pytest.raises(ValueError, match="distinct values"):
        projection_fixed_codebook(data(), [1, 1])
    with pytest.raises(TypeError, match=r"trainable\[0\]=1"):
        projection_fixed_codebook(data(), [0, 1], trainable=[1, True])
    with pytest.raises(ValueError, match=r"max_iter >= 0"):
        projection_fixed_codebook(data(), [0, 1], max_iter=-1)
    with pytest.raises(ValueError, match="rank 2"):
        projection_binary(np.zeros(5, np.float32))


def test_previous_shape_is_checked():
    with pytest.raises(ValueError, match=r"previous of shape \[G, 3\]"):
        projection_adaptive(data(g=2), 3, method="lloyd",
                            previous=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="1 or 2 rows"):
        projection_fixed_codebook(data(g=2), [0, 1, 2], trainable=True,
                                  previous=np.zeros((3, 3), np.float32))


def test_docstring_examples():
    result = doctest.testmod(projections,
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
