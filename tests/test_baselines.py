"""Baseline channel choices: each keeps what its criterion says, under the budget."""

import keras
import model_zoo
import numpy as np
import pytest
from helpers import gates

import keras_relaxprune as krp
from keras_relaxprune.budget.baselines import apply_baseline
from keras_relaxprune.errors import BudgetError, PruningError

pytestmark = pytest.mark.backend_agnostic


def _two_conv_net():
    return model_zoo.two_conv_net(classes=10)


def _masks(gated):
    return {g.name: np.asarray(g.keep_mask.numpy()) for g in gates(gated)}


def _gate_after(gated, layer_name):
    """The gate fed (through its BN) by `layer_name`."""
    index = {"conv_a": 0, "conv_b": 1}[layer_name]
    return gates(gated)[index]


def test_uniform_keeps_the_first_channels_at_one_ratio():
    dense = _two_conv_net()
    gated = krp.add_gates(dense)
    remaining = apply_baseline(gated, "uniform", target=0.5)
    assert remaining <= 0.5
    masks = list(_masks(gated).values())
    kept = [int(m.sum()) for m in masks]
    assert kept[0] == kept[1]  # equal group sizes, one ratio
    for mask, count in zip(masks, kept):
        np.testing.assert_array_equal(mask[:count], 1.0)
        np.testing.assert_array_equal(mask[count:], 0.0)
    assert krp.count_flops(gated) / krp.count_flops(dense) == pytest.approx(remaining)


def test_random_has_uniform_widths_and_depends_on_the_seed():
    dense = _two_conv_net()
    widths, choices = [], []
    for seed in (0, 1):
        gated = krp.add_gates(dense)
        apply_baseline(gated, "random", target=0.5, seed=seed)
        masks = list(_masks(gated).values())
        widths.append([int(m.sum()) for m in masks])
        choices.append(np.concatenate(masks))
    uniform = krp.add_gates(dense)
    apply_baseline(uniform, "uniform", target=0.5)
    assert widths[0] == widths[1] == [int(m.sum()) for m in _masks(uniform).values()]
    assert not np.array_equal(choices[0], choices[1])


def test_l1_norm_keeps_the_filters_with_the_largest_l1_norm():
    dense = _two_conv_net()
    rng = np.random.default_rng(0)
    kernel = dense.get_layer("conv_a").kernel
    scale = rng.permutation(8).astype("float32") + 1.0  # distinct filter norms
    dense.get_layer("conv_a").kernel.assign(np.ones(kernel.shape, "float32") * scale)
    gated = krp.add_gates(dense)
    apply_baseline(gated, "l1_norm", target=0.5)
    mask = np.asarray(_gate_after(gated, "conv_a").keep_mask.numpy())
    count = int(mask.sum())
    expected = np.zeros(8)
    expected[np.argsort(-scale)[:count]] = 1.0
    np.testing.assert_array_equal(mask, expected)


def test_network_slimming_ranks_batchnorm_gammas_globally():
    dense = _two_conv_net()
    # conv_b's gammas are all larger than conv_a's: a global ranking empties
    # conv_a first (down to its one-channel floor), a per-layer one would not.
    dense.get_layer("bn_a").gamma.assign(np.linspace(0.1, 0.2, 8).astype("float32"))
    dense.get_layer("bn_b").gamma.assign(np.linspace(1.0, 2.0, 8).astype("float32"))
    gated = krp.add_gates(dense)
    remaining = apply_baseline(gated, "network_slimming", target=0.3)
    assert remaining <= 0.7
    mask_a = np.asarray(_gate_after(gated, "conv_a").keep_mask.numpy())
    mask_b = np.asarray(_gate_after(gated, "conv_b").keep_mask.numpy())
    assert mask_a.sum() < mask_b.sum()
    # Within a layer the largest gammas survive.
    kept_a = np.flatnonzero(mask_a)
    assert set(kept_a) == set(range(8 - len(kept_a), 8))


def test_baselines_strip_exactly():
    dense = _two_conv_net()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    for method in ("uniform", "random", "l1_norm", "network_slimming"):
        gated = krp.add_gates(dense)
        apply_baseline(gated, method, target=0.5)
        small = krp.strip_pruning(gated)
        assert krp.count_flops(small) == krp.count_flops(gated)
        np.testing.assert_allclose(small(x), gated(x), rtol=1e-4, atol=1e-5)


def test_bad_arguments_are_refused():
    gated = krp.add_gates(_two_conv_net())
    with pytest.raises(PruningError, match="method"):
        apply_baseline(gated, "magnitude", target=0.5)
    with pytest.raises(PruningError, match="target"):
        apply_baseline(gated, "uniform", target=1.5)
    with pytest.raises(BudgetError, match="reachable"):
        apply_baseline(gated, "uniform", target=0.999)


def test_gate_prior_orders_gates_like_filter_norms_within_a_group():
    from keras_relaxprune.budget.baselines import set_gate_prior
    from keras_relaxprune.graph.tracing import analyze

    dense = _two_conv_net()
    scale = np.random.default_rng(1).permutation(8).astype("float32") + 1.0
    kernel = dense.get_layer("conv_a").kernel
    kernel.assign(np.ones(kernel.shape, "float32") * scale)
    gated = krp.add_gates(dense)
    gate = _gate_after(gated, "conv_a")
    before = np.asarray(gate.gate_values())
    set_gate_prior(analyze(gated))
    after = np.asarray(gate.gate_values())
    np.testing.assert_array_equal(np.argsort(after), np.argsort(scale))
    # The mean-norm channel keeps its gate; all stay open (no channel closed).
    assert after.min() > 0.5 and np.allclose(before, 0.99, atol=1e-6)


def test_callback_applies_the_gate_prior_once_at_the_start():
    dense = _two_conv_net()
    gated = krp.add_gates(dense)
    gated.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.MeanSquaredError())
    x = np.random.default_rng(0).normal(size=(32, 8, 8, 3)).astype("float32")
    y = np.zeros((32, 10), "float32")
    gated.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[krp.PruningCallback(target=0.5, gate_prior="l1_norm", lambda_=0.0)],
    )
    # Learning rate 0: only the prior moved the gates, once (no longer equal).
    assert np.ptp(np.asarray(gates(gated)[0].logits.numpy())) > 1e-4
    with pytest.raises(PruningError, match="gate_prior"):
        krp.PruningCallback(target=0.5, gate_prior="gamma_l2")


def test_bn_gamma_prior_ranks_across_groups():
    from keras_relaxprune.budget.baselines import set_gate_prior
    from keras_relaxprune.graph.tracing import analyze

    dense = _two_conv_net()
    dense.get_layer("bn_a").gamma.assign(np.geomspace(0.01, 1.0, 8).astype("float32"))
    dense.get_layer("bn_b").gamma.assign(np.linspace(1.0, 1.1, 8).astype("float32"))
    gated = krp.add_gates(dense)
    set_gate_prior(analyze(gated), "bn_gamma")
    low = np.asarray(_gate_after(gated, "conv_a").gate_values())
    high = np.asarray(_gate_after(gated, "conv_b").gate_values())
    # Each BN is divided by its own mean, so the shape of the gammas counts:
    # both groups rank their channels like their gammas...
    assert np.all(np.diff(low) > 0) and np.all(np.diff(high) > 0)
    # ...and bn_a's channels far below their mean start nearest closing,
    # below every channel of the even bn_b: one ranking across groups.
    assert low[:4].max() < high.min()
