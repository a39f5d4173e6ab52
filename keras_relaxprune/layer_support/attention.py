"""MultiHeadAttention: whole heads are prunable.

A `MultiHeadAttention` with `H` heads holds one group of `H` channels inside
it (`tracer.new_inner_group`): head `h` owns the `key_dim` columns `h` of the
query and key kernels, the `value_dim` columns `h` of the value kernel (and
of the biases) and the `value_dim` rows `h` of the output kernel. Heads are
independent up to the output projection, which sums them, so removing a head
removes exactly its term of that sum; the output bias stays.

`add_gates` replaces the layer by a `GatedMultiHeadAttention` that multiplies
each head's output by its gate before the projection; `strip_pruning` builds a
plain `MultiHeadAttention` with the surviving heads and folds the gate values
into their rows of the output kernel. Query, key and value inputs and the
output width are not pruned here (in a transformer they are the residual
width, which LayerNormalization protects anyway). The heads stay whole where
removing one would change more than a sum: a layer that also returns its
attention scores (they have a heads axis), or one with `use_gate=True`.

Its cost counts the query, key, value and output projections, the scores
`Q K^T` and the weighted sum of the values, per head, each a product over the
query positions and the positions attended; plus one FLOP per score
(softmax) and per scaled query element.
"""

import math

import keras
import numpy as np
from keras import layers, ops

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.errors import StripError
from keras_relaxprune.graph.channel_maps import fixed_map
from keras_relaxprune.graph.layer_copies import safe_name
from keras_relaxprune.graph.live_channels import LiveChannels, opaque
from keras_relaxprune.layer_support.record import register_layer

# Defaults of a gate made outside `add_gates` (loading passes the saved ones).
_INITIAL_GATE, _INITIAL_SCALE = 0.99, 50.0


def attention_channels(tracer, node, in_maps):
    """Inputs and output kept whole; the heads start a group inside the node."""
    layer = node.operation
    tracer.protect(
        [segment for channel_map in in_maps for segment in channel_map],
        f"{node.name} ({node.class_name}) reads every channel of its inputs",
    )
    heads = tracer.new_inner_group(node, layer.num_heads, getattr(layer, "gate", None))
    reason = _heads_kept_whole(node)
    if reason:
        tracer.protect(heads, f"{node.name}: {reason}")
    output = tracer.new_group(node, tracer.out_channels(node))
    tracer.protect(output, f"{node.name} ({node.class_name}): its output width is not pruned")
    return [output] + [fixed_map(tracer.channels(key)) for key in node.outputs[1:]]


def _heads_kept_whole(node):
    """Why the heads of this call cannot be removed, or None."""
    if len(node.outputs) > 1:
        return "its attention scores are an output (they have a heads axis)"
    if node.operation.get_config().get("use_gate"):
        return "use_gate=True (its gate projection is not sliced)"
    return None


def attention_inputs(flat):
    """The `(query, value, key)` tensors of one call of the layer."""
    arguments = internals.call_arguments(flat.node)
    bound = dict(zip(("query", "value", "key"), arguments.args))
    bound.update({k: v for k, v in arguments.kwargs.items() if k in ("query", "value", "key")})
    key = bound.get("key")
    return bound["query"], bound["value"], bound["value"] if key is None else key


def attention_cost(shapes, layer, cin, cout, heads=None):
    """Params, MACs and elementwise FLOPs with `heads` heads (all by default)."""
    heads = layer.num_heads if heads is None else heads
    query, value, key = (tuple(t.shape) for t in attention_inputs(shapes.flat))
    key_dim, value_dim = layer.key_dim, layer.value_dim
    width = math.prod(shapes.out_shape[len(query) - 1 :])  # the projection's outputs
    gate = bool(layer.get_config().get("use_gate"))
    params = heads * (
        (query[-1] + key[-1]) * key_dim + (value[-1] + width + gate * query[-1]) * value_dim
    )
    if layer.use_bias:
        params += heads * (2 * key_dim + (1 + gate) * value_dim) + width
    if shapes.params_only and None in query[1:-1] + value[1:-1]:
        return params, 0, 0
    queries = shapes.positions(query)
    keys = shapes.positions(value)
    attended = math.prod(value[axis] for axis in layer.attention_axes)
    macs = heads * (
        queries * (query[-1] * key_dim + value_dim * width + gate * query[-1] * value_dim)
        + keys * (key[-1] * key_dim + value[-1] * value_dim)
        + queries * attended * (key_dim + value_dim)
    )
    elementwise = heads * queries * (attended + key_dim + 2 * gate * value_dim)
    return params, macs, elementwise


def head_group_root(graph, node):
    """The root of the heads' group of `node` (a node of `graph`)."""
    index = next(i for i, flat in enumerate(graph.flat.nodes) if flat is node)
    return graph.groups.find(graph.inner_maps[index][0].group)


def remove_heads(stripper, node, ins, args, kwargs):
    """A plain `MultiHeadAttention` with the surviving heads, gates folded."""
    layer = node.operation
    root = head_group_root(stripper.graph, node)
    kept = np.flatnonzero(stripper.keep[root])
    if not len(kept):
        raise StripError(
            f"strip_pruning: every head of '{node.name}' ({node.class_name}) is "
            "removed; keep at least one (the closing of PruningCallback always does)."
        )
    scale = stripper.gate_values.get(root)
    if scale is None:  # a protected group: the gate stays open, folded as it is
        scale = np.asarray(keras.ops.convert_to_numpy(layer.gate.gate_values()), "float64")
    config = {k: v for k, v in layer.get_config().items() if k not in _GATE_SETTINGS}
    config["num_heads"] = len(kept)
    new = layers.MultiHeadAttention.from_config(config)
    unwrap = lambda v: v.value if isinstance(v, LiveChannels) else v  # noqa: E731
    args, kwargs = keras.tree.map_structure(unwrap, (args, kwargs))
    outputs = keras.tree.flatten(new(*args, **kwargs))
    new.set_weights(_sliced_weights(layer, kept, scale[kept]))
    return [opaque(value) for value in outputs]


_GATE_SETTINGS = ("gate_name", "initial_gate", "initial_scale")


def _sliced_weights(layer, kept, scale):
    """The weights of `layer` for the heads `kept`, the output kernel's rows
    of each multiplied by its gate value `scale`."""
    weights = []
    for projection in (layer.query_dense, layer.key_dense, layer.value_dense):
        kernel = projection.kernel.numpy()
        weights.append(np.take(kernel, kept, axis=1))  # (input, heads, size)
        if projection.bias is not None:
            weights.append(np.take(projection.bias.numpy(), kept, axis=0))
    kernel = np.asarray(layer.output_dense.kernel.numpy(), "float64")[kept]  # (heads, size, ...)
    weights.append(kernel * np.reshape(scale, (-1,) + (1,) * (kernel.ndim - 1)))
    if layer.output_dense.bias is not None:
        weights.append(layer.output_dense.bias.numpy())
    return [np.asarray(w, "float32") for w in weights]


@keras.saving.register_keras_serializable(package="keras_relaxprune")
class GatedMultiHeadAttention(layers.MultiHeadAttention):
    """A `MultiHeadAttention` that multiplies each head's output by a gate.

    Head `h`'s attention output (before the output projection, which sums
    the heads) is multiplied by gate `h` of its `ChannelGate` (`self.gate`,
    one gate per head), the same relaxed gate `add_gates` puts after a
    convolution. `add_gates` makes it from a `MultiHeadAttention`;
    `strip_pruning` turns it back into a plain, smaller `MultiHeadAttention`
    with the surviving heads and their gate values folded into the output
    kernel.

    Args:
        *args: the positional arguments of `keras.layers.MultiHeadAttention`
            (`num_heads`, `key_dim`, ...).
        gate_name: the name of its gate. Defaults to `"<name>_gate"`.
        initial_gate: each gate's starting value. Defaults to 0.99.
        initial_scale: the gates' starting inverse temperature. Defaults to 50.
        **kwargs: the arguments of `keras.layers.MultiHeadAttention`.

    Example:

    >>> layer = GatedMultiHeadAttention(num_heads=4, key_dim=8)
    >>> y = layer(keras.ops.ones((2, 5, 16)), keras.ops.ones((2, 5, 16)))
    >>> layer.gate.channels
    4
    """

    def __init__(
        self,
        *args,
        gate_name=None,
        initial_gate=_INITIAL_GATE,
        initial_scale=_INITIAL_SCALE,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.gate_name = gate_name
        self.initial_gate = float(initial_gate)
        self.initial_scale = float(initial_scale)

    def build(self, query_shape, value_shape, key_shape=None):
        from keras_relaxprune.layers.channel_gate import ChannelGate  # imports this package

        super().build(query_shape, value_shape, key_shape)
        # Made after the projections, so its weights follow theirs.
        self.gate = ChannelGate(
            self.initial_gate,
            self.initial_scale,
            channels=self.num_heads,
            name=self.gate_name or f"{self.name}_gate",
        )
        self.gate.build((self.num_heads,))

    def _compute_attention(self, query, key, value, *args, **kwargs):
        # The heads' outputs, (..., heads, value_dim), before their projection.
        outputs, scores = super()._compute_attention(query, key, value, *args, **kwargs)
        gate = ops.cast(self.gate.gate_values(), outputs.dtype)
        return outputs * ops.expand_dims(gate, -1), scores

    def get_config(self):
        config = super().get_config()
        config.update(
            gate_name=self.gate_name,
            initial_gate=self.initial_gate,
            initial_scale=self.initial_scale,
        )
        return config


def gated_attention(flat, name, initial_gate, initial_scale):
    """A `GatedMultiHeadAttention` with the config of `flat`'s layer."""
    config = flat.operation.get_config()
    if flat.scope:
        config["name"] = safe_name(flat.name)
    return GatedMultiHeadAttention(
        gate_name=name, initial_gate=initial_gate, initial_scale=initial_scale, **config
    )


register_layer(
    layers.MultiHeadAttention,
    channels=attention_channels,
    cost=attention_cost,
    inner_gated=gated_attention,
)
register_layer(
    GatedMultiHeadAttention,
    channels=attention_channels,
    cost=attention_cost,
    remove=remove_heads,
    rebuild_always=lambda flat, graph: True,  # always back to a plain layer
)
