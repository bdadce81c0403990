"""Crash-safe `keras.callbacks.BackupAndRestore` for LC runs.

`BackupAndRestore` writes the weights, then the metadata (the epoch), in
place. A kill between or during those writes leaves a backup Keras cannot
read, or one whose weights are an epoch ahead of its metadata. `LCModel.fit`
turns on `double_checkpoint` (so the previous pair is kept) and puts a
`BackupGuard` in front of the callbacks: it repairs a cut backup before
Keras reads it, and undoes weights that are ahead of their epoch once Keras
has restored them, so that a `kill -9` at any moment resumes to the state of
an uninterrupted run.
"""

import json
import os
import shutil

import keras
from absl import logging

from lc_keras import files

# The files of `BackupAndRestore` in its `backup_dir`, and the suffix of the
# previous pair that `double_checkpoint=True` keeps.
WEIGHTS = "latest.weights.h5"
METADATA = "training_metadata.json"
PREVIOUS = ".bkp"


def backup_paths(backup):
    """(weights, metadata, previous weights, previous metadata) paths.

    Args:
        backup: A `keras.callbacks.BackupAndRestore`.

    Returns:
        The four paths in its `backup_dir`.

    Example:

    >>> import keras
    >>> b = keras.callbacks.BackupAndRestore("/tmp/run")
    >>> backup_paths(b)[0]
    '/tmp/run/latest.weights.h5'
    """
    weights = os.path.join(backup.backup_dir, WEIGHTS)
    metadata = os.path.join(backup.backup_dir, METADATA)
    return weights, metadata, weights + PREVIOUS, metadata + PREVIOUS


def backup_epoch(path):
    """The epoch a `BackupAndRestore` metadata file holds, or None.

    Example:

    >>> backup_epoch("/nonexistent/training_metadata.json") is None
    True
    """
    try:
        with open(path) as f:
            epoch = json.load(f)["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and epoch >= 0 else None


def _copy(source, target):
    with files.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def repair_backup(backup):
    """Makes the files a killed run left in a backup folder loadable.

    A kill while the metadata is written leaves it empty or cut, and Keras
    then fails on every restart (it only falls back to the previous pair
    for unreadable weights); a kill before the first metadata is written
    leaves weights without one. Either way the previous pair (kept by
    `double_checkpoint`) is put back, or, without one, the backup is removed
    so that the run starts over (from the same weights, so that it ends
    where an uninterrupted run would).

    Args:
        backup: A `keras.callbacks.BackupAndRestore`.

    Example:

    >>> import keras, tempfile
    >>> repair_backup(keras.callbacks.BackupAndRestore(tempfile.mkdtemp()))
    """
    weights, metadata, old_weights, old_metadata = backup_paths(backup)
    if not (os.path.exists(weights) or os.path.exists(metadata)):
        return
    if os.path.exists(weights) and backup_epoch(metadata) is not None:
        return  # loadable (Keras falls back to the previous weights itself)
    if os.path.exists(old_weights) and backup_epoch(old_metadata) is not None:
        _copy(old_weights, weights)
        _copy(old_metadata, metadata)
        logging.warning(
            "The backup in %r was cut while it was written (metadata "
            "unreadable or missing); restored the previous backup, of epoch "
            "%d.", backup.backup_dir, backup_epoch(metadata))
        return
    for path in (weights, metadata, old_weights, old_metadata):
        if os.path.exists(path):
            os.remove(path)
    logging.warning(
        "The backup in %r was cut while it was written and there is no "
        "previous one; starting the run over.", backup.backup_dir)


def make_crash_safe(backup):
    """Turns on `double_checkpoint` of a `BackupAndRestore` (logged once)."""
    if not backup.double_checkpoint:
        backup.double_checkpoint = True
        logging.info(
            "LCModel.fit turned on double_checkpoint in "
            "BackupAndRestore(backup_dir=%r), so that a run killed while "
            "it writes resumes from the previous backup.", backup.backup_dir)


class BackupGuard(keras.callbacks.Callback):
    """Repairs and aligns the `BackupAndRestore` backups of an LC run.

    `LCModel.fit` puts it first among the callbacks. Its `on_train_begin`
    runs before `BackupAndRestore` restores, and repairs a cut backup; at
    the first epoch's start (after the restore) it undoes a backup whose
    weights are one epoch ahead of its metadata: a kill after the weights of
    epoch e were written but before "epoch e" was restores the state of
    epoch e with Keras starting at epoch e − 1; the previous weights (kept
    by `double_checkpoint`) are those of epoch e − 1, and loading them makes
    the resume exact.

    Args:
        backups: The `BackupAndRestore` callbacks of the run.

    Example:

    >>> import keras, tempfile
    >>> guard = BackupGuard([keras.callbacks.BackupAndRestore(
    ...     tempfile.mkdtemp())])
    >>> len(guard.backups)
    1
    """

    def __init__(self, backups):
        super().__init__()
        self.backups = tuple(backups)
        self._aligned = False

    def on_train_begin(self, logs=None):
        self._aligned = False
        for backup in self.backups:
            repair_backup(backup)

    def on_epoch_begin(self, epoch, logs=None):
        if self._aligned:
            return
        self._aligned = True
        state = self.model.lc_state
        if not state.initialized or state.schedule_epoch != epoch + 1:
            return
        for backup in self.backups:
            weights, metadata, old_weights, _ = backup_paths(backup)
            if backup_epoch(metadata) != epoch or not os.path.exists(
                    old_weights):
                continue
            # The previous weights go back in place (the files then agree
            # again) and are loaded from there (Keras wants `.weights.h5`).
            _copy(old_weights, weights)
            self.model.load_weights(weights)
            logging.warning(
                "The backup in %r holds the weights of epoch %d but says "
                "epoch %d (the run was killed between the two writes); "
                "resumed from the previous backup instead.",
                backup.backup_dir, epoch + 1, epoch)
            return
