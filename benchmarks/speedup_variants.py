"""The models `speedup.py` times: stripped networks of set widths and their baselines.

No training: each pattern writes masks into the gates of `krp.add_gates(dense)`
and strips; `build_variants` returns every model with what it is (keep,
pattern, FLOPs fraction, exactness against its gated model).
"""

import math
import time

import keras
import numpy as np
from latency_timing import say

import keras_relaxprune as krp
from keras_relaxprune.budget.closing import close_budget
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune_apps import cifar_resnet

OPEN_LOGIT = 10.0  # sigmoid(50 * 10) == 1.0 in float32: gates fully open


def build_dense(name):
    """The dense model and, for CIFAR ResNets, a builder of narrowed ones."""
    if name == "resnet50":
        model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=1000)
        return model, None
    depth = int(name[len("cifar_resnet") :])
    return cifar_resnet(depth), lambda width: cifar_resnet(depth, width=width)


def gates_of(model):
    return [layer for layer in model.layers if isinstance(layer, krp.ChannelGate)]


def apply_ratios(gated, ratios):
    """Each group keeps its first ceil(r * channels) channels (at least one)."""
    for gate, ratio in zip(gates_of(gated), ratios):
        # -1e-9: r * c that is an integer up to rounding must not round up.
        kept = max(1, min(gate.channels, math.ceil(ratio * gate.channels - 1e-9)))
        mask = np.zeros(gate.channels, "float32")
        mask[:kept] = 1.0
        gate.keep_mask.assign(mask)
        gate.logits.assign(np.full(gate.channels, OPEN_LOGIT, "float32"))


def fit_masks(gated, dense_flops, target, base):
    """Scales the per-group ratios `base` so the hard FLOPs fraction is nearest `target`.

    The fraction only grows with the scale but moves in channel-sized
    steps, so bisection keeps the best fraction it has seen, not the last.
    """

    def fraction(scale):
        apply_ratios(gated, np.minimum(1.0, scale * base))
        return krp.count_flops(gated) / dense_flops

    low, high = 0.0, 1.0 / float(np.min(base))
    best = (abs(fraction(high) - target), high)
    for _ in range(40):
        middle = 0.5 * (low + high)
        value = fraction(middle)
        best = min(best, (abs(value - target), middle))
        low, high = (middle, high) if value < target else (low, middle)
    return fraction(best[1])


def output_diff(a, b, x):
    """(max abs diff of the outputs, max diff of the logits / max |logit|).

    Untrained nets give near-uniform (ResNet-50) or one-hot (CIFAR ResNet)
    softmax outputs, where an output diff hides errors: the logits do not.
    """
    out_a = keras.ops.convert_to_numpy(a(x, training=False))
    out_b = keras.ops.convert_to_numpy(b(x, training=False))
    logits_a, logits_b = logits(a, x), logits(b, x)
    relative = np.max(np.abs(logits_a - logits_b)) / np.max(np.abs(logits_a))
    return float(np.max(np.abs(out_a - out_b))), float(relative)


def logits(model, x):
    """The final Dense layer's pre-activation output (the model output otherwise)."""
    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense):
        return keras.ops.convert_to_numpy(model(x, training=False))
    features = keras.Model(model.input, last.input)(x, training=False)
    kernel, *bias = last.get_weights()
    return keras.ops.convert_to_numpy(features) @ kernel + (bias[0] if bias else 0.0)


def project_rounded(gated, dense_flops, target, base, round_to):
    """Masks from `close_budget(..., round_to)` ranking the random pattern `base`.

    Channel `i` of a group with base ratio `b` and `c` channels gets the
    rank value `log(b * c / (i + 0.5))`, written into the logits so that
    `sigmoid(scale * logits)` orders the channels by it. A threshold on it
    keeps the first `~ s * b * c` channels of every group (capped at `c`),
    i.e. the scaled random pattern of `fit_masks`; the projection removes
    the lowest-ranked channels in units that keep each group at a multiple
    of `round_to` (or whole), until the hard FLOPs fraction is <= `target`.
    Then the gates are opened (logits = OPEN_LOGIT) as for the other patterns.
    """
    gates = gates_of(gated)
    for gate, ratio in zip(gates, base):
        rank = np.log(ratio * gate.channels / (np.arange(gate.channels) + 0.5))
        scale = float(keras.ops.convert_to_numpy(gate.scale))
        gate.logits.assign((rank / scale).astype("float32"))
        gate.keep_mask.assign(np.ones(gate.channels, "float32"))
    graph = analyze(gated)
    masks = close_budget(graph, "flops", target, round_to=round_to)
    for root, keep in masks.items():
        graph.gates[root].keep_mask.assign(keep)
    for gate in gates:
        gate.logits.assign(np.full(gate.channels, OPEN_LOGIT, "float32"))
    return krp.count_flops(gated) / dense_flops


def group_widths(gated):
    """`[(kept, size), ...]` of the gated channel groups (graph order)."""
    graph = analyze(gated)
    keep = graph.keep_vectors()
    return [
        (int(round(float(np.sum(keep[root])))), int(keep[root].size))
        for root in graph.gated_groups()
    ]


def stripped(dense, target, base, check_x, round_to=None):
    """(stripped model, FLOPs fraction, (abs, relative) output diff, group widths).

    `round_to=None`: masks from `fit_masks` (nearest the target); an integer:
    from `project_rounded` (at or below the target, multiples of it).
    """
    gated = krp.add_gates(dense)
    dense_flops = krp.count_flops(dense)
    if round_to is None:
        fraction = fit_masks(gated, dense_flops, target, base)
    else:
        fraction = project_rounded(gated, dense_flops, target, base, round_to)
        if fraction > target + 1e-9:
            say(
                f"  NOTE: round_to={round_to} cannot reach FLOPs fraction {target:.4f}: "
                f"every group keeps at least min({round_to}, size) channels; "
                f"landed at {fraction:.4f}"
            )
    small = krp.strip_pruning(gated)
    if krp.count_flops(small) != krp.count_flops(gated):
        say(
            f"  WARNING: count_flops(stripped) {krp.count_flops(small):,} != "
            f"hard count of the gated model {krp.count_flops(gated):,}"
        )
    return small, fraction, output_diff(gated, small, check_x), group_widths(gated)


def uniform_width(builder, dense_flops, keep, full_width=16):
    """The CIFAR width whose FLOPs fraction is nearest `keep`, and that fraction."""
    guess = full_width * math.sqrt(keep)  # FLOPs grow about as width squared
    best = None
    for width in {max(1, math.floor(guess)), max(1, math.ceil(guess))}:
        fraction = krp.count_flops(builder(width)) / dense_flops
        best = min(best or (9.0, 0, 0), (abs(fraction - keep), width, fraction))
    return best[1], best[2]


def build_variants(args, dense, builder, check_x):
    """The models to time: `dense`, and per keep the stripped ones and their baseline.

    Returns `(models, variants)`: name -> model, and one dict per stripped
    model with its keep, pattern, FLOPs fraction, params, exactness and the
    name of the uniform baseline it is compared with.
    """
    dense_flops = krp.count_flops(dense)
    groups = len(gates_of(krp.add_gates(dense)))
    # One seeded draw for all keeps: the random pattern differs only in scale.
    random_base = np.random.default_rng(args.seed).uniform(0.3, 1.0, size=groups)
    models, variants = {"dense": dense}, []
    say(
        f"{args.model}: {dense_flops:,} FLOPs, {dense.count_params():,} params, "
        f"{groups} channel groups"
    )
    for keep in args.keep:
        target, baseline = keep, f"{keep:g}/uniform"
        if builder is not None:
            width, target = uniform_width(builder, dense_flops, keep)
            baseline = f"{keep:g}/baseline"
            models[baseline] = builder(width)
            say(
                f"keep {keep:g}: baseline cifar_resnet(width={width}) has FLOPs "
                f"fraction {target:.4f}; the stripped models target it"
            )
        patterns = [("uniform", np.ones(groups), None), ("random", random_base, None)]
        if args.round_to > 1:
            patterns.append((f"random+round{args.round_to}", random_base, args.round_to))
        for pattern, base, round_to in patterns:
            start = time.perf_counter()
            small, fraction, diff, group_kept = stripped(dense, target, base, check_x, round_to)
            name = f"{keep:g}/{pattern}"
            models[name] = small
            variants.append(
                {
                    "name": name,
                    "keep": keep,
                    "pattern": pattern,
                    "baseline": baseline,
                    "target": target,
                    "round_to": round_to or 1,
                    "flops_fraction": fraction,
                    "params": small.count_params(),
                    "max_abs_diff": diff[0],
                    "logit_rel_diff": diff[1],
                    "group_widths": group_kept,
                }
            )
            say(
                f"keep {keep:g} {pattern}: FLOPs fraction {fraction:.4f}, params "
                f"{small.count_params():,}, widths {widths(small)}, max abs diff "
                f"{diff[0]:.2e}, logits relative {diff[1]:.1e} "
                f"({time.perf_counter() - start:.0f} s)"
            )
            say(f"  group widths (kept/size): {' '.join(f'{k}/{n}' for k, n in group_kept)}")
    return models, variants


def widths(model):
    """Output channels of the convolutions, compressed (for the log)."""
    counts = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    return f"{len(counts)} convs, min {min(counts)}, max {max(counts)}, first 8 {counts[:8]}"
