"""Coverage: how much of each backbone pruning can reach, and what stops the rest.

For each model (one per keras.applications family, keras-hub vision
backbones built from a small random config, a ViT built from Keras layers
and keras-hub's `ViTBackbone`; random weights, small inputs) the script
gates it with `krp.add_gates` and reports:

* least FLOPs: `count_flops` of the gated model with every gate keeping one
  channel, over the dense model's `count_flops` (the least pruning can
  leave: where most of a network is prunable it is small; barriers and
  protected groups keep it high);
* strip exact: random keep masks (and gate values), `strip_pruning`, and
  the stripped model's outputs equal the gated model's (rtol 1e-4, atol
  1e-4 x the largest output);
* counts equal: `count_flops`/`count_params` of the stripped model equal the
  gated model's hard counts;
* what stops the rest: the reasons (a barrier layer, LayerNormalization, the
  model output, ...) of the protected channels that keep the most FLOPs
  when every gate keeps one channel, with their share of the dense FLOPs.

A model that fails to gate shows its error class and message in its row.

    python benchmarks/coverage.py                      # every model, writes the results
    python benchmarks/coverage.py --only ResNet50 ViT  # some models, prints the rows
    python benchmarks/coverage.py --only ResNet --update  # and replaces their saved rows

Results: `benchmarks/results/coverage/` (`table.md`, `coverage.json`) and
the page `docs/coverage.md`.
"""

import argparse
import collections
import datetime
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from keras import layers

import keras_relaxprune as krp
import keras_relaxprune_apps as apps
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.layers.channel_gate import ChannelGate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "coverage"
DOCS_PAGE = ROOT / "docs" / "coverage.md"
GOAL = 0.30
PRUNED = "pruned to one channel per group"


def _application(builder, size, **kwargs):
    def build():
        return builder(
            weights=None,
            input_shape=(size, size, 3),
            classes=10,
            classifier_activation=None,
            **kwargs,
        )

    return build, (size, size, 3)


APPLICATIONS = {
    "ConvNeXtTiny": _application(keras.applications.ConvNeXtTiny, 64),
    "DenseNet121": _application(keras.applications.DenseNet121, 64),
    "EfficientNetB0": _application(keras.applications.EfficientNetB0, 64),
    "EfficientNetV2B0": _application(keras.applications.EfficientNetV2B0, 64),
    "InceptionV3": _application(keras.applications.InceptionV3, 75),
    "InceptionResNetV2": _application(keras.applications.InceptionResNetV2, 75),
    "MobileNet": _application(keras.applications.MobileNet, 64, alpha=0.5),
    "MobileNetV2": _application(keras.applications.MobileNetV2, 64, alpha=0.35),
    "MobileNetV3Small": _application(keras.applications.MobileNetV3Small, 64),
    "NASNetMobile": _application(keras.applications.NASNetMobile, 64),
    "ResNet50": _application(keras.applications.ResNet50, 64),
    "ResNet50V2": _application(keras.applications.ResNet50V2, 64),
    "VGG16": _application(keras.applications.VGG16, 64),
    "Xception": _application(keras.applications.Xception, 75),
}


def all_gates(gated):
    """Every gate of `gated`: its `ChannelGate` layers and those inside
    layers (an attention layer's head gate)."""
    return list(dict.fromkeys(analyze(gated).gates.values()))


def least_flops_fraction(model, gated, input_shape=None):
    """The least FLOPs fraction pruning can leave: `count_flops` of `gated`
    with every gate keeping one channel, over `model`'s dense count.

    The gates' keep masks are restored afterwards.

    Args:
        model: the dense model.
        gated: `krp.add_gates(model)`.
        input_shape: the input shape FLOPs are counted at, for a model of
            unknown spatial size.

    Returns:
        The fraction (float).
    """
    gate_layers = all_gates(gated)
    saved = [gate.keep_mask.numpy() for gate in gate_layers]
    try:
        for gate in gate_layers:
            mask = np.zeros(gate.channels, "float32")
            mask[0] = 1.0
            gate.keep_mask.assign(mask)
        least = krp.count_flops(gated)
    finally:
        for gate, mask in zip(gate_layers, saved):
            gate.keep_mask.assign(mask)
    return least / krp.count_flops(model, input_shape=input_shape)


def what_stops_the_rest(gated, top=2):
    """The reasons of the protected (or fixed) channels keeping the most
    FLOPs with every gate keeping one channel: `[(reason, FLOPs), ...]`,
    largest first. A layer's FLOPs go to the first protection reason of
    the groups it writes, else of those it reads; the keep masks are
    restored afterwards."""
    gate_layers = all_gates(gated)
    saved = [gate.keep_mask.numpy() for gate in gate_layers]
    for gate in gate_layers:
        mask = np.zeros(gate.channels, "float32")
        mask[0] = 1.0
        gate.keep_mask.assign(mask)
    try:
        _, rows = krp.count_flops(gated, by_layer=True)
    finally:
        for gate, mask in zip(gate_layers, saved):
            gate.keep_mask.assign(mask)
    graph = analyze(gated)
    flops = {row["name"]: row["flops"] for row in rows}
    kept = collections.Counter()
    for index, node in enumerate(graph.flat.nodes):
        amount = flops.get(node.name, 0)
        if not amount or isinstance(node.operation, ChannelGate):
            continue
        kept[_reason_for(graph, index)] += amount
    kept.pop(PRUNED, None)
    return kept.most_common(top)


def _reason_for(graph, index):
    """Why the channels around node `index` are not all prunable."""
    for channel_map in (
        graph.out_maps(index)[0],
        graph.in_maps(index)[0] if graph.in_maps(index) else None,
    ):
        for segment in channel_map or ():
            if segment.group is not None and graph.groups.is_protected(segment.group):
                return _short(graph.groups.reasons[graph.groups.find(segment.group)][0])
    maps = [m for m in (graph.out_maps(index)[0],) if m]
    if not maps or all(s.group is None for m in maps for s in m):
        return "fixed channels (input, output or a barrier's output)"
    return PRUNED


def _short(reason, limit=110):
    reason = reason.replace("\n", " ")
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def check_model(name, build, input_shape, seed=0):
    """Gates, measures and strips one model; returns its row (a dict)."""
    row = {"model": name, "input": "x".join(str(s) for s in input_shape)}
    start = time.perf_counter()
    try:
        model = build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gated = krp.add_gates(model, input_shape=input_shape)
    except Exception as error:  # a row, not a traceback
        row.update(error=f"{type(error).__name__}: {_short(str(error), 300)}")
        row["seconds"] = round(time.perf_counter() - start, 1)
        return row
    dense = krp.count_flops(model, input_shape=input_shape)
    graph = analyze(gated)
    row["dense_mflops"] = round(dense / 1e6, 2)
    row["groups"] = f"{len(graph.prunable_groups())}/{len(graph.groups.roots())}"
    row["least_flops"] = least_flops_fraction(model, gated, input_shape)
    row["stoppers"] = [
        {"reason": reason, "flops_fraction": amount / dense}
        for reason, amount in what_stops_the_rest(gated)
    ]
    row.update(_strip_check(gated, input_shape, seed))
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def _strip_check(gated, input_shape, seed):
    rng = np.random.default_rng(seed)
    for gate in all_gates(gated):
        gate.logits.assign(rng.normal(0.05, 0.05, gate.channels).astype("float32"))
        mask = (rng.random(gate.channels) < 0.6).astype("float32")
        mask[rng.integers(gate.channels)] = 1.0
        gate.keep_mask.assign(mask)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stripped = krp.strip_pruning(gated)
    except Exception as error:
        return {
            "strip_exact": False,
            "counts_equal": False,
            "strip_error": f"{type(error).__name__}: {_short(str(error), 300)}",
        }
    x = rng.random((2, *input_shape), "float32") * 255.0
    expected = [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(gated(x))]
    actual = [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(stripped(x))]
    difference = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected))
    scale = max(max(float(np.abs(e).max()) for e in expected), 1e-12)
    exact = all(np.allclose(a, e, rtol=1e-4, atol=1e-4 * scale) for a, e in zip(actual, expected))
    counts = krp.count_flops(stripped, input_shape=input_shape) == krp.count_flops(gated) and (
        stripped.count_params() == krp.count_params(gated)
    )
    return {
        "strip_exact": bool(exact),
        "relative_difference": difference / scale,
        "counts_equal": bool(counts),
    }


HUB_SHAPE = (32, 32, 3)  # keras-hub builds on (None, None, 3): gated at this size


def keras_vit():
    """The reference ViT of Keras layers (`keras_relaxprune_apps.small_vit`:
    32 px, patches of 4, width 64, 4 blocks of 4 heads, MLP 128)."""
    return apps.small_vit()


def multiplier_blocks(size=32, width=16, blocks=3, multiplier=2, classes=10):
    """Stem conv, then blocks of DepthwiseConv2D(depth_multiplier) -> BN ->
    ReLU -> 1x1 conv -> BN -> ReLU, pooled into a Dense head."""
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    for _ in range(blocks):
        x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=multiplier, use_bias=False)(
            x
        )
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.Conv2D(width, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name="multiplier_blocks")


OTHERS = {
    "keras-hub MobileNetV3": (apps.hub_mobilenet_v3, HUB_SHAPE),
    "keras-hub EfficientNetV2 (fused + MBConv)": (
        lambda: apps.hub_efficientnet(("fused", "unfused"), squeeze_and_excite_ratios=(0.0, 0.25)),
        HUB_SHAPE,
    ),
    "keras-hub EfficientNet (v1 blocks)": (
        lambda: apps.hub_efficientnet(("v1", "v1"), squeeze_and_excite_ratios=(0.0, 0.25)),
        HUB_SHAPE,
    ),
    "keras-hub ResNet (bottleneck)": (
        lambda: apps.hub_resnet(
            "bottleneck_block", input_conv_filters=(16,), stackwise_num_blocks=(2, 2)
        ),
        HUB_SHAPE,
    ),
    "keras-hub CSPNet (CSPDarkNet)": (apps.hub_cspdarknet, HUB_SHAPE),
    "keras-hub DenseNet": (apps.hub_densenet, HUB_SHAPE),
    "keras-hub VGG": (apps.hub_vgg, HUB_SHAPE),
    "keras-hub ViTBackbone": (apps.hub_vit, HUB_SHAPE),
    "ViT (Keras layers)": (keras_vit, (32, 32, 3)),
    "DepthwiseConv2D(depth_multiplier=2) blocks (Keras layers)": (
        multiplier_blocks,
        (32, 32, 3),
    ),
}

MODELS = {**APPLICATIONS, **OTHERS}


def _yes(value):
    return "yes" if value else "**no**"


def table(rows):
    """The rows as a Markdown table."""
    lines = [
        "| model | input | groups prunable | dense MFLOPs | least FLOPs | strip exact | "
        "counts equal | what stops the rest (share of dense FLOPs at least) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['model']} | {row['input']} | - | - | - | - | - | "
                f"fails to gate: `{_cell(row['error'])}` |"
            )
            continue
        stoppers = (
            "; ".join(f"{_cell(s['reason'])} ({s['flops_fraction']:.1%})" for s in row["stoppers"])
            or "nothing"
        )
        if row.get("strip_error"):
            stoppers += f"; strip: `{_cell(row['strip_error'])}`"
        least = f"{row['least_flops']:.3f}"
        least = least if row["least_flops"] <= GOAL else f"**{least}**"
        lines.append(
            f"| {row['model']} | {row['input']} | {row['groups']} | {row['dense_mflops']} | "
            f"{least} | {_yes(row['strip_exact'])} | {_yes(row['counts_equal'])} | {stoppers} |"
        )
    return "\n".join(lines) + "\n"


def _cell(text):
    return str(text).replace("|", "\\|")


def environment(argv, seconds):
    """Date, device, backend and versions of the run."""
    import importlib.metadata
    import platform

    versions = {"keras": keras.__version__, "keras_relaxprune": krp.__version__}
    for package in ("keras-hub", "tensorflow", "jax"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": f"CPU ({platform.machine()}, {os.cpu_count()} logical CPUs visible)",
        "backend": keras.backend.backend(),
        "versions": versions,
        "command": "python benchmarks/coverage.py " + shlex.join(argv),
        "wall_seconds": round(seconds),
    }


DOCS_INTRO = """# Coverage: how far each backbone can be pruned

For each model, every gate of `krp.add_gates(model)` is set to keep one
channel: `count_flops` of that gated model over the dense model's is the
**least FLOPs** fraction pruning can leave. Where most of a network is
prunable it is small; barriers and protected groups keep it high (the goal is
at most {goal:.2f}). **Strip exact**: random keep masks and gate values,
`strip_pruning`, and the stripped model computes the gated model's outputs
(rtol 1e-4). **Counts equal**: `count_flops`/`count_params` of the stripped
model equal the gated model's. **What stops the rest**: the reasons of the
protected (or fixed) channels keeping the most FLOPs at that least state,
with their share of the dense FLOPs (the rest of the least FLOPs is what the
prunable groups keep at one channel each). Random weights, small
inputs (the table's), 10 classes for keras.applications; keras-hub backbones
are built from a small config. A row that failed to gate shows the error.
What each layer family does is in [layers.md](layers.md).

Produced by `benchmarks/coverage.py`; the JSON with every number is in
`benchmarks/results/coverage/coverage.json`.

"""


def write_results(rows, env):
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = (
        f"- date: {env['date']}\n- command: `{env['command']}`\n- backend: {env['backend']}\n"
        f"- device: {env['device']}\n- versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f"\n- wall time: {env['wall_seconds']} s\n\n"
    )
    body = table(rows)
    (RESULTS / "table.md").write_text("# Coverage\n\n" + header + body)
    (RESULTS / "coverage.json").write_text(json.dumps({**env, "rows": rows}, indent=1) + "\n")
    DOCS_PAGE.write_text(DOCS_INTRO.format(goal=GOAL) + header + body)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="models whose name contains NAME; prints only"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --only: replace those rows in the saved results and rewrite them",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random masks")
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    names = [
        name
        for name in MODELS
        if not args.only or any(part.lower() in name.lower() for part in args.only)
    ]
    start, rows = time.perf_counter(), []
    for name in names:
        build, shape = MODELS[name]
        keras.backend.clear_session()
        row = check_model(name, build, shape, args.seed)
        rows.append(row)
        print(json.dumps(row), flush=True)
    env = environment(argv, time.perf_counter() - start)
    if args.only and args.update:
        rows, env = _updated(rows, env)
    print(table(rows))
    if not args.only or args.update:
        write_results(rows, env)
    return rows


def _updated(rows, env):
    """The saved rows with `rows` in place of those of the same models; the
    run's command records both commands."""
    saved = json.loads((RESULTS / "coverage.json").read_text())
    new = {row["model"]: row for row in rows}
    merged = [new.pop(row["model"], row) for row in saved["rows"] if row["model"] in MODELS]
    merged += list(new.values())
    env["date"] = f"{saved['date'].split(';')[0]}; updated {env['date']}"
    env["command"] = (
        f"{saved['command'].split('; then')[0]}; then {env['command'].split('; then')[-1]}"
    )
    env["wall_seconds"] = saved["wall_seconds"] + env["wall_seconds"]
    return merged, env


if __name__ == "__main__":
    main()
