"""lc_keras.callbacks: the order and the checks of an LC run's callbacks."""

import keras
import numpy as np
import pytest

import lc_keras as lc
from lc_keras import backups
from lc_keras import callbacks as callbacks_lib
from conftest import classification_data
from conftest import mlp


class EveryEpoch(lc.LCCallback):
    """A schedule of one's own: direct compression, then a C step per
    epoch at a fixed μ."""

    def on_train_begin(self, logs=None):
        self.model.direct_compression()
        self.model.mu = 0.1

    def on_epoch_end(self, epoch, logs=None):
        self.model.c_step()


def schedule():
    return lc.MuSchedule(mu0=1e-2, growth=2.0, steps=2, epochs_per_step=1)


def test_lc_callback_goes_first_and_the_guard_before_it(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    other = keras.callbacks.History()
    lc_callback = schedule()
    ordered = callbacks_lib.arrange([other, backup, lc_callback], None)
    assert isinstance(ordered[0], backups.BackupGuard)
    assert ordered[0].backups == (backup,)
    assert ordered[1:] == [lc_callback, other, backup]
    assert backup.double_checkpoint


def test_callbacks_without_lc_or_backups_are_left_as_they_are():
    given = [keras.callbacks.History()]
    assert callbacks_lib.arrange(given, None) is given
    assert callbacks_lib.arrange(None, None) is None


def test_a_callback_list_is_reordered_in_place(tmp_path):
    model = lc.LCModel(mlp())
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))
    lc_callback = schedule()
    container = keras.callbacks.CallbackList([backup, lc_callback],
                                             model=model)
    assert callbacks_lib.arrange(container, model) is container
    guard = container.callbacks[0]
    assert isinstance(guard, backups.BackupGuard) and guard.model is model
    assert container.callbacks[1:] == [lc_callback, backup]


def test_two_lc_callbacks_are_refused():
    with pytest.raises(ValueError, match="at most one LC callback.*"
                       r"Received: 2 callbacks of types \['EveryEpoch', "
                       r"'MuSchedule'\]"):
        callbacks_lib.arrange([schedule(), EveryEpoch()], None)


def test_mid_epoch_backups_with_an_lc_callback_are_refused(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), save_freq=5)
    with pytest.raises(ValueError, match="save_freq=5.*EveryEpoch"):
        callbacks_lib.arrange([backup, EveryEpoch()], None)
    # Without an LC callback a mid-epoch backup is Keras's business.
    assert callbacks_lib.arrange([backup], None)[1:] == [backup]


def test_a_custom_lc_callback_drives_fit():
    x, y = classification_data(n=64)
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = keras.callbacks.History()
    model.fit(x, y, epochs=2, callbacks=[history, EveryEpoch()], verbose=0)
    assert model.c_steps == 3  # direct compression + one per epoch
    q = model.quantized_model()
    for layer in q.layers:
        assert len(np.unique(layer.kernel.numpy())) <= 2
