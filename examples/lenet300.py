r"""LeNet300 on Fashion-MNIST: reference, direct compression (DC) and LC.

Trains (or loads) the 784-300-100-10 ReLU reference net, quantizes every
layer's kernel with a K-entry codebook by DC and by LC, and prints a table of
test error, full training loss and compression ratio ρ of each quantized net.

    python examples/lenet300.py                 # K=2, about 3 minutes on 2 cores
    python examples/lenet300.py --k 4 --epochs 30
    python examples/lenet300.py --codebook scaled_ternary --optimizer sgd
"""

import os
import time

from absl import app
from absl import flags
from absl import logging

import keras
import numpy as np

import lc_keras as lc
from lc_keras import codebooks
from lc_keras import files

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Folder with the Fashion-MNIST IDX .gz "
                    "files. Default: Debian's dataset-fashion-mnist path when "
                    "present, else the Keras loader.")
flags.DEFINE_integer("k", 2, "Codebook size for --codebook=adaptive.")
flags.DEFINE_enum("codebook", "adaptive", list(codebooks.NAMES),
                  "Codebook type.")
flags.DEFINE_string("reference", "runs/lenet300_reference.keras",
                    "Reference model: loaded if the file exists, else trained "
                    "and saved there.")
flags.DEFINE_integer("ref_epochs", 30, "Epochs to train the reference.")
flags.DEFINE_integer("epochs", 10, "LC's training budget in epochs "
                     "(MuSchedule.for_budget).")
flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "Optimizer of the L "
                  "steps: Adam, or SGD with Nesterov momentum 0.9.")
flags.DEFINE_float("lr", None, "Learning rate (default: 1e-3 for Adam, 0.1 "
                   "for SGD).")
flags.DEFINE_integer("step_batches", 20, "Batches per L step.")
flags.DEFINE_integer("batch_size", 128, "Minibatch size.")
flags.DEFINE_integer("train_subset", 0, "Use only this many training images "
                     "(0: all); for smoke tests.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", "runs/lenet300_quantized.keras",
                    "Where to save the quantized (plain Keras) model.")
flags.DEFINE_string("tflite", "runs/lenet300_quantized.tflite",
                    "Where to export the TFLite file with packed indices "
                    "(empty: no export).")


def lenet300():
    """The LeNet300 reference architecture: 784-300-100-10, ReLU."""
    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(300, activation="relu", name="dense_1"),
        keras.layers.Dense(100, activation="relu", name="dense_2"),
        keras.layers.Dense(10, activation="softmax", name="dense_3"),
    ], name="lenet300")


def sgd(lr):
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)


def lc_optimizer():
    if FLAGS.optimizer == "sgd":
        return sgd(FLAGS.lr or 0.1)
    return keras.optimizers.Adam(FLAGS.lr or 1e-3)


def make_codebook():
    if FLAGS.codebook == "adaptive":
        return lc.get_codebook("adaptive", k=FLAGS.k)
    return lc.get_codebook(FLAGS.codebook)


def train_reference(x, y, xt, yt):
    model = lenet300()
    model.compile(sgd(0.1), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    decay = keras.callbacks.LearningRateScheduler(lambda e: 0.1 * 0.9 ** e)
    model.fit(x, y, batch_size=FLAGS.batch_size, epochs=FLAGS.ref_epochs,
              validation_data=(xt, yt), callbacks=[decay], verbose=2)
    return model


def measure(model, x, y, xt, yt, **kwargs):
    """(test error %, full training loss) of a compiled model."""
    _, acc = model.evaluate(xt, yt, batch_size=1024, verbose=0, **kwargs)
    loss, _ = model.evaluate(x, y, batch_size=1024, verbose=0, **kwargs)
    return 100.0 * (1.0 - acc), loss


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    (x, y), (xt, yt) = lc.datasets.load_fashion_mnist(FLAGS.data_dir)
    x, xt = lc.datasets.flatten_images(x), lc.datasets.flatten_images(xt)
    if FLAGS.train_subset:
        x, y = x[:FLAGS.train_subset], y[:FLAGS.train_subset]

    ref_seconds = float("nan")  # loaded, not trained, in this run
    if os.path.exists(FLAGS.reference):
        logging.info("Loading the reference from %s", FLAGS.reference)
        reference = keras.models.load_model(FLAGS.reference)
    else:
        start = time.time()
        reference = train_reference(x, y, xt, yt)
        ref_seconds = time.time() - start
        os.makedirs(os.path.dirname(FLAGS.reference) or ".", exist_ok=True)
        with files.atomic_path(FLAGS.reference) as tmp:
            reference.save(tmp)
    rows = [("reference (float)",) + measure(reference, x, y, xt, yt)
            + (1.0, FLAGS.ref_epochs, ref_seconds)]

    def lc_model():
        # A fresh copy of the reference each time: LC trains it in place.
        net = keras.models.clone_model(reference)
        net.set_weights(reference.get_weights())
        model = lc.LCModel(net, compression=make_codebook())
        model.compile(lc_optimizer(), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    start = time.time()
    dc = lc_model()
    dc.direct_compression()
    rows.append(("DC",) + measure(dc, x, y, xt, yt)
                + (lc.compression_ratio(dc), 0, time.time() - start))

    model = lc_model()
    schedule = lc.MuSchedule.for_budget(FLAGS.epochs,
                                        step_batches=FLAGS.step_batches)
    start = time.time()
    model.fit(x, y, batch_size=FLAGS.batch_size,
              epochs=schedule.total_epochs, validation_data=(xt, yt),
              callbacks=[schedule], verbose=2)
    seconds = time.time() - start
    rows.append(("LC",) + measure(model, x, y, xt, yt)
                + (lc.compression_ratio(model), schedule.total_epochs,
                   seconds))

    quantized = model.quantized_model()
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with files.atomic_path(FLAGS.out) as tmp:
        quantized.save(tmp)

    name = (f"K={FLAGS.k}" if FLAGS.codebook == "adaptive"
            else FLAGS.codebook)
    print(f"\nLeNet300 on Fashion-MNIST, {name}, every layer quantized\n")
    print("| net | test error % | train loss | rho | epochs | seconds |")
    print("|---|---|---|---|---|---|")
    for label, err, loss, rho, epochs, secs in rows:
        secs = "-" if secs != secs else f"{secs:.0f}"
        print(f"| {label} | {err:.2f} | {loss:.4f} | {rho:.1f} | {epochs} | "
              f"{secs} |")
    print(f"\nQuantized model saved to {FLAGS.out}")
    if FLAGS.tflite:
        exported = lc.export_tflite(model, FLAGS.tflite)
        float_bytes = 4 * sum(int(np.prod(w.shape)) for w in reference.weights)
        print(f"TFLite file {FLAGS.tflite}: {exported.size_bytes:,} bytes "
              f"(float32 weights alone: {float_bytes:,} bytes)")


if __name__ == "__main__":
    app.run(main)
