"""lc_keras.multi_worker outside a multi-worker run (the real multi-worker
runs are in test_distribute.py)."""

import tensorflow as tf

from lc_keras import multi_worker


def test_one_process_is_not_multi_worker():
    assert not multi_worker.is_multi_worker(tf.distribute.get_strategy())
    assert not multi_worker.is_multi_worker(
        tf.distribute.MirroredStrategy(["/cpu:0"]))


def test_logs_pass_through_outside_multi_worker():
    logs = {"loss": tf.constant(1.0), "n": 3}
    assert multi_worker.reducible_logs(logs) is logs
