"""`LCState`: the LC variables of a model, and the C step that updates them.

An `LCModel` keeps its learning-compression state in one `LCState`
sublayer, so that it is saved with the model: μ, and for every codebook
group its codebook Θ, and for every compressed kernel its multipliers λ, its
quantized value Δ(Θ), its integer indices and the anchor of the penalty.
The state runs the C step (the projection of w − λ/μ onto every codebook,
then the multiplier update, as one graph), computes the penalty and its
proximal step, and records where a `MuSchedule` left the run, so that a
resumed run can be checked. It knows nothing of Keras training loops:
`LCModel` is the glue.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from lc_keras.quantized import QuantizedKernel
from lc_keras.quantized import channel_rows

#: The penalties an `LCModel` can train with.
PENALTIES = ("augmented", "feedback", "quadratic")
#: Penalties whose multipliers λ are updated (and shift the C step).
WITH_MULTIPLIERS = ("augmented", "feedback")

#: Where a `MuSchedule` left the state: at the end of `schedule_epoch`
#: epochs (or fresh), inside epoch `schedule_epoch + 1`, or closed by an
#: extra C step after a run stopped inside an L step.
AT_EPOCH_END, IN_EPOCH, CLOSED = 0, 1, 2

# The layout of a saved state: 2 = without the derived Δ(Θ) and anchors.
_FORMAT = 2


def _safe(path):
    return path.replace("/", "__").replace(":", "_")


@tf.custom_gradient
def half_squared_distance(w, anchor, mu):
    """μ/2·‖w − anchor‖², with its gradient μ·(w − anchor) written out.

    Autodiff of `reduce_sum(square(w − anchor))` materialises several
    kernel-sized tensors per step (the broadcast of the sum's gradient, 2·x,
    the product); one dot product forward and one scaled difference backward
    do the same work.

    Args:
        w: A float32 tensor.
        anchor: A float32 tensor of `w`'s shape.
        mu: A float32 scalar.

    Returns:
        The float32 scalar μ/2·‖w − anchor‖² (no gradient to `anchor`, `mu`).

    Example:

    >>> import tensorflow as tf
    >>> float(half_squared_distance(tf.ones(4), tf.zeros(4), 2.0))
    4.0
    """
    d = w - anchor
    flat = tf.reshape(d, [-1])
    value = 0.5 * mu * tf.tensordot(flat, flat, 1)

    def grad(upstream):
        return upstream * mu * d, None, None

    return value, grad


@dataclasses.dataclass
class KernelState:
    """The LC variables of one compressed kernel.

    Attributes:
        ref: The `lc_keras.spec.KernelRef` of the kernel.
        multipliers: λ, the Lagrange multipliers (kernel's shape).
        target: Δ(Θ), the quantized kernel of the last C step.
        anchor: What the penalty pulls the kernel to: Δ(Θ) + λ/μ for the
            `"augmented"` penalty, Δ(Θ) for the others.
        indices: The int32 codebook index of every weight.
    """

    ref: object
    multipliers: keras.Variable
    target: keras.Variable
    anchor: keras.Variable
    indices: keras.Variable

    @property
    def path(self):
        """The kernel's path (`"<layer path>/<attribute>"`)."""
        return self.ref.path

    @property
    def variable(self):
        """The compressed kernel variable itself."""
        return self.ref.variable


@dataclasses.dataclass
class GroupState:
    """The LC variables of one codebook group.

    Attributes:
        group: The `lc_keras.spec.CompressionGroup`.
        codebook: Θ, a float32 variable of shape `(rows, k)`.
        kernels: The `KernelState` of each kernel of the group.
    """

    group: object
    codebook: keras.Variable
    kernels: list

    @property
    def rows(self):
        """Codebook rows: output channels if per-channel, else 1."""
        return self.group.kernels[0].channels if self.group.per_channel else 1

    def to_rows(self, w, ref):
        """Flattens one kernel into the `[rows, n]` layout of the group."""
        if self.group.per_channel:
            axes = tuple(ref.channel_axes)
            rest = tuple(a for a in range(len(w.shape)) if a not in axes)
            return tf.reshape(tf.transpose(w, axes + rest), [ref.channels, -1])
        return tf.reshape(w, [1, -1])

    def from_rows(self, rows, ref):
        """Inverse of `to_rows` for one kernel."""
        shape = [int(d) for d in ref.variable.shape]
        if self.group.per_channel:
            axes = tuple(ref.channel_axes)
            rest = tuple(a for a in range(len(shape)) if a not in axes)
            perm = axes + rest
            t = tf.reshape(rows, [shape[a] for a in perm])
            return tf.transpose(t, np.argsort(perm))
        return tf.reshape(rows, shape)

    def channel_axes(self, ref):
        """The axes that pick the codebook row of `ref` (`()` if one row)."""
        return tuple(ref.channel_axes) if self.group.per_channel else ()

    def values(self, codebook, indices, ref):
        """Δ(Θ) of kernel `ref`: codebook[row of each weight, its index]."""
        if not self.group.per_channel:
            return tf.gather(codebook[0], indices)
        row = channel_rows(ref.variable.shape, self.channel_axes(ref))
        entries = self.group.quantization.num_entries
        return tf.gather(tf.reshape(codebook, [-1]), row * entries + indices)


class LCState(keras.layers.Layer):
    """The LC variables of an `LCModel`, and the C step over them.

    A sublayer of the model, so that its variables are saved with it; it is
    never `build()`-ed: its variables are created by `create` once the
    compressed kernels are known. Most users never touch it: `LCModel`'s
    methods (`c_step`, `compression_state`, `mu`, ...) read and drive it;
    `LCModel.lc_state` gives it to callbacks and tests.

    Args:
        penalty: One of `PENALTIES` (see `LCModel`).
        **kwargs: Passed to `keras.layers.Layer`.

    Example:

    >>> import keras, lc_keras as lc
    >>> ref = keras.Sequential([keras.Input((8,)),
    ...                         keras.layers.Dense(4, name="d")])
    >>> state = lc.LCModel(ref).lc_state
    >>> [k.path for k in state.kernels], state.c_steps
    (['d/kernel'], 0)
    """

    def __init__(self, penalty="feedback", **kwargs):
        super().__init__(**kwargs)
        if penalty not in PENALTIES:
            raise ValueError(
                f"LCState requires penalty to be one of {PENALTIES}. "
                f"Received: penalty={penalty!r}")
        self.penalty = penalty
        self.groups = None
        self.group_states = ()
        self._c_step_fns = {}

    # ------------------------------------------------------------------
    # Variables
    # ------------------------------------------------------------------

    def _variable(self, name, shape, dtype="float32"):
        return self.add_weight(shape=shape, dtype=dtype, initializer="zeros",
                               trainable=False, autocast=False, name=name)

    def create(self, groups):
        """Creates the variables for the `CompressionGroup`s `groups`.

        Args:
            groups: What `lc_keras.spec.resolve_spec` returns.
        """
        self.groups = groups
        # The order of creation is the order of the saved weights: keep it.
        self._mu = self._variable("mu", ())
        self._steps = self._variable("c_steps", (), "int32")
        self._base_lr = self._variable("base_learning_rate", ())
        self._epoch = self._variable("schedule_epoch", (), "int32")
        self._phase = self._variable("schedule_phase", (), "int32")
        states = []
        for group in groups:
            rows = group.kernels[0].channels if group.per_channel else 1
            codebook = self._variable(
                f"codebook_{_safe(group.name)}",
                (rows, group.quantization.num_entries))
            kernels = []
            for ref in group.kernels:
                shape = tuple(ref.variable.shape)
                name = _safe(ref.path)
                kernels.append(KernelState(
                    ref=ref,
                    multipliers=self._variable(f"lambda_{name}", shape),
                    target=self._variable(f"target_{name}", shape),
                    anchor=self._variable(f"anchor_{name}", shape),
                    indices=self._variable(f"indices_{name}", shape,
                                           "int32")))
            states.append(GroupState(group, codebook, kernels))
        self.group_states = tuple(states)
        self.built = True

    def call(self, inputs):  # pragma: no cover - never called
        return inputs

    # ------------------------------------------------------------------
    # Saving: Δ(Θ) and the anchors are derived, so they are not stored
    # ------------------------------------------------------------------

    def _stored(self):
        """The variables a file holds: all but the derived Δ(Θ), anchors."""
        head = [self._mu, self._steps, self._base_lr, self._epoch,
                self._phase]
        return (head + [g.codebook for g in self.group_states]
                + [k.multipliers for k in self.kernels]
                + [k.indices for k in self.kernels])

    def save_own_variables(self, store):
        """Saves μ, the counters, Θ, λ and the indices (the latter in the
        smallest unsigned integer type that holds them); Δ(Θ) and the
        anchors follow from those and are rebuilt when loading."""
        if not self.created:
            return super().save_own_variables(store)
        indices = {id(k.indices): g.group.quantization.num_entries
                   for g in self.group_states for k in g.kernels}
        store["lc_format"] = np.array(_FORMAT)
        for i, v in enumerate(self._stored()):
            value = keras.ops.convert_to_numpy(v.value)
            if id(v) in indices:
                value = value.astype(
                    np.uint8 if indices[id(v)] <= 256 else np.uint16)
            store[f"{i}"] = value

    def load_own_variables(self, store):
        """Loads what `save_own_variables` saved (or a file of every
        variable, as versions before it wrote), then rebuilds Δ(Θ) and the
        anchors."""
        if not self.created or "lc_format" not in store:
            return super().load_own_variables(store)
        stored = self._stored()
        if len(store.keys()) != len(stored) + 1:
            raise ValueError(
                f"The LC state in this file holds {len(store.keys()) - 1} "
                f"variables, but LCModel's state has {len(stored)}: it was "
                "saved from a model with other compressed kernels.")
        for i, v in enumerate(stored):
            v.assign(np.asarray(store[f"{i}"]).astype(v.dtype))
        self.rebuild_targets()

    def rebuild_targets(self):
        """Δ(Θ) ← codebook[row, indices] and the anchors, every kernel."""
        mu = self._mu.value
        for g in self.group_states:
            for k in g.kernels:
                target = g.values(g.codebook.value, k.indices.value, k.ref)
                k.target.assign(target)
                k.anchor.assign(self.anchor(target, k.multipliers.value, mu))

    @property
    def created(self):
        """Whether `create` has run (the kernels are known)."""
        return self.groups is not None

    @property
    def kernels(self):
        """The `KernelState` of every compressed kernel, in group order."""
        return [k for g in self.group_states for k in g.kernels]

    @property
    def c_steps(self):
        """C steps run so far (direct compression counts as 1)."""
        return int(self._steps.numpy())

    @property
    def initialized(self):
        """Whether a C step (direct compression at least) has run."""
        return self.c_steps > 0

    @property
    def mu(self):
        """μ, a float32 scalar variable (set it with `set_mu`)."""
        return self._mu

    def set_mu(self, value):
        """Sets μ and refreshes the anchors that depend on it."""
        if value != float(self._mu.numpy()):
            self._mu.assign(value)
            self.refresh_anchors()

    # ------------------------------------------------------------------
    # The penalty
    # ------------------------------------------------------------------

    def anchor(self, target, multipliers, mu):
        """The penalty's anchor: Δ(Θ) + λ/μ (augmented) or Δ(Θ)."""
        if self.penalty == "augmented":
            return target + tf.math.divide_no_nan(multipliers, mu)
        return target

    def refresh_anchors(self):
        """anchor ← the anchor of the current Δ(Θ), λ and μ, every kernel."""
        mu = self._mu.value
        for k in self.kernels:
            k.anchor.assign(self.anchor(k.target.value, k.multipliers.value,
                                        mu))

    def penalty_value(self):
        """μ/2·Σ‖w − anchor‖² over the compressed kernels (float32)."""
        mu = self._mu.value
        total = tf.constant(0.0, tf.float32)
        for k in self.kernels:
            total += half_squared_distance(
                tf.cast(k.variable.value, tf.float32), k.anchor.value, mu)
        return total

    def proximal_step(self, lr, frozen):
        """w ← (w + c·a)/(1 + c), c = lr·μ, on every kernel not `frozen`.

        The exact minimiser of μ/2·‖w − a‖² + 1/(2·lr)·‖w − w₀‖² (the
        proximal operator of the penalty with the optimizer's step size).
        Under a distribution strategy it runs once per replica on the
        synchronized (mirrored) kernels, as the optimizer's own updates do.
        The penalty of the updated kernels comes from the same difference
        w − a: the step moves w to a + (w − a)/(1 + c).

        Args:
            lr: The learning rate of the optimizer's step (a scalar tensor).
            frozen: Per kernel (in `kernels` order), whether training cannot
                move it: those stay where they are.

        Returns:
            The float32 scalar μ/2·Σ‖w − a‖² over every compressed kernel
            after the step (`penalty_value` then, without a second pass).
        """
        mu = self._mu.value
        c = lr * mu
        shrink = c / (1.0 + c)
        keep = 1.0 - shrink
        total = tf.constant(0.0, tf.float32)
        pairs = []
        for k, still in zip(self.kernels, frozen):
            d = tf.cast(k.variable.value, tf.float32) - k.anchor.value
            # 0.5·‖d‖² in one fused pass.
            half_squared = tf.nn.l2_loss(d)
            if still:
                total += mu * half_squared
            else:
                total += mu * keep * keep * half_squared
                pairs.append((k.variable.value, d))

        def update(variable, d, shrink):
            if variable.dtype == tf.float32:
                # w ← w − shrink·d in place, one fused pass.
                return tf.raw_ops.ResourceApplyGradientDescent(
                    var=variable.handle, alpha=shrink, delta=d)
            w = tf.cast(variable, tf.float32)
            return variable.assign(tf.cast(w - shrink * d, variable.dtype))

        def merged(strategy, shrink):
            for variable, d in pairs:
                strategy.extended.update(variable, update,
                                         args=(d, shrink), group=False)

        tf.distribute.get_replica_context().merge_call(merged, args=(shrink,))
        return total

    def quantized_mapping(self):
        """`[(kernel variable, Δ(Θ))]`, for a `keras.StatelessScope`."""
        return [(k.variable, tf.cast(k.target.value, k.variable.dtype))
                for k in self.kernels]

    # ------------------------------------------------------------------
    # The C step
    # ------------------------------------------------------------------

    def _project(self, mu, warm, frozen):
        """Graph of the projection of every group: (finite, codebook,
        [(indices, target) per kernel]) per group."""
        outputs = []
        shift = self.penalty in WITH_MULTIPLIERS and warm
        flags = iter(frozen if shift else ())
        for g in self.group_states:
            rows, finite = [], []
            for k in g.kernels:
                w = tf.cast(k.variable.value, tf.float32)
                if shift and not next(flags):
                    w = w - tf.math.divide_no_nan(k.multipliers.value, mu)
                finite.append(tf.reduce_all(tf.math.is_finite(w)))
                rows.append(g.to_rows(w, k.ref))
            v = rows[0] if len(rows) == 1 else tf.concat(rows, axis=-1)
            previous = g.codebook.value if warm else None
            codebook, indices = g.group.quantization.project(v, previous)
            codebook = tf.cast(codebook, tf.float32)
            indices = tf.cast(indices, tf.int32)
            per_kernel, offset = [], 0
            for k in g.kernels:
                n = k.ref.size // g.rows
                idx = g.from_rows(indices[:, offset:offset + n], k.ref)
                offset += n
                per_kernel.append((idx, g.values(codebook, idx, k.ref)))
            outputs.append((tf.stack(finite), codebook, per_kernel))
        return outputs

    def _commit(self, outputs, warm, update_multipliers, frozen):
        """Graph of the assignments of a C step: Θ, Δ(Θ), λ, anchors."""
        mu = self._mu.value
        flags = iter(frozen)
        update = update_multipliers and self.penalty in WITH_MULTIPLIERS
        for g, (_, codebook, per_kernel) in zip(self.group_states, outputs):
            g.codebook.assign(codebook)
            for k, (idx, target) in zip(g.kernels, per_kernel):
                still = next(flags)
                k.indices.assign(idx)
                k.target.assign(target)
                w = tf.cast(k.variable.value, tf.float32)
                if update and not still:
                    new = k.multipliers.value - mu * (w - target)
                elif not warm or still:
                    new = tf.zeros_like(w)
                else:
                    new = k.multipliers.value
                k.multipliers.assign(new)
                k.anchor.assign(self.anchor(target, new, mu))
        self._steps.assign_add(1)
        return tf.constant(True)

    def _c_step_fn(self, warm, update_multipliers, frozen):
        """One tf.function per (warm, update, frozen kernels)."""
        key = (warm, update_multipliers, tuple(frozen))
        if key not in self._c_step_fns:

            def c_step(mu):
                outputs = self._project(mu, warm, frozen)
                finite = tf.concat([f for f, _, _ in outputs], axis=0)
                tf.cond(tf.reduce_all(finite),
                        lambda: self._commit(outputs, warm,
                                             update_multipliers, frozen),
                        lambda: tf.constant(False))
                return finite

            self._c_step_fns[key] = tf.function(c_step, autograph=False)
        return self._c_step_fns[key]

    def c_step(self, *, warm, update_multipliers, frozen):
        """One C step over every group, as one graph.

        Θ ← Π(w − λ/μ) (Π(w) when not `warm`, with a fresh codebook
        initialisation), Δ(Θ) and the indices follow, then λ ← λ − μ·(w −
        Δ(Θ)) if `update_multipliers` (and the penalty has multipliers), and
        the anchors. Nothing is assigned if a projected weight is NaN or inf.

        Args:
            warm: Whether to shift by λ/μ and warm-start the codebooks
                (every C step after direct compression).
            update_multipliers: Whether to update λ.
            frozen: Per kernel, whether training cannot move it: it is
                projected as it is and its λ stays 0.

        Returns:
            A bool array: per kernel, whether its projected weights were
            finite (if one is not, nothing was assigned).
        """
        mu = self._mu.value if warm else tf.constant(1.0)
        return self._c_step_fn(warm, update_multipliers, frozen)(mu).numpy()

    # ------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------

    def distortions(self):
        """‖w − Δ(Θ)‖² per kernel, `{kernel path: float}`."""
        return {
            k.path: float(tf.reduce_sum(tf.square(
                tf.cast(k.variable.value, tf.float64)
                - tf.cast(k.target.value, tf.float64))).numpy())
            for k in self.kernels
        }

    def compression_state(self):
        """`{kernel path: QuantizedKernel}` of the last C step, layer order."""
        state = {}
        for g in self.group_states:
            codebook = g.codebook.numpy()
            for k in g.kernels:
                ref = k.ref
                state[ref.path] = QuantizedKernel(
                    name=ref.path, layer_name=ref.layer.name,
                    attribute=ref.attribute, kind=g.group.quantization.kind,
                    codebook=codebook, indices=k.indices.numpy(),
                    channel_axes=g.channel_axes(ref), group=g.group.name,
                    layer_type=ref.layer_type)
        return state

    def codebooks(self):
        """`[(CompressionGroup, codebook array (rows, k))]`, group order."""
        return [(g.group, g.codebook.numpy()) for g in self.group_states]

    # ------------------------------------------------------------------
    # Where a schedule left the run
    # ------------------------------------------------------------------

    @property
    def schedule_epoch(self):
        """Epochs of a `MuSchedule` this state has completed."""
        return int(self._epoch.numpy())

    @property
    def schedule_phase(self):
        """`AT_EPOCH_END`, `IN_EPOCH` or `CLOSED`."""
        return int(self._phase.numpy())

    def mark_in_epoch(self):
        """Records that training is inside an epoch (batches trained)."""
        self._phase.assign(IN_EPOCH)

    def mark_epoch_end(self, epochs):
        """Records that `epochs` epochs of the schedule are done."""
        self._epoch.assign(epochs)
        self._phase.assign(AT_EPOCH_END)

    def mark_closed(self):
        """Records a run closed by an extra C step inside an L step."""
        self._phase.assign(CLOSED)

    @property
    def base_learning_rate(self):
        """The optimizer's learning rate when LC started (0.0: not yet)."""
        return float(self._base_lr.numpy())

    def record_base_learning_rate(self, value):
        """Records lr0 once: later calls leave the first value."""
        if self.base_learning_rate == 0.0:
            self._base_lr.assign(float(value))
        return self.base_learning_rate

    def resume_problem(self, epoch):
        """Why a schedule starting at `epoch` cannot continue exactly.

        Args:
            epoch: The 0-based epoch `fit` starts at (`initial_epoch`).

        Returns:
            None when it can, else the reason (a sentence fragment).
        """
        done, phase = self.schedule_epoch, self.schedule_phase
        if not self.initialized:
            if epoch:
                return (
                    "it has not started (no C step yet), but fit starts at "
                    f"epoch {epoch + 1} (initial_epoch={epoch}): the first "
                    f"{epoch} epochs of the schedule, and their C steps, "
                    "would be skipped. Pass initial_epoch=0 (the default)")
            return None
        if phase == IN_EPOCH:
            return (
                f"its state was saved in the middle of epoch {done + 1} (by "
                "a checkpoint with a batch-level save_freq, or left by a fit "
                "interrupted inside an epoch), and Keras can only resume at "
                "the start of an epoch. Resume from a checkpoint saved at an "
                "epoch end (ModelCheckpoint or BackupAndRestore with "
                "save_freq=\"epoch\")")
        if done and epoch != done:
            return (
                f"its state has run {done} epochs of the schedule, but fit "
                f"starts at epoch {epoch + 1} (initial_epoch={epoch}): the "
                "epochs in between would be skipped or run twice (a second "
                "C step and multiplier update for the same L step). Pass "
                f"`initial_epoch={done}` to continue (BackupAndRestore does "
                "this for you)")
        if phase == CLOSED:
            return (
                f"its run was stopped after epoch {done}, inside an L step, "
                "and closed with an extra C step and multiplier update, which "
                "an uninterrupted run would not have made. Resume from a "
                "checkpoint saved at that epoch's end instead")
        return None
