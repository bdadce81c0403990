"""tools/plot_lc.py: reading logs and results, PNGs, the missing-matplotlib
message, the command line."""

import csv
import doctest
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import lc_keras as lc
from tools import plot_lc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "plot_lc.py")
PNG = b"\x89PNG\r\n\x1a\n"

try:
    import matplotlib  # noqa: F401
    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False

needs_matplotlib = pytest.mark.skipif(
    not HAVE_MATPLOTLIB, reason="matplotlib is not installed (lc_keras[plot])")


def history():
    """Epoch logs of 3 LC steps, 2 epochs each, as MuSchedule writes them."""
    steps = [0, 0, 1, 1, 2, 2]
    h = {"epoch": list(range(6)), "loss": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5],
         "lc_step": steps, "lc_mu": [0.1 * 2 ** s for s in steps]}
    for group, scale in (("dense_1/kernel", 1.0), ("shared:conv*", 0.5)):
        for j in range(4):
            h[f"lc_codebook/{group}/{j}"] = [
                scale * (j - 1.5) * (1 + 0.1 * e) for e in range(6)]
        h[f"lc_distortion/{group}"] = [scale * 10.0 ** -e for e in range(6)]
    return h


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_read_history_json_and_csv(tmp_path):
    h = history()
    as_json = tmp_path / "h.json"
    as_json.write_text(json.dumps(h))
    as_csv = tmp_path / "h.csv"
    write_csv(as_csv, [{k: v[i] for k, v in h.items()} for i in range(6)])
    expected = {k: [float(x) for x in v] for k, v in h.items()}
    assert plot_lc.read_history(str(as_json)) == expected
    assert plot_lc.read_history(str(as_csv)) == expected
    nested = tmp_path / "n.json"
    nested.write_text(json.dumps({"epoch": h["epoch"],
                                  "history": {"loss": h["loss"]}}))
    assert list(plot_lc.read_history(str(nested))) == ["epoch", "loss"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"loss": [1, 2], "acc": [1]}))
    with pytest.raises(ValueError, match="different lengths"):
        plot_lc.read_history(str(bad))


def test_codebook_series_takes_the_last_epoch_of_each_step():
    steps, books = plot_lc.codebook_series(history())
    assert steps.tolist() == [1, 2, 3]
    assert sorted(books) == ["dense_1/kernel", "shared:conv*"]
    book = books["dense_1/kernel"]
    assert book.shape == (3, 4)
    np.testing.assert_allclose(book[:, 0], [-1.5 * 1.1, -1.5 * 1.3,
                                            -1.5 * 1.5])
    # Without lc_step (a CSVLogger of another run): one row per epoch.
    h = {k: v for k, v in history().items() if k != "lc_step"}
    steps, books = plot_lc.codebook_series(h)
    assert steps.tolist() == [1, 2, 3, 4, 5, 6]


def test_read_results_formats(tmp_path):
    rows = [{"method": "reference", "k": "", "rho": "1", "test_error": "10.7"},
            {"method": "LC", "k": "2", "rho": "30.5", "test_error": "11.6"},
            {"method": "LC", "k": "4", "rho": "15.6", "test_error": "11.3"},
            {"method": "DC", "k": "2", "rho": "30.5", "test_error": "25.0"}]
    as_csv = tmp_path / "r.csv"
    write_csv(as_csv, rows)
    as_json = tmp_path / "r.json"
    as_json.write_text(json.dumps({"results": [
        dict(r, rho=float(r["rho"]), test_error=float(r["test_error"]))
        for r in rows]}))
    as_md = tmp_path / "r.md"
    as_md.write_text(
        "Results\n\n| Method | K | ρ | Test error % |\n|:--|--:|--:|--:|\n" +
        "".join(f"| {r['method']} | {r['k']} | {r['rho']} | "
                f"{r['test_error']} |\n" for r in rows) + "\nfootnote\n")
    expected = [("reference", 1.0, 10.7, None), ("LC", 30.5, 11.6, "K=2"),
                ("LC", 15.6, 11.3, "K=4"), ("DC", 30.5, 25.0, "K=2")]
    for path in (as_csv, as_json, as_md):
        got = [(r["method"], r["rho"], r["test_error"], r.get("note"))
               for r in plot_lc.read_results(str(path))]
        assert got == expected, path
    empty = tmp_path / "e.csv"
    write_csv(empty, [{"method": "LC", "accuracy": "0.9"}])
    with pytest.raises(ValueError, match="rho"):
        plot_lc.read_results(str(empty))


def test_benchmark_results_are_readable(tmp_path):
    # The forms tools/benchmark.py writes: results_<arch>.md and .json.
    md = tmp_path / "results_lenet300.md"
    md.write_text(
        "| lenet300 | codebook | test error % | train loss | rho | epochs | "
        "seconds |\n|---|---|---|---|---|---|---|\n"
        "| reference | float | 10.75 | 0.2000 | 1.0 | 30 | - |\n"
        "| DC | k2 | 25.10 | 0.6000 | 30.5 | 0 | 1 |\n"
        "| LC | k2 | 11.60 | 0.2100 | 30.5 | 60 | 300 |\n")
    js = tmp_path / "results_lenet300.json"
    js.write_text(json.dumps({
        "reference": {"test_error": 10.75, "train_loss": 0.2},
        "rows": [{"method": "DC", "codebook": "k2", "test_error": 25.1,
                  "train_loss": 0.6, "rho": 30.5, "epochs": 0},
                 {"method": "LC", "codebook": "k2", "test_error": 11.6,
                  "train_loss": 0.21, "rho": 30.5, "epochs": 60}]}))
    expected = [("reference", 1.0, 10.75, None), ("DC", 30.5, 25.1, "k2"),
                ("LC", 30.5, 11.6, "k2")]
    for path in (md, js):
        got = [(r["method"], r["rho"], r["test_error"], r.get("note"))
               for r in plot_lc.read_results(str(path))]
        assert got == expected, path


def test_the_cli_results_file_is_readable(tmp_path):
    from lc_keras.cli import append_result

    path = str(tmp_path / "results.csv")
    append_result(path, {"method": "LC", "codebook": "adaptive", "k": 2,
                         "rho": 30.5, "test_error": 11.6})
    append_result(path, {"method": "LC", "codebook": "adaptive", "k": 4,
                         "rho": 15.6, "test_error": 11.3})
    assert [(r["rho"], r["note"]) for r in plot_lc.read_results(path)] == [
        (30.5, "K=2"), (15.6, "K=4")]


def trained_lc_model():
    net = keras.Sequential([keras.Input((8,)),
                            keras.layers.Dense(16, name="a"),
                            keras.layers.Dense(4, name="b")])
    model = lc.LCModel(net, compression={
        "a": lc.AdaptiveQuantization(3),
        "b": lc.ScaledBinaryQuantization(per_channel=True)})
    model.direct_compression()
    model(np.zeros((1, 8), np.float32))
    return model


@needs_matplotlib
def test_make_plots_writes_pngs(tmp_path):
    h = tmp_path / "h.json"
    h.write_text(json.dumps(history()))
    results = tmp_path / "r.csv"
    write_csv(results, [{"method": "LC", "k": 2, "rho": 30.5,
                         "test_error": 11.6},
                        {"method": "reference", "k": "", "rho": 1,
                         "test_error": 10.7}])
    model_path = str(tmp_path / "lc.keras")
    trained_lc_model().save(model_path)
    out = str(tmp_path / "plots")
    written = plot_lc.make_plots(history=str(h), model=model_path,
                                 results=str(results), out_dir=out)
    names = [os.path.basename(p) for p in written]
    assert names == ["codebooks.png", "distortion.png",
                     "weights_a_kernel.png", "weights_b_kernel.png",
                     "error_vs_rho.png"]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == PNG, path
    only = plot_lc.make_plots(model=model_path, layers=["b"], out_dir=out)
    assert [os.path.basename(p) for p in only] == ["weights_b_kernel.png"]
    with pytest.raises(ValueError, match="No compressed kernel matches"):
        plot_lc.make_plots(model=model_path, layers=["zzz"], out_dir=out)
    with pytest.raises(ValueError, match="Nothing to plot"):
        plot_lc.make_plots(out_dir=out)


def test_a_plain_model_is_refused_for_histograms(tmp_path):
    path = str(tmp_path / "q.keras")
    trained_lc_model().quantized_model().save(path)
    with pytest.raises(ValueError, match="not an LCModel"):
        plot_lc.load_lc_model(path)


def test_missing_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'lc_keras\[plot\]'"):
        plot_lc.figure()


def run_tool(args, tmp_path, env_extra=None):
    env = dict(os.environ)
    env.update({"PYTHONPATH": ROOT, **(env_extra or {})})
    return subprocess.run([sys.executable, TOOL] + args, cwd=tmp_path,
                          env=env, capture_output=True, text=True,
                          timeout=120)


def test_command_line_without_matplotlib(tmp_path):
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    results = tmp_path / "r.csv"
    write_csv(results, [{"method": "LC", "rho": 30.5, "test_error": 11.6}])
    done = run_tool(["--results", str(results)], tmp_path, {
        "PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{ROOT}"})
    assert done.returncode == 1
    assert "pip install 'lc_keras[plot]'" in done.stderr


@needs_matplotlib
def test_command_line(tmp_path):
    h = tmp_path / "h.csv"
    data = history()
    write_csv(h, [{k: v[i] for k, v in data.items()} for i in range(6)])
    results = tmp_path / "r.md"
    results.write_text("| net | test error % | rho |\n|---|---|---|\n"
                       "| reference (float) | 10.75 | 1.0 |\n"
                       "| LC | 11.6 | 30.5 |\n")
    done = run_tool(["--history", str(h), "--results", str(results),
                     "--out_dir", "plots"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "plots/codebooks.png", "plots/distortion.png", "plots/error_vs_rho.png"]
    assert (tmp_path / "plots" / "codebooks.png").read_bytes()[:8] == PNG
    bad = run_tool(["--results", str(h)], tmp_path)
    assert bad.returncode == 1 and "plot_lc:" in bad.stderr


@needs_matplotlib
def test_docstring_examples():
    result = doctest.testmod(plot_lc, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0
