"""Smoke test of tools/benchmark.py on a tiny synthetic IDX dataset.

The numbers of a real run are in BENCHMARKS.md; this checks that every
method runs end to end and that the results files hold what the table needs.
"""

import json
import os
import subprocess
import sys

import numpy as np
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
           "--mode=quality", "--model=lenet300", "--methods=dc,idc,ste,lc",
           "--codebooks=k2,st", "--epochs=2", "--epochs_per_step=1",
           "--ref_epochs=2", "--batch_size=64", f"--data_dir={data}",
           f"--out_dir={out}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results_lenet300.json").read_text())
    rows = results["rows"]
    assert [(r["method"], r["codebook"]) for r in rows] == [
        (m, c) for c in ("K=2", "scaled ternary")
        for m in ("DC", "iDC", "STE", "LC")]
    for r in rows:
        assert 0.0 <= r["test_error"] <= 100.0
        assert np.isfinite(r["train_loss"]) and r["train_loss"] > 0
        assert r["epochs"] == (0 if r["method"] == "DC" else 2)
    # rho as in lc-algorithm.md: 30.5 at K=2, 15.6 at 2 bits.
    assert [round(r["rho"], 1) for r in rows] == [30.5] * 4 + [15.6] * 4
    # The reference was trained and saved for the next run to load.
    assert (out / "lenet300_reference.keras").exists()
    assert 0.0 <= results["reference"]["test_error"] <= 100.0
    table = (out / "results_lenet300.md").read_text()
    assert table.count("\n| LC |") == 2 and "| reference |" in table
