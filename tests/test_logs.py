"""LC logs reach History, TensorBoard event files and the progress bar."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import lc_keras as lc
from conftest import classification_data


def _fit(callbacks, verbose=0, steps=2, **schedule_args):
    x, y = classification_data(n=64, d=6)
    net = keras.Sequential([keras.Input((6,)),
                            keras.layers.Dense(8, activation="relu",
                                               name="hidden"),
                            keras.layers.Dense(3, name="out")])
    model = lc.LCModel(net, compression={
        "hidden": lc.AdaptiveQuantization(2),
        "out": lc.TernaryQuantization()})
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9,
                                                 nesterov=True),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), metrics=["accuracy"])
    schedule = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=steps,
                             epochs_per_step=1, **schedule_args)
    history = model.fit(x, y, batch_size=32, epochs=schedule.total_epochs,
                        validation_data=(x, y),
                        callbacks=[schedule] + callbacks, verbose=verbose)
    return model, history


LC_KEYS = ["lc_mu", "lc_penalty", "lc_step", "lc_distortion",
           "lc_distortion/hidden/kernel",
           "lc_distortion/out/kernel", "lc_codebook/hidden/kernel/0",
           "lc_codebook/hidden/kernel/1", "lc_codebook/out/kernel/0",
           "lc_codebook/out/kernel/1", "lc_codebook/out/kernel/2"]


def read_scalars(folder):
    """{tag: {step: value}} of every scalar in the event files under folder."""
    scalars = {}
    for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"),
                          recursive=True):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor"):
                    number = float(tf.make_ndarray(value.tensor))
                else:
                    number = float(value.simple_value)
                scalars.setdefault(value.tag, {})[event.step] = number
    return scalars


def test_history_has_the_lc_logs():
    model, history = _fit([])
    for key in LC_KEYS:
        assert key in history.history, key
        assert len(history.history[key]) == 2
    assert history.history["lc_mu"] == pytest.approx([1e-2, 2e-2])
    assert history.history["lc_step"] == [0, 1]
    assert history.history["lc_codebook/out/kernel/1"] == [0.0, 0.0]
    last = {k: v[-1] for k, v in history.history.items()}
    for path, value in model.distortions().items():
        assert last[f"lc_distortion/{path}"] == pytest.approx(value, rel=1e-5)
    assert last["lc_distortion"] == pytest.approx(
        sum(model.distortions().values()), rel=1e-5)
    codebook = model.compression_state()["hidden/kernel"].codebook[0]
    assert [last["lc_codebook/hidden/kernel/0"],
            last["lc_codebook/hidden/kernel/1"]] == pytest.approx(codebook)


def test_tensorboard_event_files_have_the_lc_logs(tmp_path):
    pytest.importorskip("tensorboard")
    folder = str(tmp_path / "tb")
    _, history = _fit([keras.callbacks.TensorBoard(folder)])
    scalars = read_scalars(os.path.join(folder, "train"))
    for key in LC_KEYS:
        tag = f"epoch_{key}"
        assert tag in scalars, (tag, sorted(scalars))
        assert [scalars[tag][e] for e in (0, 1)] == pytest.approx(
            history.history[key], rel=1e-6), key
    # Validation metrics (of the quantized net) are there too.
    validation = read_scalars(os.path.join(folder, "validation"))
    assert "epoch_accuracy" in validation


def test_progress_shows_mu_and_penalty(capsys):
    _fit([], verbose=2, steps=1)
    out = capsys.readouterr().out
    assert "lc_mu: 0.0100" in out and "lc_penalty:" in out


@pytest.mark.parametrize("per_kernel, expected", [(None, True), (True, True),
                                                  (False, False)])
def test_per_kernel_logs_on_request(per_kernel, expected):
    _, history = _fit([], steps=1, per_kernel_logs=per_kernel)
    keys = set(history.history)
    assert "lc_distortion" in keys
    assert ("lc_distortion/hidden/kernel" in keys) is expected
    assert ("lc_codebook/out/kernel/0" in keys) is expected


def test_many_kernels_keep_per_kernel_logs_out_by_default():
    x, y = classification_data(n=32, d=6)
    layers = [keras.Input((6,))] + [
        keras.layers.Dense(6, name=f"d{i}") for i in range(5)]
    model = lc.LCModel(keras.Sequential(layers + [keras.layers.Dense(3)]))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    schedule = lc.MuSchedule(mu0=1e-2, steps=1, epochs_per_step=1)
    assert len(model.lc_state.kernels) > lc.schedule.PER_KERNEL_LOGS_UP_TO
    history = model.fit(x, y, epochs=1, callbacks=[schedule], verbose=0)
    assert "lc_distortion" in history.history
    assert not [k for k in history.history if k.startswith(
        ("lc_distortion/", "lc_codebook/"))]


def test_per_kernel_logs_must_be_a_bool():
    with pytest.raises(TypeError, match="per_kernel_logs"):
        lc.MuSchedule(per_kernel_logs="yes")
