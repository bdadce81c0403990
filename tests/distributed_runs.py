"""One small LC run under tf.distribute strategies, for the tests.

Strategies need TensorFlow configured before it starts (two logical CPU
devices, or a TF_CONFIG cluster), so the tests run this file as a script in
subprocesses:

    python distributed_runs.py mirrored OUT.npz   # one process, 2 CPU replicas
    python distributed_runs.py worker OUT.npz     # one MultiWorker worker
    python distributed_runs.py deterministic OUT.npz

Each writes the final LC state (codebooks, indices, weights) of its runs to
OUT.npz and facts about them to OUT.json. Importing it does nothing.
"""

import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import lc_keras as lc  # noqa: E402

BATCH = 32  # the global batch: split over the replicas of a strategy


def problem(n=128, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(d, classes)), axis=1).astype("int64")
    return x, y


class Net(lc.LCModel):
    """The subclass form: kernels and LC state are created by `fit`."""

    def __init__(self, **kwargs):
        super().__init__(compression=lc.AdaptiveQuantization(2), **kwargs)
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")
        self.out = keras.layers.Dense(3, activation="softmax", name="out")

    def call(self, x, training=None):
        return self.out(self.hidden(x))


def make_model(kind="wrapped", jit_compile=False, dropout=False):
    """A compiled LCModel, created in the current strategy scope."""
    keras.utils.set_random_seed(0)
    if kind == "subclassed":
        model = Net(name="net")
    else:
        layers = [keras.Input((12,)),
                  keras.layers.Dense(16, activation="relu", name="hidden")]
        if dropout:
            layers.append(keras.layers.Dropout(0.2))
        layers.append(keras.layers.Dense(3, activation="softmax", name="out"))
        model = lc.LCModel(keras.Sequential(layers, name="mlp"), compression={
            "hidden": lc.AdaptiveQuantization(2),
            "out": lc.ScaledTernaryQuantization()})
    model.compile(keras.optimizers.SGD(0.05),
                  "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile)
    return model


def train(model, validation=True, shuffle=False, steps=2):
    x, y = problem()
    schedule = lc.MuSchedule(mu0=1e-2, growth=3.0, steps=steps,
                             epochs_per_step=1)
    history = model.fit(
        x, y, batch_size=BATCH, epochs=schedule.total_epochs,
        shuffle=shuffle, validation_data=(x[:64], y[:64]) if validation
        else None, callbacks=[schedule], verbose=0)
    return history.history


def final_state(model, prefix):
    """{name: array} of the codebooks, indices and weights of a run."""
    arrays = {}
    for path, q in model.compression_state().items():
        arrays[f"{prefix}/codebook/{path}"] = q.codebook
        arrays[f"{prefix}/indices/{path}"] = q.indices
    source = model.net if model.net is not None else model
    state = {id(v) for v in model.lc_state.weights}
    for i, v in enumerate(w for w in source.weights if id(w) not in state):
        arrays[f"{prefix}/weight/{i}"] = v.numpy()
    return arrays


def distributed(model):
    """Whether every variable of the model, LC state included, is mirrored."""
    return all(isinstance(v.value, tf.distribute.DistributedValues)
               for v in model.weights)


def run(strategy, prefix, kind="wrapped", validation=True, jit_compile=False):
    with strategy.scope():
        model = make_model(kind, jit_compile)
    history = train(model, validation)
    facts = {"distributed": distributed(model),
             "replicas": strategy.num_replicas_in_sync,
             "lc_mu": [float(v) for v in history["lc_mu"]],
             "loss": [float(v) for v in history["loss"]]}
    if validation:
        facts["val_loss"] = [float(v) for v in history["val_loss"]]
    return final_state(model, prefix), facts


def mirrored():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    one = tf.distribute.get_strategy()
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    arrays, facts = {}, {}
    for kind, validation in (("wrapped", True), ("subclassed", False)):
        for name, strategy in (("one", one), ("mirrored", two)):
            a, f = run(strategy, f"{kind}/{name}", kind, validation)
            arrays.update(a)
            facts[f"{kind}/{name}"] = f
    # XLA under the strategy: it must either fail loudly or match.
    try:
        a, f = run(two, "xla/mirrored", "wrapped", False, jit_compile=True)
        arrays.update(a)
        facts["xla"] = {"error": None}
    except Exception as e:  # noqa: BLE001 - recorded for the test
        facts["xla"] = {"error": f"{type(e).__name__}: {e}"[:2000]}
    return arrays, facts


def worker():
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    arrays, facts = run(strategy, "worker", "wrapped", True)
    facts["task"] = task
    return arrays, {"worker": facts}


def deterministic():
    tf.config.experimental.enable_op_determinism()
    arrays, facts = {}, {}
    for name in ("first", "second"):
        model = make_model("wrapped", dropout=True)
        history = train(model, validation=False, shuffle=True)
        arrays.update(final_state(model, name))
        facts[name] = {"loss": [float(v) for v in history["loss"]]}
    return arrays, facts


def main(role, out):
    arrays, facts = {"mirrored": mirrored, "worker": worker,
                     "deterministic": deterministic}[role]()
    np.savez(out, **arrays)
    with open(out + ".json", "w") as f:
        json.dump(facts, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    sys.stderr.flush()
    # A multi-worker strategy can hang while shutting down: the results are
    # written, so leave at once.
    os._exit(0)
