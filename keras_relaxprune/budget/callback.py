"""`PruningCallback`: the sparsity budget inside plain `model.fit`."""

import keras

from keras_relaxprune.budget import freezing
from keras_relaxprune.budget.baselines import set_gate_prior
from keras_relaxprune.budget.callback_arguments import checked_arguments
from keras_relaxprune.budget.divergence import DivergenceGuard
from keras_relaxprune.budget.fit_target import exclude_gates_from_weight_decay, gated_model, is_sgd
from keras_relaxprune.budget.gate_travel import warn_if_gates_cannot_reach
from keras_relaxprune.budget.learning_rate import RateAfterClosing
from keras_relaxprune.budget.progress_logs import describe, progress_logs
from keras_relaxprune.budget.ramp_length import default_ramp_epochs, warn_if_short
from keras_relaxprune.budget.recalibrate_bn import recalibrate_batchnorm
from keras_relaxprune.layers.channel_gate import FINAL_SCALE, INITIAL_SCALE
from keras_relaxprune.layers.pruning_budget import link_budget
from keras_relaxprune.reporting.tensorboard import PruningSummaries, print_message

# PruningCallback(cost_exponent=None) per budget metric, as measured (docs/accuracy.md).
DEFAULT_COST_EXPONENT = {"flops": 0.5, "params": 0.0, "latency": 0.5}


class PruningCallback(keras.callbacks.Callback):
    """Prunes a gated model to a FLOPs or params budget during `fit`.

    Turns on the relaxed sparsity regulariser of a model made by
    `add_gates`, ramps its target from 0 to `target` (polynomial, like
    tfmot's `PolynomialDecay`) between `begin_step` and `end_step`, anneals
    the gate temperature so gates polarise, and freezes channels whose gate
    falls below a rising threshold. When the ramp ends (at the first epoch
    boundary after `end_step`, i.e. when the next epoch begins, at the
    latest when `fit` ends) the budget is
    closed: channels are switched off by increasing gate value until the
    hard cost (what `strip_pruning` keeps) is within 1% below the target.
    From then on the masks stay fixed and the remaining epochs fine-tune,
    with a decaying learning rate: a schedule of the user's, or, when the
    optimizer's rate is a constant, the callback lowers it epoch by epoch
    (`final_lr_factor`). That one `fit` is the way measured best on a trained
    network (docs/guide.md); a fit of one epoch ramps over all of it and
    closes when it ends, for the two-fit recipe (`strip_pruning`, then a
    fine-tune of the stripped network). A ramp of fewer than 100 steps is
    warned about before training (`budget/ramp_length.py`), and so is a
    ramp at which an Adam-like optimizer cannot move the gates to their
    fence (`budget/gate_travel.py`).
    Gate logits get no weight decay. Each epoch it adds to `logs` (and so
    to the progress bar, `History` and TensorBoard): `remaining_flops`,
    `remaining_params`, `pruning_target`, `pruning_lambda` and
    `gate_temperature`. The two remaining fractions are hard counts, what
    `strip_pruning` would keep; at the end of the epoch after which the
    budget closes they are the cost of the masks the closing gives, the
    cost the model ends with. With `log_dir` (or a
    `keras.callbacks.TensorBoard` in the same `fit`) it also writes them,
    and more, to TensorBoard itself (`reporting/tensorboard.py`).

    Args:
        target: fraction of the cost to remove, in (0, 1). `0.9` leaves 10%.
        metric: `"flops"`, `"params"` or `"latency"` (predicted from the
            latency table given to `add_gates`, docs/latency.md); defaults
            to the metric given to `add_gates`.
        begin_step: training step where the ramp starts. Defaults to 0.
        end_step: step where the ramp ends. Defaults to the end of the
            fewest whole epochs that hold 300 steps after `begin_step`, at
            most 75% of the fit's epochs (rounded down, at least one): a
            ramp long enough for the gates to learn, then as much
            fine-tuning as possible (`budget/ramp_length.py`). When the
            steps per epoch are unknown, 75% of the epochs.
        lambda_: strength of the regulariser at the start of the ramp.
            Defaults to 2.0.
        final_scale: gate temperature (inverse) at the end of the ramp.
            Defaults to 500 (starts at the gates' `initial_scale`, 50). It
            sharpens the gates the task loss sees; the penalty pushes
            through the gates at the initial temperature, where an open
            gate is not yet saturated, so a large cut can still move it
            (with `cost_exponent=1`, through the annealed gates).
        threshold: `(start, end)` of the freezing threshold on gate values,
            raised linearly over the ramp. Defaults to `(0.02, 0.2)`.
        round_to: keep a multiple of this many channels in every group
            (or the whole group), which runs faster than odd widths on most
            hardware; applied when the budget is closed, inside the target.
            Defaults to 1.
        min_keep: fraction of its channels every group keeps when the
            budget closes (`ceil(min_keep * size)`, rounded up to
            `round_to`), so no stage is emptied to reach the budget: a
            FLOPs budget otherwise may take a group whose channels cost
            little (a U-Net's bottleneck and decoder) down to one channel.
            In a residual network such a group usually sits inside a block
            that then falls back to its shortcut, and a floor costs
            accuracy instead (docs/guide.md, docs/limitations.md).
            Defaults to 0 (a floor of one channel, or `round_to`).
        verbose: print the remaining cost each epoch when 1. Defaults to 0.
        lambda_rate: closed-loop lambda. Each training step lambda is
            multiplied by `exp(lambda_rate * (R - t))`, R the relaxed cost
            and t the ramped target, within `[0.1, 1e4] x lambda_`: it
            grows while the cost lags the ramp (whatever the learning
            rate) and shrinks when the cost is ahead. `0` keeps lambda
            fixed. Defaults to `None`: 1 when the model's optimizer is
            `keras.optimizers.SGD` (a step grows with lambda; on a trained
            ResNet-56 it helped, docs/accuracy.md), 0 for any other optimizer: Adam
            and its kin normalise each step, so once the penalty dominates
            a gate's gradient a larger lambda no longer moves it faster and
            only winds up (on tiny Adam runs, 800 images and 48 ramp steps,
            a rate of 1 drove the net to chance).
        calibration_data: training inputs (array, `PyDataset`, `tf.data`,
            or an iterable of batches) on which the BatchNormalization
            statistics are re-estimated when the budget closes and when
            `fit` ends (`recalibrate_batchnorm`). Defaults to `None`.
        calibration_steps: batches of `calibration_data` used. Defaults to 50.
        cost_exponent: how much a channel's cost sets how hard the penalty
            pushes its gate: 1 pushes in proportion to the cost the channel
            carries (the relaxed cost's own gradient); smaller values
            flatten that (same total push), so heavily tied, costly groups
            are not emptied before the task loss can push back; 0 pushes
            every channel alike. Defaults to `None`: 0.5 for a FLOPs budget
            (`DEFAULT_COST_EXPONENT`; on a trained ResNet-20 it scored
            higher than 0 at 50%, 75% and 90% cuts on every seed, with and
            without distillation, and higher on a ResNet-56 and a U-Net),
            0 for a params budget (there 0.5 scored lower: the costliest
            channels are the late stages' wide ones; docs/accuracy.md).
        final_lr_factor: when the optimizer's learning rate is a constant,
            the epochs after the budget closes train at a rate lowered
            geometrically towards this multiple of it (`budget/learning_rate.py`:
            one such epoch at 0.1x, two at 0.32x and 0.032x, ...), and the
            optimizer gets its rate back when `fit` ends: fine-tuning at the
            pruning rate costs accuracy (docs/accuracy.md). A
            `LearningRateSchedule`, a callable rate, or a `LearningRateScheduler`
            or `ReduceLROnPlateau` in the same `fit` is left alone. `None`
            leaves every rate alone. Defaults to 0.01.
        gate_prior: `"l1_norm"` starts each gate from its filter's L1 norm
            relative to its group, `"bn_gamma"` from its BN |gamma| relative
            to all channels (`baselines.set_gate_prior`), so a trained
            network's weakest channels are the first to close; `None`
            starts all gates equal. Defaults to `"bn_gamma"` (groups without
            a BatchNormalization start equal).
        log_dir: write TensorBoard summaries of the pruning (scalars, gate
            histograms per channel group, a channels-kept chart per epoch,
            the pruning report at the end) under `log_dir/train`. Defaults
            to `None`: the `log_dir` of a `keras.callbacks.TensorBoard` in
            the same `fit`, in any order, if there is one; else no writing.
            Needs `pip install keras-relaxprune[tensorboard]`.
        log_every_n_steps: also write the scalars every this many training
            steps (tags `pruning_steps/...`). Defaults to `None` (per epoch).

    Example:

    ```python
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    gated = krp.add_gates(model)
    cosine = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=5 * len(x) // 32)
    gated.compile(optimizer=keras.optimizers.SGD(cosine, momentum=0.9, nesterov=True), loss=loss)
    # The budget ramps over the epochs that hold 300 steps (at most 3) and
    # closes; the rest fine-tune.
    gated.fit(x, y, epochs=5, callbacks=[krp.PruningCallback(0.5, calibration_data=x)])
    krp.count_flops(gated) / krp.count_flops(model)  # between 0.49 and 0.50
    small = krp.strip_pruning(gated)  # a plain, smaller Keras model
    ```
    """

    def __init__(
        self,
        target,
        metric=None,
        begin_step=0,
        end_step=None,
        lambda_=2.0,
        final_scale=FINAL_SCALE,
        threshold=(0.02, 0.2),
        round_to=1,
        min_keep=0.0,
        verbose=0,
        lambda_rate=None,
        calibration_data=None,
        calibration_steps=50,
        log_dir=None,
        log_every_n_steps=None,
        gate_prior="bn_gamma",
        cost_exponent=None,
        final_lr_factor=0.01,
    ):
        super().__init__()
        checked = checked_arguments(
            target=target,
            metric=metric,
            begin_step=begin_step,
            end_step=end_step,
            lambda_=lambda_,
            final_scale=final_scale,
            threshold=threshold,
            round_to=round_to,
            min_keep=min_keep,
            verbose=verbose,
            lambda_rate=lambda_rate,
            calibration_data=calibration_data,
            calibration_steps=calibration_steps,
            log_dir=log_dir,
            log_every_n_steps=log_every_n_steps,
            gate_prior=gate_prior,
            cost_exponent=cost_exponent,
            final_lr_factor=final_lr_factor,
        )
        for name, value in checked.items():
            setattr(self, name, value)
        self._budget = None
        self._graph = None
        self._closing = freezing.ClosingMasks()  # the masks of the last closing computed
        self._rate = RateAfterClosing(self, self.final_lr_factor)
        self._closing_epoch = None  # the epoch at whose start the budget closed
        self._summaries = PruningSummaries(log_dir, log_every_n_steps)
        self._guard = DivergenceGuard(lambda: self.lambda_)

    @property
    def remaining_target(self):
        return 1.0 - self.target

    def set_model(self, model):
        super().set_model(model)
        gated = gated_model(model)
        self._budget, self._graph = link_budget(gated)
        self.metric = self.metric or self._budget.metric
        self._budget.metric_weights(self.metric)  # a latency budget needs its table
        exclude_gates_from_weight_decay(model, self._graph)

    def on_train_begin(self, logs=None):
        freezing.check_reachable(
            self._graph, self.metric, self.target, self.round_to, self.min_keep
        )
        self._rate.begin()
        self._closing_epoch = None
        if freezing.closed_earlier(self._budget, self.remaining_target):
            self._closing_epoch = "earlier"
            return  # resumed after the budget was closed: keep fine-tuning
        self._end_epoch = self._default_end_epoch()
        self._configure(self._budget)

    def _cost_exponent(self):
        if self.cost_exponent is not None:
            return self.cost_exponent
        return DEFAULT_COST_EXPONENT[self.metric]

    def _lambda_rate(self):
        if self.lambda_rate is not None:
            return self.lambda_rate
        return 1.0 if is_sgd(getattr(self.model, "optimizer", None)) else 0.0

    def _default_end_epoch(self):
        epochs, steps = self.params.get("epochs") or 1, self.params.get("steps")
        return default_ramp_epochs(epochs, steps, self.begin_step)

    def _configure(self, budget):
        steps = self.params.get("steps")
        end_step = self.end_step
        if end_step is None:
            end_step = self._end_epoch * steps if steps else 1e12
        fresh = not float(budget.ramp_on.numpy()) or float(budget.masks_final.numpy())
        ramp_steps = end_step - self.begin_step if end_step < 1e12 else None
        if fresh:
            warn_if_short(ramp_steps, self.target)
        values = {
            "begin_step": self.begin_step,
            "end_step": float(end_step),
            "remaining_target": self.remaining_target,
            "penalty_weight": self.lambda_,
            "base_penalty_weight": self.lambda_,
            "penalty_weight_rate": self._lambda_rate(),
            "cost_exponent": self._cost_exponent(),
            "final_scale": self.final_scale,
            "initial_threshold": self.threshold[0],
            "final_threshold": self.threshold[1],
            **budget.metric_weights(self.metric),
            "ramp_on": 1.0,
            "masks_final": 0.0,
        }
        if fresh and self.gate_prior and float(budget.step.numpy()) == 0.0:
            set_gate_prior(self._graph, self.gate_prior)
        if fresh:
            gates = list(self._graph.gates.values())
            values["initial_scale"] = float(gates[0].initial_scale) if gates else INITIAL_SCALE
            optimizer = getattr(self.model, "optimizer", None)
            warn_if_gates_cannot_reach(optimizer, ramp_steps, gates, self.target)
        for name, value in values.items():
            getattr(budget, name).assign(value)

    def on_epoch_end(self, epoch, logs=None):
        budget = self._budget
        if logs is not None:
            self._guard.check_epoch(self.model, epoch, logs.get("loss", 0.0))
        if budget.end_step.numpy() >= 1e12 and epoch + 1 == self._end_epoch_or_none():
            budget.end_step.assign(float(budget.step.numpy()))
        if logs is not None:
            closing = freezing.closes_after_epoch(
                budget,
                epoch,
                self.params.get("epochs") or 1,
                stopping=bool(getattr(self.model, "stop_training", False)),
            )
            logs.update(self._progress_logs(closing=closing))
            if self.verbose:
                print_message(describe(logs), self.params)
        # Written here, not only through `logs`: a TensorBoard callback listed
        # before this one has already written the epoch's logs.
        self._summaries.write_epoch(self, epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._summaries.write_step(self)

    def on_epoch_begin(self, epoch, logs=None):
        # Closing at the start of the next epoch, not at the end of the last
        # ramp epoch: the epoch's logs show the ramp, and a backup written at
        # that epoch end (BackupAndRestore, in any callback order) resumes
        # into the same closing step.
        budget = self._budget
        if freezing.ramp_ended(budget) and not float(budget.masks_final.numpy()):
            self._close_budget()
            self._closing_epoch = epoch
        if self._closing_epoch == "earlier":
            self._closing_epoch = freezing.earlier_closing_epoch(
                float(budget.end_step.numpy()), self.params.get("steps"), epoch
            )
        self._rate.epoch_begins(epoch, bool(float(budget.masks_final.numpy())), self._closing_epoch)
        self._guard.epoch_begins(epoch, self.model)

    def on_train_batch_end(self, batch, logs=None):
        self._guard.check_batch(self.model, batch, (logs or {}).get("loss"))

    def _end_epoch_or_none(self):
        return getattr(self, "_end_epoch", None)

    def on_train_end(self, logs=None):
        if not float(self._budget.masks_final.numpy()):
            self._close_budget()
        else:
            self._recalibrate()
        self._rate.end()
        self._summaries.write_train_end(self)

    def _close_budget(self):
        freezing.freeze(self._graph, self._budget, self._closing_masks(), self.round_to)
        self._recalibrate()

    def _recalibrate(self):
        if self.calibration_data is not None:
            recalibrate_batchnorm(
                gated_model(self.model), self.calibration_data, steps=self.calibration_steps
            )

    def _closing_masks(self):
        """The masks closing gives for the gates as they are now (computed once per state)."""
        return self._closing(
            self._graph,
            self.metric,
            self.remaining_target,
            self.round_to,
            self.min_keep,
            verbose=bool(self.verbose),
        )

    def _progress_logs(self, closing=False):
        """The epoch's values for `logs`; with `closing`, the remaining
        fractions are those of the masks the closing gives."""
        masks = self._closing_masks() if closing else None
        return progress_logs(self._budget, self._graph, self.remaining_target, masks)
