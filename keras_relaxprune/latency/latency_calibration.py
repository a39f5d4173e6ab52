"""Calibrating a latency table on whole-model timings (`LatencyTable.calibrate`)."""

import math

import numpy as np

from keras_relaxprune.errors import LatencyTableError


def calibration_of(table, model, keep=0.5, input_shape=None):
    """`{"fixed_s": a, "scale": b, ...}` such that `a + b * table_sum` meets
    the target's timings of `model` and of a uniformly narrowed copy.

    The copy keeps the first `ceil(keep * size)` channels of every prunable
    group and is stripped, so both models are what a budget produces. With
    a negative intercept or slope (noise), the line goes through the
    origin and the dense model instead.
    """
    from keras_relaxprune.augmentation.add_gates import add_gates
    from keras_relaxprune.latency.latency_estimate import estimate_latency
    from keras_relaxprune.layers.channel_gate import ChannelGate
    from keras_relaxprune.removal.strip import strip_pruning

    if not hasattr(table.target, "time_models"):
        raise LatencyTableError(
            f"LatencyTable.calibrate: the target {table.target_name!r} cannot time a "
            "whole model (it has no `time_models(models)` method)."
        )
    gated = add_gates(model, input_shape=input_shape)
    for layer in gated.layers:
        if isinstance(layer, ChannelGate):
            mask = np.zeros(layer.channels, "float32")
            mask[: max(1, math.ceil(keep * layer.channels))] = 1.0
            layer.keep_mask.assign(mask)
    narrow = strip_pruning(gated)
    predicted = [estimate_latency(m, table, input_shape) for m in (model, narrow)]
    measured = [float(s) for s in table.target.time_models([model, narrow])]
    facts = {"model": model.name, "keep": keep, "predicted_s": predicted, "measured_s": measured}
    return {**facts, **fitted_line(predicted, measured)}


def fitted_line(predicted, measured):
    """`{"fixed_s": a, "scale": b}` through two (predicted, measured) points."""
    (dense_p, narrow_p), (dense_m, narrow_m) = predicted, measured
    if dense_p > narrow_p:
        scale = (dense_m - narrow_m) / (dense_p - narrow_p)
        fixed = dense_m - scale * dense_p
        if scale > 0 and fixed >= 0:
            return {"fixed_s": fixed, "scale": scale}
    return {"fixed_s": 0.0, "scale": dense_m / dense_p if dense_p > 0 else 1.0}
