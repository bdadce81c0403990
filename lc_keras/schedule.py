"""`MuSchedule`: the callback that drives the LC iterations.

Each LC step k is an L step at μ_k followed by a C step and the multiplier
update. `MuSchedule.for_budget(epochs)` (the default policy) places them on
a grid of batches: short L steps over the whole budget, μ growing
geometrically to the last batch (`BudgetGrid` holds the arithmetic). The
constructor places them on a grid of epochs: L steps of `epochs_per_step`
epochs at μ_k = mu0·growth^k (the first one may be longer), the paper's
schedule. Either way μ (and the learning rate, for `lr_decay`) is a function
of the position in the run only, and the LC state (codebooks, λ, μ, lr0,
the epochs done) is saved with the model, so a run resumed at an epoch end
continues exactly; the state also records whether it was saved inside an
epoch, so that an inexact resume is refused.
"""

import dataclasses
import math
import warnings

import keras
import numpy as np
from absl import logging

from lc_keras import checks
from lc_keras.callbacks import LCCallback
from lc_keras.model import LCModel

#: `MuSchedule(per_kernel_logs=None)` logs per kernel up to this many kernels.
PER_KERNEL_LOGS_UP_TO = 4

# `MuSchedule.for_budget`'s default (first, last) value of μ·lr0.
_DEFAULT_PULL = (1e-2, 0.3)


def _check_budget(epochs, step_batches=20, steps=None, pull=_DEFAULT_PULL,
                  mu0=None, mu_end=None):
    """Validates the arguments of `MuSchedule.for_budget`; returns them."""
    owner = "MuSchedule.for_budget"
    epochs = checks.check_int(owner, "epochs", epochs, low=1)
    step_batches = checks.check_int(owner, "step_batches", step_batches,
                                    low=1)
    if steps is not None:
        steps = checks.check_int(owner, "steps", steps, low=1)
    if (mu0 is None) != (mu_end is None):
        raise ValueError(
            f"{owner} requires mu0 and mu_end together (or neither, to set "
            f"mu by `pull`). Received: mu0={mu0}, mu_end={mu_end}")
    if mu0 is not None:
        mu0 = checks.check_number(owner, "mu0", mu0, low=0,
                                  low_inclusive=False)
        mu_end = checks.check_number(owner, "mu_end", mu_end, low=mu0)
        if not mu_end <= float(np.finfo(np.float32).max):
            raise ValueError(
                f"{owner} requires mu_end to be finite in float32 "
                f"(<= 3.4e38). Received: mu_end={mu_end}")
        pull = None
    else:
        if (isinstance(pull, (str, bytes)) or not hasattr(pull, "__len__")
                or len(pull) != 2):
            raise TypeError(
                f"{owner} requires pull to be a pair (first, last). "
                f"Received: pull={pull!r}")
        first = checks.check_number(owner, "pull[0]", pull[0], low=0,
                                    low_inclusive=False, high=1e3)
        last = checks.check_number(owner, "pull[1]", pull[1], low=first,
                                   high=1e3)
        pull = (first, last)
    return {"epochs": epochs, "step_batches": step_batches, "steps": steps,
            "pull": pull, "mu0": mu0, "mu_end": mu_end}


def _metrics(logs):
    """The loss and validation metrics of epoch logs, rounded, for a log
    line (validation runs after the C steps: those of the quantized net)."""
    return {k: round(float(v), 4) for k, v in logs.items()
            if k.startswith("val_") or k == "loss"}


@dataclasses.dataclass(frozen=True)
class BudgetGrid:
    """Where the LC steps of a `MuSchedule.for_budget` run fall, in batches.

    Batches are counted over the whole run (batch t of epoch e is number
    e·steps_per_epoch + t + 1). L step k trains batches
    `(end(k-1), end(k)]`; its C step and multiplier update run right after
    batch `end(k)`. The `steps` ends split the budget evenly, the last one
    at its last batch; a run allowed past the budget (`strict=False`) goes on
    with L steps of the mean length and μ growing by the same factor.

    Attributes:
        steps_per_epoch: Batches per epoch.
        total_batches: Batches of the budget.
        steps: LC steps (C steps after direct compression) in the budget.
        mu0: μ of the first L step.
        mu_end: μ of the last L step.

    Example:

    >>> g = BudgetGrid(steps_per_epoch=10, total_batches=30, steps=3,
    ...                mu0=1.0, mu_end=100.0)
    >>> [g.end(k) for k in range(3)], [g.mu(k) for k in range(3)]
    ([10, 20, 30], [1.0, 10.0, 100.0])
    >>> g.step_of_batch(15)
    1
    """

    steps_per_epoch: int
    total_batches: int
    steps: int
    mu0: float
    mu_end: float

    @property
    def growth(self):
        """Factor of μ from one L step to the next."""
        if self.steps == 1:
            return 1.0
        return (self.mu_end / self.mu0) ** (1.0 / (self.steps - 1))

    def end(self, k):
        """The batch count after which the C step of LC step k runs."""
        if k < self.steps:
            return int(round((k + 1) * self.total_batches / self.steps))
        mean = max(1, int(round(self.total_batches / self.steps)))
        return self.total_batches + (k - self.steps + 1) * mean

    def mu(self, k):
        """μ of L step k (μ_k = mu0·growth^k)."""
        if k == self.steps - 1:
            return self.mu_end
        return self.mu0 * self.growth ** k

    def step_of_batch(self, t):
        """The L step that batch number t + 1 trains in (C steps before it)."""
        k = 0
        if t >= self.total_batches:
            mean = max(1, int(round(self.total_batches / self.steps)))
            k = self.steps + (t - self.total_batches) // mean
        else:
            k = (t * self.steps) // self.total_batches
        while k > 0 and self.end(k - 1) > t:
            k -= 1
        while self.end(k) <= t:
            k += 1
        return k


class MuSchedule(LCCallback):
    """Runs LC: direct compression, C steps, multiplier updates, μ growth.

    Most runs want `MuSchedule.for_budget(epochs)`: LC in a training budget,
    with C steps between batches (see there). The constructor makes the
    paper's schedule on a grid of epochs, described here.

    At the start of the first epoch of `fit` (after every callback's
    `on_train_begin`, where `BackupAndRestore` restores), if the `LCModel` has
    not run a C step yet, runs direct compression (Θ ← Π(w), λ ← 0). Then, for
    LC step k = 0, 1, ...:
    the L step trains `epochs_per_step` epochs (`first_step_epochs` for k=0)
    with μ = mu0·growth^k (and, if `lr_decay` is set, learning rate
    lr0·lr_decay^k); at its end the C step Θ ← Π(w − λ/μ) and the update
    λ ← λ − μ·(w − Δ(Θ)) run — before validation, so the validation metrics
    of that epoch are those of the new quantized net.

    `fit` must be given `epochs=schedule.total_epochs`; any other number is an
    error unless `strict=False`, in which case LC steps go on past `steps`
    with μ still growing (or stop early), and a final C step runs at the end
    of training if the last epoch did not end an L step. The same final C
    step runs when training stops early (e.g. `EarlyStopping`,
    `TerminateOnNaN`).

    Resuming: `LCModel.fit` runs this callback before the others, so the
    epoch-end C step is in what `ModelCheckpoint` and `BackupAndRestore`
    save. `BackupAndRestore` (per epoch) resumes an interrupted run exactly;
    so does reloading a `.keras` file saved at an epoch end and calling `fit`
    with `initial_epoch` = the epochs it holds. A state that cannot continue
    exactly is an error when `fit` starts (a warning if `strict=False`): one
    saved inside an epoch (Keras restarts epochs from their first batch), an
    `initial_epoch` other than the epochs the state holds (which would skip
    or repeat C steps and λ updates), or a run closed early by the final C
    step above.

    Logs (History, TensorBoard, CSVLogger, progress bar): `lc_step`,
    `lc_mu`, `lc_distortion` (the total ‖w − Δ(Θ)‖²), and, per kernel (see
    `per_kernel_logs`), the distortion of each kernel as
    `lc_distortion/<kernel path>` and the entries of each codebook of at most
    `log_codebooks` entries (not per-channel) as `lc_codebook/<group>/<j>`.

    Args:
        mu0: μ of the first L step (> 0). The penalty is a SUM over weights;
            see README for how to pick it.
        growth: Factor of μ per LC step (>= 1).
        steps: Number of LC steps (>= 1).
        epochs_per_step: Epochs of each L step (>= 1).
        first_step_epochs: Epochs of the first L step (default
            `epochs_per_step`).
        lr_decay: If set, the optimizer's learning rate is lr0·lr_decay^k
            during LC step k (lr0: its value when LC started; kept in the
            model so resuming is exact). In (0, 1]. The default takes the
            rate down to ~1% of lr0 over 30 steps; for S steps,
            `0.01 ** (1 / S)` does the same (see README, "Picking the learning rate").
        strict: Whether `fit` must run exactly `total_epochs` epochs, and
            resume only where the state was left (see above).
        log_codebooks: Largest codebook whose entries are logged each epoch
            (0: none).
        per_kernel_logs: Whether the per-kernel logs above go into the epoch
            logs (and so the progress bar as well as History): `None`
            (default) for models of at most `PER_KERNEL_LOGS_UP_TO`
            compressed kernels, `True` always, `False` never.

    Example:

    >>> schedule = MuSchedule(mu0=1e-4, growth=1.4, steps=30,
    ...                       epochs_per_step=2)
    >>> schedule.total_epochs
    60
    >>> round(schedule.mu_at_epoch(59), 4)
    1.7287
    """

    def __init__(self, mu0=1e-4, growth=1.4, steps=30, epochs_per_step=2, *,
                 first_step_epochs=None, lr_decay=0.85, strict=True,
                 log_codebooks=16, per_kernel_logs=None, budget=None):
        super().__init__()
        self.budget = None if budget is None else _check_budget(**budget)
        if self.budget is not None and lr_decay is not None:
            raise ValueError(
                "MuSchedule.for_budget leaves the learning rate to the "
                "optimizer (a float or a Keras schedule); it takes no "
                f"lr_decay. Received: lr_decay={lr_decay}")
        owner = "MuSchedule"
        mu0 = checks.check_number(owner, "mu0", mu0, low=0,
                                  low_inclusive=False)
        growth = checks.check_number(owner, "growth", growth, low=1)
        steps = checks.check_int(owner, "steps", steps, low=1)
        epochs_per_step = checks.check_int(owner, "epochs_per_step",
                                           epochs_per_step, low=1)
        if first_step_epochs is None:
            first_step_epochs = epochs_per_step
        first_step_epochs = checks.check_int(
            owner, "first_step_epochs", first_step_epochs, low=1)
        if lr_decay is not None:
            lr_decay = checks.check_number(
                "MuSchedule", "lr_decay", lr_decay, low=0,
                low_inclusive=False, high=1)
        # μ is a float32 variable: its last value must be one.
        last_mu = mu0 * growth ** (steps - 1) if growth > 1 else mu0
        if not last_mu <= float(np.finfo(np.float32).max):
            raise ValueError(
                "MuSchedule requires mu0*growth**(steps-1), the mu of the "
                "last LC step, to be finite in float32 (<= 3.4e38). "
                f"Received: mu0={mu0}, growth={growth}, steps={steps}")
        self.mu0 = mu0
        self.growth = growth
        self.steps = steps
        self.epochs_per_step = epochs_per_step
        self.first_step_epochs = first_step_epochs
        self.lr_decay = lr_decay
        self.strict = checks.check_bool("MuSchedule", "strict", strict)
        self.log_codebooks = checks.check_int(owner, "log_codebooks",
                                              log_codebooks, low=0)
        if per_kernel_logs is not None:
            per_kernel_logs = checks.check_bool(owner, "per_kernel_logs",
                                                per_kernel_logs)
        self.per_kernel_logs = per_kernel_logs
        self._epoch = None
        self._pending = False
        self._in_fit = False
        self._started = False
        self._marked = False
        self._stepped = False
        self._distortions = {}
        self._grid = None  # budget runs: the BudgetGrid of this fit
        self._done = 0  # budget runs: batches trained so far in the run
        self._next_end = 0  # budget runs: the batch count of the next C step

    @classmethod
    def for_budget(cls, epochs, *, step_batches=20, steps=None,
                   pull=_DEFAULT_PULL, mu0=None, mu_end=None, strict=True,
                   log_codebooks=16, per_kernel_logs=None):
        """An LC schedule that fits a budget of `epochs` epochs.

        The budget is split into short L steps of `step_batches` batches
        (or into `steps` equal ones), each followed by a C step and the
        multiplier update, and μ grows geometrically from the first L step to
        the last, whose C step runs after the last batch of the budget: so
        `fit(epochs=schedule.total_epochs)` does the whole budget and ends
        on the quantized net Δ(Θ). The learning rate is the optimizer's own
        (a float, or any Keras schedule); use it with the default
        `LCModel(penalty_step="proximal")`.

        μ is set relative to the optimizer: by default μ·lr0 (lr0: the
        optimizer's learning rate when LC starts) runs from `pull[0]` to
        `pull[1]`. μ·lr is the share of the distance to the penalty's
        anchor that the proximal penalty step removes at each batch, so the
        same `pull` means the same thing for SGD at 0.1 and for Adam at 1e-3
        (see README, "Picking μ"). `mu0` and `mu_end` set μ directly
        instead.

        Args:
            epochs: The budget, in epochs (an int >= 1).
            step_batches: Batches per L step (>= 1), counted across epochs.
            steps: Number of LC steps instead (>= 1, at most the number of
                batches of the budget); overrides `step_batches`.
            pull: `(first, last)` value of μ·lr0, each in (0, 1e3], first <=
                last.
            mu0: μ of the first L step; give it with `mu_end`.
            mu_end: μ of the last L step (>= mu0).
            strict: As for `MuSchedule`.
            log_codebooks: As for `MuSchedule`.
            per_kernel_logs: As for `MuSchedule`.

        Returns:
            A `MuSchedule` whose `total_epochs` is `epochs`.

        Raises:
            ValueError: for an argument out of range, and, when `fit`
                starts, for a budget with fewer batches than `steps` or data
                whose number of batches per epoch Keras does not know.

        Example:

        >>> schedule = MuSchedule.for_budget(10)
        >>> schedule.total_epochs
        10
        >>> grid = schedule.grid(steps_per_epoch=469, learning_rate=1e-3)
        >>> grid.steps, grid.end(0), grid.end(grid.steps - 1)
        (235, 20, 4690)
        >>> round(grid.mu(0), 6), round(grid.mu(grid.steps - 1), 6)
        (10.0, 300.0)
        """
        budget = {"epochs": epochs, "step_batches": step_batches,
                  "steps": steps, "pull": pull, "mu0": mu0,
                  "mu_end": mu_end}
        return cls(strict=strict, log_codebooks=log_codebooks,
                   per_kernel_logs=per_kernel_logs, lr_decay=None,
                   budget=budget)

    def grid(self, steps_per_epoch, learning_rate):
        """The `BudgetGrid` of a budget schedule for a given fit.

        Args:
            steps_per_epoch: Batches per epoch of the training data.
            learning_rate: The optimizer's learning rate when LC starts
                (used when μ is set by `pull`).

        Returns:
            A `BudgetGrid`.
        """
        if self.budget is None:
            raise ValueError(
                "MuSchedule.grid is for schedules made by "
                "`MuSchedule.for_budget`; this one runs on an epoch grid "
                "(see `step_of_epoch`).")
        b = self.budget
        steps_per_epoch = checks.check_int(
            "MuSchedule", "steps_per_epoch", steps_per_epoch, low=1)
        total = b["epochs"] * steps_per_epoch
        steps = b["steps"]
        if steps is None:
            steps = -(-total // b["step_batches"])
        if steps > total:
            raise ValueError(
                f"MuSchedule.for_budget requires steps <= the batches of the "
                f"budget ({b['epochs']} epochs × {steps_per_epoch} batches = "
                f"{total}), so that every L step trains at least one batch. "
                f"Received: steps={steps}")
        if b["mu0"] is not None:
            mu0, mu_end = b["mu0"], b["mu_end"]
        else:
            learning_rate = checks.check_number(
                "MuSchedule", "learning_rate", learning_rate, low=0,
                low_inclusive=False)
            mu0 = b["pull"][0] / learning_rate
            mu_end = b["pull"][1] / learning_rate
        return BudgetGrid(steps_per_epoch=steps_per_epoch,
                          total_batches=total, steps=steps, mu0=mu0,
                          mu_end=mu_end)

    # Schedule arithmetic -------------------------------------------------

    @property
    def total_epochs(self):
        """Epochs of the whole schedule: pass this to `fit(epochs=...)`."""
        if self.budget is not None:
            return self.budget["epochs"]
        return self.first_step_epochs + (self.steps - 1) * self.epochs_per_step

    def step_of_epoch(self, epoch):
        """The (0-based) LC step that epoch `epoch` belongs to."""
        if epoch < self.first_step_epochs:
            return 0
        return 1 + (epoch - self.first_step_epochs) // self.epochs_per_step

    def mu_at_epoch(self, epoch):
        """μ during epoch `epoch`."""
        return self.mu0 * self.growth ** self.step_of_epoch(epoch)

    def ends_step(self, epoch):
        """Whether epoch `epoch` is the last epoch of its L step."""
        return self.step_of_epoch(epoch + 1) != self.step_of_epoch(epoch)

    # Callback hooks ------------------------------------------------------

    def _lc_model(self):
        if not isinstance(self.model, LCModel):
            raise TypeError(
                "MuSchedule drives an `lc_keras.LCModel`; it was passed to "
                f"`fit` of a {type(self.model).__name__}. Wrap the model: "
                "`lc_keras.LCModel(model, compression=...)`.")
        return self.model

    def on_train_begin(self, logs=None):
        model = self._lc_model()
        epochs = (self.params or {}).get("epochs")
        if self.strict and epochs is not None and epochs != self.total_epochs:
            plan = ("a budget" if self.budget is not None else
                    f"{self.steps} LC steps: {self.first_step_epochs} + "
                    f"{self.steps - 1}×{self.epochs_per_step}")
            raise ValueError(
                f"MuSchedule runs {self.total_epochs} epochs ({plan}), but "
                f"fit was given epochs={epochs}. "
                "Pass `epochs=schedule.total_epochs`, or build the schedule "
                "with `strict=False` to stop early or continue past the last "
                "step with μ still growing.")
        model.lc_state  # noqa: B018 - creates the state, or refuses an unbuilt model
        if self.budget is not None and not (self.params or {}).get("steps"):
            raise ValueError(
                "MuSchedule.for_budget places its C steps by batch, so it "
                "needs the number of batches per epoch before training, which "
                "Keras does not know for this data (a dataset of unknown "
                "length). Pass `steps_per_epoch=` to fit, or data of known "
                "length (arrays, or a tf.data.Dataset with a known "
                "cardinality).")
        if self.lr_decay is not None:
            lr = model.optimizer.learning_rate
            if not isinstance(lr, keras.Variable):
                raise ValueError(
                    "MuSchedule(lr_decay=...) sets the optimizer's learning "
                    "rate, which must then be a float, not a schedule. "
                    f"Received: learning_rate={lr!r}. Pass lr_decay=None.")
        self._in_fit = True
        self._pending = False
        self._started = False
        self._epoch = None

    def _start(self, epoch):
        """First epoch of a `fit`: check a resumed state, or start LC.

        This runs at the first `on_epoch_begin` rather than in
        `on_train_begin`, so that it sees the state that callbacks such as
        `BackupAndRestore` restore in their `on_train_begin`.
        """
        model = self.model
        state = model.lc_state
        self._check_resume(epoch)
        if model.compression_initialized:
            self._distortions = model.distortions()
        else:
            self._distortions = model.direct_compression()
        base_lr = state.record_base_learning_rate(
            keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        if self.budget is not None:
            self._grid = self.grid(self.params["steps"], base_lr)

    def _check_resume(self, epoch):
        """Refuses (or, if not strict, warns about) an inexact continuation."""
        problem = self.model.lc_state.resume_problem(epoch)
        if problem is None:
            return
        message = (f"MuSchedule cannot continue the LC run of "
                   f"'{self.model.name}' exactly: {problem}.")
        if self.strict:
            raise ValueError(
                message + " To continue anyway, use a MuSchedule with "
                "strict=False.")
        warnings.warn(message + " Continuing (strict=False).", stacklevel=2)

    def on_epoch_begin(self, epoch, logs=None):
        model = self.model
        if not self._started:
            self._start(epoch)
            self._started = True
        self._epoch = epoch
        self._pending = True
        self._marked = False
        if self._grid is not None:
            self._budget_epoch_begin(epoch)
            return
        step = self.step_of_epoch(epoch)
        model.mu = self.mu_at_epoch(epoch)
        if self.lr_decay is not None:
            base = model.lc_state.base_learning_rate
            model.optimizer.learning_rate.assign(base * self.lr_decay ** step)
        if epoch == 0 or self.ends_step(epoch - 1):
            logging.info("LC step %d: mu=%.4g", step, model.mu)

    def _budget_epoch_begin(self, epoch):
        grid = self._grid
        self._done = epoch * grid.steps_per_epoch
        step = grid.step_of_batch(self._done)
        self._next_end = grid.end(step)
        self.model.mu = grid.mu(step)
        logging.info("LC epoch %d: L step %d of %d, mu=%.4g", epoch + 1,
                     step, grid.steps, self.model.mu)

    def on_train_batch_end(self, batch, logs=None):
        # Budget runs: the C step (and multiplier update) of every L step
        # that ended with this batch, then μ of the next L step.
        if self._grid is None or self._epoch is None:
            return
        grid = self._grid
        self._done = self._epoch * grid.steps_per_epoch + batch + 1
        if self._done < self._next_end:
            return
        self._pending = True
        self._c_step_if_due(force=True)
        step = grid.step_of_batch(self._done)
        self._next_end = grid.end(step)
        if self._done < grid.total_batches:
            self.model.mu = grid.mu(step)

    def _inside_l_step(self):
        """Whether the run stopped between two C steps."""
        if self._grid is not None:
            step = self._grid.step_of_batch(self._done)
            return step == 0 or self._grid.end(step - 1) != self._done
        return not self.ends_step(self._epoch)

    def on_train_batch_begin(self, batch, logs=None):
        # Marks the state as inside an epoch (once per epoch), so that a
        # checkpoint saved before the epoch ends is recognised on resume.
        if not self._marked:
            self.model.lc_state.mark_in_epoch()
            self._marked = True

    def _c_step_if_due(self, force=False):
        if not self._pending or self._epoch is None:
            return
        if not (force or self.ends_step(self._epoch)):
            return
        self._pending = False
        model = self.model
        try:
            # Budget runs recompute the distortions at epoch ends only.
            distortions = model.c_step(
                return_distortions=self._grid is None)
            self._distortions = distortions or self._distortions
        except ValueError as e:
            if not model.stop_training:
                raise
            # TerminateOnNaN & co.: stop cleanly, keep the last codebooks.
            logging.warning("LC C step skipped as training stops: %s", e)
            return
        self._stepped = True

    def on_test_begin(self, logs=None):
        # Validation inside fit: run the C step first so that the validation
        # metrics describe the new quantized net.
        if self._in_fit and self._grid is None:
            self._c_step_if_due()

    def on_epoch_end(self, epoch, logs=None):
        if not self._marked:
            raise ValueError(
                "MuSchedule requires at least one training batch per epoch. "
                f"Received: epoch {epoch + 1} with 0 batches (empty training "
                "data?); no C step was run for it.")
        if self._grid is not None:
            self._budget_epoch_end(epoch, logs)
            return
        self._c_step_if_due()
        if self._stepped:
            self._log_step(epoch, logs or {})
            self._stepped = False
        if not self.ends_step(epoch):
            self._distortions = self.model.distortions()
        self._end_epoch(epoch, logs, self.step_of_epoch(epoch),
                        self.mu_at_epoch(epoch))

    def _budget_epoch_end(self, epoch, logs):
        self._distortions = self.model.distortions()
        self._stepped = False
        steps = min(self._grid.step_of_batch(self._done), self._grid.steps)
        self._end_epoch(epoch, logs, steps, self.model.mu)
        logging.info(
            "LC epoch %d done: %d C steps, mu=%.4g, distortion %s, %s",
            epoch + 1, steps, self.model.mu, self._rounded_distortions(),
            _metrics(logs or {}))

    def _end_epoch(self, epoch, logs, step, mu):
        """Records the epoch in the LC state and puts the LC logs in `logs`."""
        self.model.lc_state.mark_epoch_end(epoch + 1)
        if logs is not None:
            logs["lc_step"] = step
            logs["lc_mu"] = mu
            logs["lc_distortion"] = float(sum(self._distortions.values()))
            if self._per_kernel():
                for path, value in self._distortions.items():
                    logs[f"lc_distortion/{path}"] = value
                logs.update(self._codebook_logs())
        self._pending = False

    def _per_kernel(self):
        """Whether the epoch logs get the per-kernel entries."""
        if self.per_kernel_logs is not None:
            return self.per_kernel_logs
        return len(self.model.lc_state.kernels) <= PER_KERNEL_LOGS_UP_TO

    def _rounded_distortions(self):
        return {k: round(v, 6) for k, v in self._distortions.items()}

    def _log_step(self, epoch, logs):
        """One line per LC step: μ, distortions, the quantized net's metrics.

        Validation (if any) ran after the C step, so its `val_*` metrics are
        those of the new quantized net Δ(Θ).
        """
        logging.info(
            "LC step %d done (epoch %d): mu=%.4g, distortion %s, %s",
            self.step_of_epoch(epoch), epoch + 1, self.model.mu,
            self._rounded_distortions(), _metrics(logs))

    def _codebook_logs(self):
        """`lc_codebook/<group>/<j>`: entry j of each small codebook."""
        logs = {}
        for group, codebook in self.model.lc_state.codebooks():
            k = group.quantization.num_entries
            if group.per_channel or k > self.log_codebooks:
                continue
            for j, value in enumerate(codebook[0]):
                logs[f"lc_codebook/{group.name}/{j}"] = float(value)
        return logs

    def on_train_end(self, logs=None):
        # A run cut short (early stopping, TerminateOnNaN, fewer epochs):
        # finish with a C step so that Δ(Θ) follows the last L step.
        if self._epoch is not None and self._inside_l_step():
            model = self.model
            if self.model.stop_training or not self.strict:
                try:
                    self._distortions = model.c_step()
                except ValueError as e:  # NaN weights: keep the last Θ.
                    logging.warning("LC final C step skipped: %s", e)
                else:
                    model.lc_state.mark_closed()
        self._in_fit = False

    def get_config(self):
        return {
            "mu0": self.mu0, "growth": self.growth, "steps": self.steps,
            "epochs_per_step": self.epochs_per_step,
            "first_step_epochs": self.first_step_epochs,
            "lr_decay": self.lr_decay, "strict": self.strict,
            "log_codebooks": self.log_codebooks,
            "per_kernel_logs": self.per_kernel_logs, "budget": self.budget,
        }
