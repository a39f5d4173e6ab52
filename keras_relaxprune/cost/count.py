"""`count_params`, `count_flops` and the relaxed cost used in the loss."""

import dataclasses

import keras
import numpy as np
from keras import layers, ops

from keras_relaxprune import arguments
from keras_relaxprune.cost.node_cost import combines_inputs, node_cost
from keras_relaxprune.graph.flat_graph import as_functional, call_original, flatten, rebuild
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.layer_support.collapse import emits_constant
from keras_relaxprune.layer_support.convolution import CONVS, TRANSPOSED, summed_kernel

_KERNEL_LAYERS = (*CONVS, *TRANSPOSED, layers.Dense)


@dataclasses.dataclass
class LayerCost:
    name: str
    class_name: str
    params: float
    macs: float
    flops: float


def hard_count(graph, keep=None):
    """`count(map)`: channels alive by `keep` (root -> 0/1 vector)."""
    keep = graph.keep_vectors() if keep is None else keep
    find = graph.groups.find

    def count(channel_map):
        total = 0
        for segment in channel_map:
            if segment.group is None:
                total += segment.length
            else:
                total += int(keep[find(segment.group)][segment.start:segment.stop].sum())
        return total

    return count


def layer_costs(graph, count, hard=False, params_only=False):
    """Per-node `LayerCost` with channel counts given by `count(map)`.

    A layer called several times (shared) has its parameters counted once.
    A merge costs one FLOP per output element for each input beyond the
    first. With `hard=True` the count follows `strip_pruning` exactly: a
    tensor with no channel left is a constant, a node fed only by constants
    (a collapsed residual branch) costs nothing, and neither does a node
    whose outputs reach the model's outputs only as constants (a conv read
    only by a slice of removed channels): the stripped model has no such
    layer. So is a group whose every producer collapsed: its channels are
    constants that the layers reading them fold into their biases. With
    `params_only=True` unknown spatial sizes are allowed (FLOPs are then
    meaningless).
    """
    if not hard:
        return _layer_costs(graph, count, False, params_only)[0]
    constant_groups = set()
    while True:
        costs, collapsed = _layer_costs(
            graph, _not_counting(graph, count, constant_groups), True, params_only)
        found = _constant_groups(graph, collapsed)
        if found <= constant_groups:
            return costs
        constant_groups |= found


def _not_counting(graph, count, roots):
    """`count` that counts no channel of the groups `roots`."""
    if not roots:
        return count
    find = graph.groups.find
    return lambda channel_map: count(
        [s for s in channel_map if s.group is None or find(s.group) not in roots])


def _constant_groups(graph, collapsed):
    """Roots of the groups whose every producing node collapsed."""
    producers = {}
    for index, group in graph.producers:
        producers.setdefault(graph.groups.find(group), []).append(index)
    return {root for root, indices in producers.items()
            if all(index in collapsed for index in indices)}


def _layer_costs(graph, count, hard, params_only):
    """`layer_costs` for one `count`; also the indices of collapsed nodes."""
    costs, constant, collapsed = [], set(), set()
    gated = graph.gated_tensors()
    for index, flat in enumerate(graph.flat.nodes):
        in_maps, out_maps = graph.in_maps(index), graph.out_maps(index)
        known = in_maps and in_maps[0] is not None and out_maps[0] is not None
        cin = count(in_maps[0]) if known else None
        cout = count(out_maps[0]) if known else None
        channel_inputs = [k for k, m in zip(flat.inputs, in_maps) if m is not None]
        live_inputs = [k for k in channel_inputs if k not in constant]
        all_constant = bool(channel_inputs) and not live_inputs
        if hard and emits_constant(all_constant, _widest_output(count, out_maps, known)):
            constant.update(flat.outputs)
            collapsed.add(index)
            costs.append(None)
            continue
        if hard and known:
            # A split part with no channel left is a constant; the others live.
            constant.update(key for key, out_map in zip(flat.outputs, out_maps)
                            if out_map is not None and count(out_map) == 0)
        if known:
            params, macs, elementwise = node_cost(flat, graph.flat.tensors, cin, cout,
                                                  params_only, flat.outputs[0] in gated)
            if combines_inputs(flat.operation):
                elementwise = elementwise * max(len(live_inputs) - 1, 0)
        else:
            weights = getattr(flat.operation, "weights", [])
            params, macs, elementwise = sum(int(np.prod(w.shape)) for w in weights), 0, 0
        costs.append((params, macs, 2 * macs + elementwise))
    live = _reaching_outputs(graph.flat, constant) if hard else None
    seen, result = set(), []
    for index, (flat, cost) in enumerate(zip(graph.flat.nodes, costs)):
        if cost is None or (live is not None and index not in live):
            cost = (0, 0, 0)
        elif id(flat.operation) in seen:
            cost = (0, *cost[1:])
        else:
            seen.add(id(flat.operation))
        result.append(LayerCost(flat.name, flat.class_name, *cost))
    return result, collapsed


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


def _widest_output(count, out_maps, known):
    """Channels kept in the node's widest output (a split collapses only
    when every part is gone), or None when channels are not tracked."""
    if not known:
        return None
    return max(count(m) for m in out_maps if m is not None)


def cost_fractions(graph, keep):
    """Hard remaining `{"flops": f, "params": p}` fractions for masks `keep`."""
    dense = layer_costs(graph, lambda m: sum(s.length for s in m))
    costs = layer_costs(graph, hard_count(graph, keep), hard=True)
    return {
        "flops": sum(c.flops for c in costs) / sum(c.flops for c in dense),
        "params": sum(c.params for c in costs) / sum(c.params for c in dense),
    }


def sized_graph(model, input_shape=None):
    """`analyze(model)` at the spatial size FLOPs are counted at.

    That is `input_shape` (one shape without batch, or a list of them for
    several inputs), else the `cost_input_shape` given to `add_gates`, else
    the model's own input shapes. The model is re-traced at that size
    through its own layers, so the graph's gates are the model's.
    """
    if input_shape is None:
        input_shape = next((layer.cost_input_shape for layer in getattr(model, "layers", [])
                            if getattr(layer, "cost_input_shape", None)), None)
    if input_shape is None:
        return analyze(model)
    shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
    shapes = [tuple(int(size) for size in shape) for shape in shapes]
    return analyze(rebuild(flatten(model), call_original, input_shapes=shapes))


def has_unknown_spatial_size(model):
    """Whether any input of `model` has a spatial size of None."""
    return any(None in tuple(x.shape)[1:-1] for x in model.inputs)


def count_params(model):
    """Number of weights of `model`, or of what `strip_pruning` would keep.

    On a dense model this equals `model.count_params()`. On a gated model it
    is the hard count: channels whose `keep_mask` is 0 are left out, and
    the gates themselves are not counted.

    Example:

    >>> count_params(krp.add_gates(model)) == model.count_params()
    True
    """
    model = arguments.model("count_params", "model", model)
    graph = analyze(model)
    costs = layer_costs(graph, hard_count(graph), hard=True, params_only=True)
    return int(sum(c.params for c in _with_gained_biases(graph, costs)))


def count_flops(model, input_shape=None, by_layer=False):
    """FLOPs of one forward pass of one sample (2 x MACs + elementwise ops).

    On a gated model this is the hard count: what `strip_pruning` keeps.

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
    costs = _with_gained_biases(graph, layer_costs(graph, hard_count(graph), hard=True))
    total = int(sum(c.flops for c in costs))
    if not by_layer:
        return total
    rows = [
        {"name": c.name, "class": c.class_name, "params": int(c.params),
         "macs": int(c.macs), "flops": int(c.flops)}
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
        if (not isinstance(layer, _KERNEL_LAYERS) or layer.use_bias
                or not (cost.params or cost.macs)):
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
            added = hard_count(graph, keep)(outputs) if outputs is not None else 0
            costs[index] = dataclasses.replace(cost, params=cost.params + added)
    return costs


def _values_on_zeros(graph, keys):
    """The values of tensors `keys` when every model input is zeros (one
    sample; unknown sizes taken as 32)."""
    values = {}
    for key in graph.flat.inputs:
        shape = [1] + [32 if size is None else size
                       for size in tuple(graph.flat.tensors[key].shape)[1:]]
        values[key] = keras.ops.zeros(shape, graph.flat.tensors[key].dtype or "float32")
    for flat in graph.flat.nodes:
        args, kwargs = flat.fill_in(values)
        outputs = keras.tree.flatten(flat.operation(*args, **kwargs))
        values.update(zip(flat.outputs, outputs))
        if keys <= values.keys():
            break
    return {key: keras.ops.convert_to_numpy(values[key]) for key in keys}


class GraphCost:
    """Remaining-cost fractions of a gated model, as backend tensors.

    `GraphCost(graph).fractions(vector_of)` returns `{"flops": f, "params":
    p}`: the cost with each gated group's channel count replaced by the sum
    of `vector_of(gate)` over its channels, divided by the dense cost (same
    counter, every layer counted, shortcuts and classifier included).
    `vector_of=soft_gates` gives the differentiable cost used in the loss;
    `vector_of=keep_masks` gives the hard cost.
    """

    def __init__(self, graph):
        self.graph = graph
        dense = layer_costs(graph, lambda m: sum(s.length for s in m))
        self.dense_flops = float(sum(c.flops for c in dense))
        self.dense_params = float(sum(c.params for c in dense))

    def _count(self, vector_of):
        groups, gates, cache = self.graph.groups, self.graph.gates, {}

        def count(channel_map):
            total = 0.0
            for segment in channel_map:
                root = None if segment.group is None else groups.find(segment.group)
                if root is None or root not in gates or groups.is_protected(root):
                    total = total + segment.length
                    continue
                if root not in cache:
                    cache[root] = vector_of(gates[root])
                total = total + ops.sum(cache[root][segment.start:segment.stop])
            return total

        return count

    def fractions(self, vector_of):
        costs = layer_costs(self.graph, self._count(vector_of))
        flops = sum(c.flops for c in costs) / self.dense_flops
        params = sum(c.params for c in costs) / self.dense_params
        return {"flops": flops, "params": params}


def soft_gates(gate):
    return gate.gate_values()


def keep_masks(gate):
    return ops.convert_to_tensor(gate.keep_mask)
