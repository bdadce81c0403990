"""lc_keras.backups: repairing cut backups and the guard of an LC run.

(The kill tests of whole runs are in test_faults.py.)"""

import json
import os

import keras
import numpy as np

import lc_keras as lc
from lc_keras import backups
from conftest import mlp


def write_pair(folder, epoch, weights=b"w", suffix=""):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, backups.WEIGHTS + suffix), "wb") as f:
        f.write(weights)
    with open(os.path.join(folder, backups.METADATA + suffix), "w") as f:
        f.write("" if epoch is None else json.dumps({"epoch": epoch}))


def test_backup_epoch_reads_only_valid_metadata(tmp_path):
    path = tmp_path / "m.json"
    for text, expected in (('{"epoch": 3}', 3), ('{"epoch": -1}', None),
                           ('{"epoch": "3"}', None), ("", None),
                           ('{"epo', None), ("[]", None)):
        path.write_text(text)
        assert backups.backup_epoch(str(path)) == expected, text
    assert backups.backup_epoch(str(tmp_path / "missing.json")) is None


def test_a_loadable_backup_is_left_alone(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    write_pair(str(tmp_path), 2)
    backups.repair_backup(backup)
    assert backups.backup_epoch(backups.backup_paths(backup)[1]) == 2


def test_cut_metadata_goes_back_to_the_previous_pair(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    write_pair(str(tmp_path), 1, b"old", suffix=backups.PREVIOUS)
    write_pair(str(tmp_path), None, b"new")  # metadata cut to 0 bytes
    backups.repair_backup(backup)
    weights, metadata, _, _ = backups.backup_paths(backup)
    assert backups.backup_epoch(metadata) == 1
    with open(weights, "rb") as f:
        assert f.read() == b"old"


def test_cut_metadata_without_a_previous_pair_starts_over(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    write_pair(str(tmp_path), None)
    backups.repair_backup(backup)
    assert not any(os.path.exists(p) for p in backups.backup_paths(backup))


def test_make_crash_safe_turns_on_double_checkpoint(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    assert not backup.double_checkpoint
    backups.make_crash_safe(backup)
    assert backup.double_checkpoint


def test_guard_loads_the_previous_weights_when_they_are_ahead(tmp_path):
    """Weights of epoch 2 with metadata saying epoch 1: the previous
    weights (epoch 1) are put back and loaded."""
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model(np.zeros((1, 12), "float32"))  # built, so that it can be saved
    model.direct_compression()
    folder = str(tmp_path)
    backup = keras.callbacks.BackupAndRestore(folder)
    weights, metadata, old_weights, _ = backups.backup_paths(backup)
    model.save_weights(weights)  # "epoch 1", moved to the previous pair
    os.replace(weights, old_weights)
    saved = [w.numpy().copy() for w in model.weights]
    model.lc_state.mark_epoch_end(2)  # the state of "epoch 2"
    for w in model.compressed_variables().values():
        w.assign(w.numpy() + 1.0)
    model.save_weights(weights)
    with open(metadata, "w") as f:
        json.dump({"epoch": 1}, f)
    guard = backups.BackupGuard([backup])
    guard.set_model(model)
    guard.on_epoch_begin(1)  # Keras resumes at epoch index 1
    for before, after in zip(saved, model.weights):
        np.testing.assert_array_equal(before, after.numpy())
    with open(weights, "rb") as a, open(old_weights, "rb") as b:
        assert a.read() == b.read()
