"""Child process for tests/test_faults.py: an LC run that can be killed.

    python tests/fault_child.py fit BACKUP_DIR OUT.npz KILL
    python tests/fault_child.py export PATH.tflite

`fit` runs a small LC run (8 epochs) with a `BackupAndRestore` in
BACKUP_DIR (given without `double_checkpoint`: `LCModel.fit` turns it on),
and saves every weight and optimizer variable to OUT.npz when it completes.
KILL is `none`, or `<moment>:<n>`: the process SIGKILLs itself at its n-th
backup, at one of the moments a kill can corrupt a backup:

* `weights`: while the weights are written (the file is cut to half),
* `between`: after the weights are written, before the metadata,
* `metadata`: while the metadata is written (the file is cut).

Each batch sleeps a little, so that the parent can also kill it at random
times inside epochs. It prints `fit started` when training starts.

`export` exports a model to PATH.tflite (complete), prints `exported`, then
exports it again and SIGKILLs itself after the new file's data is written
and synced, before the rename.
"""

import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lc_keras as lc  # noqa: E402
from conftest import mlp  # noqa: E402  (this script's folder is on sys.path)

EPOCHS = 8


def _kill():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _model():
    keras.utils.set_random_seed(0)
    model = lc.LCModel(mlp(), compression={
        "dense_1": lc.AdaptiveQuantization(2),
        "dense_2": lc.ScaledTernaryQuantization()})
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  "sparse_categorical_crossentropy")
    return model


class _Slow(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        print("fit started", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.02)


def fit(backup_dir, out, kill):
    moment, _, count = kill.partition(":")
    saves = [0]
    real_save_weights = lc.LCModel.save_weights

    def save_weights(self, filepath, *args, **kwargs):
        real_save_weights(self, filepath, *args, **kwargs)
        saves[0] += 1
        if moment == "none" or saves[0] != int(count):
            return
        if moment == "weights":
            with open(filepath, "r+b") as f:
                f.truncate(os.path.getsize(filepath) // 2)
        elif moment == "metadata":
            with open(os.path.join(os.path.dirname(filepath),
                                   "training_metadata.json"), "w") as f:
                f.write('{"epo')
        _kill()

    lc.LCModel.save_weights = save_weights
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 12)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(12, 3)), axis=1)
    model = _model()
    schedule = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=4,
                             epochs_per_step=2, lr_decay=0.9)
    assert schedule.total_epochs == EPOCHS
    backup = keras.callbacks.BackupAndRestore(backup_dir)
    model.fit(x, y, batch_size=32, epochs=EPOCHS, shuffle=False,
              callbacks=[backup, schedule, _Slow()], verbose=0)
    variables = model.weights + model.optimizer.variables
    np.savez(out, *[v.numpy() for v in variables])
    print("done", flush=True)


def export(path):
    model = _model()
    model.direct_compression()
    lc.export_tflite(model, path)
    print("exported", flush=True)

    real_fsync = os.fsync

    def fsync_then_die(fd):
        real_fsync(fd)
        _kill()

    os.fsync = fsync_then_die
    lc.export_tflite(model, path, layout="cached")


if __name__ == "__main__":
    if sys.argv[1] == "fit":
        fit(*sys.argv[2:5])
    else:
        export(sys.argv[2])
