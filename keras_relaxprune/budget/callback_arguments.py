"""The checks of `PruningCallback`'s arguments, made before any training.

A wrong value fails when the callback is built, with a message naming the
argument and what it accepts, not epochs later inside `fit`. The checks run
in the order of the arguments, so the first wrong one is the one reported.
"""

from keras_relaxprune import arguments
from keras_relaxprune.layers.pruning_budget import METRICS

GATE_PRIORS = (None, "l1_norm", "bn_gamma")


def checked_arguments(
    target,
    metric,
    begin_step,
    end_step,
    lambda_,
    final_scale,
    threshold,
    round_to,
    min_keep,
    verbose,
    lambda_rate,
    calibration_data,
    calibration_steps,
    log_dir,
    log_every_n_steps,
    gate_prior,
    cost_exponent,
    final_lr_factor,
):
    """Checks `PruningCallback`'s arguments and gives the values it keeps.

    Args: those of `PruningCallback`.

    Returns:
        A dict, attribute name -> checked value, for every argument but
        `log_dir` and `log_every_n_steps` (checked here, kept by the
        TensorBoard summaries).

    Raises:
        InvalidArgumentError: naming the first argument out of its range.
    """
    check = arguments.Checks("PruningCallback")
    values = _target_and_metric(check, target, metric)
    values.update(_schedule(check, begin_step, end_step, lambda_, final_scale, threshold))
    values.update(_channels(check, round_to, min_keep, verbose, lambda_rate))
    values.update(
        _calibration_and_logging(
            check,
            calibration_data,
            calibration_steps,
            log_dir,
            log_every_n_steps,
            gate_prior,
            cost_exponent,
        )
    )
    values["final_lr_factor"] = _optional_real(
        check,
        "final_lr_factor",
        final_lr_factor,
        "a multiplier in (0, 1] of a constant learning rate (default 0.01), "
        "or None to leave the rate alone",
        low=0.0,
        high=1.0,
        low_open=True,
    )
    return values


def _target_and_metric(check, target, metric):
    """The fraction to remove and the cost it is a fraction of."""
    return {
        "target": check.real(
            "target",
            target,
            "a fraction of the cost to remove, strictly between 0 and 1 (0.9 removes 90%)",
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        ),
        "metric": check.choice("metric", metric, (None, *METRICS)),
    }


def _schedule(check, begin_step, end_step, lambda_, final_scale, threshold):
    """The ramp, penalty and temperature arguments."""
    begin_step = check.integer("begin_step", begin_step, "a training step >= 0 (default 0)", low=0)
    if end_step is not None:
        end_step = check.integer(
            "end_step",
            end_step,
            f"a step >= begin_step={begin_step}, or None (the default ramp)",
            low=begin_step,
        )
    return {
        "begin_step": begin_step,
        "end_step": end_step,
        "lambda_": check.real("lambda_", lambda_, "a penalty weight >= 0 (default 2.0)", low=0.0),
        "final_scale": check.real(
            "final_scale",
            final_scale,
            "a positive inverse temperature (default 500)",
            low=0.0,
            low_open=True,
        ),
        "threshold": check.ordered_pair(
            "threshold",
            threshold,
            "(start, end) gate values with 0 <= start <= end < 1, "
            "raised from start to end over the ramp, e.g. threshold=(0.02, 0.2) (the "
            "default); for a fixed value t pass (t, t)",
        ),
    }


def _channels(check, round_to, min_keep, verbose, lambda_rate):
    """The closing's channel rules, the verbosity and lambda's rate."""
    return {
        "round_to": check.integer(
            "round_to",
            round_to,
            "a whole number of channels >= 1 (default 1; 8 suits most hardware)",
            low=1,
        ),
        "min_keep": check.real(
            "min_keep",
            min_keep,
            "a fraction in [0, 1) of each group's channels, e.g. 0.25",
            low=0.0,
            high=1.0,
            high_open=True,
        ),
        "verbose": check.integer(
            "verbose", verbose, "0 (silent) or 1 (a line per epoch)", low=0, bool_ok=True
        ),
        "lambda_rate": _optional_real(
            check,
            "lambda_rate",
            lambda_rate,
            "a rate >= 0 (0 keeps lambda fixed), or None (1 with SGD, 0 with other optimizers)",
            low=0.0,
        ),
    }


def _calibration_and_logging(
    check,
    calibration_data,
    calibration_steps,
    log_dir,
    log_every_n_steps,
    gate_prior,
    cost_exponent,
):
    """BN calibration, logging, the gate prior and the cost exponent."""
    values = {"calibration_data": check.batches("calibration_data", calibration_data)}
    if calibration_steps is not None:
        calibration_steps = check.integer(
            "calibration_steps",
            calibration_steps,
            "a number of batches >= 1, or None (all of calibration_data)",
            low=1,
        )
    values["calibration_steps"] = calibration_steps
    if log_dir is not None:
        check.path("log_dir", log_dir)
    if log_every_n_steps is not None:
        check.integer("log_every_n_steps", log_every_n_steps, "a positive integer or None", low=1)
    values["gate_prior"] = check.choice("gate_prior", gate_prior, GATE_PRIORS)
    values["cost_exponent"] = _optional_real(
        check,
        "cost_exponent",
        cost_exponent,
        "a value in [0, 1] (1: push in proportion to "
        "cost, 0: every channel alike), or None (0.5 for FLOPs, 0 for params)",
        low=0.0,
        high=1.0,
    )
    return values


def _optional_real(check, name, value, expected, **bounds):
    """`None` kept as is, else the number `check.real` accepts."""
    return None if value is None else check.real(name, value, expected, **bounds)
