"""Time of `add_gates` and `strip_pruning` on large graphs, as a ratio to the slicing walks.

The channel analysis lines up the channel maps of every `Add`/`Multiply`
input and cuts the maps of grouped convolutions into tiles. A map can hold
one segment per channel (ConvNeXt's depthwise `Conv2D(groups=C)`), and
slicing both maps once per boundary is quadratic in the channels. The
library walks the maps once (`graph/channel_maps.py`); this script times
`add_gates` and `strip_pruning` (random masks, a third of each group's
channels off) with those walks and again with the slicing walks they
replaced (kept below), on the same model in the same run, and writes
`benchmarks/results/analysis_speed_cpu.md`. No TensorFlow import: it runs
on any Keras backend.

    python benchmarks/analysis_speed.py
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_relaxprune as krp
from keras_relaxprune.graph import tracing
from keras_relaxprune.graph.channel_maps import slice_map

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "ConvNeXtTiny": lambda: keras.applications.ConvNeXtTiny(
        weights=None, input_shape=(64, 64, 3), classes=10
    ),
    "MobileNetV2": lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(64, 64, 3), classes=10
    ),
    "ResNet50": lambda: keras.applications.ResNet50(
        weights=None, input_shape=(64, 64, 3), classes=10
    ),
}


def sliced_aligned_pieces(map_a, map_b):
    """The slicing walk: both maps sliced at every boundary (quadratic)."""
    cuts = {0}
    for channel_map in (map_a, map_b):
        offset = 0
        for segment in channel_map:
            offset += segment.length
            cuts.add(offset)
    cuts = sorted(cuts)
    for lo, hi in zip(cuts, cuts[1:]):
        (piece_a,) = slice_map(map_a, lo, hi)
        (piece_b,) = slice_map(map_b, lo, hi)
        yield piece_a, piece_b


def sliced_tiles_of(channel_map, count):
    """The slicing walk: the map sliced once per tile (quadratic)."""
    width = sum(segment.length for segment in channel_map) // count
    return [slice_map(channel_map, t * width, (t + 1) * width) for t in range(count)]


def time_gate_and_strip(build):
    """Seconds of `add_gates` and of `strip_pruning` (random masks) on a fresh model."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build()
    start = time.perf_counter()
    gated = krp.add_gates(model)
    gating = time.perf_counter() - start
    for layer in gated.layers:
        if isinstance(layer, krp.ChannelGate):
            mask = np.ones(layer.channels, "float32")
            mask[::3] = 0.0
            layer.keep_mask.assign(mask)
    start = time.perf_counter()
    krp.strip_pruning(gated)
    return gating, time.perf_counter() - start


def time_with(walks, build):
    """`time_gate_and_strip` with tracing's walks swapped for `walks`."""
    saved = tracing.aligned_pieces, tracing.tiles_of
    tracing.aligned_pieces, tracing.tiles_of = walks
    try:
        return time_gate_and_strip(build)
    finally:
        tracing.aligned_pieces, tracing.tiles_of = saved


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "analysis_speed_cpu.md")
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for name in args.models:
        one_pass = time_with((tracing.aligned_pieces, tracing.tiles_of), MODELS[name])
        sliced = time_with((sliced_aligned_pieces, sliced_tiles_of), MODELS[name])
        rows.append((name, one_pass, sliced))
        print(name, one_pass, sliced, flush=True)
    lines = [
        "# add_gates and strip_pruning: one-pass channel-map walks vs slicing",
        "",
        f"- command: `python benchmarks/analysis_speed.py {' '.join(argv or sys.argv[1:])}`",
        f"- backend: {keras.backend.backend()} (keras {keras.version()}), CPU, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}",
        "- one run each, the same model built afresh (64x64 input, random weights)",
        "",
        "| model | add_gates s | strip s | add_gates s (slicing) | strip s (slicing) | "
        "speed-up (both) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, (gate, strip), (gate_old, strip_old) in rows:
        ratio = (gate_old + strip_old) / (gate + strip)
        lines.append(
            f"| {name} | {gate:.2f} | {strip:.2f} | {gate_old:.2f} | {strip_old:.2f} | "
            f"{ratio:.1f}x |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
