"""`pruning_report`: what pruning removed, per layer and in total."""

import dataclasses
import io
import json

from keras_relaxprune.cost.count import dense_channels, kept_channels, layer_costs, sized_graph
from keras_relaxprune.latency.latency_estimate import latency_table_of, priced_graph
from keras_relaxprune.layers.channel_gate import ChannelGate


@dataclasses.dataclass
class PruningReport:
    """Per-layer channels, params and FLOPs before and after pruning.

    Attributes:
        rows: list of dicts with `name`, `class`, `channels_before`,
            `channels_after`, `params_before`, `params_after`,
            `flops_before`, `flops_after` (FLOPs = 2 x MACs + elementwise);
            an attention layer's row also has `heads_before`, `heads_after`.
        totals: dict with `params_before/after`, `flops_before/after` and
            the remaining fractions `params_fraction`, `flops_fraction`;
            with a latency table also the predicted `latency_before/after`
            (seconds) and `latency_fraction`.
        notes: what was kept on purpose and why (protected channels).
    """

    rows: list
    totals: dict
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self):
        from rich.console import Console
        from rich.table import Table

        table = Table(title="keras_relaxprune: pruning report")
        for column in ("layer", "class", "channels", "params", "FLOPs"):
            table.add_column(column, justify="left" if column in ("layer", "class") else "right")
        for row in self.rows:
            table.add_row(
                row["name"],
                row["class"],
                _channels(row),
                _pair(row["params_before"], row["params_after"]),
                _pair(row["flops_before"], row["flops_after"]),
            )
        t = self.totals
        table.add_row(
            "total",
            "",
            "",
            f"{_pair(t['params_before'], t['params_after'])} ({t['params_fraction']:.1%})",
            f"{_pair(t['flops_before'], t['flops_after'])} ({t['flops_fraction']:.1%})",
        )
        buffer = io.StringIO()
        Console(file=buffer, width=120, force_terminal=False).print(table)
        if "latency_fraction" in t:
            buffer.write(
                f"predicted latency: {1000 * t['latency_before']:.3f} ms -> "
                f"{1000 * t['latency_after']:.3f} ms ({t['latency_fraction']:.1%})\n"
            )
        return buffer.getvalue() + "".join(f"note: {n}\n" for n in self.notes)


def _channels(row):
    """Output channels, and an attention layer's heads ("64; heads 4 -> 2")."""
    text = _pair(row["channels_before"], row["channels_after"])
    if "heads_before" in row:
        text += f"; heads {_pair(row['heads_before'], row['heads_after'])}"
    return text


def _pair(before, after):
    return f"{before:,}" if before == after else f"{before:,} -> {after:,}"


def pruning_report(before, after=None, latency_table=None):
    """Compares a model before and after pruning, layer by layer.

    Args:
        before: the dense model, or a gated model (then `after` may be left
            out and the hard count of the gated model is the "after").
        after: the stripped model, matched to `before` by layer name.
        latency_table: a `LatencyTable` (or target) to add the predicted
            latency to the totals. Defaults to the table saved in a gated
            `before` (`add_gates(..., latency_table=...)`), else none.

    Returns:
        A `PruningReport`; `print(report)` shows the table,
        `report.to_dict()` / `report.to_json()` give the data.

    Example:

    >>> report = krp.pruning_report(gated)
    >>> report.totals["flops_fraction"] <= 0.5
    True
    """
    table = latency_table_of(before, latency_table)
    graph = sized_graph(before)
    if table is not None:
        priced_graph(graph, table)
    dense_rows = _rows(graph, dense_channels)
    if after is None:
        after_rows = _rows(graph, kept_channels(graph), as_stripped=True)
    else:
        after_graph = sized_graph(after)
        if table is not None:
            priced_graph(after_graph, table)
        after_rows = _rows(after_graph, kept_channels(after_graph), as_stripped=True)
    rows = []
    for name, first in dense_rows.items():
        second = after_rows.get(name, dict(first, channels=0, params=0, flops=0))
        if not first["params"] and not first["flops"]:
            continue
        row = {
            "name": name,
            "class": first["class"],
            "channels_before": first["channels"],
            "channels_after": second["channels"],
            "params_before": first["params"],
            "params_after": second["params"],
            "flops_before": first["flops"],
            "flops_after": second["flops"],
        }
        if "heads" in first:
            row.update(heads_before=first["heads"], heads_after=second.get("heads", 0))
        rows.append(row)
    return PruningReport(rows, _totals(dense_rows, after_rows), _notes(graph))


def _rows(graph, count, as_stripped=False):
    result = {}
    for index, cost in enumerate(layer_costs(graph, count, as_stripped=as_stripped)):
        flat = graph.flat.nodes[index]
        if isinstance(flat.operation, ChannelGate):
            continue
        out_map = graph.out_maps(index)[0]
        channels = count(out_map) if out_map is not None else 0
        row = result.setdefault(
            cost.name,
            {
                "class": cost.class_name,
                "channels": int(channels),
                "params": 0,
                "flops": 0,
                "latency": 0.0,
            },
        )
        if index in graph.inner_maps:  # attention heads
            row["heads"] = int(count(graph.inner_maps[index]))
        row["params"] += int(cost.params)
        row["flops"] += int(cost.flops)
        row["latency"] += float(cost.latency)
    return result


def _totals(before_rows, after_rows):
    totals = {}
    keys = ("params", "flops")
    if any(r["latency"] for r in before_rows.values()):
        keys += ("latency",)  # predicted, from a latency table
    for key in keys:
        first = sum(r[key] for r in before_rows.values())
        second = sum(r[key] for r in after_rows.values())
        totals.update(
            {
                f"{key}_before": first,
                f"{key}_after": second,
                f"{key}_fraction": second / first if first else 1.0,
            }
        )
    return totals


def _notes(graph):
    notes = set()
    for reasons in graph.groups.reasons.values():
        notes.update(r for r in reasons if r != "model output")
    return sorted(notes)
