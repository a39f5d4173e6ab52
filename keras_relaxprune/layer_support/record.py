"""`LayerSupport`: everything the library knows about one family of layers.

A record says how a layer maps channel indices (tracing groups), what it
costs for given channel counts (budget and counting), how a smaller copy of
it is built when channels are removed (stripping), and how a gate after it
folds into its weights. Each family registers one record, once, with
`register_layer`; a user's own layer is made prunable the same way.

Records are found by exact class, or for a subclass that overrides none of
its parent's methods but `__init__` and the config methods (it computes the
same thing). A subclass that overrides `call`, `convolution_op`, `build` or any
other method is a barrier until it is registered itself: inheriting its
parent's slicing would be a guess.
"""

import dataclasses
import typing

import numpy as np

_RECORDS = {}


@dataclasses.dataclass(frozen=True)
class GateFold:
    """How a per-output-channel scale (a gate) folds into a layer's weights.

    Every named weight is multiplied by the scale along `axis` (its output
    channel axis); a weight the layer lacks (a disabled bias) is skipped.

    Attributes:
        weights: names of the layer attributes holding the weights, e.g.
            `("kernel", "bias")`.
        axis: the output-channel axis of the first weight; the others are
            vectors over output channels.
    """

    weights: tuple = ("kernel", "bias")
    axis: int = -1

    def channel_count(self, layer):
        """Number of output channels the fold scales."""
        return int(self._primary(layer).shape[self.axis])

    def _primary(self, layer):
        variable = getattr(layer, self.weights[0], None)
        if variable is None:
            raise AssertionError(f"layer '{layer.name}' has no '{self.weights[0]}' to fold into")
        return variable

    def apply(self, layer, scale):
        """Multiplies the layer's per-output-channel weights by `scale`."""
        self._primary(layer)
        for position, name in enumerate(self.weights):
            variable = getattr(layer, name, None)
            if variable is None:
                continue
            value = np.asarray(variable.numpy(), "float64")
            axis = self.axis if position == 0 else -1
            shape = [1] * value.ndim
            shape[axis] = -1
            variable.assign((value * np.reshape(scale, shape)).astype(variable.dtype))


@dataclasses.dataclass(frozen=True)
class FoldTarget:
    """A layer of the stripped model that a gate on some tensor folds into.

    Attributes:
        layer: the new layer.
        fold: its `GateFold`.
        channels: which of its output channels the tensor holds, in order;
            None for all of them.
    """

    layer: object
    fold: GateFold
    channels: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class LayerSupport:
    """What keras_relaxprune knows about one family of layers or raw ops.

    Attributes:
        channels: `channels(tracer, node, in_maps) -> out_maps`: the channel
            map of each output given those of the inputs. It may start a new
            channel group (`tracer.new_group`), tie groups (`tracer.tie`),
            protect channels (`tracer.protect`) or stop tracing
            (`tracer.barrier`).
        cost: `cost(shapes, layer, cin, cout) -> (params, macs, flops)`:
            weights, multiply-accumulates and elementwise FLOPs for `cin`
            input and `cout` output channels. None: the layer's own weight
            count and no FLOPs.
        remove: `remove(stripper, node, ins, args, kwargs) -> outs`: the
            outputs (`LiveChannels`) of the smaller layer built for inputs
            that lost channels. None: channels reaching it are never removed
            (its `channels` rule protects them).
        gate_fold: a `GateFold` if a gate right after this layer folds into
            its weights.
        scales_inputs: the layer is linear in its input, so a per-input-
            channel scale can be folded into its kernel instead.
        regenerates_channels: a removed (zero) channel may leave it non-zero
            (a bias or a beta), so `add_gates` puts a gate after it.
        combines_inputs: an elementwise merge: one FLOP per output element
            for each input beyond the first.
        rebuild_always: `rebuild_always(node, graph) -> bool`: rebuild the
            layer with `remove` even when no channel is removed (a
            BatchNormalization takes folded gates).
        kernel_axes: `(input_axis, output_axis)` of a `kernel` that weighs
            every input channel into every output channel (convolutions,
            their transposes, Dense); None for other layers.
        collapses_to_bias: with every input channel removed, its own output
            channels live on as constants (its bias through its activation):
            a layer with a kernel, separable and depthwise ones included.
        constant_input: `constant_input(layer, rank) -> str`: what the layer
            makes of a removed input channel that holds a non-zero constant
            (`removed_constants.ABSORBED`, `CARRIED` or `BROKEN`; `rank` is
            its output's). None: `CARRIED`.
        changes_zero: a removed channel's 0 may come out of it as another
            value (sigmoid(0) = 0.5, `x + c`, a `Rescaling` offset, a
            `Resizing` fill), with no gate after it to zero it again; or
            `changes_zero(layer) -> bool` deciding per layer. `add_gates`
            runs such a layer on zeros to see what it makes
            (`removed_constants.value_made_from_zero`).
        multiplies_inputs: an elementwise product: a removed (zero) channel
            stays zero whatever it meets, and a per-channel scale of a
            full-width factor scales the product alike.
        passes_scale: the layer maps 0 to 0 and commutes with a per-channel
            scale (dropout, zero padding, cropping, upsampling): a gate that
            cannot fold before it passes its scale on to the layers reading
            its output, in training as in inference (noise that adds is not).
        takes_producer_gate: a producer read by this layer alone gets no
            gate of its own: the gate goes after this layer, which re-creates
            the channels and folds the gate into its weights.
        is_batch_normalization: a BatchNormalization (its `gamma` ranks
            channels for Network Slimming).
        inner_gated: `inner_gated(flat, **gate_settings) -> layer`: for a
            layer whose channel rule starts a group inside it
            (`tracer.new_inner_group`, attention heads), an unbuilt copy that
            gates those channels with a `ChannelGate` of its own, made from
            `gate_settings` (`name`, `initial_gate`, `initial_scale`).
            `add_gates` calls it for each such group that may be pruned and
            gives the copy the original's weights, followed by its gate's.
    """

    channels: typing.Callable
    cost: typing.Callable | None = None
    remove: typing.Callable | None = None
    gate_fold: GateFold | None = None
    scales_inputs: bool = False
    regenerates_channels: bool = False
    combines_inputs: bool = False
    rebuild_always: typing.Callable | None = None
    kernel_axes: tuple | None = None
    collapses_to_bias: bool = False
    constant_input: typing.Callable | None = None
    changes_zero: bool | typing.Callable = False
    multiplies_inputs: bool = False
    passes_scale: bool = False
    takes_producer_gate: bool = False
    is_batch_normalization: bool = False
    inner_gated: typing.Callable | None = None


def register_layer(*classes, like=None, **fields):
    """Makes layer classes prunable: registers one `LayerSupport` for them.

    Args:
        *classes: the layer (or op) classes the record is for.
        like: a class already supported (e.g. `keras.layers.Conv2D`) whose
            record is copied: for a layer with the same weights, config
            keys and computation. Fields given as keywords replace its ones.
        **fields: the `LayerSupport` fields (`channels`, `cost`, `remove`,
            `gate_fold`, ...). `channels` is required without `like`.

    Returns:
        The registered `LayerSupport`.

    Example:

    ```python
    class StandardizedConv2D(keras.layers.Conv2D): ...   # same weights, config

    krp.register_layer(StandardizedConv2D, like=keras.layers.Conv2D)
    ```
    """
    from keras_relaxprune.errors import PruningError

    if not classes or not all(isinstance(cls, type) for cls in classes):
        raise PruningError("register_layer: pass one or more layer classes.")
    if like is not None:
        base = _RECORDS.get(like)
        if base is None:
            raise PruningError(
                f"register_layer: like={getattr(like, '__name__', like)!r} is not a "
                "supported layer class; pass the exact class (e.g. keras.layers.Conv2D)."
            )
        record = dataclasses.replace(base, **fields)
    elif "channels" not in fields:
        raise PruningError("register_layer: give `channels=` (or `like=` a supported class).")
    else:
        record = LayerSupport(**fields)
    for cls in classes:
        _RECORDS[cls] = record
    return record


# Methods a subclass may override and still compute what its parent computes.
_SAFE_OVERRIDES = frozenset({"__init__", "get_config", "from_config", "__repr__"})


def find_support(operation):
    """The `LayerSupport` for `operation`, or None (a barrier)."""
    cls = type(operation)
    if cls in _RECORDS:
        return _RECORDS[cls]
    for parent in cls.__mro__[1:]:
        if parent in _RECORDS:
            return None if overridden_methods(cls, parent) else _RECORDS[parent]
    return None


def overridden_methods(cls, parent):
    """Names of `parent`'s methods that `cls` (a subclass) defines again.

    Keras layers compute through more than `call` (`Conv2D.convolution_op`,
    `build`, ...), so a subclass that overrides any of them may compute
    something else: it is a barrier until registered. Only `__init__` and the
    config methods are taken as safe.
    """
    names = set()
    for klass in cls.__mro__:
        if klass is parent:
            break
        names |= {name for name, value in vars(klass).items() if callable(value)}
    return sorted(
        name
        for name in names - _SAFE_OVERRIDES
        if callable(getattr(parent, name, None)) and getattr(cls, name) is not getattr(parent, name)
    )


def has_kernel(layer):
    """Whether `layer`'s `kernel` weighs every input channel into every
    output channel (a convolution, its transpose, Dense, or a layer
    registered like one), so a constant input channel adds its summed
    kernel column to the output (`convolution.summed_kernel`)."""
    return kernel_axes(layer) is not None


def kernel_axes(layer):
    """`(input_axis, output_axis)` of `layer.kernel`, or None (no such kernel)."""
    support = find_support(layer)
    return None if support is None else support.kernel_axes


def collapses_to_bias(operation):
    """Whether its output channels live on as constants (its bias) when
    every channel it reads was removed."""
    return _field(operation, "collapses_to_bias")


def changes_zero(operation):
    """Whether a removed channel's 0 may come out of it as another value."""
    support = find_support(operation)
    if support is None or not support.changes_zero:
        return False
    rule = support.changes_zero
    return bool(rule(operation)) if callable(rule) else True


def is_multiply(operation):
    """Whether it is an elementwise product (a `Multiply` layer or op)."""
    return _field(operation, "multiplies_inputs")


def passes_scale(operation):
    """Whether a per-channel scale of its input comes out of it unchanged."""
    return _field(operation, "passes_scale")


def takes_producer_gate(operation):
    """Whether the gate of a producer read by it alone goes after it instead."""
    return _field(operation, "takes_producer_gate")


def is_batch_normalization(operation):
    """Whether it is a BatchNormalization (by its record)."""
    return _field(operation, "is_batch_normalization")


def _field(operation, name):
    support = find_support(operation)
    return support is not None and bool(getattr(support, name))


def unsupported_reason(operation):
    """Why `operation` has no record, for the barrier message."""
    cls = type(operation)
    for parent in cls.__mro__[1:]:
        if parent in _RECORDS:
            methods = ", ".join(f"{name}()" for name in overridden_methods(cls, parent))
            return (
                f"subclass of {parent.__name__} that overrides {methods}; "
                f"register it with krp.register_layer({cls.__name__}, ...)"
            )
    return "no channel rule for this layer type (see krp.register_layer)"
