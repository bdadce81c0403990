r"""Benchmarks: LC against full-strength baselines at equal budgets; speed.

Quality (`--mode=quality`): for LeNet300 (784-300-100-10 ReLU) and LeNet5
(Caffe variant: conv20-pool-conv50-pool-500-10), trains or loads a reference
(30 epochs SGD Nesterov 0.9, lr 0.1·0.9^epoch, batch 128), then, at every
epoch budget of `--budgets`, quantizes every layer's kernel (per-layer
codebooks, float biases) with

* DC      — direct compression: project the reference weights once;
* iDC     — iterated DC: alternate plain retraining and re-quantization;
* STE     — straight-through: the forward pass uses q(w) (fixed and scaled
            codebooks: the C step of the current weights at every batch, so
            scales are recomputed per batch; adaptive: the nearest entry of
            the codebook, refit by k-means after every epoch), gradients go
            straight to w (no clipping), Adam with cosine decay to 0 over
            the budget (`--ste_lr`, `--ste_lrs` per budget); the net is q(w);
* cluster — trained clustering as the TF Model Optimization Toolkit does it
            (adaptive codebooks only): centroids from k-means++ (+ Lloyd),
            nearest-centroid assignment in every forward pass, centroids
            trained by the summed gradient of their weights, the float
            weights by straight-through, Adam (`--cluster_lr`, constant
            or cosine-decayed to 0, `--cluster_schedule`);
* ptq8/4  — Keras's own post-training `model.quantize("int8"/"int4")`;
* float   — control: the float reference trained for the same epochs
            (Adam, cosine decay, `--float_lr`);
* LC      — `LCModel` + `MuSchedule.for_budget` (the defaults; `--pull`,
            `--step_batches`, `--optimizer`, `--lr`), or the epoch-grid
            `MuSchedule` (`--lc_schedule=epochs`),

and reports for the resulting net the test error, the full-training-set
loss, ρ, epochs and wall time. Rows go to `<out_dir>/results_<model>.md`
and `.json`, with one plot per codebook of train loss and test error against
the budget (`results_<model>_<codebook>.png`, with matplotlib).
`--mode=report --inputs=a.json,b.json` merges several runs into one table
and set of plots.

Speed (`--mode=speed`): (a) LC `fit` epoch time (the default policy: C steps
every `--step_batches` batches) over plain Keras `fit` epoch time on the
same model, data and optimizer, interleaved, in wall time and in process CPU
time (every thread, which steal on a shared machine does not inflate); (b)
the share of LC wall time spent in C steps; (c) the adaptive C step on 1M
float32 weights at K = 4, 16, 256 against `sklearn.cluster.KMeans(n_init=1)`
(time and distortion); (d) the median time of one warm C step of the model
at K=2, K=4 and scaled ternary; (e) CPU time per batch of plain `fit` and
of an LCModel's train step without C steps (the proximal step and the logged
penalty).

    python tools/benchmark.py --mode=quality --model=lenet300 --codebooks=k2 --budgets=3,10
    python tools/benchmark.py --mode=speed
"""

import json
import os
import statistics
import time

from absl import app
from absl import flags
from absl import logging

import keras
import numpy as np
import tensorflow as tf

import lc_keras as lc
from lc_keras import files
from lc_keras import kmeans

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "quality", ["quality", "speed", "report"],
                  "What to run; report: merge the --inputs JSON files of "
                  "earlier quality runs into one table and plots.")
flags.DEFINE_list("inputs", [], "Report: results_<model>.json files.")
flags.DEFINE_list("model", ["lenet300"], "lenet300 and/or lenet5.")
flags.DEFINE_list("methods", ["dc", "ste", "cluster", "ptq8", "ptq4",
                                "float", "lc"],
                  "Methods: dc, idc, ste, cluster, ptq8, ptq4, float, lc.")
flags.DEFINE_list("codebooks", ["k2", "k4", "k8", "k16", "sb", "st"],
                  "kN: adaptive K=N; sb: scaled binary; st: scaled ternary.")
flags.DEFINE_integer("epochs", 60, "Epoch budget of iDC, STE and LC.")
flags.DEFINE_integer("ref_epochs", 30, "Epochs of the reference.")
flags.DEFINE_float("ref_lr", 0.1, "First learning rate of the reference "
                   "(times 0.9 per epoch). LeNet5 (no ReLU after its convs, "
                   "as in Caffe) diverges at 0.1; use 0.01.")
flags.DEFINE_integer("epochs_per_step", 2, "Epochs per L step (LC, iDC).")
flags.DEFINE_integer("first_step_epochs", None, "LC: epochs of the first L "
                     "step (default: epochs_per_step).")
flags.DEFINE_float("mu0", 1e-4, "LC: first mu.")
flags.DEFINE_float("growth", None, "LC: mu growth per LC step (default: "
                   "reach mu0·growth^(steps-1) = 1.7 at the last step).")
flags.DEFINE_float("lr", 0.1, "Learning rate of iDC, STE and LC.")
flags.DEFINE_float("lr_decay", 0.98, "Learning-rate decay of iDC per "
                   "re-quantization and of STE per epoch pair.")
flags.DEFINE_float("lc_lr_decay", 0.85, "Learning-rate decay of LC per LC "
                   "step (MuSchedule's lr_decay; its default).")
flags.DEFINE_float("ste_lr", 1e-3, "STE: first learning rate of Adam, "
                   "cosine-decayed to 0 over the budget.")
flags.DEFINE_list("ste_lrs", [], "STE: per-budget learning rates, as "
                  "budget=lr pairs (e.g. 3=3e-3,10=1e-3); others use "
                  "--ste_lr.")
flags.DEFINE_float("cluster_lr", 1e-4, "Trained clustering: Adam learning "
                   "rate (tfmot's fine-tuning default).")
flags.DEFINE_enum("cluster_schedule", "constant", ["constant", "cosine"],
                  "Trained clustering: a constant Adam rate (tfmot's "
                  "examples), or cosine decay to 0 over the budget.")
flags.DEFINE_float("float_lr", 1e-3, "Float control: first learning rate of "
                   "Adam, cosine-decayed to 0 over the budget.")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer of iDC "
                  "and LC: SGD with Nesterov momentum 0.9, or Adam.")
flags.DEFINE_enum("lc_schedule", "budget", ["budget", "epochs"], "LC: "
                  "MuSchedule.for_budget, or the epoch-grid MuSchedule "
                  "(--mu0, --growth, --epochs_per_step, --lc_lr_decay).")
flags.DEFINE_integer("step_batches", 20, "LC (budget): batches per L step.")
flags.DEFINE_list("pull", [], "LC (budget): first,last value of mu·lr0 "
                  "(default: MuSchedule.for_budget's).")
flags.DEFINE_enum("lc_penalty", "feedback",
                  ["augmented", "feedback", "quadratic"],
                  "LC: LCModel's penalty.")
flags.DEFINE_list("budgets", [], "Epoch budgets to run every method at "
                  "(default: --epochs).")
flags.DEFINE_integer("batch_size", 128, "Minibatch size.")
flags.DEFINE_integer("train_subset", 0, "Use only this many training "
                     "images (0: all); for smoke runs.")
flags.DEFINE_string("data_dir", None, "Fashion-MNIST IDX folder.")
flags.DEFINE_string("out_dir", "runs/bench", "Where references and results "
                    "go.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("speed_epochs", 4, "Speed: epochs of each of plain and "
                     "LC fit (interleaved, first of each dropped).")

MU_END = 1.7  # mu at the last LC step of the default schedule (1e-4·1.4^29)


def lenet300():
    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(300, activation="relu", name="dense_1"),
        keras.layers.Dense(100, activation="relu", name="dense_2"),
        keras.layers.Dense(10, activation="softmax", name="dense_3"),
    ], name="lenet300")


def lenet5():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(20, 5, name="conv_1"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(50, 5, name="conv_2"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(500, activation="relu", name="dense_1"),
        keras.layers.Dense(10, activation="softmax", name="dense_2"),
    ], name="lenet5")


ARCHITECTURES = {"lenet300": lenet300, "lenet5": lenet5}


def quantization(name):
    if name.startswith("k"):
        return lc.get_codebook("adaptive", k=int(name[1:]))
    return lc.get_codebook(
        {"sb": "scaled_binary", "st": "scaled_ternary"}[name])


def codebook_label(name):
    return {"sb": "scaled binary", "st": "scaled ternary"}.get(
        name, f"K={name[1:]}")


def sgd(lr):
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)


def optimizer(name, lr):
    if name == "adam":
        return keras.optimizers.Adam(lr)
    return sgd(lr)


def load_data(arch):
    (x, y), (xt, yt) = lc.datasets.load_fashion_mnist(FLAGS.data_dir)
    x = np.asarray(x, np.float32) / 255.0
    xt = np.asarray(xt, np.float32) / 255.0
    if arch == "lenet300":
        x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    else:
        x, xt = x[..., None], xt[..., None]
    if FLAGS.train_subset:
        x, y = x[:FLAGS.train_subset], y[:FLAGS.train_subset]
    return x, y, xt, yt


def reference_model(arch, x, y, xt, yt):
    path = os.path.join(FLAGS.out_dir, f"{arch}_reference.keras")
    if os.path.exists(path):
        return keras.models.load_model(path)
    model = ARCHITECTURES[arch]()
    lr = FLAGS.ref_lr
    model.compile(sgd(lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    decay = keras.callbacks.LearningRateScheduler(lambda e: lr * 0.9 ** e)
    model.fit(x, y, batch_size=FLAGS.batch_size, epochs=FLAGS.ref_epochs,
              validation_data=(xt, yt), callbacks=[decay], verbose=2)
    if not all(np.all(np.isfinite(w)) for w in model.get_weights()):
        raise ValueError(
            f"The {arch} reference diverged (non-finite weights) at "
            f"--ref_lr={lr}; it was not saved. Lower --ref_lr.")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with files.atomic_path(path) as tmp:
        model.save(tmp)
    return model


def copy_of(reference):
    net = keras.models.clone_model(reference)
    net.set_weights(reference.get_weights())
    return net


def measure(model, x, y, xt, yt):
    """(test error %, full training loss) of a compiled model."""
    _, acc = model.evaluate(xt, yt, batch_size=2048, verbose=0)
    loss, _ = model.evaluate(x, y, batch_size=2048, verbose=0)
    return 100.0 * (1.0 - acc), float(loss)


def compile_lc(model):
    model.compile(optimizer(FLAGS.optimizer, FLAGS.lr),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def lc_schedule(epochs, mu0, growth, lr_decay):
    first = FLAGS.first_step_epochs or FLAGS.epochs_per_step
    steps = 1 + max(0, epochs - first) // FLAGS.epochs_per_step
    if growth is None:
        growth = (MU_END / mu0) ** (1.0 / max(1, steps - 1))
    return lc.MuSchedule(mu0=mu0, growth=max(1.0, growth), steps=steps,
                         epochs_per_step=FLAGS.epochs_per_step,
                         first_step_epochs=FLAGS.first_step_epochs,
                         lr_decay=lr_decay or None)


def run_dc(reference, codebook, data, epochs):
    del epochs
    model = compile_lc(lc.LCModel(copy_of(reference),
                                  compression=quantization(codebook)))
    model.direct_compression()
    return model, 0


def run_legacy_lc(reference, codebook, data, epochs, penalty="augmented",
                  mu0=None, growth=None, lr_decay=None):
    x, y, xt, yt = data
    model = compile_lc(lc.LCModel(copy_of(reference),
                                  compression=quantization(codebook),
                                  penalty=penalty))
    schedule = lc_schedule(epochs, mu0 or FLAGS.mu0,
                           FLAGS.growth if growth is None else growth,
                           FLAGS.lc_lr_decay if lr_decay is None else lr_decay)
    model.fit(x, y, batch_size=FLAGS.batch_size,
              epochs=schedule.total_epochs, validation_data=(xt, yt),
              callbacks=[schedule], verbose=2)
    return model, schedule.total_epochs


def run_lc(reference, codebook, data, epochs):
    """LC with `MuSchedule.for_budget` (the default policy) or the epoch
    grid (`--lc_schedule=epochs`, the previous default)."""
    if FLAGS.lc_schedule == "epochs":
        return run_legacy_lc(reference, codebook, data, epochs)
    x, y, xt, yt = data
    model = compile_lc(lc.LCModel(copy_of(reference),
                                  compression=quantization(codebook),
                                  penalty=FLAGS.lc_penalty))
    kwargs = {"step_batches": FLAGS.step_batches}
    if FLAGS.pull:
        kwargs["pull"] = tuple(float(p) for p in FLAGS.pull)
    schedule = lc.MuSchedule.for_budget(epochs, **kwargs)
    model.fit(x, y, batch_size=FLAGS.batch_size, epochs=schedule.total_epochs,
              validation_data=(xt, yt), callbacks=[schedule], verbose=2)
    return model, schedule.total_epochs


def run_idc(reference, codebook, data, epochs):
    # λ ≡ 0 and μ ≈ 0: plain retraining between re-quantizations.
    return run_legacy_lc(reference, codebook, data, epochs,
                         penalty="quadratic", mu0=1e-12, growth=1.0,
                         lr_decay=FLAGS.lr_decay)


def cosine_adam(lr, total_steps):
    """Adam with `CosineDecay` from `lr` to 0 over `total_steps` batches."""
    return keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(lr, max(1, total_steps)))


def steps_per_epoch(x):
    return -(-len(x) // FLAGS.batch_size)


def mapped_train_step(model, data, mapping):
    """A training step whose forward pass reads the kernels from `mapping()`
    (pairs (variable, value), built under the tape so that gradients flow
    through the values: straight-through and clustering baselines)."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape() as tape:
        with keras.StatelessScope(state_mapping=mapping()):
            y_pred = model(x, training=True)
        # The compiled loss (an LCModel with the proximal penalty step adds
        # no penalty to it).
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred,
                                  sample_weight=sample_weight, training=True)
    variables = model.trainable_variables
    model.optimizer.apply_gradients(
        zip(tape.gradient(loss, variables), variables))
    # The epoch logs are the metrics' results: track the loss there too.
    for metric in model.metrics:
        if metric.name == "loss":
            metric.update_state(loss)
    return dict(model.compute_metrics(x, y, y_pred, sample_weight))


class _STE(lc.LCModel):
    """Straight-through training (the recipe of issue 11, every codebook).

    The forward pass uses q(w): for fixed and scaled codebooks the C step of
    the codebook applied to the current weights of every batch (so the scale
    a = mean|w| of scaled binary, and a* of scaled ternary, are recomputed per
    batch); for adaptive codebooks the nearest entry of the current codebook,
    which is refit by (warm-started) k-means on the float weights after every
    epoch. The gradient passes straight to w (no clipping); biases train as
    usual; the final net is q(w).
    """

    def __init__(self, net, compression):
        super().__init__(net, compression=compression, name="ste",
                         penalty="quadratic")
        self.ste_codebooks = [
            tf.Variable(tf.zeros_like(g.codebook.value), trainable=False)
            for g in self.lc_state.group_states]

    def refresh_codebooks(self):
        for var, g in zip(self.ste_codebooks, self.lc_state.group_states):
            var.assign(g.codebook.value)

    def _snapped(self, w, g, quantization):
        v = tf.reshape(tf.cast(w, tf.float32), [1, -1])
        if isinstance(quantization, lc.AdaptiveQuantization):
            codebook = self.ste_codebooks[g]
            z = kmeans.assign_nearest(v, codebook)
        else:
            codebook, z = quantization.project(v)
        return tf.reshape(tf.gather(codebook[0], z[0]), tf.shape(w))

    def mapping(self):
        mapping = []
        for g, group in enumerate(self.lc_state.groups):
            for ref in group.kernels:
                w = ref.variable.value
                q = tf.cast(self._snapped(w, g, group.quantization), w.dtype)
                mapping.append((ref.variable, w + tf.stop_gradient(q - w)))
        return mapping

    def train_step(self, data):
        return mapped_train_step(self, data, self.mapping)


class _STECallback(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.model.direct_compression()
        self.model.refresh_codebooks()

    def on_epoch_end(self, epoch, logs=None):
        # Refit adaptive codebooks to the float weights (k-means, warm);
        # the last one also makes the final net q(w).
        self.model.c_step(update_multipliers=False)
        self.model.refresh_codebooks()


def run_ste(reference, codebook, data, epochs):
    x, y, xt, yt = data
    model = _STE(copy_of(reference), quantization(codebook))
    lrs = dict(item.split("=") for item in FLAGS.ste_lrs)
    lr = float(lrs.get(str(epochs), FLAGS.ste_lr))
    model.compile(cosine_adam(lr, epochs * steps_per_epoch(x)),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=FLAGS.batch_size, epochs=epochs,
              callbacks=[_STECallback()], verbose=2)
    return model, epochs


class _Clustered(keras.Model):
    """Trained clustering as the TF Model Optimization Toolkit does it.

    Each kernel has K trainable centroids, initialised by k-means++ (then
    Lloyd: our direct compression, at least as good a start as tfmot's
    k-means++ alone). Every forward pass assigns each weight to its nearest
    centroid; the kernel used is centroid[assignment], whose gradient sums
    the gradients of the weights of each centroid (the gather's gradient)
    and passes straight through to the float weights.
    """

    def __init__(self, lc_model):
        super().__init__(name="clustered")
        self.lc_model = lc_model
        self.refs = [k.ref for k in lc_model.lc_state.kernels]
        state = lc_model.compression_state()
        self.centroids = [
            keras.Variable(state[r.path].codebook[0], name=f"centroids_{i}")
            for i, r in enumerate(self.refs)]

    def call(self, x, training=None):
        return self.lc_model.net(x, training=training)

    def clustered(self, ref, centroids):
        w = ref.variable.value
        flat = tf.reshape(w, [-1, 1])
        z = tf.argmin(tf.abs(flat - centroids[None, :]), axis=1)
        q = tf.reshape(tf.gather(centroids, tf.stop_gradient(z)), tf.shape(w))
        return q + (w - tf.stop_gradient(w))

    def mapping(self):
        return [(r.variable, self.clustered(r, c.value))
                for r, c in zip(self.refs, self.centroids)]

    def train_step(self, data):
        return mapped_train_step(self, data, self.mapping)

    def final_net(self):
        """The clustered net as a plain Keras model (kernels = centroids)."""
        net = copy_of(self.lc_model.net)
        layers = {layer.name: layer for layer in net.layers}
        for ref, centroids in zip(self.refs, self.centroids):
            c = tf.constant(centroids.numpy())
            w = ref.variable.value
            z = tf.argmin(tf.abs(tf.reshape(w, [-1, 1]) - c[None, :]), axis=1)
            getattr(layers[ref.layer.name], ref.attribute).assign(
                tf.reshape(tf.gather(c, z), tf.shape(w)))
        net.compile(loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
        return net


def run_cluster(reference, codebook, data, epochs):
    x, y, xt, yt = data
    if not codebook.startswith("k"):
        return None, epochs  # clustering learns K free centroids only
    lc_model = lc.LCModel(copy_of(reference),
                          compression=quantization(codebook))
    lc_model.direct_compression()
    model = _Clustered(lc_model)
    if FLAGS.cluster_schedule == "cosine":
        optimizer = cosine_adam(FLAGS.cluster_lr, epochs * steps_per_epoch(x))
    else:
        optimizer = keras.optimizers.Adam(FLAGS.cluster_lr)
    model.compile(optimizer, "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=FLAGS.batch_size, epochs=epochs, verbose=2)
    net = model.final_net()
    net.lc_ratio = lc.compression_ratio(lc_model)
    return net, epochs


def run_ptq(reference, codebook, data, epochs, mode):
    """Keras's own post-training `model.quantize(mode)`: no training."""
    del codebook, data, epochs
    net = copy_of(reference)
    net.quantize(mode)
    net.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    bits = {"int8": 8, "int4": 4}[mode]
    weights = sum(int(np.prod(layer.kernel.shape)) for layer in net.layers
                  if hasattr(layer, "kernel"))
    outputs = sum(int(layer.kernel.shape[-1]) for layer in net.layers
                  if hasattr(layer, "kernel"))
    biases = sum(int(np.prod(layer.bias.shape)) for layer in net.layers
                 if getattr(layer, "bias", None) is not None)
    # bits per weight + one float32 scale per output channel + float biases.
    net.lc_ratio = 32.0 * (weights + biases) / (
        bits * weights + 32.0 * (outputs + biases))
    return net, 0


def run_float(reference, codebook, data, epochs):
    """Control: the float reference trained for the same extra epochs."""
    del codebook
    x, y, xt, yt = data
    net = copy_of(reference)
    net.compile(cosine_adam(FLAGS.float_lr, epochs * steps_per_epoch(x)),
                "sparse_categorical_crossentropy", metrics=["accuracy"])
    net.fit(x, y, batch_size=FLAGS.batch_size, epochs=epochs, verbose=2)
    net.lc_ratio = 1.0
    return net, epochs


RUNNERS = {
    "dc": run_dc, "idc": run_idc, "ste": run_ste, "cluster": run_cluster,
    "ptq8": lambda *a: run_ptq(*a, mode="int8"),
    "ptq4": lambda *a: run_ptq(*a, mode="int4"),
    "float": run_float, "lc": run_lc}
LABELS = {"dc": "DC", "idc": "iDC", "ste": "STE", "cluster": "clustering",
          "ptq8": "Keras PTQ", "ptq4": "Keras PTQ", "float": "float control",
          "lc": "LC"}
# Methods whose result does not depend on the codebook: run once a budget
# (PTQ: once), under the codebook label given here.
CODEBOOK_FREE = {"ptq8": "int8", "ptq4": "int4", "float": "float"}


def ratio_of(model):
    if hasattr(model, "lc_ratio"):
        return model.lc_ratio
    return lc.compression_ratio(model)


def budget_tables(rows):
    """Per codebook: a row per budget, a column per method, cells "test
    error % / train loss" (the mean over seeds, their number in brackets)."""
    lines = []
    free = set(CODEBOOK_FREE.values())
    methods = sorted({r["method"] for r in rows})
    for codebook in sorted({r["codebook"] for r in rows} - free):
        mine = [r for r in rows if r["codebook"] in (codebook, "float")]
        present = [m for m in methods if any(
            r["method"] == m and r["epochs"] for r in mine)]
        lines += ["", f"{codebook}:", "",
                  "| epochs | " + " | ".join(present) + " |",
                  "|---" * (len(present) + 1) + "|"]
        for epochs in sorted({r["epochs"] for r in mine if r["epochs"]}):
            cells = []
            for method in present:
                got = [r for r in mine if r["method"] == method
                       and r["epochs"] == epochs]
                if not got:
                    cells.append("")
                    continue
                err = statistics.mean(r["test_error"] for r in got)
                loss = statistics.mean(r["train_loss"] for r in got)
                seeds = f" ({len(got)})" if len(got) > 1 else ""
                cells.append(f"{err:.2f} / {loss:.4f}{seeds}")
            lines.append(f"| {epochs} | " + " | ".join(cells) + " |")
    return lines


def write_results(arch, rows, reference_row):
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    base = os.path.join(FLAGS.out_dir, f"results_{arch}")
    files.atomic_write_text(base + ".json", json.dumps(
        {"reference": reference_row, "rows": rows}, indent=1))
    lines = [
        f"| {arch} | codebook | test error % | train loss | rho | epochs | "
        "seconds |", "|---|---|---|---|---|---|---|",
        f"| reference | float | {reference_row['test_error']:.2f} | "
        f"{reference_row['train_loss']:.4f} | 1.0 | "
        f"{FLAGS.ref_epochs} | - |"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['codebook']} | {r['test_error']:.2f} | "
            f"{r['train_loss']:.4f} | {r['rho']:.1f} | {r['epochs']} | "
            f"{r['seconds']:.0f} |")
    lines += budget_tables(rows)
    files.atomic_write_text(base + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.info("matplotlib not installed: no plot.")
        return
    quantized = [r for r in rows if r["method"] not in ("float control",)]
    for codebook in sorted({r["codebook"] for r in quantized}
                           - set(CODEBOOK_FREE.values())):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for method in sorted({r["method"] for r in rows}):
            # Trained methods only (DC and PTQ have no budget), the mean
            # over seeds at each budget.
            mine = [r for r in rows if r["method"] == method and r["epochs"]
                    and r["codebook"] in (codebook, "float")]
            if not mine:
                continue
            for ax, key in zip(axes, ("train_loss", "test_error")):
                budgets = sorted({r["epochs"] for r in mine})
                means = [statistics.mean(r[key] for r in mine
                                         if r["epochs"] == b)
                         for b in budgets]
                ax.plot(budgets, means, "o-", label=method)
        for ax, key, label in zip(axes, ("train_loss", "test_error"),
                                  ("train loss", "test error %")):
            ax.axhline(reference_row[key], color="k", ls="--",
                       label="reference")
            ax.set_xlabel("training budget (epochs)")
            ax.set_ylabel(f"quantized-net {label}")
            ax.set_xscale("log")
            budgets = sorted({r["epochs"] for r in rows if r["epochs"]})
            ax.set_xticks(budgets)
            ax.set_xticklabels([str(b) for b in budgets])
            ax.minorticks_off()
        axes[0].set_title(f"{arch}, {codebook}")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        name = codebook.replace(" ", "_").replace("=", "")
        with files.atomic_path(f"{base}_{name}.png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)


def run_one(method, reference, codebook, data, budget):
    x, y, xt, yt = data
    keras.utils.set_random_seed(FLAGS.seed)
    start = time.time()
    model, epochs = RUNNERS[method](reference, codebook, data, budget)
    seconds = time.time() - start
    if model is None:
        return None
    err, loss = measure(model, x, y, xt, yt)
    row = {"method": LABELS[method],
           "codebook": CODEBOOK_FREE.get(method, codebook_label(codebook)),
           "test_error": err, "train_loss": loss, "rho": ratio_of(model),
           "epochs": epochs, "seconds": seconds, "seed": FLAGS.seed}
    logging.info("%s", row)
    return row


def quality():
    for arch in FLAGS.model:
        data = load_data(arch)
        x, y, xt, yt = data
        reference = reference_model(arch, *data)
        err, loss = measure(reference, x, y, xt, yt)
        reference_row = {"test_error": err, "train_loss": loss}
        rows = []
        done_free = set()
        budgets = [int(b) for b in FLAGS.budgets] or [FLAGS.epochs]
        for budget in budgets:
            for codebook in FLAGS.codebooks:
                for method in FLAGS.methods:
                    key = (method, 0 if method.startswith("ptq") else budget)
                    if method in CODEBOOK_FREE:
                        if key in done_free:
                            continue
                        done_free.add(key)
                    row = run_one(method, reference, codebook, data, budget)
                    if row is not None:
                        rows.append(row)
                        write_results(arch, rows, reference_row)


class _EpochTimer(keras.callbacks.Callback):
    """Wall time and process CPU time (every thread; steal-free) per epoch."""

    def __init__(self):
        super().__init__()
        self.times = []
        self.cpu_times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)
        self.cpu_times.append(time.process_time() - self._cpu_start)


def c_step_ms(arch, codebook, repeats=40):
    """Median wall time of one warm C step (every kernel, multipliers
    updated) of an LC model after one epoch of the default policy on 100
    batches."""
    x, y, _, _ = load_data(arch)
    model = lc.LCModel(ARCHITECTURES[arch](),
                       compression=quantization(codebook))
    model.compile(keras.optimizers.Adam(1e-3),
                  "sparse_categorical_crossentropy")
    n = 100 * FLAGS.batch_size
    model.fit(x[:n], y[:n], batch_size=FLAGS.batch_size, epochs=1,
              callbacks=[lc.MuSchedule.for_budget(1)], verbose=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.c_step(return_distortions=False)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def batch_cpu_ms(arch, batches=200, repeats=6):
    """Median CPU time per batch (process time: both cores, steal-free) of
    plain Keras `fit` and of an LCModel's (μ = 10, no C steps: the proximal
    step and the logged penalty only), interleaved, first repeat dropped."""
    x, y, _, _ = load_data(arch)
    batches = max(1, min(batches, len(x) // FLAGS.batch_size))
    n = batches * FLAGS.batch_size
    x, y = x[:n], y[:n]
    plain = ARCHITECTURES[arch]()
    model = lc.LCModel(ARCHITECTURES[arch](),
                       compression=lc.AdaptiveQuantization(2))
    for m in (plain, model):
        m.compile(keras.optimizers.Adam(1e-3),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build((None,) + x.shape[1:])
    model.direct_compression()
    model.mu = 10.0
    times = {"plain": [], "lc": []}
    for _ in range(repeats):
        for name, m in (("plain", plain), ("lc", model)):
            start = time.process_time()
            m.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, verbose=0,
                  shuffle=False)
            times[name].append(1e3 * (time.process_time() - start) / batches)
    return {k: statistics.median(v[1:]) for k, v in times.items()}


def speed():
    lines = ["| model | plain epoch s | LC epoch s | ratio | plain epoch CPU s "
             "| LC epoch CPU s | CPU ratio | C-step share |",
             "|---|---|---|---|---|---|---|---|"]
    for arch in FLAGS.model:
        x, y, _, _ = load_data(arch)
        plain_times, lc_times, c_time, lc_total = [], [], 0.0, 0.0
        plain_cpu, lc_cpu = [], []
        # The default policy: LCModel defaults, MuSchedule.for_budget
        # (a C step every 20 batches), Adam; the plain run uses Adam too.
        plain = ARCHITECTURES[arch]()
        plain.compile(keras.optimizers.Adam(1e-3),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        model = lc.LCModel(ARCHITECTURES[arch](),
                           compression=lc.AdaptiveQuantization(2))
        model.compile(keras.optimizers.Adam(1e-3),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        schedule = lc.MuSchedule.for_budget(FLAGS.speed_epochs,
                                            step_batches=FLAGS.step_batches,
                                            strict=False)
        original = model.c_step

        def timed_c_step(*args, **kwargs):
            nonlocal c_time
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                c_time += time.perf_counter() - start

        model.c_step = timed_c_step
        for i in range(FLAGS.speed_epochs):
            # Interleave one plain and one LC epoch so both see the same
            # machine load; the first of each (tracing) is dropped.
            timer = _EpochTimer()
            plain.fit(x, y, batch_size=FLAGS.batch_size, epochs=i + 1,
                      initial_epoch=i, callbacks=[timer], verbose=0)
            plain_times += timer.times[-1:] if i else []
            plain_cpu += timer.cpu_times[-1:] if i else []
            timer = _EpochTimer()
            start = time.perf_counter()
            c_before = c_time
            model.fit(x, y, batch_size=FLAGS.batch_size, epochs=i + 1,
                      initial_epoch=i, callbacks=[schedule, timer], verbose=0)
            if i:
                lc_times += timer.times[-1:]
                lc_cpu += timer.cpu_times[-1:]
                lc_total += time.perf_counter() - start
            else:
                c_time = c_before
        p, q = statistics.median(plain_times), statistics.median(lc_times)
        pc, qc = statistics.median(plain_cpu), statistics.median(lc_cpu)
        lines.append(f"| {arch} | {p:.2f} | {q:.2f} | {q / p:.3f} | "
                     f"{pc:.3f} | {qc:.3f} | {qc / pc:.3f} | "
                     f"{100 * c_time / lc_total:.2f}% |")
        print(lines[-1])
    lines += ["", "| K | lc_keras s | lc_keras distortion | sklearn s | "
              "sklearn distortion | speed-up |", "|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    w = rng.normal(size=(1, 1_000_000)).astype(np.float32)
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        KMeans = None
        logging.warning("scikit-learn not installed: no comparison.")
    for k in (4, 16, 256):
        q = lc.AdaptiveQuantization(k)
        q.project(tf.constant(w[:, :1000]))  # warm up eager kernels
        times = []
        for _ in range(3):
            start = time.perf_counter()
            c, z = q.project(tf.constant(w))
            times.append(time.perf_counter() - start)
        ours = min(times)
        d_ours = float(np.mean((w[0] - c.numpy()[0][z.numpy()[0]]) ** 2))
        if KMeans is None:
            lines.append(f"| {k} | {ours:.3f} | {d_ours:.6g} | - | - | - |")
            continue
        start = time.perf_counter()
        km = KMeans(n_clusters=k, n_init=1, random_state=0).fit(
            w[0].reshape(-1, 1))
        theirs = time.perf_counter() - start
        d_theirs = float(km.inertia_ / w.size)
        lines.append(f"| {k} | {ours:.3f} | {d_ours:.6g} | {theirs:.2f} | "
                     f"{d_theirs:.6g} | {theirs / ours:.0f}× |")
        print(lines[-1])
    lines += ["", "| model | codebook | one warm C step, ms (median of 40) |",
              "|---|---|---|"]
    for arch in FLAGS.model:
        for codebook in ("k2", "k4", "st"):
            ms = c_step_ms(arch, codebook)
            lines.append(f"| {arch} | {codebook_label(codebook)} | {ms:.1f} |")
            print(lines[-1])
    lines += ["", "| model | plain CPU ms/batch | LC CPU ms/batch | ratio |",
              "|---|---|---|---|"]
    for arch in FLAGS.model:
        cpu = batch_cpu_ms(arch)
        lines.append(f"| {arch} | {cpu['plain']:.2f} | {cpu['lc']:.2f} | "
                     f"{cpu['lc'] / cpu['plain']:.3f} |")
        print(lines[-1])
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    files.atomic_write_text(os.path.join(FLAGS.out_dir, "speed.md"),
                               "\n".join(lines) + "\n")
    print("\n".join(lines))


def report():
    """One table and one plot per codebook from several quality runs."""
    rows, reference_row = [], None
    for path in FLAGS.inputs:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        reference_row = reference_row or data["reference"]
        rows += data["rows"]
    rows.sort(key=lambda r: (r["codebook"], r["epochs"], r["method"],
                             r.get("seed", 0)))
    write_results(FLAGS.model[0], rows, reference_row)


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.mode == "report":
        report()
    elif FLAGS.mode == "quality":
        quality()
    else:
        speed()


if __name__ == "__main__":
    app.run(main)
