"""`LatencyTable`: measuring, caching, sharing and reading back."""

import json

import numpy as np
import pytest
from latency_fakes import FakeTarget, two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.graph.tracing import analyze
from keras_relaxprune.latency.latency_model import table_layers

pytestmark = pytest.mark.backend_agnostic


def test_profile_measures_a_coarse_grid_and_a_second_table_reads_the_files(tmp_path):
    model = two_conv_net()
    first = FakeTarget()
    table = krp.LatencyTable(first, cache_dir=tmp_path, grid_size=4, verbose=0).profile(model)
    layers = table_layers(analyze(model), 4).values()
    points = {(layer.key, point) for layer in layers for point in layer.points()}
    assert first.calls == len(points) + 1  # every distinct width once, and the probe
    for layer in layers:
        assert len(layer.in_axis) <= 4 and (layer.out_axis is None or len(layer.out_axis) <= 4)
    folder = tmp_path / "fake-target" / table.machine
    files = sorted(path.name for path in folder.iterdir())
    assert files == sorted({f"{layer.key}.json" for layer in layers} | {"constants.json"})
    stored = json.loads((folder / files[0]).read_text())
    assert stored["target"] == "fake-target" and stored["grids"]

    second = FakeTarget()
    again = krp.LatencyTable(second, cache_dir=tmp_path, verbose=0).profile(model)
    assert second.calls == 0 and again.measured == 0
    assert krp.estimate_latency(model, again) == krp.estimate_latency(model, table)


def test_layers_with_one_signature_share_their_measurements(tmp_path):
    model = two_conv_net()
    target = FakeTarget()
    table = krp.LatencyTable(target, cache_dir=False, verbose=0)
    table.profile(model)
    calls = target.calls
    table.profile(model)  # nothing new
    assert target.calls == calls
    assert not list(tmp_path.iterdir())  # cache_dir=False writes nothing


def test_a_stripped_model_is_priced_from_the_grid_of_its_dense_model(tmp_path):
    model = two_conv_net()
    target = FakeTarget()
    table = krp.LatencyTable(target, cache_dir=tmp_path, verbose=0).profile(model)
    gated = krp.add_gates(model, latency_table=table)
    for gate in gated.layers:
        if isinstance(gate, krp.ChannelGate):
            keep = np.zeros(gate.channels, "float32")
            keep[: gate.channels // 2] = 1
            gate.keep_mask.assign(keep)
    calls = target.calls
    small = krp.strip_pruning(gated)
    estimate = krp.estimate_latency(small, table)
    assert target.calls == calls  # interpolated, not measured
    assert 0 < estimate < krp.estimate_latency(model, table)


def test_config_round_trip_keeps_every_grid():
    model = two_conv_net()
    table = krp.LatencyTable(FakeTarget(), cache_dir=False, verbose=0).profile(model)
    config = json.loads(json.dumps(table.get_config()))
    copy = krp.LatencyTable.from_config(config)
    assert copy.target_name == "fake-target"
    assert krp.estimate_latency(model, copy) == krp.estimate_latency(model, table)
    # A table read back cannot measure: a layer it lacks is refused by name.
    with pytest.raises(krp.LatencyTableError, match="cannot measure"):
        krp.estimate_latency(_other_net(), copy)


def test_a_target_without_time_layer_is_refused():
    with pytest.raises(krp.InvalidArgumentError, match="time_layer"):
        krp.LatencyTable(object())


def test_a_target_returning_nonsense_is_refused():
    class Broken:
        name = "broken"

        def time_layer(self, layer_config, input_shape):
            return float("nan")

    with pytest.raises(krp.LatencyTableError, match="non-negative"):
        krp.LatencyTable(Broken(), cache_dir=False, verbose=0).profile(two_conv_net())


def _other_net():
    import keras

    inputs = keras.Input((9, 9, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
