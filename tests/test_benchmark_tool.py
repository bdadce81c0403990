"""Smoke test of tools/benchmark.py on a tiny synthetic IDX dataset.

The numbers of a real run are in BENCHMARKS.md; this checks that every
method runs end to end and that the results files hold what the table needs.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from test_datasets import write_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_idx_dir(path, n=256, nt=128, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n + nt)
    # Learnable: each class lights up its own band of rows.
    images = rng.integers(0, 60, (n + nt, 28, 28))
    for i, c in enumerate(labels):
        images[i, 2 * c:2 * c + 3] += 180
    images = images.astype(np.uint8)
    labels = labels.astype(np.uint8)
    write_idx(os.path.join(path, "train-images-idx3-ubyte.gz"), images[:n])
    write_idx(os.path.join(path, "train-labels-idx1-ubyte.gz"), labels[:n])
    write_idx(os.path.join(path, "t10k-images-idx3-ubyte.gz"), images[n:])
    write_idx(os.path.join(path, "t10k-labels-idx1-ubyte.gz"), labels[n:])


def test_quality_mode_runs_every_method(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(str(data))
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"),
           "--mode=quality", "--model=lenet300",
           "--methods=dc,idc,ste,cluster,ptq8,ptq4,float,lc",
           "--codebooks=k2,st", "--budgets=2", "--epochs_per_step=1",
           "--ref_epochs=2", "--batch_size=64", f"--data_dir={data}",
           f"--out_dir={out}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Every epoch line (verbose=2) logs the training loss, also those of
    # STE and clustering, whose train steps are the tool's own.
    losses = [float(v) for v in
              re.findall(r" - loss: ([0-9.e+-]+)", done.stdout + done.stderr)]
    assert len(losses) >= 8 and min(losses) > 0
    results = json.loads((out / "results_lenet300.json").read_text())
    rows = results["rows"]
    # Codebook-free methods run once; clustering learns adaptive codebooks.
    assert [(r["method"], r["codebook"]) for r in rows] == [
        ("DC", "K=2"), ("iDC", "K=2"), ("STE", "K=2"), ("clustering", "K=2"),
        ("Keras PTQ", "int8"), ("Keras PTQ", "int4"),
        ("float control", "float"), ("LC", "K=2"),
        ("DC", "scaled ternary"), ("iDC", "scaled ternary"),
        ("STE", "scaled ternary"), ("LC", "scaled ternary")]
    for r in rows:
        assert 0.0 <= r["test_error"] <= 100.0
        assert np.isfinite(r["train_loss"]) and r["train_loss"] > 0
        trained = r["method"] not in ("DC", "Keras PTQ")
        assert r["epochs"] == (2 if trained else 0)
    # rho as in lc-algorithm.md: 30.5 at K=2, 15.6 at 2 bits; Keras's int8
    # and int4 store a float32 scale per output channel.
    assert [round(r["rho"], 1) for r in rows] == [
        30.5, 30.5, 30.5, 30.5, 4.0, 7.8, 1.0, 30.5] + [15.6] * 4
    # The reference was trained and saved for the next run to load.
    assert (out / "lenet300_reference.keras").exists()
    assert 0.0 <= results["reference"]["test_error"] <= 100.0
    table = (out / "results_lenet300.md").read_text()
    assert table.count("\n| LC |") == 2 and "| reference |" in table
    # One plot of the budget curves per codebook.
    assert (out / "results_lenet300_K2.png").exists()
    assert (out / "results_lenet300_scaled_ternary.png").exists()
    # The report mode merges runs into one table.
    merged = tmp_path / "merged"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"),
         "--mode=report", f"--inputs={out / 'results_lenet300.json'}",
         f"--out_dir={merged}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (merged / "results_lenet300.md").read_text().count("\n| LC |") == 2


def test_cluster_schedule_changes_the_run(tmp_path):
    """`--cluster_schedule=cosine` trains clustering with a decaying rate:
    from the same reference and seed, its result differs from the constant
    rate's (it would not if the flag were ignored)."""
    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(str(data))
    out = tmp_path / "out"
    losses = {}
    for schedule in ("constant", "cosine"):
        cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"),
               "--mode=quality", "--model=lenet300", "--methods=cluster",
               "--codebooks=k2", "--budgets=2", "--ref_epochs=1",
               "--batch_size=64", "--cluster_lr=1e-2",
               f"--cluster_schedule={schedule}", f"--data_dir={data}",
               f"--out_dir={out}"]
        done = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        rows = json.loads((out / "results_lenet300.json").read_text())["rows"]
        assert [(r["method"], r["epochs"]) for r in rows] == [
            ("clustering", 2)]
        losses[schedule] = rows[0]["train_loss"]
    assert np.isfinite(losses["cosine"])
    assert losses["cosine"] != losses["constant"]


def test_speed_mode_writes_every_table(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_idx_dir(str(data), n=512)
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"),
           "--mode=speed", "--model=lenet300", "--speed_epochs=2",
           "--batch_size=64", f"--data_dir={data}", f"--out_dir={out}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "speed.md").read_text()
    # (a)+(b): one model row with a ratio and a C-step share.
    row = [line for line in table.splitlines()
           if line.startswith("| lenet300 |") and line.endswith("% |")]
    assert len(row) == 1
    cells = row[0].split("|")
    ratio = float(cells[4])
    assert ratio > 0
    # ... and the same in process CPU time: plain, LC, their ratio.
    plain_cpu, lc_cpu, cpu_ratio = (float(v) for v in cells[5:8])
    assert plain_cpu > 0 and lc_cpu > 0
    # (the seconds are rounded to 1 ms: a short test epoch takes ~0.1 s)
    assert cpu_ratio == pytest.approx(lc_cpu / plain_cpu, rel=0.03)
    # (d): one warm C step per codebook, a positive time in ms.
    steps = {line.split("|")[2].strip(): float(line.split("|")[3])
             for line in table.splitlines()
             if line.startswith("| lenet300 |") and line.count("|") == 4}
    assert sorted(steps) == ["K=2", "K=4", "scaled ternary"]
    assert all(ms > 0 for ms in steps.values())
    # (e): CPU time per batch, plain and LC, and their ratio.
    cpu = [line for line in table.splitlines()
           if line.startswith("| lenet300 |") and line.count("|") == 5]
    assert len(cpu) == 1
    plain, lc_ms, ratio = (float(v) for v in cpu[0].split("|")[2:5])
    assert plain > 0 and lc_ms > 0
    assert ratio == pytest.approx(lc_ms / plain, abs=2e-3)
