"""`MuSchedule`: the callback that drives the LC iterations.

Each LC step k is an L step of `epochs_per_step` epochs at μ_k = mu0·growth^k
(the first one may be longer), followed by a C step and the multiplier update.
μ and the learning rate are functions of the epoch number only, and the LC
state (codebooks, λ, μ, lr0, the epochs done) is saved with the model, so a
run resumed at an epoch end continues exactly; the state also records whether
it was saved inside an epoch, so that an inexact resume is refused.
"""

import math
import warnings

import keras
import numpy as np
from absl import logging

from lc_keras import checks

# `schedule_phase` of the LC state: where in the schedule it was left.
_AT_EPOCH_END = 0  # at the end of `schedule_epoch` epochs (or fresh)
_IN_EPOCH = 1  # inside epoch `schedule_epoch` + 1 (some batches trained)
_CLOSED = 2  # closed by an extra C step after a run stopped inside an L step


def _check_number(name, value, low, inclusive, what):
    del what  # the bound is spelled by `checks`
    return checks.check_number("MuSchedule", name, value, low=low,
                               low_inclusive=inclusive)


def _check_int(name, value, low):
    return checks.check_int("MuSchedule", name, value, low=low)


class MuSchedule(keras.callbacks.Callback):
    """Runs LC: direct compression, C steps, multiplier updates, μ growth.

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

    Logs (History, TensorBoard, progress bar): `lc_step`, `lc_mu`, and the
    distortion ‖w − Δ(Θ)‖² of each kernel as `lc_distortion/<kernel path>`,
    and the entries of each codebook of at most `log_codebooks` entries (not
    per-channel) as `lc_codebook/<group>/<j>`.

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
                 log_codebooks=16):
        super().__init__()
        mu0 = _check_number("mu0", mu0, 0, False, "> 0")
        growth = _check_number("growth", growth, 1, True, ">= 1")
        steps = _check_int("steps", steps, 1)
        epochs_per_step = _check_int("epochs_per_step", epochs_per_step, 1)
        if first_step_epochs is None:
            first_step_epochs = epochs_per_step
        first_step_epochs = _check_int("first_step_epochs", first_step_epochs,
                                       1)
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
        self.log_codebooks = _check_int("log_codebooks", log_codebooks, 0)
        self._epoch = None
        self._pending = False
        self._in_fit = False
        self._started = False
        self._marked = False
        self._stepped = False
        self._distortions = {}

    # Schedule arithmetic -------------------------------------------------

    @property
    def total_epochs(self):
        """Epochs of the whole schedule: pass this to `fit(epochs=...)`."""
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
        from lc_keras.model import LCModel  # circular at import time

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
            raise ValueError(
                f"MuSchedule runs {self.total_epochs} epochs ({self.steps} LC "
                f"steps: {self.first_step_epochs} + {self.steps - 1}×"
                f"{self.epochs_per_step}), but fit was given epochs={epochs}. "
                "Pass `epochs=schedule.total_epochs`, or build the schedule "
                "with `strict=False` to stop early or continue past the last "
                "step with μ still growing.")
        model._require_state()
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
        state = model._lc
        model._align_with_backups(epoch)
        self._check_resume(epoch)
        if model.compression_initialized:
            self._distortions = model.distortions()
        else:
            self._distortions = model.direct_compression()
        if self.lr_decay is not None and float(state.base_lr.numpy()) == 0.0:
            state.base_lr.assign(
                float(model.optimizer.learning_rate.numpy()))

    def _check_resume(self, epoch):
        """Refuses (or, if not strict, warns about) an inexact continuation."""
        state = self.model._lc
        done = int(state.epoch.numpy())
        phase = int(state.phase.numpy())
        problem = None
        if not self.model.compression_initialized:
            if epoch:
                problem = (
                    "it has not started (no C step yet), but fit starts at "
                    f"epoch {epoch + 1} (initial_epoch={epoch}): the first "
                    f"{epoch} epochs of the schedule, and their C steps, "
                    "would be skipped. Pass initial_epoch=0 (the default)")
        elif phase == _IN_EPOCH:
            problem = (
                f"its state was saved in the middle of epoch {done + 1} (by "
                "a checkpoint with a batch-level save_freq, or left by a fit "
                "interrupted inside an epoch), and Keras can only resume at "
                "the start of an epoch. Resume from a checkpoint saved at an "
                "epoch end (ModelCheckpoint or BackupAndRestore with "
                "save_freq=\"epoch\")")
        elif done and epoch != done:
            problem = (
                f"its state has run {done} epochs of the schedule, but fit "
                f"starts at epoch {epoch + 1} (initial_epoch={epoch}): the "
                "epochs in between would be skipped or run twice (a second "
                "C step and multiplier update for the same L step). Pass "
                f"`initial_epoch={done}` to continue (BackupAndRestore does "
                "this for you)")
        elif phase == _CLOSED:
            problem = (
                f"its run was stopped after epoch {done}, inside an L step, "
                "and closed with an extra C step and multiplier update, which "
                "an uninterrupted run would not have made. Resume from a "
                "checkpoint saved at that epoch's end instead")
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
        step = self.step_of_epoch(epoch)
        model.mu = self.mu_at_epoch(epoch)
        if self.lr_decay is not None:
            base = float(model._lc.base_lr.numpy())
            model.optimizer.learning_rate.assign(base * self.lr_decay ** step)
        if epoch == 0 or self.ends_step(epoch - 1):
            logging.info("LC step %d: mu=%.4g", step, model.mu)

    def on_train_batch_begin(self, batch, logs=None):
        # Marks the state as inside an epoch (once per epoch), so that a
        # checkpoint saved before the epoch ends is recognised on resume.
        if not self._marked:
            self.model._lc.phase.assign(_IN_EPOCH)
            self._marked = True

    def _c_step_if_due(self, force=False):
        if not self._pending or self._epoch is None:
            return
        if not (force or self.ends_step(self._epoch)):
            return
        self._pending = False
        model = self.model
        try:
            self._distortions = model.c_step()
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
        if self._in_fit:
            self._c_step_if_due()

    def on_epoch_end(self, epoch, logs=None):
        if not self._marked:
            raise ValueError(
                "MuSchedule requires at least one training batch per epoch. "
                f"Received: epoch {epoch + 1} with 0 batches (empty training "
                "data?); no C step was run for it.")
        self._c_step_if_due()
        if self._stepped:
            self._log_step(epoch, logs or {})
            self._stepped = False
        state = self.model._lc
        state.epoch.assign(epoch + 1)
        state.phase.assign(_AT_EPOCH_END)
        if not self.ends_step(epoch):
            self._distortions = self.model.distortions()
        if logs is not None:
            logs["lc_step"] = self.step_of_epoch(epoch)
            logs["lc_mu"] = self.mu_at_epoch(epoch)
            for path, value in self._distortions.items():
                logs[f"lc_distortion/{path}"] = value
            logs.update(self._codebook_logs())
        self._pending = False

    def _log_step(self, epoch, logs):
        """One line per LC step: μ, distortions, the quantized net's metrics.

        Validation (if any) ran after the C step, so its `val_*` metrics are
        those of the new quantized net Δ(Θ).
        """
        metrics = {k: round(float(v), 4) for k, v in logs.items()
                   if k.startswith("val_") or k == "loss"}
        logging.info(
            "LC step %d done (epoch %d): mu=%.4g, distortion %s, %s",
            self.step_of_epoch(epoch), epoch + 1, self.model.mu,
            {k: round(v, 6) for k, v in self._distortions.items()}, metrics)

    def _codebook_logs(self):
        """`lc_codebook/<group>/<j>`: entry j of each small codebook."""
        logs = {}
        state = self.model._lc
        for group, codebook in zip(state.groups, state.codebooks):
            k = group.quantization.num_entries
            if group.per_channel or k > self.log_codebooks:
                continue
            for j, value in enumerate(codebook.numpy()[0]):
                logs[f"lc_codebook/{group.name}/{j}"] = float(value)
        return logs

    def on_train_end(self, logs=None):
        # A run cut short (early stopping, TerminateOnNaN, fewer epochs):
        # finish with a C step so that Δ(Θ) follows the last L step.
        if self._epoch is not None and not self.ends_step(self._epoch):
            model = self.model
            if self.model.stop_training or not self.strict:
                try:
                    self._distortions = model.c_step()
                except ValueError as e:  # NaN weights: keep the last Θ.
                    logging.warning("LC final C step skipped: %s", e)
                else:
                    model._lc.phase.assign(_CLOSED)
        self._in_fit = False

    def get_config(self):
        return {
            "mu0": self.mu0, "growth": self.growth, "steps": self.steps,
            "epochs_per_step": self.epochs_per_step,
            "first_step_epochs": self.first_step_epochs,
            "lr_decay": self.lr_decay, "strict": self.strict,
            "log_codebooks": self.log_codebooks,
        }
