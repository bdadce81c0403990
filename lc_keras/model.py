"""`LCModel`: a Keras model trained by learning-compression (LC).

The model adds the LC penalty μ/2·Σ‖w − Δ(Θ) − λ/μ‖² to the loss in its
training step (`compute_loss`), evaluates and predicts with the quantized
kernels Δ(Θ) by default, and runs C steps (projections of w − λ/μ onto the
codebooks) when asked — normally by the `MuSchedule` callback between L steps.
"""

import contextlib
import gc
import os
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lc_keras import callbacks as callbacks_lib
from lc_keras import checks
from lc_keras import files
from lc_keras import multi_worker
from lc_keras import spec as spec_lib
from lc_keras import state as state_lib

_PENALTY_STEPS = ("proximal", "gradient")

# The LCModel wrapping each reference model (by id), to refuse a second one.
_WRAPPERS = weakref.WeakValueDictionary()

class _Untracked:
    """A holder Keras does not look into (so its metrics stay private)."""

    def __init__(self, penalty):
        self.penalty = penalty


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
        if penalty not in state_lib.PENALTIES:
            raise ValueError(
                "LCModel requires penalty to be one of "
                f"{state_lib.PENALTIES}. "
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
                        not other.lc_state.created or not other.c_steps:
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
        self._lc = state_lib.LCState(penalty=penalty, name="lc_state")
        # Kept out of `self.metrics` (a plain list is not tracked by Keras)
        # so that `evaluate` returns what it returns for the wrapped model.
        self._trackers = _Untracked(keras.metrics.Mean(name="lc_penalty"))
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
        if self._lc.created:
            return
        target = self.net if self.net is not None else self
        groups = spec_lib.resolve_spec(target, self.compression)
        with self._strategy_scope():
            self._lc.create(groups)
        self._warn_about_large_float_weights(target, groups)

    def _warn_about_large_float_weights(self, target, groups):
        """Names the uncompressed weights of > 1 % of the model's weights."""
        compressed = {id(ref.variable) for g in groups for ref in g.kernels}
        weights = [(v, int(np.prod(v.shape))) for v in target.weights]
        total = sum(n for _, n in weights)
        large = [f"{v.path} {tuple(v.shape)}" for v, n in weights
                 if id(v) not in compressed
                 and n > spec_lib.LARGE_FLOAT_SHARE * total]
        if large:
            warnings.warn(
                f"LCModel '{self.name}' leaves {len(large)} weight(s) of more "
                f"than 1% of the model's {total:,} weights float: "
                f"{large[:8]}. Biases and normalisation stay float by "
                "design; a weight matrix here was not recognised or was left "
                "out by the spec (see `lc_keras.compressible_kernels`).",
                stacklevel=4)

    def _strategy_scope(self):
        """The scope of the strategy the model was created under."""
        strategy = getattr(self, "distribute_strategy", None)
        if strategy is None:
            return contextlib.nullcontext()
        return strategy.scope()

    @property
    def lc_state(self):
        """The `LCState` holding the LC variables (after the model is built).

        For callbacks and inspection: its `kernels` give, per compressed
        kernel, the variables of λ, Δ(Θ), the anchor and the indices.
        """
        self._require_state()
        return self._lc

    def _require_state(self):
        if not self._lc.created:
            if self.built or (self.net is not None):
                self._ensure_state()
            else:
                raise ValueError(
                    f"LCModel '{self.name}' is not built yet, so its kernels "
                    "are unknown. Build it (call it on a batch, or "
                    "`model.build(input_shape)`) or `fit` it first.")

    def _kernel_refs(self):
        return [k.ref for k in self._lc.kernels]

    @property
    def compression_initialized(self):
        """Whether a C step (direct compression at least) has run."""
        self._require_state()
        return self._lc.initialized

    @property
    def c_steps(self):
        """Number of C steps run so far (direct compression counts as 1)."""
        self._require_state()
        return self._lc.c_steps

    @property
    def schedule_epoch(self):
        """Epochs of a `MuSchedule` this state has completed.

        A model saved at an epoch end (e.g. by `ModelCheckpoint`) continues
        exactly with `fit(..., initial_epoch=model.schedule_epoch)`.
        """
        self._require_state()
        return self._lc.schedule_epoch

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
        self._lc.set_mu(value)

    # ------------------------------------------------------------------
    # L step: the penalty in the loss
    # ------------------------------------------------------------------

    def lc_penalty(self):
        """The penalty μ/2·Σ‖w − Δ(Θ) − λ/μ‖² over the compressed kernels.

        Returns:
            A float32 scalar tensor.
        """
        self._require_state()
        return self._lc.penalty_value()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=training)
        if (not training or not self._lc.created
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
                and multi_worker.is_multi_worker(strategy)):
            batch = multi_worker.first_batch(strategy, iterator)
            if batch is not None:
                data_batch, iterator = batch, None
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, with the LC callbacks run first.

        As `keras.Model.fit`, except that an unbuilt model is built from `x`
        before the callbacks start, and that the `LCCallback` among the
        callbacks (a `MuSchedule`) is moved to the front of the list: its
        epoch-end C step and multiplier update then run before any other
        callback sees the epoch end, so that `ModelCheckpoint` and
        `BackupAndRestore` save the state after the C step whatever the order
        they were given in (see `lc_keras.callbacks`).

        Every `keras.callbacks.BackupAndRestore` among the callbacks is made
        crash-safe: its `double_checkpoint` is turned on, a backup cut by a
        kill while its metadata was written is replaced by the previous one
        before Keras reads it, and a backup whose weights are one epoch
        ahead of its metadata (a kill between the two writes) is resumed
        from the previous weights (`lc_keras.backups`). A `kill -9` at any
        moment then resumes to the state of an uninterrupted run.

        Raises:
            ValueError: for a `BackupAndRestore` that saves in the middle of
                epochs (`save_freq` other than `"epoch"`) together with a
                `MuSchedule`: Keras restarts a restored epoch from its first
                batch, so the resumed LC run could not be exact; for more
                than one `LCCallback`; for training data of 0 samples.
        """
        if _leading_size(x) == 0:
            raise ValueError(
                f"LCModel.fit requires training data. Received: x with 0 "
                "samples (LC would run its C steps on weights no L step "
                "trained).")
        if not self.built:
            self._build_from_data(x)
        self._check_strategy()
        if "callbacks" in kwargs:
            kwargs["callbacks"] = callbacks_lib.arrange(
                kwargs["callbacks"], self)
        elif len(args) >= 5:  # fit(x, y, batch_size, epochs, verbose, cbs)
            args = args[:4] + (callbacks_lib.arrange(args[4], self),) + \
                args[5:]
        return super().fit(x, *args, **kwargs)

    def train_step(self, data):
        if not self._lc.created:
            raise ValueError(
                f"LCModel '{self.name}' has no compression state yet: pass "
                "`lc_keras.MuSchedule()` to `fit` (it runs direct compression "
                "first), or build the model before training.")
        if self.penalty_step == "proximal":
            # The learning rate this step's update uses (a schedule's value
            # moves on with the optimizer's iteration count).
            lr = tf.identity(tf.cast(self.optimizer.learning_rate,
                                     tf.float32))
        logs = super().train_step(data)
        if self.penalty_step == "proximal":
            # The penalty is not part of the loss the optimizer sees; the
            # proximal step returns that of the weights it leaves, from its
            # own pass over the kernels.
            self._trackers.penalty.update_state(
                self._lc.proximal_step(lr, self._frozen()))
        logs["lc_penalty"] = self._trackers.penalty.result()
        logs["lc_mu"] = self._lc.mu.value
        return multi_worker.reducible_logs(logs)

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

    def test_step(self, data):
        if not self._quantized_evaluation or not self._lc.created:
            return multi_worker.reducible_logs(super().test_step(data))
        mapping = self._lc.quantized_mapping()
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = super().test_step(data)
        for variable in self.metrics_variables:
            value = scope.get_current_value(variable)
            if value is not None:
                variable.assign(value)
        return multi_worker.reducible_logs(logs)

    def predict_step(self, data):
        if not self._quantized_evaluation or not self._lc.created:
            return super().predict_step(data)
        with keras.StatelessScope(state_mapping=self._lc.quantized_mapping()):
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

    def _run_c_step(self, warm, update_multipliers, distortions=True):
        self._require_state()
        finite = self._lc.c_step(warm=warm,
                                 update_multipliers=update_multipliers,
                                 frozen=self._frozen())
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
        return self._lc.distortions()

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
        return self._lc.compression_state()

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
        every other weight (biases, normalisation) is copied as it is. It is
        not compiled (so its `.keras` file holds no optimizer state):
        compile it to train or evaluate it.

        Returns:
            A `keras.Model` of the same architecture.
        """
        state = self.compression_state()
        source = self._plain_model()
        if source.compiled:
            # clone_model would compile the copy as the source is, with
            # optimizer slots for every weight.
            clone = type(source).from_config(source.get_config())
        else:
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
