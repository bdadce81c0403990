"""`LCModel`: a Keras model trained by learning-compression (LC).

The model adds the LC penalty μ/2·Σ‖w − Δ(Θ) − λ/μ‖² to the loss in its
training step (`compute_loss`), evaluates and predicts with the quantized
kernels Δ(Θ) by default, and runs C steps (projections of w − λ/μ onto the
codebooks) when asked — normally by the `MuSchedule` callback between L steps.
"""

import contextlib
import gc
import json
import os
import shutil
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lc_keras import checks
from lc_keras import files
from lc_keras import spec as spec_lib
from lc_keras.quantized import QuantizedKernel

_PENALTIES = ("augmented", "feedback", "quadratic")
# Penalties whose multipliers λ are updated (and shift the C step).
_WITH_MULTIPLIERS = ("augmented", "feedback")
_PENALTY_STEPS = ("proximal", "gradient")

# The LCModel wrapping each reference model (by id), to refuse a second one.
_WRAPPERS = weakref.WeakValueDictionary()

# The files of `keras.callbacks.BackupAndRestore` in its `backup_dir`, and
# the suffix of the previous pair that `double_checkpoint=True` keeps.
_BACKUP_WEIGHTS = "latest.weights.h5"
_BACKUP_METADATA = "training_metadata.json"
_PREVIOUS = ".bkp"


def _safe(path):
    return path.replace("/", "__").replace(":", "_")


class _Untracked:
    """A holder Keras does not look into (so its metrics stay private)."""

    def __init__(self, penalty):
        self.penalty = penalty


class _LCState(keras.layers.Layer):
    """Holds the LC variables of an `LCModel` (μ, λ, codebooks, indices).

    It is a sublayer so that its variables are saved with the model. Its
    variables are created once the compressed kernels are known; it is never
    `build()`-ed, so its state stays open for that.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.groups = None

    def create(self, groups):
        self.groups = groups

        def weight(name, shape, dtype="float32", value="zeros"):
            return self.add_weight(
                shape=shape, dtype=dtype, initializer=value, trainable=False,
                autocast=False, name=name)

        self.mu = weight("mu", ())
        self.steps = weight("c_steps", (), dtype="int32")
        self.base_lr = weight("base_learning_rate", (), value="zeros")
        # Where a `MuSchedule` left this state: the number of schedule epochs
        # it holds, and whether it was saved inside an epoch (see
        # `lc_keras.schedule`), so that a resumed run can be checked.
        self.epoch = weight("schedule_epoch", (), dtype="int32")
        self.phase = weight("schedule_phase", (), dtype="int32")
        self.codebooks = []
        self.lambdas, self.targets, self.indices = [], [], []
        # anchor = Δ(Θ) + λ/μ, kept up to date whenever μ, λ or Θ change, so
        # that the training step computes μ/2·‖w − anchor‖² with one subtract.
        self.anchors = []
        for group in groups:
            rows = group.kernels[0].channels if group.per_channel else 1
            self.codebooks.append(weight(
                f"codebook_{_safe(group.name)}",
                (rows, group.quantization.num_entries)))
            for ref in group.kernels:
                shape = tuple(ref.variable.shape)
                name = _safe(ref.path)
                self.lambdas.append(weight(f"lambda_{name}", shape))
                self.targets.append(weight(f"target_{name}", shape))
                self.anchors.append(weight(f"anchor_{name}", shape))
                self.indices.append(
                    weight(f"indices_{name}", shape, dtype="int32"))
        self.built = True

    def call(self, inputs):  # pragma: no cover - never called
        return inputs


@tf.custom_gradient
def _half_squared_distance(w, anchor, mu):
    """μ/2·‖w − anchor‖², with its gradient μ·(w − anchor) written out.

    Autodiff of `reduce_sum(square(w − anchor))` materialises several
    kernel-sized tensors per step (the broadcast of the sum's gradient, 2·x,
    the product); on a small net like LeNet300 that was ~15% of the step
    time. One dot product forward and one scaled difference backward do the
    same work.
    """
    d = w - anchor
    flat = tf.reshape(d, [-1])
    value = 0.5 * mu * tf.tensordot(flat, flat, 1)

    def grad(upstream):
        return upstream * mu * d, None, None

    return value, grad


def _to_rows(w, ref, group):
    """Flattens one kernel into the [rows, n] layout of its group."""
    if group.per_channel:
        axes = tuple(ref.channel_axes)
        rest = tuple(a for a in range(len(w.shape)) if a not in axes)
        w = tf.transpose(w, axes + rest)
        return tf.reshape(w, [ref.channels, -1])
    return tf.reshape(w, [1, -1])


def _from_rows(rows, ref, group):
    """Inverse of `_to_rows` for one kernel."""
    shape = [int(d) for d in ref.variable.shape]
    if group.per_channel:
        axes = tuple(ref.channel_axes)
        rest = tuple(a for a in range(len(shape)) if a not in axes)
        perm = axes + rest
        t = tf.reshape(rows, [shape[a] for a in perm])
        return tf.transpose(t, np.argsort(perm))
    return tf.reshape(rows, shape)


def _multi_worker(strategy):
    """Whether `strategy` is a MultiWorkerMirroredStrategy over > 1 worker."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return sum(len(spec.get(job, ())) for job in ("chief", "worker")) > 1


def _callback_items(callbacks):
    if isinstance(callbacks, keras.callbacks.CallbackList):
        return list(callbacks.callbacks)
    return list(keras.tree.flatten(callbacks))


def _schedule_first(callbacks):
    """Puts the `MuSchedule`s of a callback list first; checks resumability.

    Also turns on `double_checkpoint` in every `BackupAndRestore` (see
    `LCModel.fit`). Returns a new list (a `CallbackList` is reordered in
    place).
    """
    from lc_keras.schedule import MuSchedule  # circular at import time

    if callbacks is None:
        return None
    container = callbacks
    items = _callback_items(callbacks)
    for c in items:
        if (isinstance(c, keras.callbacks.BackupAndRestore)
                and not c.double_checkpoint):
            c.double_checkpoint = True
            logging.info(
                "LCModel.fit turned on double_checkpoint in "
                "BackupAndRestore(backup_dir=%r), so that a run killed while "
                "it writes resumes from the previous backup.", c.backup_dir)
    schedules = [c for c in items if isinstance(c, MuSchedule)]
    if not schedules:
        return callbacks
    if len(schedules) > 1:
        raise ValueError(
            "LCModel.fit requires at most one MuSchedule among the "
            f"callbacks (each would run its own C steps and multiplier "
            f"updates). Received: {len(schedules)} MuSchedule callbacks")
    for c in items:
        if (isinstance(c, keras.callbacks.BackupAndRestore)
                and c.save_freq != "epoch"):
            raise ValueError(
                "LC runs cannot be resumed exactly from a backup saved in "
                "the middle of an epoch: Keras restarts a restored epoch from "
                "its first batch, so the batches before the backup would be "
                "trained twice before the next C step. Received "
                f"BackupAndRestore(save_freq={c.save_freq!r}) together with a "
                "MuSchedule; use save_freq=\"epoch\" (the default), which "
                "resumes the run exactly.")
    ordered = schedules + [c for c in items if not isinstance(c, MuSchedule)]
    if isinstance(container, keras.callbacks.CallbackList):
        container.callbacks[:] = ordered
        return container
    return ordered


def _backup_paths(backup):
    """(weights, metadata, previous weights, previous metadata) paths."""
    weights = os.path.join(backup.backup_dir, _BACKUP_WEIGHTS)
    metadata = os.path.join(backup.backup_dir, _BACKUP_METADATA)
    return weights, metadata, weights + _PREVIOUS, metadata + _PREVIOUS


def _backup_epoch(path):
    """The epoch a BackupAndRestore metadata file holds, or None."""
    try:
        with open(path) as f:
            epoch = json.load(f)["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and epoch >= 0 else None


def _copy_atomic(source, target):
    with files.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _repair_backup(backup):
    """Makes the files a killed run left in a backup folder loadable.

    `BackupAndRestore` writes the weights, then the metadata (the epoch),
    in place. A kill while it writes the metadata leaves it empty or cut,
    and Keras then fails on every restart (it only falls back to the
    previous pair for unreadable weights); a kill before the first metadata
    is written leaves weights without one. Either way the previous pair
    (kept by `double_checkpoint`) is put back, or, without one, the backup
    is removed so that the run starts over (from the same weights, so that
    it ends where an uninterrupted run would).
    """
    weights, metadata, old_weights, old_metadata = _backup_paths(backup)
    if not (os.path.exists(weights) or os.path.exists(metadata)):
        return
    if os.path.exists(weights) and _backup_epoch(metadata) is not None:
        return  # loadable (Keras falls back to the previous weights itself)
    if os.path.exists(old_weights) and _backup_epoch(old_metadata) is not None:
        _copy_atomic(old_weights, weights)
        _copy_atomic(old_metadata, metadata)
        logging.warning(
            "The backup in %r was cut while it was written (metadata "
            "unreadable or missing); restored the previous backup, of epoch "
            "%d.", backup.backup_dir, _backup_epoch(metadata))
        return
    for path in (weights, metadata, old_weights, old_metadata):
        if os.path.exists(path):
            os.remove(path)
    logging.warning(
        "The backup in %r was cut while it was written and there is no "
        "previous one; starting the run over.", backup.backup_dir)


def _leading_size(x):
    """The number of samples in `x` when it is cheap to tell, else None."""
    if isinstance(x, tf.data.Dataset):
        cardinality = int(x.cardinality().numpy())
        return 0 if cardinality == 0 else None
    if x is None:
        return None
    for leaf in keras.tree.flatten(x):
        shape = getattr(leaf, "shape", None)
        if shape is not None and len(shape) and shape[0] is not None:
            return int(shape[0])
    return None


@keras.saving.register_keras_serializable(package="lc_keras")
class LCModel(keras.Model):
    """A Keras model trained by learning-compression quantization.

    Wrap a trained, built model (`LCModel(reference, compression=...)`), or
    subclass `LCModel` with your own layers and `call()`, passing the spec to
    `super().__init__(compression=...)`. Then `compile` and `fit` with a
    `MuSchedule` callback as usual.

    During `fit`, the loss is the model's loss plus the LC penalty
    μ/2·Σ‖w − Δ(Θ) − λ/μ‖² (a SUM over the compressed weights); the logs show
    `lc_penalty` and `lc_mu`. `evaluate` and `predict` (and so the validation
    metrics of `fit`) use the quantized kernels Δ(Θ) unless
    `quantized_evaluation=False` (or `evaluate(..., quantized=False)`).

    Under a `tf.distribute` strategy (Mirrored, MultiWorkerMirrored), build or
    load the reference and create and compile the LCModel inside
    `strategy.scope()`; the LC variables are then mirrored too. Each replica
    adds its share (1/replicas) of the penalty, so μ means the same as on one
    device; C steps and λ updates run once per process, between steps, on the
    synchronized weights. The LC variables are float32 under mixed precision.

    Args:
        model: The reference `keras.Model` to wrap (built). Leave `None` when
            subclassing.
        compression: A `Quantization` applied to every compressible kernel, or
            a dict `{layer name | glob pattern | layer class: Quantization or
            None}`; see `lc_keras.spec`. Default: `AdaptiveQuantization(2)`.
        penalty: `"feedback"` (default; see below), `"augmented"` (the
            augmented Lagrangian of the paper:
            multipliers λ ← λ − μ·(w − Δ(Θ)) after every C step; the L step
            penalises ‖w − Δ(Θ) − λ/μ‖² and the C step projects w − λ/μ),
            `"feedback"` (the same multipliers, which enter the C step only:
            the L step penalises ‖w − Δ(Θ)‖², and the C step projects
            w − λ/μ, i.e. w plus the μ-weighted sum of all past gaps
            w − Δ(Θ): error feedback, so that a weight whose loss gradient
            keeps pushing it across a codebook boundary changes its entry
            even when μ is large; made for the many short L steps of
            `MuSchedule.for_budget`, where it trains better nets than
            `"augmented"` — see README, "Picking μ") or `"quadratic"`
            (λ ≡ 0).
        penalty_step: How the L step applies the penalty. `"proximal"`
            (default): the optimizer steps on the loss alone, then every
            compressed kernel takes the exact proximal step of the penalty,
            w ← (w + c·a)/(1 + c) with a = Δ(Θ) + λ/μ and c = lr·μ (lr: the
            optimizer's current learning rate) — decoupled from the
            optimizer as AdamW decouples weight decay, so Adam does not
            rescale it and any μ is stable. `"gradient"`: the penalty is
            added to the loss and its gradient μ·(w − a) goes through the
            optimizer (stable for SGD while lr·μ < 2).
        quantized_evaluation: Whether `evaluate`/`predict` use Δ(Θ).
        **kwargs: Passed to `keras.Model` (e.g. `name`).

    Example:

    >>> import keras, numpy as np, lc_keras as lc
    >>> ref = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = lc.LCModel(ref, compression=lc.AdaptiveQuantization(2))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> schedule = lc.MuSchedule(mu0=1e-3, growth=2.0, steps=2,
    ...                          epochs_per_step=1)
    >>> x, y = np.ones((16, 8)), np.zeros((16, 4))
    >>> _ = model.fit(x, y, epochs=schedule.total_epochs,
    ...               callbacks=[schedule], verbose=0)
    >>> q = model.quantized_model()
    >>> len(np.unique(q.layers[-1].kernel.numpy())) <= 2
    True
    """

    def __init__(self, model=None, compression=None, *, penalty="feedback",
                 penalty_step="proximal", quantized_evaluation=True,
                 **kwargs):
        super().__init__(**kwargs)
        if model is not None and not isinstance(model, keras.Model):
            raise TypeError(
                "LCModel wraps a `keras.Model`. Received: "
                f"model={model!r} of type {type(model).__name__}")
        if isinstance(model, LCModel):
            raise TypeError(
                "LCModel requires a plain keras.Model to wrap, not another "
                f"LCModel (its penalty and C steps would run twice). "
                f"Received: model=LCModel '{model.name}'. Wrap a copy of its "
                "`.net`, or its `quantized_model()`.")
        if penalty not in _PENALTIES:
            raise ValueError(
                f"LCModel requires penalty to be one of {_PENALTIES}. "
                f"Received: penalty={penalty!r}")
        if penalty_step not in _PENALTY_STEPS:
            raise ValueError(
                f"LCModel requires penalty_step to be one of "
                f"{_PENALTY_STEPS}. Received: penalty_step={penalty_step!r}")
        quantized_evaluation = checks.check_bool(
            "LCModel", "quantized_evaluation", quantized_evaluation)
        if model is not None:
            # Another LCModel that wraps `model` and has changed its kernels
            # (run a C step): the two would share them.
            def other_wrapper():
                other = _WRAPPERS.get(id(model))
                if other is None or other.net is not model or \
                        other._lc.groups is None or not other.c_steps:
                    return None
                return other

            if other_wrapper() is not None:
                gc.collect()  # a wrapper only kept by reference cycles
            other = other_wrapper()
            if other is not None:
                raise ValueError(
                    "LCModel requires a model that no other LCModel wraps: "
                    "the two would share its kernels, and the second one's "
                    "direct compression would run on the first one's "
                    f"LC-trained weights. Received: model '{model.name}', "
                    f"already wrapped by LCModel '{other.name}'. Wrap a copy:"
                    " `net = keras.models.clone_model(model); "
                    "net.set_weights(model.get_weights())`.")
        self.net = model
        self.compression = compression
        self.penalty = penalty
        self.penalty_step = penalty_step
        self._quantized_evaluation = quantized_evaluation
        self._lc_backups = ()
        self._lc = _LCState(name="lc_state")
        # Kept out of `self.metrics` (a plain list is not tracked by Keras)
        # so that `evaluate` returns what it returns for the wrapped model.
        self._trackers = _Untracked(keras.metrics.Mean(name="lc_penalty"))
        self._project_fns = {}
        if model is not None:
            if not model.built:
                raise ValueError(
                    "LCModel needs a built model to wrap (its kernels must "
                    f"exist). Received: unbuilt model '{model.name}'. Build "
                    "it first, e.g. `model.build(input_shape)` or by calling "
                    "it on a batch.")
            self._ensure_state()
            _WRAPPERS[id(model)] = self

    # ------------------------------------------------------------------
    # Building and state
    # ------------------------------------------------------------------

    def call(self, inputs, training=None):
        if self.net is None:
            raise NotImplementedError(
                "A subclass of LCModel must implement `call()`, or pass the "
                "model to wrap as `LCModel(model, compression=...)`.")
        return self.net(inputs, training=training)

    def build(self, input_shape=None):
        if self.net is None and input_shape is not None:
            inputs = keras.tree.map_shape_structure(
                lambda s: keras.KerasTensor(s), input_shape)
            # The layers of a subclass create their weights here: under the
            # model's distribution strategy, as Keras does when it builds.
            with self._strategy_scope():
                self.call(inputs)
        self._ensure_state()

    def build_from_config(self, config):
        super().build_from_config(config)
        self._ensure_state()

    def _ensure_state(self):
        """Creates the LC variables once the kernels exist."""
        if self._lc.groups is not None:
            return
        target = self.net if self.net is not None else self
        groups = spec_lib.resolve_spec(target, self.compression)
        with self._strategy_scope():
            self._lc.create(groups)

    def _strategy_scope(self):
        """The scope of the strategy the model was created under."""
        strategy = getattr(self, "distribute_strategy", None)
        if strategy is None:
            return contextlib.nullcontext()
        return strategy.scope()

    @property
    def lc_groups(self):
        """The `CompressionGroup`s of the model (after it is built)."""
        self._require_state()
        return self._lc.groups

    def _require_state(self):
        if self._lc.groups is None:
            if self.built or (self.net is not None):
                self._ensure_state()
            else:
                raise ValueError(
                    f"LCModel '{self.name}' is not built yet, so its kernels "
                    "are unknown. Build it (call it on a batch, or "
                    "`model.build(input_shape)`) or `fit` it first.")

    def _kernel_refs(self):
        return [ref for g in self._lc.groups for ref in g.kernels]

    @property
    def compression_initialized(self):
        """Whether a C step (direct compression at least) has run."""
        self._require_state()
        return int(self._lc.steps.numpy()) > 0

    @property
    def c_steps(self):
        """Number of C steps run so far (direct compression counts as 1)."""
        self._require_state()
        return int(self._lc.steps.numpy())

    @property
    def schedule_epoch(self):
        """Epochs of a `MuSchedule` this state has completed.

        A model saved at an epoch end (e.g. by `ModelCheckpoint`) continues
        exactly with `fit(..., initial_epoch=model.schedule_epoch)`.
        """
        self._require_state()
        return int(self._lc.epoch.numpy())

    @property
    def mu(self):
        """The current penalty parameter μ (a float)."""
        self._require_state()
        return float(self._lc.mu.numpy())

    @mu.setter
    def mu(self, value):
        self._require_state()
        value = float(value)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"LCModel requires mu > 0. Received: mu={value}")
        if value != float(self._lc.mu.numpy()):
            self._lc.mu.assign(value)
            self._refresh_anchors()

    # ------------------------------------------------------------------
    # L step: the penalty in the loss
    # ------------------------------------------------------------------

    def lc_penalty(self):
        """The penalty μ/2·Σ‖w − Δ(Θ) − λ/μ‖² over the compressed kernels.

        Returns:
            A float32 scalar tensor.
        """
        self._require_state()
        mu = self._lc.mu.value
        total = tf.constant(0.0, tf.float32)
        for ref, anchor in zip(self._kernel_refs(), self._lc.anchors):
            total += _half_squared_distance(
                tf.cast(ref.variable.value, tf.float32), anchor.value, mu)
        return total

    def _refresh_anchors(self):
        """anchor ← Δ(Θ) + λ/μ (augmented), or Δ(Θ) alone (the others)."""
        mu = self._lc.mu.value
        for target, lam, anchor in zip(self._lc.targets, self._lc.lambdas,
                                       self._lc.anchors):
            anchor.assign(self._anchor(target.value, lam.value, mu))

    def _anchor(self, target, lam, mu):
        """The penalty's anchor a: Δ(Θ) + λ/μ (augmented) or Δ(Θ)."""
        if self.penalty == "augmented":
            return target + tf.math.divide_no_nan(lam, mu)
        return target

    def _proximal_step(self, lr):
        """w ← (w + c·a)/(1 + c), c = lr·μ, on every compressed kernel.

        The exact minimiser of μ/2·‖w − a‖² + 1/(2·lr)·‖w − w₀‖² (the
        proximal operator of the penalty with the optimizer's step size),
        applied after the optimizer's update of the loss, to the kernels
        the optimizer trains. Under a distribution strategy it runs once per
        replica on the synchronized (mirrored) kernels, as the optimizer's
        own updates do.
        """
        c = lr * self._lc.mu.value
        shrink = c / (1.0 + c)
        # Kernels training cannot move (trainable=False) stay where they
        # are, as the optimizer leaves them.
        pairs = [(ref.variable.value, anchor.value) for ref, anchor, frozen
                 in zip(self._kernel_refs(), self._lc.anchors,
                        self._frozen()) if not frozen]

        def update(variable, anchor, shrink):
            w = tf.cast(variable, tf.float32)
            return variable.assign(
                tf.cast(w - shrink * (w - anchor), variable.dtype))

        def merged(strategy, shrink):
            for variable, anchor in pairs:
                strategy.extended.update(variable, update,
                                         args=(anchor, shrink), group=False)

        tf.distribute.get_replica_context().merge_call(merged, args=(shrink,))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=training)
        if (not training or self._lc.groups is None
                or self.penalty_step == "proximal"):
            return loss
        penalty = self.lc_penalty()
        self._trackers.penalty.update_state(penalty)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        penalty = penalty / tf.cast(replicas, penalty.dtype)
        if loss is None:
            return tf.cast(penalty, "float32")
        return loss + tf.cast(penalty, loss.dtype)

    def _build_from_data(self, x):
        """Builds an unbuilt model from the inputs given to fit.

        Keras builds a model only when the train function is first traced,
        after the callbacks' `on_train_begin` — too late for direct
        compression of a subclass, and for `BackupAndRestore`, which needs a
        built model. This builds from the input shapes up front instead. A
        wrapped model has its kernels already, so inputs whose shapes cannot
        be read are left to Keras.
        """

        def shape_of(a):
            return (None,) + tuple(int(d) for d in a.shape[1:])

        shapes = None
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            if isinstance(spec, tuple):
                spec = spec[0]
            shapes = keras.tree.map_structure(
                lambda s: tuple(s.shape.as_list()), spec)
        elif x is not None and hasattr(x, "shape"):
            shapes = shape_of(x)
        elif isinstance(x, (dict, list, tuple)) and x and all(
                hasattr(a, "shape") for a in keras.tree.flatten(x)):
            shapes = keras.tree.map_structure(shape_of, x)
        if shapes is None:
            if self.net is not None:
                return
            raise ValueError(
                f"LCModel '{self.name}' is not built and its input shape "
                f"cannot be read from fit's x of type {type(x).__name__}. "
                "Build it first: `model.build(input_shape)` or call it on a "
                "batch.")
        self.build(shapes)

    def _check_strategy(self):
        """Refuses variables created outside the model's strategy scope."""
        strategy = self.distribute_strategy
        extended = strategy.extended
        outside = [v.path for v in self.weights
                   if not extended.variable_created_in_scope(v.value)]
        if outside:
            raise ValueError(
                f"LCModel '{self.name}' trains under "
                f"{type(strategy).__name__}, but {len(outside)} of its "
                f"variables were created outside that strategy's scope "
                f"(e.g. {outside[0]!r}), so they cannot be mirrored. Build "
                "or load the reference model, and create and compile the "
                "LCModel, inside `with strategy.scope():`.")

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15) reads the shapes of the first batch under a strategy
        # by one `strategy.reduce` of the whole (x, y) structure, which
        # MultiWorkerMirroredStrategy cannot do with nested values
        # (keras-team/keras#20585: every multi-worker `fit` fails). Reduce it
        # leaf by leaf instead; the result only gives shapes and dtypes.
        strategy = self.distribute_strategy
        if (iterator is not None and data_batch is None
                and _multi_worker(strategy)):
            for item in iterator:
                batch = next(item[-1])
                break
            else:  # pragma: no cover - an empty dataset
                batch = None
            if batch is not None:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.reduce("MEAN", v, axis=None)
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    batch)
                iterator = None
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, with the LC callbacks run first.

        As `keras.Model.fit`, except that an unbuilt model is built from `x`
        before the callbacks start, and that every `MuSchedule` among the
        callbacks is moved to the front of the list: its epoch-end C step and
        multiplier update then run before any other callback sees the epoch
        end, so that `ModelCheckpoint` and `BackupAndRestore` save the state
        after the C step whatever the order they were given in.

        Every `keras.callbacks.BackupAndRestore` among the callbacks is made
        crash-safe: its `double_checkpoint` is turned on, a backup cut by a
        kill while its metadata was written is replaced by the previous one
        before Keras reads it, and a backup whose weights are one epoch
        ahead of its metadata (a kill between the two writes) is resumed
        from the previous weights. A `kill -9` at any moment then resumes to
        the state of an uninterrupted run.

        Raises:
            ValueError: for a `BackupAndRestore` that saves in the middle of
                epochs (`save_freq` other than `"epoch"`) together with a
                `MuSchedule`: Keras restarts a restored epoch from its first
                batch, so the resumed LC run could not be exact; for more
                than one `MuSchedule`; for training data of 0 samples.
        """
        if _leading_size(x) == 0:
            raise ValueError(
                f"LCModel.fit requires training data. Received: x with 0 "
                "samples (LC would run its C steps on weights no L step "
                "trained).")
        if not self.built:
            self._build_from_data(x)
        self._check_strategy()
        callbacks = None
        if "callbacks" in kwargs:
            callbacks = kwargs["callbacks"] = _schedule_first(
                kwargs["callbacks"])
        elif len(args) >= 5:  # fit(x, y, batch_size, epochs, verbose, cbs)
            callbacks = _schedule_first(args[4])
            args = args[:4] + (callbacks,) + args[5:]
        self._lc_backups = tuple(
            c for c in _callback_items(callbacks or [])
            if isinstance(c, keras.callbacks.BackupAndRestore))
        for backup in self._lc_backups:
            _repair_backup(backup)
        return super().fit(x, *args, **kwargs)

    def _align_with_backups(self, epoch):
        """Undoes a backup whose weights are one epoch ahead of its epoch.

        A kill after `BackupAndRestore` wrote the weights of epoch e but
        before it wrote "epoch e" restores the state of epoch e with Keras
        starting at epoch e - 1. The previous weights (`double_checkpoint`)
        are those of epoch e - 1: loading them makes the resume exact.
        Called by `MuSchedule` once the backups are restored.
        """
        self._require_state()
        if int(self._lc.steps.numpy()) == 0 or \
                int(self._lc.epoch.numpy()) != epoch + 1:
            return
        for backup in self._lc_backups:
            weights, metadata, old_weights, _ = _backup_paths(backup)
            if _backup_epoch(metadata) != epoch or not os.path.exists(
                    old_weights):
                continue
            # The previous weights go back in place (the files then agree
            # again) and are loaded from there (Keras wants `.weights.h5`).
            _copy_atomic(old_weights, weights)
            self.load_weights(weights)
            logging.warning(
                "The backup in %r holds the weights of epoch %d but says "
                "epoch %d (the run was killed between the two writes); "
                "resumed from the previous backup instead.",
                backup.backup_dir, epoch + 1, epoch)
            return

    def train_step(self, data):
        if self._lc.groups is None:
            raise ValueError(
                f"LCModel '{self.name}' has no compression state yet: pass "
                "`lc_keras.MuSchedule()` to `fit` (it runs direct compression "
                "first), or build the model before training.")
        if self.penalty_step == "proximal":
            # The penalty before this step's update, as the gradient mode
            # reports it (it is not part of the loss the optimizer sees),
            # and the learning rate this step's update uses (a schedule's
            # value moves on with the optimizer's iteration count).
            self._trackers.penalty.update_state(
                tf.stop_gradient(self.lc_penalty()))
            lr = tf.identity(tf.cast(self.optimizer.learning_rate,
                                     tf.float32))
        logs = super().train_step(data)
        if self.penalty_step == "proximal":
            self._proximal_step(lr)
        logs["lc_penalty"] = self._trackers.penalty.result()
        logs["lc_mu"] = self._lc.mu.value
        return self._multi_worker_logs(logs)

    def _multi_worker_logs(self, logs):
        """Logs that Keras can reduce across the workers of a multi-worker run.

        Keras (3.15) averages each log of a step over all replicas of a
        MultiWorkerMirroredStrategy with `strategy.reduce("MEAN", v, axis=0)`,
        which fails on the usual scalar logs (and averages a vector log over
        its own entries). A leading axis of size 1 makes that reduction the
        mean over the replicas, of the log's own shape.
        """
        if not _multi_worker(tf.distribute.get_strategy()):
            return logs
        return keras.tree.map_structure(
            lambda v: tf.expand_dims(v, 0) if tf.is_tensor(v) else v, logs)

    def reset_metrics(self):
        super().reset_metrics()
        self._trackers.penalty.reset_state()

    # ------------------------------------------------------------------
    # Evaluation of the quantized net
    # ------------------------------------------------------------------

    @property
    def quantized_evaluation(self):
        """Whether `evaluate`/`predict` use the quantized kernels Δ(Θ)."""
        return self._quantized_evaluation

    @quantized_evaluation.setter
    def quantized_evaluation(self, value):
        value = checks.check_bool("LCModel", "quantized_evaluation", value)
        if value != self._quantized_evaluation:
            self._quantized_evaluation = value
            self.test_function = None
            self.predict_function = None

    @contextlib.contextmanager
    def _evaluation_mode(self, quantized):
        previous = self.quantized_evaluation
        if quantized is not None:
            quantized = checks.check_bool("LCModel", "quantized", quantized)
            self.quantized_evaluation = quantized
        try:
            if self.quantized_evaluation:
                self._require_state()
                if not self.compression_initialized:
                    raise ValueError(
                        f"LCModel '{self.name}' has not run a C step yet, so "
                        "there is no quantized net to evaluate. Run "
                        "`model.direct_compression()` or `fit` with a "
                        "`MuSchedule`, or pass `quantized=False`.")
            yield
        finally:
            self.quantized_evaluation = previous

    def evaluate(self, *args, quantized=None, **kwargs):
        """`keras.Model.evaluate`, on the quantized net by default.

        Args:
            *args: As `keras.Model.evaluate`.
            quantized: `True` for Δ(Θ), `False` for the continuous weights,
                `None` for `self.quantized_evaluation`.
            **kwargs: As `keras.Model.evaluate`.

        Returns:
            As `keras.Model.evaluate`.
        """
        with self._evaluation_mode(quantized):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, quantized=None, **kwargs):
        """`keras.Model.predict`, on the quantized net by default.

        Args:
            *args: As `keras.Model.predict`.
            quantized: As in `evaluate`.
            **kwargs: As `keras.Model.predict`.

        Returns:
            As `keras.Model.predict`.
        """
        with self._evaluation_mode(quantized):
            return super().predict(*args, **kwargs)

    def _quantized_mapping(self):
        refs = self._kernel_refs()
        return [(ref.variable, tf.cast(t.value, ref.variable.dtype))
                for ref, t in zip(refs, self._lc.targets)]

    def test_step(self, data):
        if not self._quantized_evaluation or self._lc.groups is None:
            return self._multi_worker_logs(super().test_step(data))
        mapping = self._quantized_mapping()
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = super().test_step(data)
        for variable in self.metrics_variables:
            value = scope.get_current_value(variable)
            if value is not None:
                variable.assign(value)
        return self._multi_worker_logs(logs)

    def predict_step(self, data):
        if not self._quantized_evaluation or self._lc.groups is None:
            return super().predict_step(data)
        with keras.StatelessScope(state_mapping=self._quantized_mapping()):
            return super().predict_step(data)

    # ------------------------------------------------------------------
    # C step
    # ------------------------------------------------------------------

    def _frozen(self):
        """Per kernel (in `_kernel_refs` order): whether training cannot move
        it (its layer or variable is not trainable)."""
        trainable = {id(v) for v in self.trainable_variables}
        return tuple(id(ref.variable) not in trainable
                     for ref in self._kernel_refs())

    def _project(self, mu, warm, frozen):
        """Graph of the projection of every group: (finite, codebook,
        [(indices, target) per kernel]) per group."""
        outputs = []
        i = 0
        for g, group in enumerate(self._lc.groups):
            rows, finite = [], []
            for ref in group.kernels:
                w = tf.cast(ref.variable.value, tf.float32)
                if self.penalty in _WITH_MULTIPLIERS and warm and not \
                        frozen[i]:
                    w = w - tf.math.divide_no_nan(
                        self._lc.lambdas[i].value, mu)
                finite.append(tf.reduce_all(tf.math.is_finite(w)))
                rows.append(_to_rows(w, ref, group))
                i += 1
            v = rows[0] if len(rows) == 1 else tf.concat(rows, axis=-1)
            previous = self._lc.codebooks[g].value if warm else None
            codebook, indices = group.quantization.project(v, previous)
            codebook = tf.cast(codebook, tf.float32)
            indices = tf.cast(indices, tf.int32)
            per_kernel = []
            offset = 0
            for ref in group.kernels:
                n = ref.size // (ref.channels if group.per_channel else 1)
                idx_rows = indices[:, offset:offset + n]
                offset += n
                idx = _from_rows(idx_rows, ref, group)
                if group.per_channel:
                    rows_of = _from_rows(
                        tf.broadcast_to(
                            tf.range(ref.channels)[:, None],
                            tf.shape(idx_rows)), ref, group)
                    target = tf.gather_nd(
                        codebook, tf.stack([rows_of, idx], axis=-1))
                else:
                    target = tf.gather(codebook[0], idx)
                per_kernel.append((idx, target))
            outputs.append((tf.stack(finite), codebook, per_kernel))
        return outputs

    def _commit(self, outputs, warm, update_multipliers, frozen):
        """Graph of the assignments of a C step: Θ, Δ(Θ), λ, anchors."""
        mu = self._lc.mu.value
        i = 0
        for g, (_, codebook, per_kernel) in enumerate(outputs):
            group = self._lc.groups[g]
            self._lc.codebooks[g].assign(codebook)
            for ref, (idx, target) in zip(group.kernels, per_kernel):
                self._lc.indices[i].assign(idx)
                self._lc.targets[i].assign(target)
                lam = self._lc.lambdas[i]
                w = tf.cast(ref.variable.value, tf.float32)
                if (update_multipliers and self.penalty in _WITH_MULTIPLIERS
                        and not frozen[i]):
                    new = lam.value - mu * (w - target)
                elif not warm or frozen[i]:
                    new = tf.zeros_like(w)
                else:
                    new = lam.value
                lam.assign(new)
                self._lc.anchors[i].assign(self._anchor(target, new, mu))
                i += 1
        self._lc.steps.assign_add(1)
        return tf.constant(True)

    def _c_step_fn(self, warm, update_multipliers):
        """One tf.function per (warm, update, frozen kernels): projects every
        group and, only if all the projected weights are finite, assigns the
        results. Returns the finiteness of each kernel."""
        frozen = self._frozen()
        key = (warm, update_multipliers, frozen)
        if key in self._project_fns:
            return self._project_fns[key]

        def c_step(mu):
            outputs = self._project(mu, warm, frozen)
            finite = tf.concat([f for f, _, _ in outputs], axis=0)
            tf.cond(tf.reduce_all(finite),
                    lambda: self._commit(outputs, warm, update_multipliers,
                                         frozen),
                    lambda: tf.constant(False))
            return finite

        fn = tf.function(c_step, autograph=False)
        self._project_fns[key] = fn
        return fn

    def _run_c_step(self, warm, update_multipliers, distortions=True):
        self._require_state()
        mu = self._lc.mu.value if warm else tf.constant(1.0)
        finite = self._c_step_fn(warm, update_multipliers)(mu).numpy()
        for ref, ok in zip(self._kernel_refs(), finite):
            if not ok:
                raise ValueError(self._non_finite_message(ref))
        return self.distortions() if distortions else None

    def _non_finite_message(self, ref):
        """Why a C step found NaN or inf in kernel `ref`, naming the cause."""
        compressed = {id(r.variable) for r in self._kernel_refs()}
        others = [v.path for v in self.weights
                  if id(v) not in compressed and v.dtype.startswith("float")
                  and not np.all(np.isfinite(keras.ops.convert_to_numpy(
                      v.value)))]
        if others:
            cause = (
                f"; weights that are not compressed are not finite either: "
                f"{others[:3]} — NaN or inf there spreads to every kernel "
                "that training updates, so fix those first")
        else:
            cause = (
                ". The L step diverged, or the training data or labels hold "
                "NaN or inf: check them (e.g. `np.isfinite(x).all()`), then "
                "lower the learning rate or mu")
        return (f"The C step of layer '{ref.layer.name}' received NaN or inf "
                f"weights in '{ref.path}'{cause}. The codebooks were left "
                "unchanged.")

    def direct_compression(self):
        """Direct compression (DC): Θ ← Π(w), λ ← 0.

        Projects the current (reference) weights onto the codebooks, with a
        fresh initialisation (k-means++ for adaptive codebooks). This is the
        first C step of LC and the DC baseline.

        Returns:
            A dict `{kernel path: ‖w − Δ(Θ)‖²}`.
        """
        frozen = [ref.path for ref, f in zip(self._kernel_refs(),
                                             self._frozen()) if f]
        if frozen:
            warnings.warn(
                f"LCModel '{self.name}': the kernels {frozen} are not "
                "trainable (their layers or variables have trainable=False), "
                "so the L steps cannot move them: they are kept at their "
                "direct compression (each C step projects the weights "
                "themselves, and their multipliers stay 0).", stacklevel=2)
        distortions = self._run_c_step(warm=False, update_multipliers=False)
        logging.info("LC direct compression: distortion %s", distortions)
        return distortions

    def c_step(self, update_multipliers=True, *, return_distortions=True):
        """One C step: Θ ← Π(w − λ/μ), then λ ← λ − μ·(w − Δ(Θ)).

        Warm-starts adaptive codebooks from the current ones. In
        `"quadratic"` penalty mode λ stays 0. The projection and every
        assignment run as one graph; nothing is assigned if a projected
        weight is NaN or inf.

        Args:
            update_multipliers: Whether to update λ after the projection.
            return_distortions: Whether to compute the distortions (one pass
                over the kernels; `MuSchedule.for_budget` skips it between
                epoch ends).

        Returns:
            A dict `{kernel path: ‖w − Δ(Θ)‖²}` after the step, or None.
        """
        if not self.compression_initialized:
            return self.direct_compression()
        return self._run_c_step(warm=True,
                                update_multipliers=update_multipliers,
                                distortions=return_distortions)

    def distortions(self):
        """Current ‖w − Δ(Θ)‖² per compressed kernel (a dict of floats)."""
        self._require_state()
        refs = self._kernel_refs()
        return {
            ref.path: float(tf.reduce_sum(tf.square(
                tf.cast(ref.variable.value, tf.float64)
                - tf.cast(t.value, tf.float64))).numpy())
            for ref, t in zip(refs, self._lc.targets)
        }

    # ------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------

    def compressed_variables(self):
        """The compressed kernel variables, `{path: keras.Variable}`."""
        self._require_state()
        return {ref.path: ref.variable for ref in self._kernel_refs()}

    def compression_state(self):
        """Codebook, indices and layout of every compressed kernel.

        Returns:
            A dict `{kernel path: QuantizedKernel}`, in layer order.

        Raises:
            ValueError: if no C step has run yet.
        """
        if not self.compression_initialized:
            raise ValueError(
                f"LCModel '{self.name}' has not run a C step yet: there are no "
                "codebooks. Run `model.direct_compression()` or `fit` with a "
                "`MuSchedule` first.")
        state = {}
        i = 0
        for g, group in enumerate(self._lc.groups):
            codebook = self._lc.codebooks[g].numpy()
            for ref in group.kernels:
                state[ref.path] = QuantizedKernel(
                    name=ref.path,
                    layer_name=ref.layer.name,
                    attribute=ref.attribute,
                    kind=group.quantization.kind,
                    codebook=codebook,
                    indices=self._lc.indices[i].numpy(),
                    channel_axes=ref.channel_axes if group.per_channel else (),
                    group=group.name,
                    layer_type=ref.layer_type,
                )
                i += 1
        return state

    def _plain_model(self):
        if self.net is not None:
            return self.net
        config = self.get_build_config() or {}
        if "input_shape" not in config:
            raise ValueError(
                f"Cannot trace subclassed LCModel '{self.name}' into a plain "
                "model: it was not built from an input shape.")
        inputs = keras.tree.map_shape_structure(
            lambda s: keras.Input(batch_shape=s), config["input_shape"])
        return keras.Model(inputs, self.call(inputs), name=self.name)

    def quantized_model(self):
        """A plain Keras model whose compressed kernels are Δ(Θ) exactly.

        The result is a copy with no LC classes: each compressed kernel holds
        the values of its codebook (at most K distinct values per codebook),
        every other weight (biases, normalisation) is copied as it is.

        Returns:
            A `keras.Model` of the same architecture.
        """
        state = self.compression_state()
        source = self._plain_model()
        clone = keras.models.clone_model(source)
        source_weights = source.weights
        clone_weights = clone.weights
        if len(source_weights) != len(clone_weights):
            raise ValueError(
                f"Cloning '{source.name}' gave {len(clone_weights)} weights "
                f"instead of {len(source_weights)}.")
        position = {id(v): j for j, v in enumerate(source_weights)}
        for v, c in zip(source_weights, clone_weights):
            c.assign(v.value)
        for ref in self._kernel_refs():
            j = position[id(ref.variable)]
            clone_weights[j].assign(
                state[ref.path].values().astype(ref.variable.dtype))
        return clone

    # ------------------------------------------------------------------
    # Serialization
    # ------------------------------------------------------------------

    def get_config(self):
        if self.net is None:
            return super().get_config()
        return {
            "name": self.name,
            "trainable": self.trainable,
            "model": keras.saving.serialize_keras_object(self.net),
            "compression": spec_lib.serialize_spec(self.compression),
            "penalty": self.penalty,
            "penalty_step": self.penalty_step,
            "quantized_evaluation": self._quantized_evaluation,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Files saved before `penalty_step` existed trained with the
        # penalty's gradient: continue them the way they were trained.
        if "model" in config:
            config.setdefault("penalty_step", "gradient")
        if isinstance(config.get("model"), dict):
            config["model"] = keras.saving.deserialize_keras_object(
                config["model"])
        if isinstance(config.get("compression"), dict) and \
                "kind" in config["compression"]:
            config["compression"] = spec_lib.deserialize_spec(
                config["compression"])
        return cls(**config)


def load_model(path, **kwargs):
    """`keras.models.load_model`, with a clear error for a damaged file.

    A `.keras` file is checked first (`lc_keras.files.check_keras_file`):
    a truncated or corrupt one is a `ValueError` naming the file, where
    Keras would say "File not found". Loads in `safe_mode` by default.

    Args:
        path: The model file (`.keras`; other formats go to Keras as is).
        **kwargs: Passed to `keras.models.load_model` (e.g. `compile`).

    Returns:
        The model (an `LCModel` for a saved LCModel).

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if a `.keras` file is truncated or corrupt.

    Example:

    >>> import keras, os, tempfile, lc_keras as lc
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "net.keras")
    >>> net.save(path)
    >>> lc.load_model(path).count_params()
    10
    """
    path = os.fspath(path)
    if path.endswith(".keras"):
        files.check_keras_file(path)
    return keras.models.load_model(path, **kwargs)
