"""LC under tf.distribute: MirroredStrategy and MultiWorkerMirroredStrategy.

A strategy over several devices or processes must be set up before
TensorFlow starts, so the runs happen in subprocesses (`distributed_runs.py`)
with hard timeouts. Each compares the final codebooks, indices and weights of
a distributed run with a run on one device with the same global batch.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import distributed_runs

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "distributed_runs.py")


def _start(role, out, log, **extra_env):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", **extra_env)
    with open(log, "w") as f:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, SCRIPT, role, str(out)],
                                env=env, stdout=f, stderr=subprocess.STDOUT)


def _tail(log, n=3000):
    with open(log) as f:
        return f.read()[-n:]


def _load(out):
    with open(str(out) + ".json") as f:
        return dict(np.load(out)), json.load(f)


def assert_same_run(arrays, a, b, atol=1e-5):
    keys = sorted(k[len(a) + 1:] for k in arrays if k.startswith(a + "/"))
    assert any(k.startswith("codebook/") for k in keys)
    assert any(k.startswith("weight/") for k in keys)
    for key in keys:
        x, y = arrays[f"{a}/{key}"], arrays[f"{b}/{key}"]
        if key.startswith("indices/"):
            np.testing.assert_array_equal(x, y, err_msg=key)
        else:
            np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=key)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Starts the MirroredStrategy process and the two MultiWorker workers at
    once, so that their start-ups overlap; kills whatever is left at the end.
    """
    folder = tmp_path_factory.mktemp("distributed")
    runs = {}
    try:
        runs["mirrored"] = _launch(folder, "mirrored")
        ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        for i in range(2):
            config = {"cluster": cluster,
                      "task": {"type": "worker", "index": i}}
            runs[f"worker{i}"] = _launch(folder, "worker", f"worker{i}",
                                         TF_CONFIG=json.dumps(config))
        yield runs
    finally:
        for proc, _, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _launch(folder, role, name=None, **env):
    name = name or role
    out, log = folder / f"{name}.npz", folder / f"{name}.log"
    return _start(role, out, log, **env), out, log


def _result(run, timeout=240):
    proc, out, log = run
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"timed out after {timeout}s:\n{_tail(log)}")
    assert proc.returncode == 0, _tail(log)
    return _load(out)


def test_mirrored_strategy_matches_one_device(launched):
    arrays, facts = _result(launched["mirrored"])
    for kind in ("wrapped", "subclassed"):
        one, two = facts[f"{kind}/one"], facts[f"{kind}/mirrored"]
        assert two["replicas"] == 2 and one["replicas"] == 1
        # Every variable, the LC state created lazily included, is mirrored.
        assert two["distributed"], kind
        np.testing.assert_allclose(two["lc_mu"], [1e-2, 3e-2], rtol=1e-6)
        np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
        assert_same_run(arrays, f"{kind}/one", f"{kind}/mirrored")
    # Validation inside fit evaluates the quantized net on both replicas.
    np.testing.assert_allclose(facts["wrapped/mirrored"]["val_loss"],
                               facts["wrapped/one"]["val_loss"], rtol=1e-5)
    # XLA under a strategy: TensorFlow cannot compile it over logical CPU
    # devices and says so; wherever it runs it must give the same result.
    error = facts["xla"]["error"]
    if error is None:
        assert_same_run(arrays, "wrapped/one", "xla/mirrored")
    else:
        assert "device" in error or "XLA" in error, error


def test_multi_worker_matches_one_device(launched):
    # The same run on one device, here, while the workers run.
    expected, facts = distributed_runs.run(tf.distribute.get_strategy(),
                                           "worker")
    results = [_result(launched[f"worker{i}"]) for i in range(2)]
    for i, (arrays, worker_facts) in enumerate(results):
        worker = worker_facts["worker"]
        assert worker["task"] == i and worker["replicas"] == 2
        assert worker["distributed"]
        np.testing.assert_allclose(worker["loss"], facts["loss"], rtol=1e-5)
        np.testing.assert_allclose(worker["val_loss"], facts["val_loss"],
                                   rtol=1e-5)
        both = {**{f"one/{k[7:]}": v for k, v in expected.items()},
                **{f"dist/{k[7:]}": v for k, v in arrays.items()}}
        assert_same_run(both, "one", "dist")
    # Each worker runs the C steps on its own copy of the synchronized
    # weights: the copies are bit-identical.
    first, second = results[0][0], results[1][0]
    assert sorted(first) == sorted(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_reference_built_outside_the_strategy_scope_is_refused():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    net = distributed_runs.make_model().net  # built outside the scope
    with strategy.scope():
        model = distributed_runs.lc.LCModel(net)
        model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="inside `with strategy.scope"):
        distributed_runs.train(model, validation=False)
    assert not model.compression_initialized
