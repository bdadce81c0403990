"""lc_keras.quantized: QuantizedKernel, channel_rows, bits_for."""

import itertools

import numpy as np
import pytest

from lc_keras import quantized
from lc_keras.quantized import QuantizedKernel


@pytest.mark.parametrize("shape, axes", [
    ((3, 4), ()), ((3, 4), (1,)), ((2, 3, 4), (2,)),
    ((3, 3, 2, 5), (2, 3)), ((2, 3, 4), (0, 2))])
def test_channel_rows_number_the_channels_row_major(shape, axes):
    rows = np.broadcast_to(quantized.channel_rows(shape, axes), shape)
    sizes = [shape[a] for a in axes]
    for position in itertools.product(*(range(d) for d in shape)):
        expected = 0
        for a, size in zip(axes, sizes):
            expected = expected * size + position[a]
        assert rows[position] == expected


def test_values_read_the_row_of_each_weight():
    codebook = np.array([[-1.0, 1.0], [-2.0, 2.0], [-3.0, 3.0]], np.float32)
    indices = np.array([[0, 1, 1], [1, 0, 0]], np.int32)
    q = QuantizedKernel(name="d/kernel", layer_name="d", attribute="kernel",
                        kind="ScaledBinaryQuantization", codebook=codebook,
                        indices=indices, channel_axes=(1,),
                        layer_type="Dense")
    assert q.values().tolist() == [[-1.0, 2.0, 3.0], [1.0, -2.0, -3.0]]
    assert (q.groups, q.k, q.per_channel, q.layer_type) == (3, 2, True,
                                                           "Dense")
    assert q.group == "d/kernel"


def test_rows_must_match_the_channels():
    with pytest.raises(ValueError, match="2 codebook rows but 3 channels"):
        QuantizedKernel(name="d/kernel", layer_name="d", attribute="kernel",
                        kind="k", codebook=np.zeros((2, 2)),
                        indices=np.zeros((2, 3)), channel_axes=(1,))


@pytest.mark.parametrize("k, bits", [(1, 1), (2, 1), (3, 2), (4, 2),
                                     (5, 3), (256, 8), (257, 9),
                                     (quantized.MAX_ENTRIES, 16)])
def test_bits_for(k, bits):
    assert quantized.bits_for(k) == bits


def test_bits_for_refuses_zero():
    with pytest.raises(ValueError, match="k >= 1. Received: k=0"):
        quantized.bits_for(0)
