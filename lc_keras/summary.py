"""Compression accounting of an `LCModel`.

Bits follow the paper: a compressed kernel of P weights with a K-entry
float32 codebook costs ⌈log₂K⌉·P + 32·K bits (a shared codebook is counted
once); every other weight (biases, normalisation) costs 32 bits.
"""

import numpy as np


def _float_weight_count(model):
    compressed = {id(v) for v in model.compressed_variables().values()}
    lc_state = {id(v) for v in model._lc.weights}
    return sum(int(np.prod(v.shape)) for v in model.weights
               if id(v) not in compressed and id(v) not in lc_state)


def compression_ratio(model):
    """The compression ratio ρ of an `LCModel` after a C step.

    ρ = 32·(compressed weights + float weights) /
    (Σ_kernels ⌈log₂K⌉·P + Σ_codebooks 32·K·rows + 32·float weights).

    Args:
        model: An `LCModel` that has run at least one C step.

    Returns:
        ρ as a float.

    Example:

    >>> import keras, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((784,)),
    ...     keras.layers.Dense(300), keras.layers.Dense(100),
    ...     keras.layers.Dense(10)])
    >>> model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    >>> _ = model.direct_compression()
    >>> round(compression_ratio(model), 1)
    30.5
    """
    state = model.compression_state()
    compressed = sum(q.size for q in state.values())
    floats = _float_weight_count(model)
    bits = sum(q.size * q.bits_per_weight for q in state.values())
    codebooks = {q.group: q.codebook.size for q in state.values()}
    bits += 32 * sum(codebooks.values())
    return 32.0 * (compressed + floats) / (bits + 32.0 * floats)
