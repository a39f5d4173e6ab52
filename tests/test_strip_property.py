"""Property: on random functional DAGs, strip_pruning is exact or refuses.

Random DAGs on 8x8 maps are drawn from a wide vocabulary (`OPS`: plain,
grouped, depthwise, separable, transposed and subclassed convolutions,
fused and layer activations, softmax, normalisations, merges with
broadcasting, channel and spatial concatenation, slices and splits, padding,
cropping, resizing, squeeze-excite and spatial attention, shared layers, a
shared nested model, and weightless layers reused at several places).
Each one is gated, given random kernels, biases, BN/LN statistics, gate
logits and keep masks, stripped, and compared with the gated model
(outputs to 1e-4, `count_flops`/`count_params` equal).

Two parts:

1. masks `PruningCallback` can produce (every gated group keeps at least one
   channel): `add_gates` may refuse (a `krp.PruningError`), but then
   `strip_pruning` must not raise and must be exact with equal counts;
2. masks that may also switch whole groups off: a `StripError` is allowed
   (only where some group is wholly off); otherwise exact with equal counts.

Anything else (a mismatch, unequal counts, a crash that is not a
`PruningError`) is a *wrong* case. Wrong cases are collected, not stopped at,
and printed with their steps and seed; the test fails at the end if any.
Each run prints its tallies (``pytest -s`` shows them).

Every DAG also holds a side conv on the input that feeds the head, so
`add_gates` always has a group to gate (and strips the rest of the DAG
as it is where all its own groups are protected).

CI draws a fixed set of examples (the "deterministic" profile of
conftest.py) from `CI_OPS`: `OPS` less `KNOWN_BUGS`, the ops that draw wrong
cases until the library is fixed (see there; none at present). The longer randomized sweep
draws from all of `OPS` (`STRIP_SWEEP_VOCABULARY=ci`: `CI_OPS` only), as
many examples per part as told:

    HYPOTHESIS_PROFILE=sweep STRIP_SWEEP_EXAMPLES=500 \\
        KERAS_BACKEND=tensorflow .venv/bin/python -m pytest -q -s \\
        -p no:cacheprovider tests/test_strip_property.py

(KERAS_BACKEND=jax works too; `-k callback` runs part 1 only, `-k "not
callback"` part 2.)
It prints exact / refused / wrong counts per part, then every wrong case
with the command that reproduces it (part, seed, steps), e.g.:

    KERAS_BACKEND=tensorflow .venv/bin/python tests/test_strip_property.py \\
        callback 3 "[('resize_pad_fill', 67, 5, 0), ('conv3', 445, 4, 3)]"
"""

import functools
import os
import re
import traceback
import warnings
from collections import Counter

import keras
import numpy as np
from helpers import gates
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras import layers, ops

import keras_relaxprune as krp

SWEEP_EXAMPLES = int(os.environ.get("STRIP_SWEEP_EXAMPLES", "0"))
SWEEP = SWEEP_EXAMPLES > 0


@keras.saving.register_keras_serializable(package="strip_property")
class CallOverridingConv2D(layers.Conv2D):
    """A Conv2D subclass whose `call` also mixes its input channels: not a
    plain convolution, so the library must treat it as a barrier."""

    def call(self, inputs):
        return super().call(inputs) + ops.mean(inputs, axis=-1, keepdims=True)


# Kernels start at zero and are drawn with numpy by `_randomize`: Keras's
# random initializers compile once per shape under JAX, which took most of
# the run time there (add_gates and strip_pruning rebuild layers from their
# configs, so the clones start at zero too).
def _conv(*args, **kwargs):
    return layers.Conv2D(*args, kernel_initializer="zeros", **kwargs)


def _upconv(*args, **kwargs):
    return layers.Conv2DTranspose(*args, kernel_initializer="zeros", **kwargs)


def _dwconv(*args, **kwargs):
    return layers.DepthwiseConv2D(*args, depthwise_initializer="zeros", **kwargs)


def _sepconv(*args, **kwargs):
    return layers.SeparableConv2D(
        *args, depthwise_initializer="zeros", pointwise_initializer="zeros", **kwargs
    )


def _dense(*args, **kwargs):
    return layers.Dense(*args, kernel_initializer="zeros", **kwargs)


OPS = (
    # the original vocabulary
    "conv1",
    "conv3",
    "bn",
    "relu",
    "sigmoid",
    "add",
    "concat",
    "maxpool",
    "avgpool",
    "dwconv",
    "sepconv",
    "upconv",
    # convolutions
    "gconv",
    "gconv4",
    "dwconv2",
    "subclass_conv",
    "shared_conv",
    "shared_block",
    # fused activations: strings and layer objects
    "conv_swish",
    "conv_sigmoid",
    "conv_softmax",
    "conv_sigmoid_layer",
    "conv_relu_layer",
    # fused activations given as callables: a lambda, a partial, a user
    # function named like a Keras built-in (known by object, never by name)
    "conv_lambda",
    "conv_partial",
    "conv_named_relu",
    # activation layers
    "swish",
    "softmax",
    "softmax_layer",
    "relu_max",
    # normalisation and scaling
    "bn_plain",
    "layernorm",
    "rescale",
    "rescale_offset",
    # merges, concatenation, slices
    "add_broadcast",
    "concat_spatial",
    "ops_concat",
    "slice",
    "split",
    # attention
    "se",
    "spatial_attention",
    # spatial
    "zeropad",
    "resize",
    "resize_pad",
    "resize_pad_fill",
    "upsample",
    "crop",
    # reshapes that keep the channel axis
    "reshape",
    # f(0) != 0 before what follows (a padded conv): x + c, ops.maximum(x, c),
    # ReLU(threshold, negative_slope), exp
    "offset",
    # one weightless layer instance called at several places
    "reused_act",
    "reused_concat",
    "reused_reshape",
)

# Ops that draw wrong cases: left out of the CI draw, kept in the sweep,
# until the library is fixed (op -> the bug, with the smallest model found).
KNOWN_BUGS = {
    # Every op strips exactly in the sweeps so far (see the module docstring);
    # an op that draws wrong cases goes here, with what goes wrong, until fixed.
}

# --- Flatten -> Dense: positions flattened into features,
# a Dense over them, its output as a 1x1 map (or spread back over H x W).
OPS += ("flatten_dense",)


def _flatten_dense(x, width, variant, name):
    height, wide = _spatial(x)
    if height * wide * x.shape[-1] > 512:
        return None
    y = _dense(width, name=name)(layers.Flatten(name=f"{name}_flat")(x))
    y = layers.Reshape((1, 1, width), name=f"{name}_1x1")(y)
    if variant % 2:
        return [y]
    return [layers.UpSampling2D((height, wide), name=f"{name}_spread")(y)]


# --- end of Flatten -> Dense


CI_OPS = tuple(op for op in OPS if op not in KNOWN_BUGS)

# Fused activations of the "conv_*" ops (fresh layer objects per conv).
FUSED = {
    "conv_swish": lambda: "swish",
    "conv_sigmoid": lambda: "sigmoid",
    "conv_softmax": lambda: "softmax",
    "conv_sigmoid_layer": lambda: layers.Activation("sigmoid"),
    "conv_relu_layer": lambda: layers.ReLU(max_value=0.5),
    "conv_lambda": lambda: lambda t: ops.relu(t),
    "conv_partial": lambda: functools.partial(keras.activations.relu, max_value=0.5),
    "conv_named_relu": lambda: relu,
}


def relu(x):
    """A user's activation named like Keras' relu, computing something else."""
    return ops.relu(x) + 0.1


def _spatial(t):
    return tuple(t.shape[1:3])


def _partner(tensors, x, pick, match):
    """Another tensor than `x` with `match(t)` true, chosen by `pick`, or None."""
    partners = [t for t in tensors if t is not x and match(t)]
    return partners[(pick // 7) % len(partners)] if partners else None


def _same_shape(x):
    return lambda t: tuple(t.shape[1:]) == tuple(x.shape[1:])


def _step(op, x, tensors, pick, width, variant, name):
    """The tensors one step adds (a list), or None when it does not apply."""
    channels, (height, wide) = x.shape[-1], _spatial(x)
    if op in ("conv1", "conv3"):
        kernel = 1 if op == "conv1" else 3
        return [
            _conv(
                width,
                kernel,
                padding="same",
                use_bias=bool(pick % 2),
                activation="relu" if pick % 3 == 0 else None,
                name=name,
            )(x)
        ]
    if op in FUSED:
        return [
            _conv(width, 1 + 2 * (pick % 2), padding="same", activation=FUSED[op](), name=name)(x)
        ]
    if op in ("gconv", "gconv4"):  # groups=2 or 4: filters and inputs divisible
        groups = 2 if op == "gconv" else 4
        if channels % groups:
            return None
        return [
            _conv(
                groups * width,
                1 + 2 * (pick % 2),
                padding="same",
                groups=groups,
                activation="relu" if variant % 2 else None,
                name=name,
            )(x)
        ]
    if op in ("dwconv", "dwconv2"):
        return [_dwconv(3, padding="same", depth_multiplier=1 + (op == "dwconv2"), name=name)(x)]
    if op == "sepconv":
        return [_sepconv(width, 3, padding="same", name=name)(x)]
    if op == "upconv":  # down 2x, then a transposed conv back up
        y = layers.MaxPooling2D(name=f"{name}_down")(x)
        return [_upconv(width, 2, strides=2, name=name)(y)]
    if op == "subclass_conv":
        return [
            CallOverridingConv2D(width, 3, padding="same", kernel_initializer="zeros", name=name)(x)
        ]
    if op in ("shared_conv", "shared_block"):
        other = _partner(tensors, x, pick, _same_shape(x))
        if other is None:
            other = layers.ReLU(name=f"{name}_relu")(x)
        if op == "shared_conv":
            shared = _conv(width, 3, padding="same", name=name)
        else:  # a nested functional model called on both tensors
            block_in = keras.Input(tuple(x.shape[1:]))
            inner = _conv(width, 1, name=f"{name}_inner")(block_in)
            shared = keras.Model(block_in, layers.ReLU(name=f"{name}_act")(inner), name=name)
        a, b = shared(x), shared(other)
        if variant == 0:
            return [layers.Add(name=f"{name}_add")([a, b])]
        if variant == 1:
            return [layers.Concatenate(name=f"{name}_cat")([a, b])]
        return [a, b]
    if op == "bn":
        return [layers.BatchNormalization(name=name)(x)]
    if op == "bn_plain":
        return [layers.BatchNormalization(scale=False, center=False, name=name)(x)]
    if op == "layernorm":
        return [layers.LayerNormalization(name=name)(x)]
    if op in ("rescale", "rescale_offset"):
        return [layers.Rescaling(0.5, offset=0.25 * (op == "rescale_offset"), name=name)(x)]
    if op in ("relu", "sigmoid", "swish", "softmax"):
        return [layers.Activation(op, name=name)(x)]
    if op == "softmax_layer":
        return [layers.Softmax(name=name)(x)]
    if op == "relu_max":
        return [layers.ReLU(max_value=0.5, name=name)(x)]
    if op in ("maxpool", "avgpool"):
        pool = layers.MaxPooling2D if op == "maxpool" else layers.AveragePooling2D
        return [pool(3, strides=1, padding="same", name=name)(x)]
    if op == "add":
        other = _partner(tensors, x, pick, _same_shape(x))
        return None if other is None else [layers.Add(name=name)([x, other])]
    if op in ("concat", "ops_concat"):
        other = _partner(tensors, x, pick, lambda t: _spatial(t) == (height, wide))
        if other is None:
            return None
        if op == "concat":
            return [layers.Concatenate(name=name)([x, other])]
        return [ops.concatenate([x, other], axis=-1)]
    if op == "concat_spatial":  # along H or W: the other axes must match
        axis = 1 + variant % 2
        size = height if axis == 1 else wide

        def match(t):
            return (
                t.shape[-1] == channels
                and t.shape[3 - axis] == x.shape[3 - axis]
                and t.shape[axis] + size <= 16
            )

        other = _partner(tensors, x, pick, match)
        if other is None:
            return None
        return [layers.Concatenate(axis=axis, name=name)([x, other])]
    if op == "add_broadcast":  # a 1-channel map added over many channels
        source = tensors[(pick // 11) % len(tensors)]
        if _spatial(source) != (height, wide) or channels == 1:
            source = x
        one = _conv(1, 1, name=f"{name}_one")(source)
        pair = [x, one] if variant % 2 else [one, x]
        return [layers.Add(name=name)(pair)]
    if op == "slice":
        if channels < 2:
            return None
        start = pick % (channels - 1)
        stop = start + 1 + (pick // 3) % (channels - start)
        return [x[..., start:stop]]
    if op == "split":
        if channels < 2:
            return None
        if channels % 2 == 0 and variant % 2:
            parts = ops.split(x, 2, axis=-1)
        else:
            parts = ops.split(x, [1 + pick % (channels - 1)], axis=-1)
        return list(parts) if variant >= 2 else [parts[pick % len(parts)]]
    if op == "se":  # x * sigmoid(conv(relu(conv(pool(x)))))
        s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
        s = _conv(width, 1, activation="relu", name=f"{name}_squeeze")(s)
        if variant % 2:
            s = _conv(channels, 1, activation="sigmoid", name=f"{name}_excite")(s)
        else:
            s = _conv(channels, 1, name=f"{name}_excite")(s)
            s = layers.Activation("sigmoid", name=f"{name}_sigmoid")(s)
        return [layers.Multiply(name=name)([x, s]) if variant >= 2 else x * s]
    if op == "spatial_attention":  # x * sigmoid(conv_1ch(x))
        if variant % 2:
            a = _conv(1, 3, padding="same", activation="sigmoid", name=f"{name}_att")(x)
        else:
            a = ops.sigmoid(_conv(1, 3, padding="same", name=f"{name}_att")(x))
        return [layers.Multiply(name=name)([x, a]) if variant >= 2 else x * a]
    if op == "zeropad":
        if max(height, wide) > 12:
            return None
        padding = 1 if variant % 2 else ((1, 0), (0, 2))
        return [layers.ZeroPadding2D(padding, name=name)(x)]
    if op == "reshape":
        if variant % 2:  # positions flattened and back
            flat = layers.Reshape((height * wide, channels), name=f"{name}_flat")(x)
            return [layers.Reshape((height, wide, channels), name=name)(flat)]
        # squeeze-excite style: (C,) -> (1, 1, C), multiplied back in
        s = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
        s = layers.Reshape((1, 1, channels), name=f"{name}_1x1")(s)
        return [layers.Multiply(name=name)([x, s]) if variant >= 2 else x * s]
    if op in ("reused_act", "reused_concat", "reused_reshape"):
        return _reused(op, x, tensors, pick, variant, name)
    if op == "crop":
        if min(height, wide) < 5:
            return None
        cropping = 1 if variant % 2 else ((0, 1), (2, 0))
        return [layers.Cropping2D(cropping, name=name)(x)]
    if op == "upsample":
        if max(height, wide) > 8:
            return None
        interpolation = "bilinear" if variant % 2 else "nearest"
        return [layers.UpSampling2D(2, interpolation=interpolation, name=name)(x)]
    if op == "resize":
        size = ((8, 8), (6, 6), (10, 8), (4, 6))[variant]
        return [layers.Resizing(*size, name=name)(x)]
    if op in ("resize_pad", "resize_pad_fill"):
        size = (8, 6) if variant % 2 else (6, 8)
        fill = 0.5 if op == "resize_pad_fill" else 0.0
        return [layers.Resizing(*size, pad_to_aspect_ratio=True, fill_value=fill, name=name)(x)]
    if op == "offset":  # a removed channel's 0 becomes a constant
        if variant == 0:
            return [x + 0.5]
        if variant == 1:
            return [ops.maximum(x, 0.25)]
        if variant == 2:
            return [layers.ReLU(threshold=0.3, negative_slope=0.1, name=name)(x)]
        return [ops.exp(ops.minimum(x, 2.0))]
    if op == "flatten_dense":  # see _flatten_dense
        return _flatten_dense(x, width, variant, name)
    raise ValueError(f"unknown op {op!r}")


def _reused(op, x, tensors, pick, variant, name):
    """One Activation, Concatenate or Reshape (flattening the positions, a
    second one restoring them) called on `x` and on a partner of its shape."""
    other = _partner(tensors, x, pick, _same_shape(x))
    if other is None:
        other = _conv(x.shape[-1], 1, name=f"{name}_other")(x)
    if op == "reused_act":
        act = layers.Activation(("relu", "sigmoid")[variant % 2], name=name)
        a, b = act(x), act(other)
    elif op == "reused_concat":
        cat = layers.Concatenate(name=name)
        a, b = cat([x, other]), cat([other, x])
    else:
        height, wide = _spatial(x)
        flat = layers.Reshape((height * wide, x.shape[-1]), name=f"{name}_flat")
        back = layers.Reshape((height, wide, x.shape[-1]), name=name)
        a, b = back(flat(x)), back(flat(other))
    if variant >= 2:
        return [a, b]
    return [layers.Add(name=f"{name}_add")([a, b])]


def _build(steps):
    """A DAG on 8x8 maps from a list of (op, pick, width, variant) choices.

    Step i applies `op` to one earlier tensor (chosen by `pick`); merges pick
    a partner of matching shape and are skipped when there is none. Every
    tensor no step reads feeds the head (pooled, concatenated, Dense), and
    so does a side conv on the input."""
    inputs = keras.Input((8, 8, 3))
    tensors = [_conv(4, 3, padding="same", name="stem")(inputs)]
    read = set()
    for index, (op, pick, width, variant) in enumerate(steps):
        x = tensors[pick % len(tensors)]
        added = _step(op, x, tensors, pick, width, variant, f"n{index}_{op}")
        if added:
            read.add(id(x))
            tensors.extend(added)
            # a merge partner is read too: the inputs of the new node
            for t in added:
                for node_input in _node_inputs(t):
                    read.add(id(node_input))
    # a prunable side branch, so that add_gates always has a group to gate
    # and the DAG is stripped even where all its own groups are protected
    tensors.append(_conv(3, 3, padding="same", name="side")(inputs))
    leaves = [t for t in tensors if id(t) not in read]
    pooled = [layers.GlobalAveragePooling2D(name=f"pool{i}")(t) for i, t in enumerate(leaves)]
    pooled = layers.Concatenate(name="pooled")(pooled) if len(pooled) > 1 else pooled[0]
    return keras.Model(inputs, _dense(3, name="head")(pooled))


def _node_inputs(tensor):
    """The input tensors of the node that made `tensor` (and of its own
    inputs, down to the tensors of the list; it is enough to mark reads)."""
    seen, stack, found = set(), [tensor], []
    while stack:
        t = stack.pop()
        history = getattr(t, "_keras_history", None)
        if history is None or id(t) in seen:
            continue
        seen.add(id(t))
        node = history.operation._inbound_nodes[history.node_index]
        for parent in node.input_tensors:
            found.append(parent)
            stack.append(parent)
    return found


def _kernel(rng, shape, fan_in):
    return rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)


RANDOM_WEIGHTS = {  # weight name -> (rng, shape) -> values
    "kernel": lambda rng, shape: _kernel(rng, shape, np.prod(shape[:-1])),
    "pointwise_kernel": lambda rng, shape: _kernel(rng, shape, np.prod(shape[:-1])),
    "depthwise_kernel": lambda rng, shape: _kernel(rng, shape, np.prod(shape[:-2])),
    "gamma": lambda rng, shape: rng.uniform(0.5, 1.5, shape),
    "beta": lambda rng, shape: rng.normal(0, 0.3, shape),
    "moving_mean": lambda rng, shape: rng.normal(0, 0.3, shape),
    "moving_variance": lambda rng, shape: rng.uniform(0.5, 1.5, shape),
    "bias": lambda rng, shape: rng.normal(0, 0.3, shape),
}


def _randomize_weights(gated, rng):
    """Random kernels, BN/LN statistics and biases, set by weight name (a BN
    may lack gamma or beta), so folding and removed channels' constants
    matter."""
    for layer in gated.layers:
        if isinstance(layer, (krp.ChannelGate, krp.PruningBudget)):
            continue
        for weight in layer.weights:
            make = RANDOM_WEIGHTS.get(weight.path.rsplit("/", 1)[-1])
            if make is not None:
                shape = tuple(weight.shape)
                weight.assign(np.asarray(make(rng, shape), dtype=weight.dtype))


def _randomize(gated, seed, whole_groups_off):
    """Random weights, gate logits and keep masks. Without
    `whole_groups_off` every gate keeps at least one channel (as
    `PruningCallback` leaves them); with it a gate is wholly off at times."""
    rng = np.random.default_rng(seed)
    _randomize_weights(gated, rng)
    for gate in gates(gated):
        gate.logits.assign(rng.normal(0.05, 0.05, gate.channels).astype("float32"))
        mask = (rng.random(gate.channels) < rng.uniform(0.2, 0.9)).astype("float32")
        if whole_groups_off:
            if rng.random() < 0.2:
                mask[:] = 0.0  # a whole group off
        elif not mask.any():
            mask[rng.integers(gate.channels)] = 1.0
        gate.keep_mask.assign(mask)


def _crash(stage, error):
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return f"raised in {stage}: {last[:400]}"


def _strip_and_compare(steps, seed, whole_groups_off=False):
    """Strips one random DAG. Returns (outcome, detail): outcome is
    "exact", "refused_add_gates" (detail: the error class),
    "refused_strip" (a StripError with some group wholly off) or "wrong"
    (detail: what went wrong)."""
    keras.utils.set_random_seed(seed)
    return check_model(_build(steps), seed, whole_groups_off)


def check_model(model, seed, whole_groups_off=False):
    """Gates `model`, randomizes it (`_randomize`), strips and compares; the
    outcome as `_strip_and_compare` returns it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gated = krp.add_gates(model)
    except krp.PruningError as error:
        return "refused_add_gates", type(error).__name__
    except Exception as error:
        return "wrong", _crash("add_gates", error)
    _randomize(gated, seed, whole_groups_off)
    some_group_off = any(not gate.keep_mask.numpy().any() for gate in gates(gated))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stripped = krp.strip_pruning(gated)
    except krp.StripError as error:
        if some_group_off:
            return "refused_strip", type(error).__name__
        return "wrong", _crash("strip_pruning, no group wholly off", error)
    except Exception as error:
        return "wrong", _crash("strip_pruning", error)
    x = np.random.default_rng(seed).normal(size=(2, 8, 8, 3)).astype("float32")
    try:
        # Called as predict, evaluate and exported models call them. Keras
        # 3.15 resolves a preprocessing layer's `training=True` default (e.g.
        # `Resizing`) into the call context when `training` is not passed, so
        # a BN executed after it runs in training mode: which layers come after
        # depends on the node order, which removing gates changes.
        expected = np.asarray(keras.ops.convert_to_numpy(gated(x, training=False)))
        actual = np.asarray(keras.ops.convert_to_numpy(stripped(x, training=False)))
        counts = {
            "flops": (krp.count_flops(stripped), krp.count_flops(gated)),
            "params": (krp.count_params(stripped), krp.count_params(gated)),
        }
    except Exception as error:
        return "wrong", _crash("calling or counting", error)
    if actual.shape != expected.shape:
        return "wrong", f"output shape {actual.shape} != {expected.shape}"
    atol = 1e-4 * max(1.0, float(np.abs(expected).max()))
    if not np.all(np.abs(actual - expected) <= atol + 1e-4 * np.abs(expected)):
        error, scale = float(np.abs(actual - expected).max()), float(np.abs(expected).max())
        return "wrong", f"outputs differ: max |stripped - gated| {error:.3g}, gated max {scale:.3g}"
    mismatch = [
        f"count_{what}: stripped {small} != gated {big}"
        for what, (small, big) in counts.items()
        if small != big
    ]
    if not mismatch:
        side_only = [gate.name for gate in gates(gated)] == ["side_gate"]
        return "exact", "side branch only" if side_only else ""
    return "wrong", "; ".join(mismatch)


def _steps(vocabulary):
    step = st.tuples(
        st.sampled_from(vocabulary), st.integers(0, 1000), st.integers(1, 6), st.integers(0, 3)
    )
    return st.lists(step, min_size=1, max_size=9)


def _run(examples, whole_groups_off):
    """Draws `examples` DAGs (STRIP_SWEEP_EXAMPLES in a sweep), prints the
    tallies and every wrong case; returns (tallies, wrong cases)."""
    outcomes, refusals, wrong = Counter(), Counter(), []
    vocabulary = OPS if SWEEP and os.environ.get("STRIP_SWEEP_VOCABULARY") != "ci" else CI_OPS
    part = "whole_groups_off" if whole_groups_off else "callback"

    @settings(
        max_examples=SWEEP_EXAMPLES or examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_steps(vocabulary), st.integers(0, 2**16))
    def check(steps, seed):
        outcome, detail = _strip_and_compare(steps, seed, whole_groups_off)
        outcomes[outcome] += 1
        if outcome == "wrong":
            wrong.append((steps, seed, detail))
        elif outcome == "exact" and detail:
            outcomes["exact_side_only"] += 1
        elif detail:
            refusals[detail] += 1

    check()
    print(
        f"\n[{part}, {keras.backend.backend()}, {len(vocabulary)} ops] "
        f"exact {outcomes['exact']} (the side branch's gate only: "
        f"{outcomes['exact_side_only']}), refused at add_gates {outcomes['refused_add_gates']}, "
        f"refused at strip {outcomes['refused_strip']}, "
        f"wrong {outcomes['wrong']}; refusals {dict(refusals)}"
    )
    for steps, seed, detail in wrong:
        print(
            f"  WRONG: {detail}\n    KERAS_BACKEND={keras.backend.backend()} .venv/bin/"
            f'python tests/test_strip_property.py {part} {seed} "{steps}"'
        )
    kinds = Counter(re.sub(r"\d+", "N", detail)[:160] for _, _, detail in wrong)
    for kind, count in kinds.most_common():
        print(f"  wrong x{count}: {kind}")
    return outcomes, wrong


# Part 1: exact cases whose DAG holds a gate besides the side branch's. The
# deterministic profile (CI_OPS, 60 examples) draws 34 (and 26 whose own
# groups are all protected); random draws give about 60%. Fewer than this
# many means add_gates protects graphs it used to prune.
MIN_EXACT_CALLBACK = 25
# Part 2 (the original property): exact cases of 25; the deterministic
# profile draws 22. Fewer means strip_pruning
# refuses graphs it used to handle.
MIN_EXACT = 5


def _gated_dags(outcomes):
    return outcomes["exact"] - outcomes["exact_side_only"]


def test_random_dags_with_callback_masks_strip_exactly():
    """Part 1: every gated group keeps a channel. Every DAG add_gates
    accepts strips without an error to a model with the gated model's
    outputs, FLOPs and params; at least MIN_EXACT_CALLBACK of them."""
    outcomes, wrong = _run(60, whole_groups_off=False)
    assert not wrong, f"{len(wrong)} wrong cases (printed above): {wrong}"
    assert outcomes["refused_strip"] == 0
    if not SWEEP:
        assert _gated_dags(outcomes) >= MIN_EXACT_CALLBACK, dict(outcomes)


def test_random_dags_strip_exactly_or_refuse():
    """Part 2: masks may switch whole groups off. Every random DAG strips to
    a model with the gated model's outputs, FLOPs and params, or is refused with a StripError (only
    where a
    group is wholly off); and at least MIN_EXACT of the 25 drawn DAGs are
    stripped (not all refused)."""
    outcomes, wrong = _run(25, whole_groups_off=True)
    assert not wrong, f"{len(wrong)} wrong cases (printed above): {wrong}"
    if not SWEEP:
        assert outcomes["exact"] >= MIN_EXACT, dict(outcomes)


if __name__ == "__main__":  # reproduces one printed case
    import ast
    import sys

    part, seed, steps = sys.argv[1], int(sys.argv[2]), ast.literal_eval(sys.argv[3])
    print(_strip_and_compare(steps, seed, whole_groups_off=part == "whole_groups_off"))
