"""An interrupted LC run resumes to the bit-identical state of an
uninterrupted one: Keras's BackupAndRestore, and ModelCheckpoint + reload."""

import os

import keras
import numpy as np
import pytest

import lc_keras as lc
from conftest import classification_data
from conftest import mlp

X, Y = classification_data(n=128)


def make_model():
    keras.utils.set_random_seed(0)
    model = lc.LCModel(mlp(), compression={
        "dense_1": lc.AdaptiveQuantization(2),
        "dense_2": lc.ScaledTernaryQuantization()})
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def schedule(**kwargs):
    # 3 LC steps of 2 epochs: epochs 1, 3, 5 (0-based) end an L step.
    return lc.MuSchedule(mu0=1e-2, growth=2.0, steps=3, epochs_per_step=2,
                         lr_decay=0.9, **kwargs)


def fit(model, callbacks, initial_epoch=0, sched=None):
    """Fits with the schedule appended to `callbacks`, or put where the
    string "schedule" is in them."""
    sched = sched or schedule()
    if "schedule" in callbacks:
        callbacks = [sched if c == "schedule" else c for c in callbacks]
    else:
        callbacks = [*callbacks, sched]
    return model.fit(X, Y, batch_size=32, epochs=sched.total_epochs,
                     initial_epoch=initial_epoch, shuffle=False,
                     callbacks=callbacks, verbose=0)


def full_state(model):
    """Every weight (LC state included) and optimizer variable, as arrays."""
    variables = model.weights + model.optimizer.variables
    return [v.numpy().copy() for v in variables]


@pytest.fixture(scope="module")
def uninterrupted():
    model = make_model()
    fit(model, [])
    assert model.lc_state.schedule_epoch == 6 and model.c_steps == 4
    return full_state(model)


def assert_bit_identical(model, expected):
    got = full_state(model)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


class Preempt(keras.callbacks.Callback):
    """Raises at the end of epoch `epoch`, like a machine going away."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"pre-empted after epoch {epoch}")


@pytest.mark.parametrize("backup_first, stop", [(True, 1), (False, 2)],
                         ids=["backup_listed_first-after_step_end",
                              "schedule_listed_first-inside_step"])
def test_backup_and_restore_resumes_bit_identically(
        tmp_path, uninterrupted, backup_first, stop):
    folder = os.path.join(tmp_path, "backup")

    def callbacks(extra=()):
        backup = keras.callbacks.BackupAndRestore(folder)
        # Whatever the order, the C step of an epoch runs before the backup
        # of that epoch is written.
        first = [backup, "schedule"] if backup_first else ["schedule", backup]
        return first + list(extra)

    model = make_model()
    with pytest.raises(KeyboardInterrupt):
        fit(model, callbacks([Preempt(stop)]))
    # A new process: a fresh model, restored by BackupAndRestore.
    model = make_model()
    history = fit(model, callbacks())
    assert len(history.history["loss"]) == 6 - (stop + 1)
    assert_bit_identical(model, uninterrupted)
    assert not os.path.exists(folder)  # deleted at the end of the run


def test_model_checkpoint_and_reload_resume_bit_identically(
        tmp_path, uninterrupted):
    path = os.path.join(tmp_path, "lc.keras")
    stop = 2  # inside LC step 1

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == stop:
                self.model.stop_training = True

    model = make_model()
    fit(model, [keras.callbacks.ModelCheckpoint(path), Stop()])
    # Training stopped inside an L step, so fit closed the run with a final
    # C step: continuing this model would not be the uninterrupted run.
    with pytest.raises(ValueError, match="extra C step"):
        fit(model, [], initial_epoch=stop + 1)

    loaded = keras.models.load_model(path)  # saved before that final C step
    assert loaded.schedule_epoch == stop + 1
    with pytest.raises(ValueError, match=f"initial_epoch={stop + 1}"):
        fit(loaded, [], initial_epoch=0)  # would repeat LC steps 0 and 1
    fit(loaded, [], initial_epoch=stop + 1)
    assert_bit_identical(loaded, uninterrupted)


def test_mid_epoch_backups_are_refused(tmp_path):
    model = make_model()
    backup = keras.callbacks.BackupAndRestore(
        os.path.join(tmp_path, "backup"), save_freq=2)
    with pytest.raises(ValueError, match="save_freq=2"):
        fit(model, [backup])
    assert not model.compression_initialized  # refused before anything ran


def test_mid_epoch_checkpoint_is_refused_on_resume(tmp_path):
    path = os.path.join(tmp_path, "mid.keras")

    class Preempt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt("pre-empted mid-epoch")

    sched = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=2, epochs_per_step=1)
    model = make_model()
    with pytest.raises(KeyboardInterrupt):
        fit(model, [keras.callbacks.ModelCheckpoint(path, save_freq=2),
                    Preempt()], sched=sched)
    loaded = keras.models.load_model(path)
    assert loaded.c_steps == 1  # direct compression, then batches of epoch 0
    sched = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=2, epochs_per_step=1)
    with pytest.raises(ValueError, match="middle of epoch 1"):
        fit(loaded, [], sched=sched)
    # Not strict: a warning, and the run goes on.
    loose = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=2, epochs_per_step=1,
                          strict=False)
    with pytest.warns(UserWarning, match="middle of epoch 1"):
        fit(loaded, [], sched=loose)
    assert loaded.c_steps == 3


# Budget schedules: C steps inside epochs, resumed at an epoch end ----------


def budget_schedule():
    # 4 batches per epoch (128 / 32), 16 in all, in ceil(16 / 3) = 6 L
    # steps: C steps after batches 3, 5, 8, 11, 13 and 16 — inside epochs
    # and at their ends.
    return lc.MuSchedule.for_budget(4, step_batches=3)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sub_epoch_c_steps_resume_bit_identically(tmp_path, optimizer):
    def model_():
        model = make_model()
        if optimizer == "adam":
            model.compile(keras.optimizers.Adam(1e-3),
                          "sparse_categorical_crossentropy",
                          metrics=["accuracy"])
        return model

    whole = model_()
    fit(whole, [], sched=budget_schedule())
    assert whole.c_steps == 1 + 6  # direct compression + ceil(16 / 3)
    expected = full_state(whole)

    folder = os.path.join(tmp_path, "backup")
    model = model_()
    with pytest.raises(KeyboardInterrupt):
        fit(model, [keras.callbacks.BackupAndRestore(folder), Preempt(1)],
            sched=budget_schedule())
    assert model.c_steps == 1 + 3  # ends at batches 3, 5, 8, 11, 13, 16
    model = model_()
    history = fit(model, [keras.callbacks.BackupAndRestore(folder)],
                  sched=budget_schedule())
    assert len(history.history["loss"]) == 2
    assert_bit_identical(model, expected)


def test_budget_logs_and_final_c_step():
    model = make_model()
    sched = budget_schedule()
    history = fit(model, [], sched=sched)
    # lc_step counts the C steps after direct compression at each epoch end.
    assert history.history["lc_step"] == [1, 3, 4, 6]
    grid = sched.grid(4, 0.05)
    assert history.history["lc_mu"][-1] == pytest.approx(grid.mu_end)
    # The last C step ran after the last batch: Δ(Θ) is that of the final w.
    distortions = model.distortions()
    state = model.compression_state()
    for path, w in model.compressed_variables().items():
        q = state[path].values()
        assert np.sum((w.numpy() - q) ** 2) == pytest.approx(
            distortions[path], rel=1e-5)
    assert model.schedule_epoch == 4


def test_budget_needs_known_batches_per_epoch():
    import tensorflow as tf

    model = make_model()
    data = tf.data.Dataset.from_tensor_slices((X, Y)).batch(32).filter(
        lambda x, y: True)  # unknown cardinality
    with pytest.raises(ValueError, match="steps_per_epoch="):
        model.fit(data, epochs=4, callbacks=[budget_schedule()], verbose=0)
