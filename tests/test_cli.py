"""`python -m lc_keras compress`: end to end, in-process, and flag errors."""

import gzip
import json
import os
import runpy
import struct
import sys

import keras
import numpy as np
import pytest
from absl import app
from absl import flags

from conftest import classification_data
from lc_keras import cli
from lc_keras import codebooks


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    """A small trained reference model and an .npz dataset (built once)."""
    tmp_path = tmp_path_factory.mktemp("npz_run")
    keras.utils.set_random_seed(0)
    x, y = classification_data(n=256, d=12)
    data = str(tmp_path / "data.npz")
    np.savez(data, x_train=x[:192], y_train=y[:192], x_test=x[192:],
             y_test=y[192:])
    net = keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out")],
        name="ref")
    net.compile("adam", "sparse_categorical_crossentropy",
                metrics=["accuracy"])
    net.fit(x, y, epochs=5, verbose=0)
    model = str(tmp_path / "ref.keras")
    net.save(model)
    return tmp_path, model, data


def test_end_to_end(npz_run, tmp_path, monkeypatch, capsys):
    """`python -m lc_keras compress ...`, run in-process through runpy."""
    _, model, data = npz_run
    folder = tmp_path
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", [
        "lc_keras", "compress", "--model", model, "--dataset", data,
        "--k", "2", "--budget", "0", "--steps", "2", "--epochs_per_step", "1",
        "--mu0", "1e-2", "--growth", "2", "--batch_size", "32",
        "--out", "q.keras", "--tflite", "q.tflite", "--history", "h.json",
        "--save_lc", "lc.keras", "--results", "r.csv"])
    # Record absl INFO lines directly: the absl logger's level depends on
    # what ran before in this process (TFLite conversion, app.run).
    logged = []
    monkeypatch.setattr(cli.logging, "info",
                        lambda msg, *args, **kw: logged.append(msg % args))
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("lc_keras", run_name="__main__", alter_sys=True)
    assert exit_info.value.code in (None, 0)
    out = capsys.readouterr().out
    assert "+lc_ref compressed kernels" in out
    assert "| hidden/kernel  (12, 16)" in out
    assert "Compression ratio rho" in out and "Test error:" in out
    assert "Wrote TFLite: q.tflite" in out
    # One absl log line per LC step, with the quantized net's validation.
    logs = "\n".join(logged)
    assert "LC step 1/2 (epoch 1): mu=0.01" in logs
    assert "LC step 2/2 (epoch 2): mu=0.02" in logs
    assert "val_accuracy=" in logs

    quantized = keras.models.load_model(str(folder / "q.keras"))
    for layer in quantized.layers:
        assert len(np.unique(layer.kernel.numpy())) <= 2
    history = json.loads((folder / "h.json").read_text())
    assert history["epoch"] == [0, 1] and history["lc_mu"] == [0.01, 0.02]
    assert "lc_codebook/hidden/kernel/1" in history
    from lc_keras.summary import profile
    from lc_keras.tflite_file import inspect_tflite

    lc_model = keras.models.load_model(str(folder / "lc.keras"))
    p = profile(lc_model)
    found = inspect_tflite(str(folder / "q.tflite"))
    assert sum(k.index_bytes for k in found.packed_kernels) == p.index_bytes
    rows = (folder / "r.csv").read_text().splitlines()
    assert rows[0].startswith("method,codebook,k,per_channel,rho,test_error")
    assert rows[1].startswith(f"LC,adaptive,2,0,{p.paper_ratio:.4g},")


def test_budget_run(npz_run, monkeypatch):
    """The default: MuSchedule.for_budget(--budget) with Adam."""
    _, model, data = npz_run
    logged = []
    monkeypatch.setattr(cli.logging, "info",
                        lambda msg, *args, **kw: logged.append(msg % args))
    result = cli.main([
        "lc_keras", "compress", "--model", model, "--dataset", data,
        "--budget", "2", "--step_batches", "2", "--batch_size", "32",
        "--verbose", "0"], print_fn=lambda line: None)
    history = result["history"]
    # 192 examples in batches of 32: 6 a epoch, 12 in all, 6 L steps.
    assert history["epoch"] == [0, 1] and history["lc_step"] == [3, 6]
    assert result["model"].c_steps == 1 + 6
    assert isinstance(result["model"].optimizer, keras.optimizers.Adam)
    lines = "\n".join(logged)
    assert "LC epoch 1/2 (3 C steps): mu=" in lines
    assert "LC epoch 2/2 (6 C steps): mu=" in lines


def write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_fashion_mnist_layout_in_process(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 96), ("t10k", 32)):
        images = rng.integers(0, 256, (n, 28, 28))
        labels = (images[:, :14].mean(axis=(1, 2)) > 127.5).astype(int)
        write_idx(tmp_path / f"{name}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{name}-labels-idx1-ubyte.gz", labels)
    net = keras.Sequential([keras.Input((784,)),
                            keras.layers.Dense(8, name="hidden"),
                            keras.layers.Dense(2, name="out")], name="mlp")
    model = str(tmp_path / "ref.keras")
    net.save(model)
    lines = []
    result = cli.main([
        "lc_keras", "compress", "--model", model, "--dataset",
        "fashion_mnist", "--data_dir", str(tmp_path),
        "--codebook", "scaled_ternary", "--per_channel",
        "--keep_float", "out", "--budget", "0", "--steps", "1",
        "--epochs_per_step", "1",
        "--batch_size", "32", "--lr_decay", "1", "--verbose", "0",
        "--train_subset", "64"], print_fn=lines.append)
    p = result["profile"]
    assert [l.name for l in p.layers] == ["hidden/kernel"]
    assert p.layers[0].per_channel and p.layers[0].k == 3
    assert p.layers[0].kind == codebooks.get("scaled_ternary").kind
    assert "out/kernel" in [f.name for f in p.float_weights]
    assert result["history"]["epoch"] == [0]
    assert 0 <= result["test_error"] <= 100
    assert result["tflite"] is None
    # Logits (no softmax at the end): the loss was built from_logits.
    assert result["model"].loss.get_config()["from_logits"] is True
    assert lines[0].startswith("+lc_mlp compressed kernels")
    assert any(line.startswith("Test error:") for line in lines)


@pytest.mark.parametrize("argv, message", [
    (["shrink"], "Expected one command"),
    ([], "Expected one command"),
    (["compress"], "--model is required"),
    (["compress", "--model", "nope.keras"], "does not exist"),
])
def test_usage_errors(argv, message):
    with pytest.raises(app.UsageError, match=message):
        cli.main(["lc_keras"] + argv)


def test_codebook_choices_are_the_codebook_names():
    fv = cli.define_flags()
    assert fv["codebook"].parser.enum_values == list(codebooks.NAMES)
    for name in codebooks.NAMES:
        fv(["lc_keras", "compress", f"--codebook={name}"])
        assert fv.codebook == name


def test_flag_value_errors(npz_run):
    _, model, data = npz_run
    base = ["lc_keras", "compress", "--model", model]
    with pytest.raises(app.UsageError, match="fashion_mnist"):
        cli.main(base + ["--dataset", "missing.npz"])
    with pytest.raises(app.UsageError, match=r"\.tflite"):
        cli.main(base + ["--dataset", data, "--tflite", "q.lite"])
    with pytest.raises(app.UsageError, match="--steps must be >= 1"):
        cli.main(base + ["--dataset", data, "--steps", "0"])
    with pytest.raises(app.UsageError, match="--budget must be >= 0"):
        cli.main(base + ["--dataset", data, "--budget", "-1"])
    with pytest.raises(app.UsageError, match="--step_batches must be >= 1"):
        cli.main(base + ["--dataset", data, "--step_batches", "0"])
    with pytest.raises(flags.Error):
        cli.main(base + ["--codebook", "octal"])
    with pytest.raises(flags.Error):
        cli.main(base + ["--no_such_flag"])


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(["lc_keras", "compress", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python -m lc_keras compress" in out
    for flag in ("--model", "--dataset", "--k", "--codebook",
                 "--[no]per_channel", "--budget", "--optimizer",
                 "--step_batches", "--mu0", "--growth", "--steps",
                 "--epochs_per_step", "--lr", "--lr_decay", "--batch_size",
                 "--out", "--tflite", "--history"):
        assert f"  {flag}:" in out, flag


def test_unknown_flag_exits_with_a_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(["lc_keras", "compress", "--bogus"])
    assert exit_info.value.code == 1
    assert "bogus" in capsys.readouterr().err
