"""`pruning_report`: what pruning removed, per layer and in total."""

import dataclasses
import io
import json

from keras_relaxprune.cost.count import dense_channels, kept_channels, layer_costs, sized_graph
from keras_relaxprune.layers.channel_gate import ChannelGate


@dataclasses.dataclass
class PruningReport:
    """Per-layer channels, params and FLOPs before and after pruning.

    Attributes:
        rows: list of dicts with `name`, `class`, `channels_before`,
            `channels_after`, `params_before`, `params_after`,
            `flops_before`, `flops_after` (FLOPs = 2 x MACs + elementwise).
        totals: dict with `params_before/after`, `flops_before/after` and
            the remaining fractions `params_fraction`, `flops_fraction`.
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
                _pair(row["channels_before"], row["channels_after"]),
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
        return buffer.getvalue() + "".join(f"note: {n}\n" for n in self.notes)


def _pair(before, after):
    return f"{before:,}" if before == after else f"{before:,} -> {after:,}"


def pruning_report(before, after=None):
    """Compares a model before and after pruning, layer by layer.

    Args:
        before: the dense model, or a gated model (then `after` may be left
            out and the hard count of the gated model is the "after").
        after: the stripped model, matched to `before` by layer name.

    Returns:
        A `PruningReport`; `print(report)` shows the table,
        `report.to_dict()` / `report.to_json()` give the data.

    Example:

    >>> report = krp.pruning_report(gated)
    >>> report.totals["flops_fraction"] <= 0.5
    True
    """
    graph = sized_graph(before)
    dense_rows = _rows(graph, dense_channels)
    if after is None:
        after_rows = _rows(graph, kept_channels(graph), as_stripped=True)
    else:
        after_graph = sized_graph(after)
        after_rows = _rows(after_graph, kept_channels(after_graph), as_stripped=True)
    rows = []
    for name, first in dense_rows.items():
        second = after_rows.get(name, dict(first, channels=0, params=0, flops=0))
        if not first["params"] and not first["flops"]:
            continue
        rows.append(
            {
                "name": name,
                "class": first["class"],
                "channels_before": first["channels"],
                "channels_after": second["channels"],
                "params_before": first["params"],
                "params_after": second["params"],
                "flops_before": first["flops"],
                "flops_after": second["flops"],
            }
        )
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
            },
        )
        row["params"] += int(cost.params)
        row["flops"] += int(cost.flops)
    return result


def _totals(before_rows, after_rows):
    totals = {}
    for key in ("params", "flops"):
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
