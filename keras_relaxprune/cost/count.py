"""`count_params` and `count_flops`: what `strip_pruning` keeps, counted.

Every node is priced by the one rule of `node_cost`; this module adds what
needs the whole graph: which channels the masks keep, and (counted as
stripped) the nodes that stop mattering once others collapsed.
"""

import dataclasses

import keras
import numpy as np

from keras_relaxprune import arguments
from keras_relaxprune.cost.node_cost import COLLAPSED, cost_nodes, node_cost, shared_params
from keras_relaxprune.graph.flat_graph import as_functional, flatten, rebuild
from keras_relaxprune.graph.layer_copies import LayerCloner
from keras_relaxprune.graph.names import unique_name
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.latency.latency_model import has_latency
from keras_relaxprune.layer_support import has_kernel
from keras_relaxprune.layer_support.convolution import summed_kernel


@dataclasses.dataclass
class LayerCost:
    """One row of a count: a node's name, class and cost (latency in
    seconds when the graph has a latency model, else 0)."""

    name: str
    class_name: str
    params: float
    macs: float
    flops: float
    latency: float = 0.0


def dense_channels(channel_map):
    """Every channel of `channel_map`: the `count` of the dense model."""
    return sum(segment.length for segment in channel_map)


def kept_channels(graph, keep=None):
    """`count(channel_map)`: the channels that the 0/1 vectors `keep` (group
    root -> vector; default the gates' keep masks) keep in a channel map."""
    keep = graph.keep_vectors() if keep is None else keep
    find = graph.groups.find

    def count(channel_map):
        total = 0
        for segment in channel_map:
            if segment.group is None:
                total += segment.length
            else:
                total += int(keep[find(segment.group)][segment.start : segment.stop].sum())
        return total

    return count


def layer_costs(graph, count, as_stripped=False, params_only=False):
    """Per-node `LayerCost` with channel counts given by `count(map)`.

    Each node is priced by `node_cost` (merge factor, shared weights counted
    once). With `as_stripped=True` the count follows `strip_pruning`
    exactly: nodes collapse as `node_cost` says, and besides, a node whose
    outputs reach the model's outputs only as constants (a conv read only by
    a slice of removed channels) costs nothing, and neither does a group
    whose every producer collapsed: its channels are constants that the
    layers reading them fold into their biases. With `params_only=True`
    unknown spatial sizes are allowed (FLOPs are then meaningless).
    """
    nodes = cost_nodes(graph, params_only)
    if not as_stripped:
        return _rows(graph, nodes, _node_costs(nodes, count, False))
    constant_groups = set()
    while True:
        costs = _node_costs(nodes, _not_counting(graph, count, constant_groups), True)
        collapsed = {index for index, cost in enumerate(costs) if cost.collapsed}
        found = _constant_groups(graph, collapsed)
        if found <= constant_groups:
            return _rows(graph, nodes, _without_unreachable(graph, costs))
        constant_groups |= found


def _not_counting(graph, count, roots):
    """`count` that counts no channel of the groups `roots`."""
    if not roots:
        return count
    find = graph.groups.find
    return lambda channel_map: count(
        [s for s in channel_map if s.group is None or find(s.group) not in roots]
    )


def _constant_groups(graph, collapsed):
    """Roots of the groups whose every producing node collapsed."""
    producers = {}
    for index, group in graph.producers:
        producers.setdefault(graph.groups.find(group), []).append(index)
    return {
        root for root, indices in producers.items() if all(index in collapsed for index in indices)
    }


def _node_costs(nodes, count, as_stripped):
    """Each node's `NodeCost`, in graph order, for one `count`."""
    costs, constant = [], set()
    for node in nodes:
        live_inputs = sum(key not in constant for key in node.channel_inputs)
        cin = count(node.in_map) if node.tracked else None
        cout = count(node.out_map) if node.tracked else None
        output_counts = None
        if as_stripped:
            output_counts = [None if m is None else count(m) for m in node.output_maps]
        inner = None if node.inner_map is None else count(node.inner_map)
        cost = node_cost(node, cin, cout, live_inputs, output_counts, inner)
        constant.update(node.flat.outputs if cost.collapsed else cost.constant_outputs)
        costs.append(cost)
    return costs


def _without_unreachable(graph, costs):
    """`costs` with the nodes a rebuilt model drops marked collapsed: those
    whose values reach no model output but through constants."""
    constant = set()
    for node, cost in zip(graph.flat.nodes, costs):
        constant.update(node.outputs if cost.collapsed else cost.constant_outputs)
    live = _reaching_outputs(graph.flat, constant)
    return [cost if index in live else COLLAPSED for index, cost in enumerate(costs)]


def _rows(graph, nodes, costs):
    """`LayerCost` rows; a shared layer's weights count once (`shared_params`)."""
    calls = {}
    for index, node in enumerate(nodes):
        calls.setdefault(id(node.flat.operation), []).append(index)
    params = {}
    for indices in calls.values():
        params.update(zip(indices, shared_params([costs[i] for i in indices])))
    return [
        LayerCost(
            node.flat.name,
            node.flat.class_name,
            params[index],
            costs[index].macs,
            costs[index].flops,
            costs[index].latency,
        )
        for index, node in enumerate(nodes)
    ]


def _reaching_outputs(flat_graph, constant):
    """Indices of the nodes whose values reach a model output through
    tensors that are not constants (the nodes a rebuilt model keeps)."""
    needed, live = set(flat_graph.outputs), set()
    for index in reversed(range(len(flat_graph.nodes))):
        flat = flat_graph.nodes[index]
        if any(key in needed and key not in constant for key in flat.outputs):
            live.add(index)
            needed.update(flat.inputs)
    return live


def cost_fractions(graph, keep):
    """Hard remaining `{"flops": f, "params": p}` fractions for masks `keep`
    (and `"latency"` when the graph has a latency model)."""
    dense = layer_costs(graph, dense_channels)
    costs = layer_costs(graph, kept_channels(graph, keep), as_stripped=True)
    fractions = {
        "flops": sum(c.flops for c in costs) / sum(c.flops for c in dense),
        "params": sum(c.params for c in costs) / sum(c.params for c in dense),
    }
    if has_latency(graph):
        fractions["latency"] = sum(c.latency for c in costs) / sum(c.latency for c in dense)
    return fractions


def sized_graph(model, input_shape=None):
    """`analyze(model)` at the spatial size FLOPs are counted at.

    That is `input_shape` (one shape without batch, or a list of them for
    several inputs), else the `cost_input_shape` given to `add_gates`, else
    the model's own input shapes. The model is re-traced at that size
    through its own layers, so the graph's gates are the model's.
    """
    if input_shape is None:
        input_shape = next(
            (
                layer.cost_input_shape
                for layer in getattr(model, "layers", [])
                if getattr(layer, "cost_input_shape", None)
            ),
            None,
        )
    if input_shape is None:
        return analyze(model)
    shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
    shapes = [tuple(int(size) for size in shape) for shape in shapes]
    return analyze(rebuild(flatten(model), _call_uniquely_named(), input_shapes=shapes))


def _call_uniquely_named():
    """A `call_node` for `rebuild` that calls each node's own layer, or, where
    another layer of the rebuilt model already bears its name (sublayers of
    inlined composite layers, e.g. every keras-hub encoder block's
    `dropout`), a renamed copy: Keras refuses a model with two layers alike
    named, and counting needs only the shapes."""
    owners, taken, cloner = {}, set(), LayerCloner()

    def call(index, flat, args, kwargs):
        operation = flat.operation
        name = getattr(operation, "name", None)
        if isinstance(operation, keras.layers.Layer):
            if owners.setdefault(name, id(operation)) != id(operation):
                operation = cloner.clone(flat, name=unique_name(name, taken | set(owners)))
                owners[operation.name] = id(operation)
            taken.add(name)
        return operation(*args, **kwargs)

    return call


def has_unknown_spatial_size(model):
    """Whether any input of `model` has a spatial size of None."""
    return any(None in tuple(x.shape)[1:-1] for x in model.inputs)


def count_params(model):
    """Number of weights of `model`, or of what `strip_pruning` would keep.

    On a dense model this equals `model.count_params()`. On a gated model it
    is counted as stripped: channels whose `keep_mask` is 0 are left out, and
    the gates themselves are not counted.

    Example:

    >>> count_params(krp.add_gates(model)) == model.count_params()
    True
    """
    model = arguments.model("count_params", "model", model)
    graph = analyze(model)
    costs = layer_costs(graph, kept_channels(graph), as_stripped=True, params_only=True)
    return int(sum(c.params for c in _with_gained_biases(graph, costs)))


def count_flops(model, input_shape=None, by_layer=False):
    """FLOPs of one forward pass of one sample (2 x MACs + elementwise ops).

    On a gated model it is counted as stripped: what `strip_pruning` keeps.

    Args:
        model: a functional or Sequential model, dense or gated.
        input_shape: shape of one sample, without batch (e.g. `(360, 480, 3)`),
            needed when the model's spatial size is unknown (`None`).
        by_layer: also return a list of per-layer dicts with `name`, `class`,
            `params`, `macs` and `flops`.

    Returns:
        The total FLOPs (int), or `(total, layers)` with `by_layer=True`.

    Example:

    >>> total, rows = count_flops(model, by_layer=True)
    >>> sum(r["macs"] for r in rows) * 2 <= total
    True
    """
    model = as_functional(arguments.model("count_flops", "model", model))
    input_shape = arguments.input_shape("count_flops", "input_shape", input_shape, model)
    by_layer = arguments.boolean("count_flops", "by_layer", by_layer)
    graph = sized_graph(model, input_shape)
    costs = _with_gained_biases(graph, layer_costs(graph, kept_channels(graph), as_stripped=True))
    total = int(sum(c.flops for c in costs))
    if not by_layer:
        return total
    rows = [
        {
            "name": c.name,
            "class": c.class_name,
            "params": int(c.params),
            "macs": int(c.macs),
            "flops": int(c.flops),
        }
        for c in costs
    ]
    return total, rows


def _with_gained_biases(graph, costs):
    """`costs` with the biases `strip_pruning` adds: a convolution or Dense
    without a bias takes the non-zero constants of its removed input
    channels (after an `Activation("sigmoid")`, a `Rescaling` offset) into
    a new bias. Those constants do not depend on the input, so one forward
    pass on zeros finds them; it runs only where such a layer reads removed
    channels. (The masks-only costs of the budget, `cost_fractions`, leave
    these biases out.)"""
    keep = graph.keep_vectors()
    readers = {}
    for index, flat in enumerate(graph.flat.nodes):
        layer, cost = flat.operation, costs[index]
        if not has_kernel(layer) or layer.use_bias or not (cost.params or cost.macs):
            continue
        in_map = graph.in_maps(index)[0]
        removed = None if in_map is None else np.flatnonzero(graph.kept_flags(in_map, keep) == 0)
        if removed is not None and len(removed):
            readers[index] = removed
    if not readers:
        return costs
    values = _values_on_zeros(graph, {graph.flat.nodes[i].inputs[0] for i in readers})
    costs = list(costs)
    for index, removed in readers.items():
        flat = graph.flat.nodes[index]
        constants = np.asarray(values[flat.inputs[0]], "float64")
        constants = constants.reshape(-1, constants.shape[-1])[0, removed]
        kernel = np.asarray(keras.ops.convert_to_numpy(flat.operation.kernel), "float64")
        if np.any(constants @ summed_kernel(flat.operation, kernel)[removed] != 0):
            cost = costs[index]
            outputs = graph.out_maps(index)[0]
            added = kept_channels(graph, keep)(outputs) if outputs is not None else 0
            costs[index] = dataclasses.replace(cost, params=cost.params + added)
    return costs


def _values_on_zeros(graph, keys):
    """The values of tensors `keys` when every model input is zeros (one
    sample; unknown sizes taken as 32)."""
    values = {}
    for key in graph.flat.inputs:
        shape = [1] + [
            32 if size is None else size for size in tuple(graph.flat.tensors[key].shape)[1:]
        ]
        values[key] = keras.ops.zeros(shape, graph.flat.tensors[key].dtype or "float32")
    for flat in graph.flat.nodes:
        args, kwargs = flat.fill_in(values)
        outputs = keras.tree.flatten(flat.operation(*args, **kwargs))
        values.update(zip(flat.outputs, outputs))
        if keys <= values.keys():
            break
    return {key: keras.ops.convert_to_numpy(values[key]) for key in keys}
