"""Charts and files of a pruning report: PNG bar charts, JSON and Markdown.

`write_report_files(report, model, directory)` writes, next to an exported
model:

```
pruning_report.json    # PruningReport.to_dict()
pruning_report.md      # the per-layer table, as Markdown
channels_kept.png      # channels kept vs original, per layer
cost_per_stage.png     # FLOPs and params per stage, before and after
```

matplotlib draws on its Agg canvas directly (no `pyplot`, no display, no
global state), so charts can be made inside a training process or a server.
"""

import io
import os
import warnings

from keras_relaxprune.graph.tracing import analyze

REPORT_FILES = {
    "report_json": "pruning_report.json",
    "report_markdown": "pruning_report.md",
    "channels_chart": "channels_kept.png",
    "cost_chart": "cost_per_stage.png",
}

_BEFORE_COLOR = "#c9ccd1"
_AFTER_COLOR = "#1f6fb4"


def write_report_files(report, model, directory):
    """Writes a pruning report as JSON, Markdown and two PNG charts.

    Args:
        report: a `PruningReport`, e.g. `krp.pruning_report(dense, small)`.
        model: the model the report's "before" column describes (the dense
            or gated model): its graph says which layers make channels and
            which stage (spatial resolution) each layer belongs to.
        directory: where to write (created if needed).

    Returns:
        A dict with keys `"report_json"`, `"report_markdown"`,
        `"channels_chart"` and `"cost_chart"` mapping to the paths written.

    Example:

    ```python
    report = krp.pruning_report(gated)
    paths = write_report_files(report, gated, "saved_models/resnet56_p90")
    ```
    """
    os.makedirs(directory, exist_ok=True)
    paths = {key: os.path.join(directory, name) for key, name in REPORT_FILES.items()}
    contents = {
        "report_json": report.to_json(indent=1).encode(),
        "report_markdown": report_markdown(report).encode(),
        "channels_chart": channels_kept_chart(report, model),
        "cost_chart": stage_cost_chart(report, model),
    }
    for key, content in contents.items():
        with open(paths[key], "wb") as f:
            f.write(content)
    return paths


def report_markdown(report, title="Pruning report"):
    """The per-layer table of a `PruningReport` as Markdown.

    Args:
        report: a `PruningReport`.
        title: heading of the table; `None` for none.

    Returns:
        A Markdown string: totals, the table (layer, class, channels,
        params, FLOPs; `before -> after` where they differ) and the notes.

    Example:

    >>> "| layer | class |" in report_markdown(krp.pruning_report(gated))
    True
    """
    t = report.totals
    lines = [f"## {title}", ""] if title else []
    lines += [
        f"Remaining: **{t['flops_fraction']:.1%} of the FLOPs** "
        f"({_pair(t['flops_before'], t['flops_after'])}) and "
        f"**{t['params_fraction']:.1%} of the params** "
        f"({_pair(t['params_before'], t['params_after'])}).",
        "",
        "| layer | class | channels | params | FLOPs |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in report.rows:
        lines.append(
            f"| `{row['name']}` | {row['class']} | "
            f"{_pair(row['channels_before'], row['channels_after'])} | "
            f"{_pair(row['params_before'], row['params_after'])} | "
            f"{_pair(row['flops_before'], row['flops_after'])} |"
        )
    lines.append(
        f"| **total** | | | {_pair(t['params_before'], t['params_after'])} | "
        f"{_pair(t['flops_before'], t['flops_after'])} |"
    )
    if report.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def channels_kept_chart(report, model, title=None):
    """A bar chart of the channels each layer keeps, over its original width.

    One bar pair per layer that makes channels (convolutions, dense
    layers), in graph order: the original width in grey, what is kept in
    blue.

    Args:
        report: a `PruningReport`.
        model: the model of the report's "before" column.
        title: chart title; defaults to the remaining FLOPs and params.

    Returns:
        The chart as PNG bytes.

    Example:

    ```python
    png = channels_kept_chart(krp.pruning_report(gated), gated)
    open("channels_kept.png", "wb").write(png)
    ```
    """
    producers, _ = _layout(model)
    rows = [row for row in report.rows if row["name"] in producers]
    t = report.totals
    figure, axes = _figure(width=min(max(0.3 * len(rows) + 2.5, 7.0), 30.0))
    positions = range(len(rows))
    axes.bar(positions, [r["channels_before"] for r in rows], color=_BEFORE_COLOR, label="original")
    axes.bar(
        positions, [r["channels_after"] for r in rows], color=_AFTER_COLOR, width=0.6, label="kept"
    )
    axes.set_xticks(list(positions), [r["name"] for r in rows], rotation=90, fontsize=7)
    axes.set_ylabel("output channels")
    axes.set_xlim(-0.7, len(rows) - 0.3)
    axes.legend(loc="upper left", frameon=False)
    axes.set_title(
        title
        or (
            f"Channels kept per layer: {t['flops_fraction']:.1%} of the FLOPs, "
            f"{t['params_fraction']:.1%} of the params remain"
        ),
        fontsize=10,
    )
    return _png(figure)


def stage_cost_chart(report, model):
    """Bar charts of FLOPs and params per stage, before and after pruning.

    A stage is a run of consecutive layers whose output has the same
    spatial size (`32x32`, `16x16`, ...; `vector` after global pooling).

    Args:
        report: a `PruningReport`.
        model: the model of the report's "before" column.

    Returns:
        The chart as PNG bytes.

    Example:

    ```python
    png = stage_cost_chart(krp.pruning_report(dense, small), dense)
    ```
    """
    from matplotlib.ticker import EngFormatter

    stages = stage_costs(report, model)
    figure, both_axes = _figure(width=max(5.0 + 1.2 * len(stages), 8.0), columns=2)
    positions = list(range(len(stages)))
    for axes, key, label in zip(both_axes, ("flops", "params"), ("FLOPs", "params")):
        before = [stage[f"{key}_before"] for stage in stages]
        after = [stage[f"{key}_after"] for stage in stages]
        axes.bar(
            [p - 0.2 for p in positions], before, width=0.4, color=_BEFORE_COLOR, label="before"
        )
        bars = axes.bar(
            [p + 0.2 for p in positions], after, width=0.4, color=_AFTER_COLOR, label="after"
        )
        kept = [f"{a / b:.0%}" if b else "" for a, b in zip(after, before)]
        axes.bar_label(bars, kept, fontsize=7)
        axes.set_xticks(
            positions, [stage["stage"] for stage in stages], rotation=45, ha="right", fontsize=8
        )
        axes.yaxis.set_major_formatter(EngFormatter())
        fraction = report.totals[f"{key}_fraction"]
        axes.set_title(f"{label} per stage ({fraction:.1%} remain)", fontsize=10)
        axes.legend(frameon=False, fontsize=8)
    return _png(figure)


def stage_costs(report, model):
    """FLOPs and params of the report's rows summed per stage, in graph order.

    Returns:
        A list of dicts with `stage` (e.g. `"2: 16x16"`) and
        `flops_before/after`, `params_before/after`.
    """
    _, stage_of = _layout(model)
    stages = {}
    for row in report.rows:
        label = stage_of.get(row["name"], "other")
        totals = stages.setdefault(
            label,
            dict.fromkeys(("flops_before", "flops_after", "params_before", "params_after"), 0),
        )
        for key in totals:
            totals[key] += row[key]
    return [dict(stage=label, **totals) for label, totals in stages.items()]


def _layout(model):
    """(names of the layers that make channels, layer name -> stage label)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # barriers were reported by add_gates
        graph = analyze(model)
    producers = {graph.flat.nodes[index].name for index, _ in graph.producers}
    stage_of, previous, count = {}, None, 0
    for node in graph.flat.nodes:
        shape = getattr(graph.flat.tensors.get(node.outputs[0]), "shape", None)
        size = _spatial_size(shape)
        if size != previous:
            count, previous = count + 1, size
        stage_of.setdefault(node.name, f"{count}: {size}")
    return producers, stage_of


def _spatial_size(shape):
    if shape is None or len(shape) < 2:
        return "scalar"
    spatial = tuple(shape)[1:-1]
    return "x".join("?" if d is None else str(d) for d in spatial) or "vector"


def _figure(width, columns=1):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Pruning charts need matplotlib: pip install keras-relaxprune[tensorboard]"
        ) from error
    figure = Figure(figsize=(width, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns)
    for each in axes if columns > 1 else [axes]:
        each.spines[["top", "right"]].set_visible(False)
        each.grid(axis="y", alpha=0.3)
        each.set_axisbelow(True)
    return figure, axes


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def _pair(before, after):
    return f"{before:,}" if before == after else f"{before:,} -> {after:,}"
