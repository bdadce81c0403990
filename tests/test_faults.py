"""Faults during LC runs: NaN, interrupted and corrupted files, safe mode."""

import os

import keras
import numpy as np
import pytest

import lc_keras as lc
from conftest import mlp
from conftest import classification_data


def trained(steps=2):
    x, y = classification_data()
    model = lc.LCModel(mlp(), compression={
        "dense_1": lc.AdaptiveQuantization(4),
        "dense_2": lc.ScaledTernaryQuantization()})
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    schedule = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=steps,
                             epochs_per_step=1)
    model.fit(x, y, epochs=schedule.total_epochs, callbacks=[schedule],
              verbose=0)
    return model, x, y


def test_terminate_on_nan_stops_an_lc_run_cleanly():
    x, y = classification_data()
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    # A learning rate this large makes the loss overflow within an epoch.
    model.compile(keras.optimizers.SGD(1e12), "sparse_categorical_crossentropy")
    schedule = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=3, epochs_per_step=2)
    history = model.fit(x, y, epochs=schedule.total_epochs, batch_size=16,
                        callbacks=[schedule, keras.callbacks.TerminateOnNaN()],
                        verbose=0)
    assert len(history.history["loss"]) < schedule.total_epochs
    # The codebooks are those of the last good C step: finite.
    for q in model.compression_state().values():
        assert np.all(np.isfinite(q.codebook))
        assert np.all(np.isfinite(q.values()))


def test_keras_file_loads_in_safe_mode(tmp_path):
    model, x, _ = trained()
    path = os.path.join(tmp_path, "lc.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)
    q_path = os.path.join(tmp_path, "q.keras")
    model.quantized_model().save(q_path)
    plain = keras.models.load_model(q_path, safe_mode=True)
    assert not isinstance(plain, lc.LCModel)


def test_truncated_keras_file_is_refused(tmp_path):
    model, _, _ = trained()
    path = os.path.join(tmp_path, "lc.keras")
    model.save(path)
    data = open(path, "rb").read()
    bad = os.path.join(tmp_path, "truncated.keras")
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(Exception) as info:
        keras.models.load_model(bad)
    assert "zip" in str(info.value).lower() or "file" in str(info.value).lower()


def test_nan_weights_reaching_a_c_step_name_the_layer():
    model, _, _ = trained()
    before = model.compression_state()
    kernel = model.compressed_variables()["dense_1/kernel"]
    value = kernel.numpy()
    value[1, 2] = np.inf
    kernel.assign(value)
    with pytest.raises(ValueError, match="layer 'dense_1'"):
        model.c_step()
    after = model.compression_state()
    for key in before:  # nothing was half-updated
        np.testing.assert_array_equal(before[key].codebook,
                                      after[key].codebook)
        np.testing.assert_array_equal(before[key].indices, after[key].indices)
