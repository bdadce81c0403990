"""Tests of lc_keras.rows: row checks, sorted rows and their sums."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from lc_keras import rows as row_lib
from lc_keras.rows import FAST_SORT_MIN
from lc_keras.rows import broadcast_rows
from lc_keras.rows import cluster_sums
from lc_keras.rows import long_rows
from lc_keras.rows import prefix_sums
from lc_keras.rows import sort_rows
from lc_keras.rows import sorted_prefix_sums


def data(g, n, seed=0):
    return np.random.default_rng(seed).normal(size=(g, n)).astype(np.float32)


def test_cluster_sums_match_numpy():
    s = np.sort(data(2, 50, seed=6), axis=1)
    cuts = np.float32([[-0.5, 0.0, 0.7], [-1.0, -0.9, 2.0]])
    sums, counts = cluster_sums(s, prefix_sums(s), cuts)
    for g in range(2):
        label = np.searchsorted(cuts[g], s[g], side="right")
        for j in range(4):
            members = s[g][label == j].astype(np.float64)
            assert counts.numpy()[g, j] == len(members)
            assert sums.numpy()[g, j] == pytest.approx(members.sum())


def test_broadcast_rows():
    v = data(3, 5)
    out = broadcast_rows([[1.0, 2.0]], v, "t", "owner", k=2)
    np.testing.assert_array_equal(out.numpy(), [[1.0, 2.0]] * 3)
    with pytest.raises(ValueError, match=r"owner requires t of shape "
                                         r"\[G, 3\]"):
        broadcast_rows([[1.0, 2.0]], v, "t", "owner", k=3)
    with pytest.raises(ValueError, match="rank 2"):
        broadcast_rows([1.0, 2.0], v, "t", "owner")


@pytest.mark.parametrize("n", [7, FAST_SORT_MIN + 3])
def test_sorted_rows_and_prefix_sums_match_numpy(n):
    # Short rows take tf.sort, long ones NumPy: both give NumPy's answer,
    # eagerly and inside a tf.function.
    v = data(3, n, seed=n)
    assert long_rows(tf.constant(v)) == (n >= FAST_SORT_MIN)
    want = np.sort(v, axis=1)
    want_prefix = np.concatenate(
        [np.zeros((3, 1)), np.cumsum(want.astype(np.float64), axis=1)], 1)
    traced = tf.function(sorted_prefix_sums, autograph=False)
    for fn in (sorted_prefix_sums, traced):
        s, prefix = fn(tf.constant(v))
        np.testing.assert_array_equal(s.numpy(), want)
        assert prefix.dtype == tf.float64
        np.testing.assert_allclose(prefix.numpy(), want_prefix, rtol=1e-12,
                                   atol=1e-9)
    np.testing.assert_array_equal(sort_rows(tf.constant(v)).numpy(), want)


def test_unknown_length_counts_as_long():
    spec = tf.TensorSpec([2, None], tf.float32)
    seen = []

    def probe(v):
        seen.append(long_rows(v))
        return sort_rows(v)

    out = tf.function(probe, input_signature=[spec])(tf.constant(data(2, 9)))
    assert seen == [True]
    np.testing.assert_array_equal(out.numpy(), np.sort(data(2, 9), axis=1))


def test_docstring_examples():
    result = doctest.testmod(row_lib,
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
