"""`metric="latency"`: the relaxed cost, the closing and the callback."""

import keras
import numpy as np
import pytest
from latency_fakes import FakeTarget, two_conv_net

import keras_relaxprune as krp
from keras_relaxprune.budget.closing import close_budget
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.cost.relaxed import soft_gates
from keras_relaxprune.layers.pruning_budget import find_budget, link_budget

pytestmark = pytest.mark.backend_agnostic


class HandTable:
    """A hand-made target: seconds from a formula unlike FLOPs (a fixed
    cost per layer and a step every 8 output channels)."""

    name = "hand-made"

    def time_layer(self, layer_config, input_shape):
        config = layer_config["config"]
        cin = input_shape[-1]
        cout = config.get("filters", config.get("units", cin))
        return 1e-5 + 2e-7 * cin * (8 * -(-cout // 8)) + 1e-8 * np.prod(input_shape)


def _gated(target=None):
    table = krp.LatencyTable(target or HandTable(), cache_dir=False, verbose=0)
    return krp.add_gates(two_conv_net(), metric="latency", latency_table=table), table


def test_latency_without_a_table_is_refused_with_the_fix():
    with pytest.raises(krp.LatencyTableError, match="latency_table=krp.LatencyTable"):
        krp.add_gates(two_conv_net(), metric="latency")
    gated = krp.add_gates(two_conv_net())
    gated.compile(optimizer="adam", loss="mse")
    with pytest.raises(krp.LatencyTableError, match="add_gates"):
        krp.PruningCallback(0.5, metric="latency").set_model(gated)


def test_relaxed_latency_equals_the_hard_one_at_open_gates_and_reaches_every_gate():
    gated, _ = _gated()
    budget, graph = link_budget(gated)
    hard = cost_fractions(graph, graph.keep_vectors())["latency"]
    assert hard == pytest.approx(1.0)
    gates = [layer for layer in gated.layers if isinstance(layer, krp.ChannelGate)]
    gradients = _gradients(lambda: budget.graph_cost().fractions(soft_gates)["latency"], gates)
    assert all(np.all(np.isfinite(g)) and np.max(np.abs(g)) > 0 for g in gradients)


def _gradients(function, gates):
    """d function / d gate logits, on TensorFlow or JAX."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = function()
        return [np.asarray(g) for g in tape.gradient(value, [g.logits.value for g in gates])]
    if backend == "jax":
        import jax

        def stateless(values):
            mapping = [(gate.logits, value) for gate, value in zip(gates, values)]
            with keras.StatelessScope(state_mapping=mapping):
                return function()

        return [np.asarray(g) for g in jax.grad(stateless)([g.logits.value for g in gates])]
    pytest.skip(f"gradient check written for TensorFlow and JAX, not {backend}")


@pytest.mark.parametrize("target", [0.6, 0.4])
def test_closing_meets_a_hand_made_latency_budget_and_the_estimate_agrees(target):
    gated, table = _gated()
    _, graph = link_budget(gated)
    rng = np.random.default_rng(0)
    for gate in graph.gates.values():
        gate.logits.assign(rng.normal(0.0, 0.1, gate.channels).astype("float32"))
    masks = close_budget(graph, "latency", target)
    for root, keep in masks.items():
        graph.gates[root].keep_mask.assign(keep)
    fraction = cost_fractions(graph, graph.keep_vectors())["latency"]
    assert target - 0.01 <= fraction <= target
    dense = krp.estimate_latency(two_conv_net(), table)
    stripped = krp.estimate_latency(krp.strip_pruning(gated), table)
    assert stripped / dense == pytest.approx(fraction, rel=1e-9)
    assert krp.estimate_latency(gated) == pytest.approx(stripped, rel=1e-9)


def test_round_to_stays_inside_a_latency_budget():
    gated, _ = _gated()
    _, graph = link_budget(gated)
    masks = close_budget(graph, "latency", 0.5, round_to=4)
    keep = {**graph.keep_vectors(), **masks}
    assert cost_fractions(graph, keep)["latency"] <= 0.5
    assert all(int(m.sum()) % 4 == 0 or int(m.sum()) == len(m) for m in masks.values())


def test_fit_with_a_latency_budget_ends_in_the_band_and_logs_it():
    gated, _ = _gated(FakeTarget())
    gated.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = np.random.default_rng(0).random((64, 12, 12, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 5, 64)
    history = gated.fit(
        x, y, epochs=2, batch_size=16, verbose=0, callbacks=[krp.PruningCallback(0.5)]
    )
    remaining = history.history["remaining_latency"][-1]
    assert 0.49 <= remaining <= 0.5
    assert "remaining_flops" in history.history


def test_the_table_is_saved_with_the_gated_model(tmp_path):
    gated, table = _gated()
    budget = find_budget(gated)
    assert float(budget.latency_weight.numpy()) == 1.0
    path = tmp_path / "gated.keras"
    gated.save(path)
    loaded = keras.saving.load_model(path)
    assert find_budget(loaded).metric == "latency"
    assert krp.estimate_latency(loaded) == pytest.approx(krp.estimate_latency(gated))
    # A flops-gated model given a table can switch to latency in the callback.
    both = krp.add_gates(two_conv_net(), latency_table=table)
    assert find_budget(both).metric_weights("latency") == {
        "flops_weight": 0.0,
        "latency_weight": 1.0,
    }
