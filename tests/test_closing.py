"""Closing the budget: final masks from gate values."""

import itertools
import logging

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates, random_masks
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.budget import closing as projection
from keras_relaxprune.budget.closing import close_budget, minimum_fraction
from keras_relaxprune.cost.count import cost_fractions
from keras_relaxprune.graph.tracing import analyze

pytestmark = pytest.mark.backend_agnostic


def _graph(seed):
    gated = krp.add_gates(model_zoo.resnet_bottleneck())
    rng = np.random.default_rng(seed)
    for gate in gates(gated):
        gate.logits.assign(rng.normal(0.0, 0.05, gate.channels).astype("float32"))
    return analyze(gated)


@pytest.mark.parametrize("target", [0.6, 0.3])
def test_masks_land_in_the_one_point_band_and_follow_gate_order(target):
    graph = _graph(0)
    masks = close_budget(graph, "flops", target)
    fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"]
    assert target - 0.01 <= fraction <= target
    for root, keep in masks.items():
        assert keep.sum() >= 1
        gate = graph.gates[root]
        values = np.asarray(gate.logits.numpy())
        if 0 < keep.sum() < len(keep):  # every kept channel beats every removed one
            assert values[keep == 1].min() >= values[keep == 0].max()


def test_round_to_keeps_multiples_inside_the_budget():
    graph = _graph(1)
    masks = close_budget(graph, "flops", 0.4, round_to=4)
    fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"]
    assert fraction <= 0.4
    assert fraction >= 0.3  # coarser units, but still close
    for keep in masks.values():
        alive = int(keep.sum())
        assert alive % 4 == 0 or alive == len(keep) or alive == min(4, len(keep))


# Tiny nets for the exhaustive check: cost depends only on each group's
# kept count (no slices), so every reachable cost can be enumerated.
def _two_conv_net():
    """conv 8 -> BN -> ReLU -> conv 8 -> pooling -> Dense."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x))


def _residual_net():
    """A stem and two residual blocks: the stream is one tied group."""
    inputs = keras.Input((8, 8, 3))
    x = layers.ReLU()(layers.Conv2D(6, 3, padding="same")(inputs))
    for _ in range(2):
        y = layers.ReLU()(layers.Conv2D(5, 3, padding="same")(x))
        y = layers.Conv2D(6, 3, padding="same")(y)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(4)(x))


def _concat_net():
    """Two convs concatenated, then a conv over both."""
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    b = layers.Conv2D(6, 1, activation="relu")(inputs)
    x = layers.Concatenate()([a, b])
    x = layers.Conv2D(7, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(4)(x))


def _allowed_counts(size, round_to):
    return sorted(set(range(min(round_to, size), size + 1, round_to)) | {size})


def _every_reachable_cost(graph, round_to):
    """metric -> cost fraction of every allowed combination of kept counts."""
    roots = graph.gated_groups()
    choices = [_allowed_counts(graph.groups.size[r], round_to) for r in roots]
    result = {"flops": [], "params": []}
    for counts in itertools.product(*choices):
        keep = graph.keep_vectors()
        for root, count in zip(roots, counts):
            keep[root] = (np.arange(len(keep[root])) < count).astype("float32")
        for metric, value in cost_fractions(graph, keep).items():
            result[metric].append(value)
    return {metric: np.array(values) for metric, values in result.items()}


def _assert_kept_channels_are_best_scored(masks, scores, round_to):
    for root, keep in masks.items():
        alive, size = int(keep.sum()), len(keep)
        assert alive >= min(round_to, size)
        assert alive % round_to == 0 or alive == size
        if 0 < alive < size:
            assert scores[root][keep == 1].min() >= scores[root][keep == 0].max()


@pytest.mark.parametrize("make_net", [_two_conv_net, _residual_net, _concat_net])
@pytest.mark.parametrize("round_to", [1, 3])
def test_closing_reaches_the_band_or_the_best_reachable_cost(make_net, round_to):
    graph = analyze(krp.add_gates(make_net()))
    reachable = _every_reachable_cost(graph, round_to)
    rng = np.random.default_rng(round_to)
    for tied in (True, False):
        scores = {
            root: (np.zeros(size) if tied else rng.normal(size=size))
            for root in graph.gated_groups()
            for size in [graph.groups.size[root]]
        }
        for metric in ("flops", "params"):
            for target in np.arange(0.1, 1.0, 0.05):
                costs = reachable[metric]
                if costs.min() > target:
                    continue
                masks = close_budget(graph, metric, target, round_to, scores=scores)
                fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})[metric]
                where = (make_net.__name__, round_to, tied, metric, round(target, 2))
                assert fraction <= target + 1e-12, where
                band = (costs >= target - 0.01 + 1e-9) & (costs <= target - 1e-9)
                if band.any():
                    assert fraction >= target - 0.01 - 1e-12, (where, fraction)
                else:
                    best = costs[costs <= target + 1e-12].max()
                    assert fraction == pytest.approx(best, abs=1e-9), (where, fraction)
                _assert_kept_channels_are_best_scored(masks, scores, round_to)


def _recording_builds(monkeypatch):
    built, build = [], projection.IncrementalCost.build

    def recording(*args, **kwargs):
        built.append(build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(projection.IncrementalCost, "build", recording)
    return built


def test_tied_gates_of_mobilenet_v2_close_with_few_cost_evaluations(monkeypatch):
    model = keras.applications.MobileNetV2(input_shape=(64, 64, 3), weights=None, classes=10)
    graph = analyze(krp.add_gates(model))  # fresh gates: every value tied
    built = _recording_builds(monkeypatch)
    masks = close_budget(graph, "flops", 0.5)
    fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"]
    assert 0.49 <= fraction <= 0.5
    groups = len(graph.gated_groups())
    channels = sum(graph.groups.size[root] for root in graph.gated_groups())
    stats = built[0].stats
    # Before: one whole-graph evaluation per candidate channel (~10^4 of
    # them, each over ~200 layers).
    assert stats["evaluations"] <= 3 * groups + 50
    assert stats["nodes"] <= 20 * len(graph.flat.nodes)
    assert stats["evaluations"] <= channels
    # Tied gates carry no ranking: groups shrink alike.
    shares = [keep.mean() for keep in masks.values()]
    assert max(shares) - min(shares) < 0.1


def test_switched_off_channels_return_only_after_their_group_is_whole():
    gated = krp.add_gates(model_zoo.resnet_bottleneck())
    random_masks(gated, seed=3, keep=0.7)
    graph = analyze(gated)
    before = graph.keep_vectors()
    now = cost_fractions(graph, before)["flops"]
    for target in (now - 0.2, min(now + 0.2, 0.99)):
        masks = close_budget(graph, "flops", target)
        fraction = cost_fractions(graph, {**before, **masks})["flops"]
        assert target - 0.01 <= fraction <= target
        for root, keep in masks.items():
            if (keep > before[root]).any():  # a dead channel came back
                assert (keep >= before[root]).all()
        if target < now:
            assert all((keep <= before[root]).all() for root, keep in masks.items())


def test_round_to_rounds_counts_left_by_freezing():
    gated = krp.add_gates(model_zoo.resnet_basic())
    for gate in gates(gated):
        mask = np.ones(gate.channels, "float32")
        mask[:3] = 0.0  # 5 of 8 (13 of 16) alive: not multiples of 4
        gate.keep_mask.assign(mask)
    graph = analyze(gated)
    now = cost_fractions(graph, graph.keep_vectors())["flops"]
    masks = close_budget(graph, "flops", now, round_to=4)
    fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"]
    assert fraction <= now
    for keep in masks.values():
        assert keep.sum() % 4 == 0


def test_group_floor_rounds_the_fraction_up_to_round_to():
    assert projection.group_floor(128, 1, 0.25) == 32
    assert projection.group_floor(16, 4, 0.1) == 4  # ceil(1.6) = 2, up to 4
    assert projection.group_floor(10, 4, 0.5) == 8
    assert projection.group_floor(10, 4, 0.9) == 10  # never above the group
    assert projection.group_floor(3, 8, 0.0) == 3
    assert projection.group_floor(64, 1, 0.0) == 1


def test_min_keep_is_a_floor_for_every_group_and_the_budget_still_closes():
    """The unconstrained closing empties some groups to one channel; with
    `min_keep=0.25` every group keeps a quarter of its channels and the
    cost still lands in the band."""
    graph = _graph(5)
    weakest = max(graph.gates.values(), key=lambda gate: gate.channels)
    weakest.logits.assign(weakest.logits - 1.0)  # ranked below every other group
    target = 0.3
    free = close_budget(graph, "flops", target)
    assert min(keep.sum() / len(keep) for keep in free.values()) < 0.25
    masks = close_budget(graph, "flops", target, min_keep=0.25)
    fraction = cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"]
    assert target - 0.01 <= fraction <= target
    for keep in masks.values():
        assert keep.sum() >= np.ceil(0.25 * len(keep))
    assert minimum_fraction(graph, "flops", min_keep=0.25) > minimum_fraction(graph, "flops")


def test_unreachable_target_leaves_every_group_at_its_floor():
    graph = _graph(2)
    floor = minimum_fraction(graph, "flops")
    masks = close_budget(graph, "flops", floor / 2)
    assert all(keep.sum() == 1 for keep in masks.values())
    assert cost_fractions(graph, {**graph.keep_vectors(), **masks})["flops"] == (
        pytest.approx(floor)
    )


def test_closing_says_what_it_does(caplog, capsys):
    graph = _graph(4)
    with caplog.at_level(logging.INFO, logger="keras_relaxprune.budget.closing"):
        close_budget(graph, "flops", 0.5, verbose=True)
    assert "Closing the flops budget" in caplog.text
    assert "Budget closed at" in caplog.text
    assert "Budget closed at" in capsys.readouterr().out
