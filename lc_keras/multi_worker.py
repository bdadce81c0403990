"""Workarounds for Keras 3.15 under `MultiWorkerMirroredStrategy`.

Keras (3.15) cannot run `fit` over several workers as it is: it reads the
shapes of the first batch, and averages each step's logs, with one
`strategy.reduce(..., axis=0)` that multi-worker strategies refuse for
nested or scalar values (keras-team/keras#20585). `LCModel` routes those two
places through the functions here; once Keras is fixed this module goes,
with the two calls to it.
"""

import keras
import tensorflow as tf


def is_multi_worker(strategy):
    """Whether `strategy` is a MultiWorkerMirroredStrategy over > 1 worker.

    Example:

    >>> import tensorflow as tf
    >>> is_multi_worker(tf.distribute.get_strategy())
    False
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return sum(len(spec.get(job, ())) for job in ("chief", "worker")) > 1


def first_batch(strategy, iterator):
    """The first batch of a distributed `iterator`, reduced leaf by leaf.

    What Keras's symbolic build needs (it only reads shapes and dtypes),
    without the one `strategy.reduce` of the whole structure that fails.

    Args:
        strategy: A multi-worker strategy.
        iterator: Keras's epoch iterator of `fit`.

    Returns:
        The batch, or None for an empty dataset.
    """
    for item in iterator:
        batch = next(item[-1])
        break
    else:  # pragma: no cover - an empty dataset
        return None
    return keras.tree.map_structure(
        lambda v: strategy.reduce("MEAN", v, axis=None)
        if isinstance(v, tf.distribute.DistributedValues) else v, batch)


def reducible_logs(logs):
    """Logs that Keras can reduce across the workers of a multi-worker run.

    Keras averages each log of a step over all replicas with
    `strategy.reduce("MEAN", v, axis=0)`, which fails on the usual scalar
    logs (and averages a vector log over its own entries). A leading axis of
    size 1 makes that reduction the mean over the replicas, of the log's own
    shape. Outside a multi-worker strategy, `logs` is returned as is.

    Example:

    >>> reducible_logs({"loss": 1.0})
    {'loss': 1.0}
    """
    if not is_multi_worker(tf.distribute.get_strategy()):
        return logs
    return keras.tree.map_structure(
        lambda v: tf.expand_dims(v, 0) if tf.is_tensor(v) else v, logs)
