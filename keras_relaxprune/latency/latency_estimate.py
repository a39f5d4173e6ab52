"""`estimate_latency`: a model's latency predicted from a latency table."""

from keras_relaxprune import arguments
from keras_relaxprune.cost.count import kept_channels, layer_costs, sized_graph
from keras_relaxprune.graph.flat_graph import as_functional
from keras_relaxprune.latency.latency_model import LatencyModel, attach_latency_model
from keras_relaxprune.latency.latency_table import LatencyTable, as_table


def estimate_latency(model, latency_table=None, input_shape=None, by_layer=False):
    """Predicted seconds of one forward pass of `model` on a target runtime.

    The sum over the model's nodes of their latency in the table
    (`docs/latency.md`): layers with a kernel interpolated in their measured
    grid, BatchNormalization and ReLU free (folded or fused by the runtime),
    other nodes priced by their elementwise FLOPs. A gated model is counted
    as stripped, like `count_flops`: what `strip_pruning` keeps. Layers the
    table lacks are measured first (with a progress bar) and cached.

    Args:
        model: a functional model: dense, gated or stripped.
        latency_table: a `LatencyTable`, or a latency target to measure a
            new one with. Defaults to the table saved in a gated model
            (`add_gates(..., latency_table=...)`), else
            `LatencyTable(TFLiteTarget(num_threads=1))`.
        input_shape: the input shape without batch, for a model whose
            spatial size is unknown.
        by_layer: also return a list of per-node dicts with `name`,
            `class` and `seconds`.

    Returns:
        Seconds (float), or `(seconds, rows)` with `by_layer=True`.

    Example:

    ```python
    table = krp.LatencyTable(krp.TFLiteTarget(num_threads=1))
    dense_s = krp.estimate_latency(model, table)
    small_s = krp.estimate_latency(krp.strip_pruning(gated), table)
    ```
    """
    model = as_functional(arguments.model("estimate_latency", "model", model))
    by_layer = arguments.boolean("estimate_latency", "by_layer", by_layer)
    table = latency_table_of(model, latency_table) or LatencyTable()
    graph = priced_graph(sized_graph(model, input_shape), table)
    costs = layer_costs(graph, kept_channels(graph), as_stripped=True)
    total = float(sum(cost.latency for cost in costs))
    if not by_layer:
        return total
    rows = [
        {"name": cost.name, "class": cost.class_name, "seconds": float(cost.latency)}
        for cost in costs
    ]
    return total, rows


def priced_graph(graph, table):
    """`graph` with the latency of its nodes at their present widths from
    `table` (measuring the layers it lacks)."""
    table.profile_graph(graph, reachable=False)
    return attach_latency_model(graph, LatencyModel(table, graph, reachable=False))


def latency_table_of(model, latency_table=None):
    """`latency_table` as a `LatencyTable` (a target is wrapped in a new
    one), else the table saved in a gated `model`, else None."""
    if latency_table is not None:
        return as_table(latency_table)
    saved = next(
        (
            layer.latency_table
            for layer in getattr(model, "layers", [])
            if getattr(layer, "latency_table", None) is not None
        ),
        None,
    )
    return None if saved is None else LatencyTable.from_config(saved)
