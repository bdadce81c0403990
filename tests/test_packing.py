"""Tests of index packing and TFLite weight layouts (lc_keras.packing).

Pure NumPy: no model, no converter.
"""

import math

import numpy as np
import pytest

from lc_keras.packing import ExportedKernel
from lc_keras.packing import pack_indices
from lc_keras.packing import packed_words
from lc_keras.packing import plan_kernel
from lc_keras.packing import tflite_layout
from lc_keras.packing import unpack_indices
from lc_keras.quantized import MAX_ENTRIES
from lc_keras.quantized import QuantizedKernel
from lc_keras.quantized import channel_rows

# ---------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bits", list(range(1, 17)))
def test_pack_roundtrip(bits):
    rng = np.random.default_rng(bits)
    for count in (0, 1, 31, 32, 33, 1000):
        values = rng.integers(0, 1 << bits, count)
        words = pack_indices(values, bits)
        assert words.dtype == np.int32
        assert words.size == math.ceil(count * bits / 32)
        assert words.size == packed_words(count, bits)
        np.testing.assert_array_equal(
            unpack_indices(words, bits, count), values)


def test_pack_bit_order():
    # Index i sits at bits [i*b, (i+1)*b) of the little-endian word stream.
    assert pack_indices([1, 0, 1, 1], 1).tolist() == [0b1101]
    assert pack_indices([3, 1], 2).tolist() == [0b0111]
    words = pack_indices([0] * 10 + [7], 3)  # index 10 straddles words
    assert words.view(np.uint32).tolist() == [3 << 30, 1]


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError, match="bits=17"):
        pack_indices([0], 17)
    with pytest.raises(ValueError, match="do not fit"):
        pack_indices([4], 2)


# ---------------------------------------------------------------------------
# Layouts by layer_type
# ---------------------------------------------------------------------------

# (layer_type, attribute, ndim) -> (one_d, perm), as the exporter laid the
# kernels out when it looked up each kernel's Keras layer with isinstance.
# tests/test_export.py checks this table against that code on real layers.
EXPECTED_LAYOUTS = {
    ("Dense", "kernel", 2): (False, (1, 0)),
    ("EinsumDense", "kernel", 3): (False, (0, 1, 2)),
    ("Conv1DTranspose", "kernel", 3): (True, (2, 0, 1, 3)),
    ("Conv2DTranspose", "kernel", 4): (False, (2, 0, 1, 3)),
    ("Conv3DTranspose", "kernel", 5): (False, (3, 0, 1, 2, 4)),
    ("Conv1D", "kernel", 3): (True, (3, 0, 1, 2)),
    ("Conv2D", "kernel", 4): (False, (3, 0, 1, 2)),
    ("Conv3D", "kernel", 5): (False, (0, 1, 2, 3, 4)),
    ("DepthwiseConv1D", "kernel", 3): (False, (0, 1, 2)),
    ("DepthwiseConv2D", "kernel", 4): (False, (0, 1, 2, 3)),
    ("SeparableConv1D", "depthwise_kernel", 3): (False, (0, 1, 2)),
    ("SeparableConv1D", "pointwise_kernel", 3): (True, (3, 0, 1, 2)),
    ("SeparableConv2D", "depthwise_kernel", 4): (False, (0, 1, 2, 3)),
    ("SeparableConv2D", "pointwise_kernel", 4): (False, (3, 0, 1, 2)),
    ("Embedding", "embeddings", 2): (False, (0, 1)),
}

# One Keras kernel shape per (layer_type, attribute).
SHAPES = {
    ("Dense", "kernel"): (5, 3),
    ("EinsumDense", "kernel"): (4, 2, 3),
    ("Conv1DTranspose", "kernel"): (3, 2, 4),
    ("Conv2DTranspose", "kernel"): (3, 2, 5, 4),
    ("Conv3DTranspose", "kernel"): (2, 2, 3, 2, 3),
    ("Conv1D", "kernel"): (3, 4, 2),
    ("Conv2D", "kernel"): (3, 2, 4, 5),
    ("Conv3D", "kernel"): (2, 3, 2, 3, 2),
    ("DepthwiseConv1D", "kernel"): (3, 4, 2),
    ("DepthwiseConv2D", "kernel"): (3, 2, 4, 2),
    ("SeparableConv1D", "depthwise_kernel"): (3, 4, 1),
    ("SeparableConv1D", "pointwise_kernel"): (1, 4, 5),
    ("SeparableConv2D", "depthwise_kernel"): (3, 3, 4, 1),
    ("SeparableConv2D", "pointwise_kernel"): (1, 1, 4, 5),
    ("Embedding", "embeddings"): (7, 3),
}


@pytest.mark.parametrize("case", sorted(EXPECTED_LAYOUTS),
                         ids=lambda c: f"{c[0]}-{c[1]}")
def test_layout_per_layer_type(case):
    assert tflite_layout(*case) == EXPECTED_LAYOUTS[case]


@pytest.mark.parametrize("layer_type", ["", "MyLayer", "dense"])
@pytest.mark.parametrize("ndim", [1, 2, 4])
def test_unknown_layer_type_keeps_the_keras_layout(layer_type, ndim):
    assert tflite_layout(layer_type, "kernel", ndim) == (
        False, tuple(range(ndim)))


def _kernel(layer_type, attribute, shape, k, per_channel, seed=0):
    rng = np.random.default_rng(seed)
    axes = (len(shape) - 1,) if per_channel else ()
    groups = shape[-1] if per_channel else 1
    codebook = np.sort(rng.normal(size=(groups, k)), axis=1)
    return QuantizedKernel(
        name="k", layer_name="layer", attribute=attribute, kind="x",
        codebook=codebook.astype(np.float32),
        indices=rng.integers(0, k, shape), channel_axes=axes,
        layer_type=layer_type)


def decode(plan):
    """What the exporter's graph computes, in NumPy: the TFLite kernel."""
    count = plan.q.size
    indices = unpack_indices(plan.words, plan.bits, count).reshape(
        plan.tflite_shape)
    if plan.offsets is not None:
        indices = indices + plan.offsets
    return plan.q.codebook.reshape(-1)[indices]


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("k", [2, 3, 16, 100])
@pytest.mark.parametrize("case", sorted(SHAPES),
                         ids=lambda c: f"{c[0]}-{c[1]}")
def test_plan_decodes_to_the_kernel_in_tflite_layout(case, k, per_channel):
    layer_type, attribute = case
    q = _kernel(layer_type, attribute, SHAPES[case], k, per_channel)
    plan = plan_kernel("k", q)
    one_d, perm = EXPECTED_LAYOUTS[case + (len(q.shape),)]
    assert (plan.one_d, plan.perm) == (one_d, perm)
    extended = ((1,) if one_d else ()) + q.shape
    assert plan.tflite_shape == tuple(extended[a] for a in perm)
    assert plan.words.size == packed_words(q.size, plan.bits)
    assert plan.codebook_key == (q.group, q.codebook.tobytes())
    expected = plan.to_tflite(q.values())
    assert expected.shape == plan.tflite_shape
    np.testing.assert_array_equal(decode(plan), expected)
    # Back to the Keras layout, as the graph does.
    back = np.transpose(decode(plan), np.argsort(perm)).reshape(q.shape)
    np.testing.assert_array_equal(back, q.values())


def test_unknown_layer_type_packs_in_keras_order():
    q = _kernel("", "kernel", (5, 3), 4, True)
    plan = plan_kernel("k", q)
    assert (plan.one_d, plan.perm, plan.tflite_shape) == (False, (0, 1),
                                                           (5, 3))
    np.testing.assert_array_equal(plan.words, pack_indices(q.indices, 2))
    np.testing.assert_array_equal(
        plan.offsets, channel_rows(q.shape, q.channel_axes) * q.k)


def test_offsets_follow_channel_rows():
    # Depthwise: two channel axes, rows numbered row-major over both.
    rng = np.random.default_rng(0)
    shape = (3, 3, 2, 4)
    q = QuantizedKernel("k", "d", "kernel", "x",
                        rng.normal(size=(8, 3)).astype(np.float32),
                        rng.integers(0, 3, shape), channel_axes=(2, 3),
                        layer_type="DepthwiseConv2D")
    plan = plan_kernel("k", q)
    assert plan.offsets.dtype == np.int32
    assert plan.offsets.shape == (1, 1, 2, 4)
    assert plan.offsets.reshape(-1).tolist() == [3 * r for r in range(8)]
    # One codebook row: no offsets.
    assert plan_kernel("k", _kernel("Dense", "kernel", (4, 2), 3,
                                    False)).offsets is None


def test_plan_rejects_bad_kernels():
    q = _kernel("Dense", "kernel", (4, 2), 3, False)
    with pytest.raises(ValueError, match=r"layer 'layer'.*outside \[0, 2\)"):
        plan_kernel("k", QuantizedKernel("k", "layer", "kernel", "x",
                                         q.codebook[:, :2], q.indices))
    bad = q.codebook.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        plan_kernel("k", QuantizedKernel("k", "layer", "kernel", "x", bad,
                                         q.indices))
    big = QuantizedKernel("k", "layer", "kernel", "x",
                          np.zeros((1, MAX_ENTRIES + 1), np.float32),
                          np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=f"at most {MAX_ENTRIES}"):
        plan_kernel("k", big)


def test_exported_record():
    q = _kernel("Conv1D", "kernel", (3, 4, 2), 16, True)
    e = plan_kernel("conv/kernel", q).exported()
    assert e == ExportedKernel(
        name="conv/kernel", layer_name="layer", shape=(3, 4, 2),
        tflite_shape=(2, 1, 3, 4), k=16, groups=2, bits=4,
        words=packed_words(24, 4), group="k")
    assert (e.size, e.index_bytes, e.codebook_bytes) == (24, 12, 128)
