"""Two seeded runs with TensorFlow's op determinism give the same LC result.

`tf.config.experimental.enable_op_determinism()` cannot be undone in a
process, so the runs happen in a subprocess (`distributed_runs.py`).
"""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "distributed_runs.py")


def test_seeded_deterministic_runs_are_identical(tmp_path):
    out, log = tmp_path / "runs.npz", tmp_path / "runs.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, SCRIPT, "deterministic",
                                 str(out)], env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, open(log).read()[-3000:]
    arrays = dict(np.load(out))
    with open(str(out) + ".json") as f:
        facts = json.load(f)
    # Shuffled batches and dropout, both drawn from the seed.
    assert facts["first"]["loss"] == facts["second"]["loss"]
    keys = [k[len("first/"):] for k in arrays if k.startswith("first/")]
    assert any(k.startswith("codebook/") for k in keys)
    assert any(k.startswith("indices/") for k in keys)
    for key in keys:
        np.testing.assert_array_equal(arrays[f"first/{key}"],
                                      arrays[f"second/{key}"], err_msg=key)
