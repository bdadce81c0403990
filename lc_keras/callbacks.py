"""`LCCallback`: the callbacks that drive an `LCModel`, and their order.

A callback that runs C steps or multiplier updates subclasses `LCCallback`
(`MuSchedule` does). `LCModel.fit` runs them before every other callback,
so that an epoch-end C step is in what `ModelCheckpoint` and
`BackupAndRestore` save whatever order the callbacks were given in, and it
makes every `BackupAndRestore` crash-safe (`lc_keras.backups`).
"""

import keras

from lc_keras import backups


class LCCallback(keras.callbacks.Callback):
    """Base class of callbacks that run the C steps of an `LCModel`.

    `LCModel.fit` puts these first among the callbacks and accepts at most
    one of them per `fit`. Subclass it for a schedule of your own; read and
    drive the model through its public methods (`c_step`, `mu`,
    `lc_state`).

    Example:

    >>> class EveryEpoch(LCCallback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         self.model.c_step()
    >>> isinstance(EveryEpoch(), keras.callbacks.Callback)
    True
    """


def _items(callbacks):
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return list(callbacks.callbacks)
    return list(keras.tree.flatten(callbacks))


def backups_of(callbacks):
    """The `keras.callbacks.BackupAndRestore` among `callbacks`."""
    if callbacks is None:
        return []
    return [c for c in _items(callbacks)
            if isinstance(c, keras.callbacks.BackupAndRestore)]


def _check(items):
    """Refuses callbacks with which an LC run cannot be exact."""
    lc = [c for c in items if isinstance(c, LCCallback)]
    if len(lc) > 1:
        names = sorted({type(c).__name__ for c in lc})
        raise ValueError(
            "LCModel.fit requires at most one LC callback (MuSchedule or "
            "another LCCallback) among the callbacks (each would run its own "
            "C steps and multiplier updates). Received: "
            f"{len(lc)} callbacks of types {names}")
    if not lc:
        return lc
    for c in items:
        if (isinstance(c, keras.callbacks.BackupAndRestore)
                and c.save_freq != "epoch"):
            raise ValueError(
                "LC runs cannot be resumed exactly from a backup saved in "
                "the middle of an epoch: Keras restarts a restored epoch from "
                "its first batch, so the batches before the backup would be "
                "trained twice before the next C step. Received "
                f"BackupAndRestore(save_freq={c.save_freq!r}) together with a "
                f"{type(lc[0]).__name__}; use save_freq=\"epoch\" (the "
                "default), which resumes the run exactly.")
    return lc


def arrange(callbacks, model):
    """The callbacks of `LCModel.fit`, in the order an LC run needs.

    A `backups.BackupGuard` first (if there is a `BackupAndRestore`), then
    the `LCCallback`, then the others in their order. Every
    `BackupAndRestore` gets `double_checkpoint=True`.

    Args:
        callbacks: What was passed to `fit` (None, a list, or a
            `keras.callbacks.CallbackList`, which is reordered in place).
        model: The `LCModel` (set on a guard added to a `CallbackList`).

    Returns:
        The callbacks to pass on to `keras.Model.fit`.

    Raises:
        ValueError: for more than one `LCCallback`, or a `BackupAndRestore`
            that saves inside epochs together with one.
    """
    if callbacks is None:
        return None
    items = _items(callbacks)
    lc = _check(items)
    found = backups_of(items)
    for backup in found:
        backups.make_crash_safe(backup)
    if not lc and not found:
        return callbacks
    guard = [backups.BackupGuard(found)] if found else []
    ordered = guard + lc + [c for c in items if not isinstance(c, LCCallback)]
    if isinstance(callbacks, keras.callbacks.CallbackList):
        for c in guard:
            c.set_model(model)
            c.set_params(callbacks.params)
        callbacks.callbacks[:] = ordered
        return callbacks
    return ordered
