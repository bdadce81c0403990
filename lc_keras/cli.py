r"""Command line: compress a saved Keras model with LC.

    python -m lc_keras compress --model ref.keras --dataset fashion_mnist \
        --k 2 --out q.keras --tflite q.tflite

Loads the reference model, wraps it in an `LCModel` (every compressible kernel
gets the chosen codebook), trains it with `MuSchedule.for_budget(--budget)`
(Adam by default; `--budget 0`: the epoch-grid `MuSchedule` with SGD and
Nesterov momentum), logs one line per epoch (per LC step on the epoch grid),
saves the quantized plain Keras model
(and, if asked, the `LCModel`, a `.tflite` file, the training history), and
prints the test error and the `summary` table.

Datasets work offline: `fashion_mnist` (Debian's `dataset-fashion-mnist`
files, `--data_dir`, or the Keras downloader as a last resort) or a `.npz`
file with `x_train`/`y_train`/`x_test`/`y_test` (or `x`/`y`) arrays. Inputs
are scaled (uint8 / 255) and reshaped to the model's input shape.

The flags live in their own `absl.flags.FlagValues`, so importing this module
defines no global flags; absl's own flags (`--verbosity`, `--logtostderr`,
...) are still accepted by `python -m lc_keras`.
"""

import csv
import io
import json
import math
import os
import sys

from absl import app
from absl import flags
from absl import logging

import keras
import numpy as np

import lc_keras as lc
from lc_keras import codebooks
from lc_keras import datasets
from lc_keras import files
from lc_keras.export import export_tflite
from lc_keras.summary import profile as profile_of
from lc_keras.summary import summary

CODEBOOKS = codebooks.NAMES
COMMANDS = ("compress",)
USAGE = """\
usage: python -m lc_keras compress --model MODEL.keras --dataset DATASET \
[flags]

Compresses a trained Keras model by learning-compression quantization.
DATASET is `fashion_mnist` or a path to a .npz file with x_train, y_train,
x_test, y_test (or x, y) arrays.
"""


def define_flags(flag_values=None):
    """Defines the flags of `python -m lc_keras compress`.

    Args:
        flag_values: The `absl.flags.FlagValues` to define them in; a new one
            by default (the global `absl.flags.FLAGS` is left alone).

    Returns:
        The `FlagValues`.

    Example:

    >>> fv = define_flags()
    >>> _ = fv(["lc_keras", "compress", "--k", "4", "--codebook=adaptive"])
    >>> fv.k, fv.codebook, fv.optimizer_momentum
    (4, 'adaptive', 0.9)
    """
    fv = flags.FlagValues() if flag_values is None else flag_values
    d = dict(flag_values=fv)
    flags.DEFINE_string("model", None, "Trained reference Keras model "
                        "(.keras) to compress.", **d)
    flags.DEFINE_string("dataset", "fashion_mnist", "`fashion_mnist`, or a "
                        ".npz file with x_train, y_train, x_test, y_test (or "
                        "x, y) arrays.", **d)
    flags.DEFINE_string("data_dir", None, "Folder with the Fashion-MNIST IDX "
                        ".gz files (default: Debian's dataset-fashion-mnist, "
                        "else the Keras downloader).", **d)
    flags.DEFINE_integer("train_subset", 0, "Use only the first N training "
                         "examples (0: all).", **d)
    flags.DEFINE_enum("codebook", "adaptive", list(CODEBOOKS),
                      "Codebook type of every compressed kernel.", **d)
    flags.DEFINE_integer("k", 2, "Codebook size for --codebook=adaptive.", **d)
    flags.DEFINE_integer("bits", codebooks.DEFAULT_BITS,
                         "Bits for --codebook=uniform (2 to 8).", **d)
    flags.DEFINE_bool("per_channel", False, "One codebook per output channel.",
                      **d)
    flags.DEFINE_list("keep_float", [], "Layer names or glob patterns whose "
                      "kernels stay float.", **d)
    flags.DEFINE_integer("budget", 10, "Training budget in epochs: LC with "
                         "MuSchedule.for_budget (the default policy), with "
                         "--optimizer, --lr and --step_batches. 0: the "
                         "paper's epoch-grid schedule of --mu0, --growth, "
                         "--steps, --epochs_per_step, --first_step_epochs and "
                         "--lr_decay, with SGD (Nesterov) at --lr.", **d)
    flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "Optimizer of "
                      "a --budget run: Adam, or SGD with Nesterov momentum "
                      "--optimizer_momentum.", **d)
    flags.DEFINE_integer("step_batches", 20, "Batches per L step of a "
                         "--budget run.", **d)
    flags.DEFINE_float("mu0", 1e-4, "mu of the first L step.", **d)
    flags.DEFINE_float("growth", 1.4, "Growth of mu per LC step.", **d)
    flags.DEFINE_integer("steps", 30, "LC steps.", **d)
    flags.DEFINE_integer("epochs_per_step", 2, "Epochs per L step.", **d)
    flags.DEFINE_integer("first_step_epochs", None, "Epochs of the first L "
                         "step (default: --epochs_per_step).", **d)
    flags.DEFINE_float("lr", None, "Learning rate of the L steps (default: "
                       "1e-3 for Adam, 0.1 for SGD).", **d)
    flags.DEFINE_float("optimizer_momentum", 0.9, "Nesterov momentum.", **d)
    flags.DEFINE_float("lr_decay", 0.85, "Learning-rate decay per LC step "
                       "(1: none).", **d)
    flags.DEFINE_integer("batch_size", 128, "Minibatch size.", **d)
    flags.DEFINE_string("loss", None, "Loss (a Keras loss name). Default: the "
                        "reference's compiled loss, else sparse categorical "
                        "cross-entropy (from logits unless the last layer is "
                        "a softmax).", **d)
    flags.DEFINE_integer("seed", 0, "Random seed.", **d)
    flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (0, 1: progress "
                         "bar, 2: one line per epoch).", **d)
    flags.DEFINE_string("out", None, "Where to save the quantized plain Keras "
                        "model (.keras).", **d)
    flags.DEFINE_string("save_lc", None, "Where to save the trained LCModel "
                        "(.keras; continuous weights, codebooks; for "
                        "tools/plot_lc.py --model).", **d)
    flags.DEFINE_string("tflite", None, "Where to export the quantized model "
                        "as .tflite (packed indices + codebooks).", **d)
    flags.DEFINE_string("history", None, "Where to write the training "
                        "history (JSON: {metric: [value per epoch]}).", **d)
    flags.DEFINE_string("results", None, "CSV file to append one results row "
                        "to (method,codebook,k,rho,test_error,...; read by "
                        "tools/plot_lc.py --results).", **d)
    flags.DEFINE_string("tensorboard", None, "TensorBoard log folder "
                        "(needs the tensorboard package).", **d)
    return fv


def _check(fv):
    if not fv.model:
        raise app.UsageError("--model is required: the trained reference "
                             "Keras model (.keras) to compress.")
    if not os.path.exists(fv.model):
        raise app.UsageError(f"--model {fv.model!r} does not exist.")
    if fv.dataset != "fashion_mnist" and not os.path.exists(fv.dataset):
        raise app.UsageError(
            f"--dataset must be `fashion_mnist` or an existing .npz file. "
            f"Received: {fv.dataset!r}")
    if fv.budget < 0:
        raise app.UsageError(f"--budget must be >= 0. Received: {fv.budget}")
    if fv.lr is not None and not fv.lr > 0:
        raise app.UsageError(f"--lr must be > 0. Received: {fv.lr}")
    for name in ("k", "steps", "epochs_per_step", "batch_size",
                 "step_batches"):
        if getattr(fv, name) < 1:
            raise app.UsageError(f"--{name} must be >= 1. Received: "
                                 f"{getattr(fv, name)}")
    if fv.first_step_epochs is not None and fv.first_step_epochs < 1:
        raise app.UsageError("--first_step_epochs must be >= 1.")
    if fv.tflite and not fv.tflite.endswith(".tflite"):
        raise app.UsageError(f"--tflite must end in .tflite. Received: "
                             f"{fv.tflite!r}")
    for name in ("out", "save_lc"):
        path = getattr(fv, name)
        if path and not path.endswith(".keras"):
            raise app.UsageError(f"--{name} must end in .keras. Received: "
                                 f"{path!r}")
    # Every output is checked before the data is loaded and the run starts,
    # so that a bad path does not cost a whole run.
    for name in ("out", "save_lc", "tflite", "history", "results"):
        path = getattr(fv, name)
        if not path:
            continue
        try:
            try:
                files.check_writable(path, f"--{name}")
            except FileNotFoundError:  # a folder we create
                files.check_writable(_folder_for(path), f"--{name}")
        except OSError as error:
            raise app.UsageError(str(error)) from None


def load_data(dataset, data_dir=None):
    """Loads `((x_train, y_train), (x_test, y_test))` for the command line.

    Args:
        dataset: `"fashion_mnist"`, or the path of a `.npz` file.
        data_dir: Folder with the Fashion-MNIST IDX files (optional).

    Returns:
        The two `(x, y)` splits as numpy arrays.

    Example:

    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, x=np.zeros((4, 3), np.float32), y=np.arange(4))
    >>> (x, y), (xt, yt) = load_data(path)
    >>> x.shape, yt.tolist()
    ((4, 3), [0, 1, 2, 3])
    """
    if dataset == "fashion_mnist":
        return datasets.load_fashion_mnist(data_dir)
    return datasets.load_npz(dataset)


def prepare_inputs(x, model):
    """Scales and reshapes an input array for a model's input.

    uint8 arrays are divided by 255; every array becomes float32 and is
    reshaped to the model's input shape when the sizes agree (e.g. 28×28
    images for a model with a 784-wide input).

    Args:
        x: numpy array, one example per row.
        model: A built `keras.Model` with one input.

    Returns:
        The float32 array.

    Example:

    >>> import keras, numpy as np
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> prepare_inputs(np.full((3, 2, 2), 255, np.uint8), net).shape
    (3, 4)
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.number):
        x = x.astype(np.float32)
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs and len(inputs) == 1:
        shape = tuple(inputs[0].shape[1:])
        if None not in shape and tuple(x.shape[1:]) != shape:
            if int(np.prod(shape)) != int(np.prod(x.shape[1:])):
                raise ValueError(
                    f"The dataset's examples have shape {x.shape[1:]}, which "
                    f"does not fit the model's input shape {shape}.")
            x = x.reshape((len(x),) + shape)
    return x


def _codebook(fv):
    """The codebook of every compressed kernel (--codebook, --k, --bits)."""
    kwargs = {"per_channel": fv.per_channel}
    if fv.codebook == "adaptive":
        kwargs["k"] = fv.k
    if fv.codebook == "uniform":
        kwargs["bits"] = fv.bits
    return codebooks.get(fv.codebook, **kwargs)


def _loss(fv, reference):
    """(loss, metrics) for compiling the LC model."""
    loss = fv.loss
    if not loss and getattr(reference, "compiled", False):
        loss = getattr(reference, "loss", None)
    if not loss:
        last = reference.layers[-1] if reference.layers else None
        activation = getattr(getattr(last, "activation", None), "__name__", "")
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=activation != "softmax")
    name = loss if isinstance(loss, str) else (
        getattr(loss, "name", None) or type(loss).__name__)
    metrics = ["accuracy"] if "crossentropy" in str(name).lower() else []
    return loss, metrics


def _optimizer(fv):
    """Adam or SGD (Nesterov) for a budget run; SGD for the epoch grid."""
    if fv.budget and fv.optimizer == "adam":
        return keras.optimizers.Adam(fv.lr or 1e-3)
    return keras.optimizers.SGD(fv.lr or 0.1, momentum=fv.optimizer_momentum,
                                nesterov=True)


def _schedule(fv):
    if fv.budget:
        return lc.MuSchedule.for_budget(fv.budget,
                                        step_batches=fv.step_batches)
    lr_decay = fv.lr_decay if fv.lr_decay and fv.lr_decay != 1 else None
    return lc.MuSchedule(
        mu0=fv.mu0, growth=fv.growth, steps=fv.steps,
        epochs_per_step=fv.epochs_per_step,
        first_step_epochs=fv.first_step_epochs, lr_decay=lr_decay)


class StepLogger(keras.callbacks.Callback):
    """Logs one line per LC step through absl logging.

    The line has the step, μ, the epoch's loss and penalty, its validation
    metrics (those of the quantized net) and the distortion ‖w − Δ(Θ)‖²
    summed over the kernels. Put it after the `MuSchedule` in the callback
    list, so that the LC logs are there.

    Args:
        schedule: The `MuSchedule` of the run.

    Example:

    >>> import lc_keras as lc
    >>> logger = StepLogger(lc.MuSchedule(steps=3, epochs_per_step=1))
    >>> logger.format(0, {"lc_mu": 1e-4, "loss": 0.5, "lc_penalty": 0.01,
    ...                   "val_accuracy": 0.9, "lc_distortion": 2.0})
    'LC step 1/3 (epoch 1): mu=0.0001 loss=0.5 lc_penalty=0.01 val_accuracy=0.9 distortion=2'
    >>> StepLogger(lc.MuSchedule.for_budget(5)).format(1, {"lc_step": 47})
    'LC epoch 2/5 (47 C steps): mu=nan'
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == (self.params or {}).get("epochs")
        budget = self.schedule.budget is not None
        if budget or self.schedule.ends_step(epoch) or last:
            logging.info("%s", self.format(epoch, logs or {}))

    def format(self, epoch, logs):
        """The log line of epoch `epoch` (0-based) with its epoch logs."""
        if self.schedule.budget is not None:  # C steps between batches
            head = (f"LC epoch {epoch + 1}/{self.schedule.total_epochs} "
                    f"({int(logs.get('lc_step', 0))} C steps):")
        else:
            step = self.schedule.step_of_epoch(epoch)
            head = (f"LC step {step + 1}/{self.schedule.steps} "
                    f"(epoch {epoch + 1}):")
        parts = [head, f"mu={float(logs.get('lc_mu', float('nan'))):.4g}"]
        for key in ("loss", "lc_penalty"):
            if key in logs:
                parts.append(f"{key}={float(logs[key]):.4g}")
        parts += [f"{k}={float(v):.4g}" for k, v in logs.items()
                  if k.startswith("val_")]
        if "lc_distortion" in logs:
            parts.append(f"distortion={float(logs['lc_distortion']):.4g}")
        return " ".join(parts)


def _error(model, x, y, batch_size):
    results = model.evaluate(x, y, batch_size=max(batch_size, 256),
                             verbose=0, return_dict=True)
    if "accuracy" in results:
        return 100.0 * (1.0 - float(results["accuracy"])), results
    return float("nan"), results


def _folder_for(path):
    """Creates the folder of an output file; returns the path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return path


def _write_json(path, data):
    files.atomic_write_text(_folder_for(path), json.dumps(data, indent=1))


def _save(model, path):
    with files.atomic_path(_folder_for(path)) as tmp:
        model.save(tmp)


def history_dict(history):
    """A JSON-ready dict of a Keras `History`: `{"epoch": [...], key: [...]}`.

    Args:
        history: A `keras.callbacks.History` (what `fit` returns).

    Returns:
        A dict of lists of floats (ints for `epoch`).

    Example:

    >>> import keras
    >>> h = keras.callbacks.History()
    >>> h.epoch, h.history = [0, 1], {"loss": [0.5, 0.25]}
    >>> history_dict(h)
    {'epoch': [0, 1], 'loss': [0.5, 0.25]}
    """
    data = {"epoch": [int(e) for e in history.epoch]}
    for key, values in history.history.items():
        data[key] = [float(v) for v in values]
    return data


def append_result(path, row):
    """Appends one row to a results CSV (writing the header if it is new).

    Args:
        path: CSV file; created with a header line if missing.
        row: dict of column name to value; an existing file keeps its
            columns (missing values are left empty, unknown ones dropped).

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "results.csv")
    >>> append_result(path, {"method": "LC", "rho": 30.5, "test_error": 12})
    >>> print(open(path).read().strip())
    method,rho,test_error
    LC,30.5,12
    """
    columns, text = list(row), ""
    if os.path.exists(path) and os.path.getsize(path):
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
        columns = next(csv.reader(io.StringIO(text)))
        if not text.endswith("\n"):
            text += "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore",
                            lineterminator="\n")
    if not text:
        writer.writeheader()
    writer.writerow(row)
    files.atomic_write_text(_folder_for(path), text + out.getvalue())


def _load(fv):
    """The reference model, its evaluation copy and the prepared data."""
    # Two copies: one keeps the saved compile state (loss) and is compiled
    # to measure the reference; LC trains the other, uncompiled, so that no
    # optimizer of ours is saved inside the LCModel.
    evaluation = lc.load_model(fv.model)
    reference = lc.load_model(fv.model, compile=False)
    if isinstance(reference, lc.LCModel):
        raise app.UsageError(
            f"--model {fv.model!r} is an LCModel; pass the float reference "
            "model (or its `.net`).")
    (x, y), (xt, yt) = load_data(fv.dataset, fv.data_dir)
    x, xt = prepare_inputs(x, reference), prepare_inputs(xt, reference)
    if fv.train_subset:
        x, y = x[:fv.train_subset], y[:fv.train_subset]
    logging.info("Data: %d training and %d test examples of shape %s.",
                 len(x), len(xt), x.shape[1:])
    return evaluation, reference, (x, y, xt, yt)


def _train(fv, reference, loss, metrics, data):
    """Wraps the reference in an LCModel and trains it; (model, schedule,
    history dict)."""
    x, y, xt, yt = data
    spec = _codebook(fv)
    if fv.keep_float:
        spec = {"*": spec, **{name: None for name in fv.keep_float}}
    model = lc.LCModel(reference, compression=spec,
                       name=f"lc_{reference.name}")
    model.compile(optimizer=_optimizer(fv), loss=loss, metrics=metrics)
    schedule = _schedule(fv)
    callbacks = [schedule, StepLogger(schedule)]
    if fv.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(fv.tensorboard))
    logging.info("LC: %d epochs, %s, codebook %r.", schedule.total_epochs,
                 schedule.get_config(), spec)
    history = model.fit(
        x, y, batch_size=fv.batch_size, epochs=schedule.total_epochs,
        validation_data=(xt, yt), callbacks=callbacks, verbose=fv.verbose)
    history = history_dict(history)
    if fv.history:
        _write_json(fv.history, history)
    return model, schedule, history


def _write_outputs(fv, model, profile, schedule, errors):
    """Saves the models, the TFLite file and the results row that were asked
    for; returns the `TFLiteExport` or None."""
    test_error, reference_error = errors
    if fv.out:
        _save(model.quantized_model(), fv.out)
    if fv.save_lc:
        _save(model, fv.save_lc)
    exported = None
    if fv.tflite:
        exported = export_tflite(model, _folder_for(fv.tflite))
    if fv.results:
        append_result(fv.results, {
            "method": "LC", "codebook": fv.codebook,
            "k": fv.k if fv.codebook == "adaptive" else "",
            "per_channel": int(fv.per_channel),
            "rho": f"{profile.paper_ratio:.4g}",
            "test_error": f"{test_error:.4g}",
            "reference_error": f"{reference_error:.4g}",
            "epochs": schedule.total_epochs, "model": fv.model})
    return exported


def _report(fv, profile, errors, exported, print_fn):
    """Prints the summary table, the errors and the files written."""
    test_error, reference_error = errors
    summary(profile, print_fn=print_fn)
    if not math.isnan(test_error):
        print_fn(f"Test error: {test_error:.2f}% quantized, "
                 f"{reference_error:.2f}% reference.")
    for label, path in (("quantized model", fv.out), ("LC model", fv.save_lc),
                        ("history", fv.history), ("results", fv.results)):
        if path:
            print_fn(f"Wrote {label}: {path}")
    if exported is not None:
        print_fn(f"Wrote TFLite: {exported.path} ({exported.size_bytes:,} "
                 f"bytes; indices {exported.index_bytes:,}, codebooks "
                 f"{exported.codebook_bytes:,}).")


def compress(fv, print_fn=print):
    """Runs `compress` with parsed flags (see `define_flags`).

    The phases: check the flags, load the reference and the data, measure
    the reference, train the LC model, write the outputs, report.

    Args:
        fv: Parsed `FlagValues` from `define_flags`.
        print_fn: Receives the final report, line by line.

    Returns:
        A dict: `model` (the trained `LCModel`), `profile` (its
        `ModelProfile`), `test_error` and `reference_error` (percent; NaN
        without an accuracy metric), `history` (dict), `tflite` (the
        `TFLiteExport`, or None).

    Example:

    >>> fv = define_flags()
    >>> _ = fv(["lc_keras", "--model", "ref.keras", "--out", "q.keras"])
    >>> result = compress(fv)  # doctest: +SKIP
    """
    _check(fv)
    keras.utils.set_random_seed(fv.seed)
    evaluation, reference, data = _load(fv)
    loss, metrics = _loss(fv, evaluation)
    evaluation.compile(loss=loss, metrics=metrics)
    reference_error, _ = _error(evaluation, data[2], data[3], fv.batch_size)
    del evaluation

    model, schedule, history = _train(fv, reference, loss, metrics, data)
    test_error, _ = _error(model, data[2], data[3], fv.batch_size)
    profile = profile_of(model)
    errors = (test_error, reference_error)
    exported = _write_outputs(fv, model, profile, schedule, errors)
    _report(fv, profile, errors, exported, print_fn)
    return {"model": model, "profile": profile, "test_error": test_error,
            "reference_error": reference_error, "history": history,
            "tflite": exported}


def _dispatch(fv, args, print_fn):
    command = args[1] if len(args) > 1 else None
    if command not in COMMANDS or len(args) > 2:
        raise app.UsageError(
            f"Expected one command from {list(COMMANDS)}. Received: "
            f"{args[1:]}. Run `python -m lc_keras --help`.")
    return compress(fv, print_fn=print_fn)


def main(argv, print_fn=print):
    """Runs the command line in-process (no `sys.exit`, no global flags).

    Args:
        argv: The full argument list, program name first, e.g.
            `["lc_keras", "compress", "--model", "ref.keras", ...]`.
        print_fn: Receives the final report, line by line.

    Returns:
        What the command returns (`compress`: a dict, see `compress`).

    Raises:
        absl.app.UsageError: for a missing command or a bad flag value.
        absl.flags.Error: for an unknown flag.

    Example:

    >>> main(["lc_keras", "shrink"])
    Traceback (most recent call last):
    ...
    absl.app.UsageError: Expected one command from ['compress']. ...
    """
    fv = define_flags()
    args = fv(list(argv))
    return _dispatch(fv, args, print_fn)


def run(argv=None):
    """Entry point of `python -m lc_keras`: absl's `app.run` with our flags.

    Args:
        argv: Arguments (default `sys.argv`).

    Example:

    >>> run(["lc_keras", "compress", "--help"])  # prints the flags, exits
    Traceback (most recent call last):
    SystemExit: 0
    """
    fv = define_flags()

    def parse(argv):
        if any(a in ("-h", "-?", "--help", "--helpshort", "--helpfull")
               for a in argv[1:]):
            sys.stdout.write(USAGE + "\nflags:\n" + fv.get_help() + "\n")
            sys.exit(0)
        try:
            rest = fv(argv, known_only=True)
            return flags.FLAGS(rest)  # absl's own flags (--verbosity, ...)
        except flags.Error as e:
            sys.stderr.write(f"FATAL Flags parsing error: {e}\n"
                             "Pass --help for the flags.\n")
            sys.exit(1)

    def entry(args):
        _dispatch(fv, args, print)

    app.run(entry, argv=argv if argv is not None else sys.argv,
            flags_parser=parse)
