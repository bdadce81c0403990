"""Tests of lc_keras.kmeans: 1-D k-means (Lloyd, exact DP, k-means++)."""

import doctest

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

from lc_keras import kmeans
from lc_keras.kmeans import assign_nearest
from lc_keras.kmeans import kmeans_1d
from lc_keras.kmeans import kmeans_1d_bounded as kmeans_bounded
from lc_keras.kmeans import kmeans_1d_exact
from lc_keras.kmeans import kmeans_plus_plus



@pytest.fixture(autouse=True)
def _seed_and_clear():
    """Overrides the conftest fixture: no Keras model is built here, so the
    (slow) `keras.backend.clear_session()` after every test is not needed."""
    yield


def check_result(v, centers, indices, k):
    assert_valid_projection(v, centers.numpy(), indices.numpy(), k)


def rows(g, n, seed=0):
    return np.random.default_rng(seed).normal(size=(g, n)).astype(np.float32)


# ----------------------------------------------------------------------------
# assign_nearest
# ----------------------------------------------------------------------------


def test_assign_nearest_matches_argmin():
    v = rows(3, 200)
    c = np.sort(rows(3, 7, seed=1), axis=1)
    z = assign_nearest(v, c).numpy()
    expected = np.abs(v[:, :, None] - c[:, None, :]).argmin(2)
    np.testing.assert_array_equal(z, expected)


def test_assign_nearest_ties_go_up_and_broadcasts_codebook():
    v = np.array([[0.5, -0.5], [0.0, 2.0]], np.float32)
    c = np.array([[-1.0, 0.0, 1.0]], np.float32)
    z = assign_nearest(v, c).numpy()
    np.testing.assert_array_equal(z, [[2, 1], [1, 2]])


def test_assign_nearest_single_entry():
    z = assign_nearest(np.ones((2, 3), np.float32), [[4.0], [5.0]])
    np.testing.assert_array_equal(z.numpy(), np.zeros((2, 3)))


# ----------------------------------------------------------------------------
# kmeans_plus_plus
# ----------------------------------------------------------------------------


def test_kmeans_plus_plus_sorted_from_data_and_deterministic():
    v = rows(2, 10_000)
    c1 = kmeans_plus_plus(v, 16, seed=3).numpy()
    c2 = kmeans_plus_plus(v, 16, seed=3).numpy()
    np.testing.assert_array_equal(c1, c2)
    assert c1.shape == (2, 16)
    assert np.all(np.diff(c1, axis=1) > 0)
    for g in range(2):
        assert np.all(np.isin(c1[g], v[g]))
    c3 = kmeans_plus_plus(v, 16, seed=4).numpy()
    assert not np.array_equal(c1, c3)


def test_kmeans_plus_plus_subsamples_order_statistics():
    v = rows(1, 50_000)
    c = kmeans_plus_plus(v, 8, max_samples=5).numpy()
    s = np.sort(v[0])
    allowed = s[np.round(np.linspace(0, len(s) - 1, 5)).astype(int)]
    assert np.all(np.isin(c[0], allowed))


@pytest.mark.parametrize("value", [0.0, 3.5])
def test_kmeans_plus_plus_constant_rows_finite(value):
    c = kmeans_plus_plus(np.full((3, 10), value, np.float32), 4).numpy()
    np.testing.assert_array_equal(c, np.full((3, 4), value))


def test_kmeans_plus_plus_batch_equals_rows():
    v = rows(4, 300)
    batch = kmeans_plus_plus(v, 5, seed=7).numpy()
    for g in range(4):
        single = kmeans_plus_plus(v[g:g + 1], 5, seed=7).numpy()
        np.testing.assert_array_equal(batch[g:g + 1], single)


# ----------------------------------------------------------------------------
# kmeans_1d (Lloyd)
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 8, 40])
def test_lloyd_valid_and_fixed_point(k):
    v = rows(3, 500)
    c, z = kmeans_1d(v, k)
    check_result(v, c, z, k)
    # Converged: every non-empty cluster's center is its mean.
    for g in range(3):
        for j in range(k):
            members = v[g][z.numpy()[g] == j]
            if members.size:
                np.testing.assert_allclose(c.numpy()[g, j], members.mean(),
                                           rtol=1e-5, atol=1e-6)
    # Warm start from the result is a fixed point.
    c2, z2 = kmeans_1d(v, init=c)
    np.testing.assert_array_equal(c2.numpy(), c.numpy())
    np.testing.assert_array_equal(z2.numpy(), z.numpy())


def test_lloyd_never_worse_than_init_and_accepts_unsorted_init():
    v = rows(2, 400)
    init = np.array([[2.0, -3.0, 0.1, 0.0], [0.5, 0.4, 0.3, 0.2]], np.float32)
    c, z = kmeans_1d(v, init=init, max_iter=3)
    check_result(v, c, z, 4)
    assert np.all(sse(v, c.numpy(), z.numpy())
                  <= nearest_sse(v, init) * (1 + 1e-6))
    c0, z0 = kmeans_1d(v, init=init, max_iter=0)
    np.testing.assert_array_equal(c0.numpy(), np.sort(init, axis=1))


def test_lloyd_init_broadcast_and_k_checks():
    v = rows(3, 50)
    c, _ = kmeans_1d(v, k=2, init=[[-1.0, 1.0]])
    assert c.shape == (3, 2)
    with pytest.raises(ValueError, match=r"init of shape \[G, 3\]"):
        kmeans_1d(v, k=3, init=[[-1.0, 1.0]])
    with pytest.raises(ValueError, match="1 or 3 rows"):
        kmeans_1d(v, init=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="requires k or init"):
        kmeans_1d(v)


def test_lloyd_normal_quality():
    # Lloyd-Max optimum for N(0, 1) at k=4 has MSE 0.1175.
    v = rows(1, 100_000)
    c, z = kmeans_1d(v, 4)
    assert sse(v, c.numpy(), z.numpy())[0] / v.size < 0.12


@pytest.mark.parametrize("fn", ["lloyd", "exact"])
def test_constant_zero_and_short_rows(fn):
    run = kmeans_1d if fn == "lloyd" else kmeans_1d_exact
    for v in (np.zeros((2, 6), np.float32), np.full((1, 5), -2.5, np.float32),
              np.array([[1.0, 2.0], [3.0, 3.0]], np.float32),
              np.array([[1.0, 1.0, 2.0, 2.0, 2.0]], np.float32)):
        c, z = run(v, 4)
        check_result(v, c, z, 4)
        np.testing.assert_allclose(sse(v, c.numpy(), z.numpy()), 0,
                                   atol=1e-10)


def test_lloyd_batch_equals_rows():
    v = rows(5, 300, seed=2)
    c, z = kmeans_1d(v, 6, seed=1)
    for g in range(5):
        c1, z1 = kmeans_1d(v[g:g + 1], 6, seed=1)
        np.testing.assert_allclose(c1.numpy(), c.numpy()[g:g + 1], rtol=1e-6)
        np.testing.assert_array_equal(z1.numpy(), z.numpy()[g:g + 1])


def test_lloyd_large_row_precision():
    # Far from zero, float64 prefix sums keep the cluster means exact.
    v = (1000.0 + np.tile([-0.25, 0.25], 50_000)).astype(np.float32)[None]
    c, z = kmeans_1d(v, 2)
    np.testing.assert_allclose(c.numpy(), [[999.75, 1000.25]], rtol=0,
                               atol=1e-4)


# ----------------------------------------------------------------------------
# kmeans_1d_exact
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_exact_matches_brute_force(k, n):
    v = rows(3, n, seed=10 * n + k)
    c, z = kmeans_1d_exact(v, k)
    check_result(v, c, z, k)
    got = sse(v, c.numpy(), z.numpy())
    for g in range(3):
        assert got[g] == pytest.approx(brute_force_kmeans(v[g], k), rel=1e-5,
                                       abs=1e-6)


def test_exact_not_worse_than_lloyd_and_batch_equals_rows():
    v = rows(4, 60, seed=5)
    c, z = kmeans_1d_exact(v, 5)
    cl, zl = kmeans_1d(v, 5)
    assert np.all(sse(v, c.numpy(), z.numpy())
                  <= sse(v, cl.numpy(), zl.numpy()) * (1 + 1e-6))
    for g in range(4):
        c1, z1 = kmeans_1d_exact(v[g:g + 1], 5)
        np.testing.assert_allclose(c1.numpy(), c.numpy()[g:g + 1], rtol=1e-6)
        np.testing.assert_array_equal(z1.numpy(), z.numpy()[g:g + 1])


@pytest.mark.parametrize("n", [300, 5000])
def test_exact_two_clusters_equals_the_best_split(n):
    # k=2 on long rows (beyond the old (n+1)**2 table): the least error over
    # every split point of the sorted row, scanned directly.
    v = rows(2, n, seed=n)
    c, z = kmeans_1d_exact(v, 2)
    got = sse(v, c.numpy(), z.numpy())
    for g in range(2):
        s = np.sort(v[g].astype(np.float64))
        p1, p2 = np.cumsum(s), np.cumsum(s * s)
        i = np.arange(1, n)
        left = p2[i - 1] - p1[i - 1] ** 2 / i
        right = (p2[-1] - p2[i - 1]) - (p1[-1] - p1[i - 1]) ** 2 / (n - i)
        assert got[g] == pytest.approx((left + right).min(), rel=1e-5)


def test_exact_shifted_data():
    base = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 9.0], np.float32)
    c, _ = kmeans_1d_exact((base + 1e4)[None], 3)
    np.testing.assert_allclose(c.numpy() - 1e4, [[0.1, 5.05, 9.0]], atol=5e-3)


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.floats(-10, 10, width=32, allow_subnormal=False),
                    min_size=1, max_size=7),
    k=st.integers(2, 3),
)
def test_property_exact_is_optimal(values, k):
    v = np.asarray(values, np.float32)[None]
    c, z = kmeans_1d_exact(v, k)
    check_result(v, c, z, k)
    best = brute_force_kmeans(v[0], k)
    assert sse(v, c.numpy(), z.numpy())[0] <= best + 1e-4 * (1 + best)


@settings(max_examples=15, deadline=None)
@given(
    values=st.lists(st.floats(-100, 100, width=32, allow_subnormal=False),
                    min_size=1, max_size=40),
    k=st.integers(1, 6),
    seed=st.integers(0, 3),
)
def test_property_lloyd_valid(values, k, seed):
    v = np.asarray(values, np.float32)[None]
    c, z = kmeans_1d(v, k, seed=seed)
    check_result(v, c, z, k)
    init = kmeans_plus_plus(v, k, seed=seed).numpy()
    assert sse(v, c.numpy(), z.numpy())[0] <= nearest_sse(v, init)[0] * (
        1 + 1e-5) + 1e-6


# ----------------------------------------------------------------------------
# Tracing, dtypes, errors, docs.
# ----------------------------------------------------------------------------


def test_traceable_inside_tf_function_with_dynamic_shapes():
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def run(v):
        c1, z1 = kmeans_1d(v, 3)
        c2, z2 = kmeans_1d(v, init=c1)
        c3, z3 = kmeans_1d_exact(v, 3)
        c4 = kmeans_plus_plus(v, 3)
        return c1, z1, c2, z2, c3, z3, c4, assign_nearest(v, c4)

    v = rows(2, 40)
    out = run(tf.constant(v))
    assert out[0].shape == (2, 3) and out[5].shape == (2, 40)
    eager = kmeans_1d_exact(v, 3)
    np.testing.assert_allclose(out[4].numpy(), eager[0].numpy(), rtol=1e-6)
    check_result(v, out[0], out[1], 3)


def test_float64_and_int_inputs_are_cast():
    c, z = kmeans_1d(np.array([[0.0, 1.0, 4.0, 5.0]]), 2)
    assert c.dtype == tf.float32
    c, z = kmeans_1d_exact(np.array([[0, 1, 4, 5]]), 2)
    np.testing.assert_array_equal(c.numpy(), [[0.5, 4.5]])


@pytest.mark.parametrize("fn", [kmeans_1d, kmeans_1d_exact, kmeans_plus_plus])
def test_errors(fn):
    v = rows(1, 5)
    with pytest.raises(ValueError, match=r"requires k >= 1. Received: k=0"):
        fn(v, 0)
    with pytest.raises(ValueError, match=r"requires k <= 65536"):
        fn(v, 70000)
    with pytest.raises(TypeError, match=r"k to be an int. Received: k=True"):
        fn(v, True)
    with pytest.raises(TypeError, match=r"Received: k=2.0"):
        fn(v, 2.0)
    with pytest.raises(ValueError,
                       match=r"rank 2 .* Received: v.shape=\(5,\)"):
        fn(v[0], 2)
    with pytest.raises(ValueError, match="at least one value"):
        fn(np.zeros((2, 0), np.float32), 2)


def test_other_argument_errors():
    v = rows(1, 5)
    with pytest.raises(ValueError,
                       match=r"max_iter >= 0. Received: max_iter=-1"):
        kmeans_1d(v, 2, max_iter=-1)
    with pytest.raises(TypeError, match=r"seed to be an int"):
        kmeans_1d(v, 2, seed="a")
    with pytest.raises(ValueError, match=r"max_samples >= 1"):
        kmeans_plus_plus(v, 2, max_samples=0)


# ----------------------------------------------------------------------------
# kmeans_1d_bounded and the building blocks
# ----------------------------------------------------------------------------


def test_bounded_with_infinite_bounds_is_lloyd():
    v = rows(3, 200, seed=4)
    init = kmeans_plus_plus(v, 4, seed=2)
    inf = np.full(4, np.inf, np.float32)
    c, z = kmeans_bounded(v, init, -inf, inf, max_iter=50)
    c1, z1 = kmeans_1d(v, init=init, max_iter=50)
    np.testing.assert_array_equal(c.numpy(), c1.numpy())
    np.testing.assert_array_equal(z.numpy(), z1.numpy())


def test_bounded_keeps_centers_in_their_intervals():
    v = rows(2, 300, seed=5)
    lower = np.float32([-np.inf, 0.0, 0.5])
    upper = np.float32([-0.2, 0.0, np.inf])
    c, z = kmeans_bounded(v, [[-1.0, 0.0, 1.0]], lower, upper)
    check_result(v, c, z, 3)
    c = c.numpy()
    assert np.all(c[:, 0] <= -0.2) and np.all(c[:, 1] == 0.0)
    assert np.all(c[:, 2] >= 0.5)
    # Not worse than the start.
    assert np.all(sse(v, c, z) <= nearest_sse(v, [[-1.0, 0.0, 1.0]]) + 1e-9)


def test_bounded_errors():
    v = rows(3, 20)
    bounds = (np.zeros(2, np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="1 or 3 rows"):
        kmeans_bounded(v, np.zeros((2, 2), np.float32), *bounds)
    with pytest.raises(ValueError, match=r"max_iter >= 0"):
        kmeans_bounded(v, [[0.0, 1.0]], *bounds, max_iter=-1)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def unknown_columns(init):
        return kmeans_bounded(v, init, *bounds)

    with pytest.raises(ValueError, match="static number of columns"):
        unknown_columns.get_concrete_function()


def test_exact_is_cheap_is_the_auto_bound():
    assert kmeans.exact_is_cheap(1, 1022, 8)
    assert not kmeans.exact_is_cheap(1, 1024, 2)
    assert kmeans.exact_is_cheap(4, 511, 2)
    assert not kmeans.exact_is_cheap(4, 512, 2)
    assert not kmeans.exact_is_cheap(1, 200, 256)
    assert not kmeans.exact_is_cheap(1, None, 2)


def test_docstring_examples():
    result = doctest.testmod(kmeans, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("k", [4, 40])
def test_numpy_fast_path_matches_pure_tensorflow(monkeypatch, k):
    from lc_keras import kmeans
    from lc_keras import rows as row_lib

    rng = np.random.default_rng(3)
    v = tf.constant(rng.normal(size=(2, row_lib.FAST_SORT_MIN + 7)),
                    tf.float32)
    fast = kmeans.kmeans_1d(v, k, seed=1)
    monkeypatch.setattr(row_lib, "FAST_SORT_MIN", 10**9)
    # A new signature-free trace: call the pure-TF graph directly.
    slow = kmeans._lloyd_fn(v, None, k, tf.constant(100), tf.constant(
        1, tf.int64), kmeans.MAX_SEED_SAMPLES, None, None)
    np.testing.assert_allclose(fast[0].numpy(), slow[0].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(fast[1].numpy(), slow[1].numpy())
