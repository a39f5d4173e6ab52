"""Per-node latency: grid interpolation, signatures and the pricing rules."""

import keras
import numpy as np
import pytest
from latency_fakes import FakeTarget, two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.latency.latency_model import Interpolated, table_layers

pytestmark = pytest.mark.backend_agnostic


def test_interpolation_is_exact_on_the_grid_bilinear_between_and_clamped_outside():
    grid = Interpolated([2, 4, 8], [1, 3], [[1.0, 3.0], [2.0, 6.0], [4.0, 12.0]])
    assert grid(4, 3) == pytest.approx(6.0)
    assert grid(3, 2) == pytest.approx((1 + 3 + 2 + 6) / 4)
    assert grid(6, 1) == pytest.approx(3.0)
    assert grid(1, 0) == pytest.approx(1.0) and grid(99, 99) == pytest.approx(12.0)
    relaxed = grid(keras.ops.convert_to_tensor(3.0), keras.ops.convert_to_tensor(2.0))
    assert float(keras.ops.convert_to_numpy(relaxed)) == pytest.approx(grid(3, 2), rel=1e-6)


def test_grid_is_made_monotone_and_a_tied_grid_reads_the_input_width_only():
    grid = Interpolated([1, 2, 3], [5, 6], [[2.0, 1.0], [1.0, 4.0], [3.0, 3.5]])
    values = grid.values
    assert np.all(np.diff(values, axis=0) >= 0) and np.all(np.diff(values, axis=1) >= 0)
    tied = Interpolated([4, 8], None, [[1.0], [3.0]])
    assert tied(6, None) == pytest.approx(2.0) == tied(6, 123)


def test_table_layers_cover_the_widths_the_budget_can_reach():
    model = two_conv_net()
    layers = {layer.name: layer for layer in table_layers(analyze(model), 5).values()}
    assert set(layers) == {"conv_a", "depthwise", "conv_b", "classifier"}
    first = layers["conv_a"]
    assert first.in_axis == (3,)  # the model's input is never pruned
    assert first.out_axis[0] == 1 and first.out_axis[-1] == 16 and len(first.out_axis) == 5
    assert layers["depthwise"].out_axis is None  # tied to its input
    assert layers["classifier"].out_axis == (5,)  # the output is never pruned
    dense_only = table_layers(analyze(model), 5, reachable=False)
    assert all(len(layer.points()) == 1 for layer in dense_only.values())
    # One signature per layer class, config without widths and spatial size.
    config, shape = first.request(3, 7)
    assert config["config"]["filters"] == 7 and shape == (1, 12, 12, 3)


def test_estimate_sums_table_layers_and_prices_batch_norm_and_relu_at_zero():
    model = two_conv_net()
    table = krp.LatencyTable(FakeTarget(), cache_dir=False, verbose=0)
    total, rows = krp.estimate_latency(model, table, by_layer=True)
    by_class = {}
    for row in rows:
        by_class[row["class"]] = by_class.get(row["class"], 0.0) + row["seconds"]
    assert by_class["BatchNormalization"] == 0 and by_class["ReLU"] == 0
    # Conv 3->16 3x3 at 12x12 by the fake target's formula.
    conv = next(row for row in rows if row["name"] == "conv_a")
    assert conv["seconds"] == pytest.approx(1e-9 * 144 * 9 * 3 * 16 + 1e-6)
    pooling = next(row for row in rows if row["class"] == "GlobalAveragePooling2D")
    assert pooling["seconds"] > 0  # elementwise FLOPs x the probe's seconds per FLOP
    assert total == pytest.approx(sum(row["seconds"] for row in rows))
