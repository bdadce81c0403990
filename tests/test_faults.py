"""Faults during LC runs: NaN, interrupted and corrupted files, safe mode."""

import os
import signal
import stat
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import lc_keras as lc
from lc_keras import files
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
    # A learning rate this large makes the loss overflow within an epoch
    # when the penalty's gradient goes through SGD (the proximal step would
    # hold the kernels at their anchors).
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2),
                       penalty_step="gradient")
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


# ---------------------------------------------------------------------------
# kill -9 of a real child process (tests/fault_child.py)
# ---------------------------------------------------------------------------

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     "fault_child.py")


def _child(*args, kill_after=None):
    """Runs the child; kills it `kill_after` s after fit starts (if set).

    Returns the exit code (-9 when killed).
    """
    process = subprocess.Popen(
        [sys.executable, CHILD, *args], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    try:
        if kill_after is not None:
            for line in process.stdout:
                if line.startswith("fit started"):
                    break
            time.sleep(kill_after)
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode


def _fit_child(tmp_path, name, kill="none", kill_after=None):
    out = os.path.join(tmp_path, f"{name}.npz")
    code = _child("fit", os.path.join(tmp_path, name), out, kill,
                  kill_after=kill_after)
    return code, out


def _arrays(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    code, out = _fit_child(folder, "run")
    assert code == 0
    return _arrays(out)


def _assert_same_run(out, expected):
    got = _arrays(out)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_kill_at_the_unsafe_moments_of_a_backup_resumes_exactly(
        tmp_path, uninterrupted_run):
    # One run, killed in turn while the metadata of the first backup is
    # written (no previous backup yet), between the weights and the metadata
    # of a backup, and while the weights of one are written; then completed.
    for kill in ("metadata:1", "between:2", "weights:2"):
        code, out = _fit_child(tmp_path, "run", kill)
        assert code == -signal.SIGKILL, kill
        assert not os.path.exists(out)
    code, out = _fit_child(tmp_path, "run")
    assert code == 0
    _assert_same_run(out, uninterrupted_run)
    assert not os.path.exists(os.path.join(tmp_path, "run"))  # cleaned up


def test_kill_at_a_random_time_resumes_exactly(tmp_path, uninterrupted_run):
    # A seeded random time inside the ~1.5 s of training: inside an epoch,
    # or during a backup.
    delay = float(np.random.default_rng(14).uniform(0.1, 1.2))
    code, out = _fit_child(tmp_path, "run", kill_after=delay)
    assert code == -signal.SIGKILL
    code, out = _fit_child(tmp_path, "run")
    assert code == 0
    _assert_same_run(out, uninterrupted_run)


def test_kill_during_export_keeps_the_previous_file(tmp_path):
    path = os.path.join(tmp_path, "m.tflite")
    assert _child("export", path) == -signal.SIGKILL
    summary = lc.inspect_tflite(path)  # the first, complete export: checks
    assert len(summary.packed_kernels) == 2
    leftovers = [f for f in os.listdir(tmp_path) if f != "m.tflite"]
    # SIGKILL leaves the temporary file (no process survives to remove it);
    # the target itself is intact and the next export replaces it.
    assert all(f.startswith(".m.") and f.endswith(".tmp.tflite")
               for f in leftovers)
    lc.load_interpreter(path).allocate_tensors()


# ---------------------------------------------------------------------------
# Corrupted files: truncations and bit flips, seeded
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_bytes(tmp_path_factory):
    keras.utils.set_random_seed(0)
    net = mlp()
    model = lc.LCModel(net, compression={
        "dense_1": lc.AdaptiveQuantization(3),
        "dense_2": lc.AdaptiveQuantization(2)})
    model.direct_compression()
    path = os.path.join(tmp_path_factory.mktemp("export"), "m.tflite")
    lc.export_tflite(model, path)
    return open(path, "rb").read(), model.compression_state()


def test_bit_flips_and_truncations_of_a_tflite_file_are_clear_errors(
        exported_bytes):
    data, _ = exported_bytes
    rng = np.random.default_rng(0)
    readers = (lc.inspect_tflite, lc.expand_tflite, lc.load_interpreter)
    for trial in range(60):
        bad = bytearray(data)
        if trial % 3 == 0:
            bad = bad[:int(rng.integers(1, len(data)))]
        else:
            bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        for read in readers:
            with pytest.raises(ValueError, match="truncated or corrupt"):
                read(bytes(bad))


def _buffer_offsets(data, content):
    start = data.find(content)
    assert start > 0 and data.find(content, start + 1) < 0
    return start


@pytest.mark.parametrize("part", ["indices", "codebook"])
def test_a_changed_kernel_is_named(exported_bytes, tmp_path, part):
    from lc_keras import packing

    data, state = exported_bytes
    q = state["dense_1/kernel"]
    if part == "indices":
        content = packing.pack_indices(q.indices.T, 2).astype("<i4").tobytes()
    else:
        content = q.codebook.reshape(-1).astype("<f4").tobytes()
    at = _buffer_offsets(data, content)
    bad = bytearray(data)
    bad[at + 1] ^= 0x10
    path = os.path.join(tmp_path, "bad.tflite")
    open(path, "wb").write(bytes(bad))
    what = "packed indices" if part == "indices" else "codebook"
    for read in (lc.inspect_tflite, lc.expand_tflite, lc.load_interpreter):
        with pytest.raises(ValueError, match=f"bad.tflite.*the {what} of "
                           "kernel 'dense_1/kernel' \\(layer 'dense_1'\\)"):
            read(path)


def test_expanded_bytes_drop_the_checksum(exported_bytes):
    data, _ = exported_bytes
    expanded = lc.expand_tflite(data)
    assert b"lc_keras_checksums" not in expanded
    assert lc.inspect_tflite(expanded).packed_kernels == ()


def test_truncated_keras_files_are_clear_errors(tmp_path):
    model, _, _ = trained()
    path = os.path.join(tmp_path, "lc.keras")
    model.save(path)
    data = open(path, "rb").read()
    rng = np.random.default_rng(1)
    for cut in (0.5, 0.9, float(rng.uniform(0.05, 0.99))):
        bad = os.path.join(tmp_path, "cut.keras")
        open(bad, "wb").write(data[:int(len(data) * cut)])
        with pytest.raises(ValueError, match="cut.keras"):
            lc.load_model(bad)


# ---------------------------------------------------------------------------
# Refusals of silent mistakes; numpy numbers accepted
# ---------------------------------------------------------------------------


def test_schedule_takes_numpy_numbers_and_refuses_non_bools():
    s = lc.MuSchedule(mu0=np.float32(1e-3), growth=np.float64(2.0),
                      steps=np.int64(3), epochs_per_step=np.int32(2))
    assert s.total_epochs == 6 and type(s.steps) is int
    assert s.get_config() == lc.MuSchedule(**s.get_config()).get_config()
    with pytest.raises(TypeError, match="MuSchedule requires strict to be a "
                       "bool.*Received: strict='no'"):
        lc.MuSchedule(strict="no")
    with pytest.raises(TypeError, match="steps to be an int"):
        lc.MuSchedule(steps=True)
    with pytest.raises(ValueError, match="finite in float32.*mu0=0.1, "
                       "growth=10.0, steps=60"):
        lc.MuSchedule(mu0=0.1, growth=10.0, steps=60)


def test_lcmodel_refuses_non_bools_and_shared_references():
    net = mlp()
    with pytest.raises(TypeError, match="quantized_evaluation to be a bool"):
        lc.LCModel(net, quantized_evaluation="no")
    model = lc.LCModel(net)
    with pytest.raises(TypeError, match="quantized_evaluation"):
        model.quantized_evaluation = "no"
    model.direct_compression()
    x, y = classification_data(n=8)
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(TypeError, match="quantized to be a bool"):
        model.evaluate(x, y, quantized="no", verbose=0)
    with pytest.raises(TypeError, match="not another LCModel"):
        lc.LCModel(model)
    with pytest.raises(ValueError, match="no other LCModel wraps.*"
                       "model 'mlp', already wrapped"):
        lc.LCModel(net)


def _compiled():
    model = lc.LCModel(mlp(), compression=lc.AdaptiveQuantization(2))
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    return model


def test_fit_refusals():
    x, y = classification_data(n=64)
    schedule = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=2, epochs_per_step=1)
    model = _compiled()
    with pytest.raises(ValueError, match="at most one LC callback.*"
                       "Received: 2"):
        model.fit(x, y, epochs=2, callbacks=[
            schedule, lc.MuSchedule(mu0=1e-2, growth=2.0, steps=2,
                                    epochs_per_step=1)], verbose=0)
    with pytest.raises(ValueError, match="requires training data.*0 samples"):
        model.fit(x[:0], y[:0], epochs=2, callbacks=[schedule], verbose=0)
    with pytest.raises(ValueError, match="has not started.*initial_epoch=1"):
        model.fit(x, y, epochs=2, initial_epoch=1, callbacks=[schedule],
                  verbose=0)
    assert model.c_steps == 0  # nothing ran
    empty = tf.data.Dataset.from_tensor_slices((x[:0], y[:0])).batch(8)
    with pytest.raises(ValueError, match="requires training data"):
        model.fit(empty, epochs=2, callbacks=[schedule], verbose=0)


def test_backup_and_restore_gets_double_checkpoint(tmp_path):
    x, y = classification_data(n=32)
    schedule = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=1, epochs_per_step=1)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "b"))
    _compiled().fit(x, y, epochs=1, callbacks=[backup, schedule], verbose=0)
    assert backup.double_checkpoint is True


def test_frozen_layer_is_kept_at_its_direct_compression():
    x, y = classification_data()
    net = mlp()
    net.get_layer("dense_1").trainable = False
    model = lc.LCModel(net, compression=lc.AdaptiveQuantization(2))
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    dc = lc.LCModel(_copy(net), compression=lc.AdaptiveQuantization(2))
    expected = dc.direct_compression()["dense_1/kernel"]
    schedule = lc.MuSchedule(mu0=1e-2, growth=2.0, steps=3, epochs_per_step=1)
    with pytest.warns(UserWarning, match="dense_1/kernel.*kept at their "
                      "direct compression"):
        model.fit(x, y, epochs=3, callbacks=[schedule], verbose=0)
    got = model.distortions()["dense_1/kernel"]
    assert got == pytest.approx(expected, rel=1e-5)
    assert not np.any(model.lc_state.kernels[0].multipliers.numpy())


def _copy(net):
    clone = keras.models.clone_model(net)
    clone.set_weights(net.get_weights())
    return clone


def test_nan_in_an_uncompressed_layer_is_named():
    model = lc.LCModel(mlp(), compression={
        "dense_1": lc.AdaptiveQuantization(2), "dense_2": None})
    model.direct_compression()
    bias = model.net.get_layer("dense_2").bias
    bias.assign(np.full(bias.shape, np.inf, np.float32))
    kernel = model.compressed_variables()["dense_1/kernel"]
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="not compressed are not finite.*"
                       "dense_2/bias"):
        model.c_step()


# ---------------------------------------------------------------------------
# File modes and output paths
# ---------------------------------------------------------------------------


def test_files_get_the_umask_mode_and_keep_an_overwritten_mode(tmp_path):
    previous = os.umask(0o027)
    try:
        new = os.path.join(tmp_path, "new.json")
        files.atomic_write_text(new, "{}")
        assert stat.S_IMODE(os.stat(new).st_mode) == 0o640
        kept = os.path.join(tmp_path, "kept.json")
        files.atomic_write_text(kept, "{}")
        os.chmod(kept, 0o604)
        files.atomic_write_text(kept, "{1}")
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o604
    finally:
        os.umask(previous)


def test_output_paths_are_checked_before_any_work(tmp_path, monkeypatch):
    blocker = os.path.join(tmp_path, "file")
    open(blocker, "w").close()
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        files.check_writable(os.path.join(blocker, "q.keras"))
    with pytest.raises(IsADirectoryError, match="is a folder"):
        files.check_writable(str(tmp_path))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match="--out cannot write.*q.keras.*"
                       "Permission denied"):
        files.check_writable(os.path.join(tmp_path, "q.keras"), "--out")
    monkeypatch.undo()
    # The command line stops before loading anything.
    from absl import app

    from lc_keras import cli
    model = os.path.join(tmp_path, "ref.keras")
    mlp().save(model)
    monkeypatch.setattr(cli, "load_data", lambda *a: pytest.fail("loaded"))
    with pytest.raises(app.UsageError, match="--tflite cannot write.*is a "
                       "file, not a folder"):
        cli.main(["lc_keras", "compress", "--model", model, "--dataset",
                  model, "--tflite", os.path.join(blocker, "q.tflite")])
    assert sorted(os.listdir(tmp_path)) == ["file", "ref.keras"]
