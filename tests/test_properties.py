"""Property-based tests of every C step (hypothesis)."""

import functools

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import lc_keras as lc

QUANTIZERS = {
    "adaptive2": lambda: lc.get_codebook("adaptive", k=2),
    "adaptive3": lambda: lc.get_codebook("adaptive", k=3),
    "adaptive4_lloyd": lambda: lc.get_codebook("adaptive", k=4,
                                               method="lloyd"),
    **{name: functools.partial(lc.get_codebook, name) for name in (
        "binary", "scaled_binary", "ternary", "scaled_ternary")},
    "powers_of_two": lambda: lc.get_codebook(
        "powers_of_two", min_exponent=-3, max_exponent=1),
    "scaled_powers_of_two": lambda: lc.get_codebook(
        "powers_of_two", min_exponent=-2, max_exponent=0, scaled=True),
    "fixed": lambda: lc.get_codebook("FixedCodebook",
                                     values=[-0.7, 0.0, 0.2, 1.5]),
    "partially_fixed": lambda: lc.get_codebook(
        "FixedCodebook", values=[-1.0, 0.0, 0.5, 1.0],
        trainable=[True, False, True, False]),
}
# Projections whose result is a global optimum over the whole feasible set:
# fixed codebooks (nearest codeword), the closed forms, and 1-D k-means solved
# exactly (small rows take the exact dynamic programme under method="auto").
GLOBAL = {"adaptive2", "adaptive3", "binary", "scaled_binary", "ternary",
          "scaled_ternary", "powers_of_two", "fixed"}
SCALE_EQUIVARIANT = {"adaptive2", "adaptive3", "adaptive4_lloyd",
                     "scaled_binary", "scaled_ternary"}

# Magnitudes below 1e-20 become exact zeros: scaled by 2**-6 they would turn
# subnormal, which TensorFlow's CPU kernels flush to zero (changing signs).
vectors = st.lists(st.floats(-4, 4, width=32, allow_subnormal=False),
                   min_size=4, max_size=24).map(
                       lambda xs: np.asarray(
                           [x if abs(x) >= 1e-20 else 0.0 for x in xs],
                           np.float32))
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# Local searches (alternating assignment and codebook updates): from a fresh
# start a tie can send them elsewhere, so idempotence is checked the way the
# C step runs them, warm-started from their own codebook.
LOCAL = {"adaptive4_lloyd", "scaled_powers_of_two", "partially_fixed"}


def project(q, v, previous=None):
    if previous is not None:
        previous = tf.constant(previous[None, :])
    c, z = q.project(tf.constant(v[None, :]), previous)
    return c.numpy()[0], z.numpy()[0]


def distortion(v, values):
    return float(np.sum((v.astype(np.float64) - values) ** 2))


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
@SETTINGS
@given(v=vectors)
def test_output_in_codebook_and_idempotent(name, v):
    q = QUANTIZERS[name]()
    c, z = project(q, v)
    assert c.shape == (q.num_entries,)
    assert np.all((z >= 0) & (z < q.num_entries))
    values = c[z]
    assert np.all(np.isfinite(values))
    c2, z2 = project(q, values, c if name in LOCAL else None)
    np.testing.assert_allclose(c2[z2], values, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
@SETTINGS
@given(v=vectors, seed=st.integers(0, 2**16))
def test_distortion_not_above_other_feasible_points(name, v, seed):
    q = QUANTIZERS[name]()
    c, z = project(q, v)
    best = distortion(v, c[z])
    rng = np.random.default_rng(seed)
    k = q.num_entries
    tol = 1e-5 * (1 + best)
    # Any other assignment to the same codebook is no better.
    for _ in range(10):
        other = rng.integers(0, k, size=v.shape)
        assert best <= distortion(v, c[other]) + tol
    if name not in GLOBAL:
        return
    # Any other feasible codebook (with its best assignment) is no better.
    for _ in range(10):
        if name.startswith("adaptive"):
            codebook = rng.normal(size=k) * v.std() + v.mean()
        elif name == "scaled_binary":
            codebook = np.array([-1.0, 1.0]) * rng.uniform(0, 4)
        elif name == "scaled_ternary":
            codebook = np.array([-1.0, 0.0, 1.0]) * rng.uniform(0, 4)
        else:
            codebook = c
        d = np.abs(v[:, None].astype(np.float64) - codebook[None, :])
        assert best <= distortion(v, codebook[np.argmin(d, axis=1)]) + tol


@pytest.mark.parametrize("name", sorted(SCALE_EQUIVARIANT))
@SETTINGS
@given(v=vectors, power=st.integers(-6, 6))
def test_scale_equivariance(name, v, power):
    scale = np.float32(2.0 ** power)  # exact in float32
    q = QUANTIZERS[name]()
    c, z = project(q, v)
    cs, zs = project(q, v * scale)
    np.testing.assert_allclose(cs[zs], scale * c[z], rtol=1e-5,
                               atol=1e-6 * scale)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
@pytest.mark.parametrize("v", [
    np.zeros(16, np.float32),
    np.full(16, 0.3, np.float32),
    np.full(16, -2.0, np.float32),
    np.linspace(-1e-30, 1e-30, 16).astype(np.float32),
    np.linspace(-1e30, 1e30, 16).astype(np.float32),
    np.concatenate([np.zeros(15), [1e30]]).astype(np.float32),
], ids=["zeros", "constant", "negative_constant", "tiny", "huge",
        "one_huge"])
def test_degenerate_vectors_give_finite_results(name, v):
    q = QUANTIZERS[name]()
    c, z = project(q, v)
    assert np.all(np.isfinite(c)), c
    assert np.all((z >= 0) & (z < q.num_entries))
    if name.startswith("adaptive") and len(np.unique(v)) <= q.num_entries:
        np.testing.assert_allclose(c[z], v, rtol=1e-6)
