"""Inspection helpers shared by the tests."""

import warnings

import keras
import numpy as np

from keras_relaxprune.layers.channel_gate import ChannelGate


def gate_inputs(gated):
    """Gate layer name -> sorted names of the layers whose outputs it gates."""
    result = {}
    for layer in gated.layers:
        if isinstance(layer, ChannelGate):
            names = [
                node.input_tensors[0]._keras_history.operation.name for node in layer._inbound_nodes
            ]
            result[layer.name] = sorted(names)
    return result


def gates(model):
    return [layer for layer in model.layers if isinstance(layer, ChannelGate)]


def open_all_gates(model):
    """Sets every gate to (numerically) 1 and every channel alive."""
    for gate in gates(model):
        gate.logits.assign(np.full(gate.logits.shape, 10.0, "float32"))
        gate.keep_mask.assign(np.ones(gate.keep_mask.shape, "float32"))


def random_masks(model, seed, keep=0.5, whole_groups_off=False):
    """Random 0/1 keep masks (each group keeps at least one channel unless told)."""
    rng = np.random.default_rng(seed)
    for gate in gates(model):
        mask = (rng.random(gate.channels) < keep).astype("float32")
        if not whole_groups_off and not mask.any():
            mask[rng.integers(gate.channels)] = 1.0
        gate.keep_mask.assign(mask)


def randomize_batch_norms(model, seed):
    """Non-trivial BN statistics (returns `model`), so a removed channel's
    constant is not 0."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            width = layer.gamma.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, width).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, width).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, width).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, width).astype("float32"))
    return model


def fit_strip_export(model, gated, shape, tmp_path, lowest=0.69, load=None):
    """Fits `gated` (from `model`) a few steps with target 0.3 on random
    data of `shape`, then checks the budget, an exact strip with equal
    counts, and a `.keras` export that loads (`load`, default Keras')."""
    import keras

    import keras_relaxprune as krp

    rng = np.random.default_rng(0)
    x = rng.random((16, *shape), "float32")
    y = rng.random((16, *keras.ops.shape(gated(x[:1]))[1:]), "float32")
    gated.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    gated.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[krp.PruningCallback(target=0.3)])
    remaining = krp.count_flops(gated) / krp.count_flops(model, input_shape=shape)
    assert lowest <= remaining <= 0.71

    small = krp.strip_pruning(gated)
    expected = keras.ops.convert_to_numpy(gated(x[:4]))
    actual = keras.ops.convert_to_numpy(small(x[:4]))
    scale = max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)
    assert krp.count_flops(small, input_shape=shape) == krp.count_flops(gated)
    assert small.count_params() == krp.count_params(gated) < model.count_params()

    paths = krp.export(small, tmp_path, formats=("keras",))
    loaded = (load or keras.saving.load_model)(paths["keras"])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x[:4])), actual, rtol=1e-5, atol=1e-5 * scale
    )


def load_script(path):
    """Imports an example or benchmark script (not a package) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SimulatedKill(keras.callbacks.Callback):
    """Stops a fit the way a kill would (`KeyboardInterrupt`), as epoch
    `epoch` begins (`at="begin"`) or ends (`at="end"`)."""

    def __init__(self, epoch, at="end"):
        super().__init__()
        self.epoch, self.at = epoch, at

    def on_epoch_begin(self, epoch, logs=None):
        if self.at == "begin" and epoch == self.epoch:
            raise KeyboardInterrupt("simulated kill")

    def on_epoch_end(self, epoch, logs=None):
        if self.at == "end" and epoch == self.epoch:
            raise KeyboardInterrupt("simulated kill")


def linked_two_conv_net():
    """A gated two-convolution net (16 channels each, 8x8x3 input) and its
    linked budget: `(dense, gated, budget, graph)`, seeded."""
    import keras_relaxprune as krp
    from keras_relaxprune.layers.pruning_budget import link_budget

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.Model(inputs, keras.layers.Dense(3)(x))
    gated = krp.add_gates(dense)
    budget, graph = link_budget(gated)
    return dense, gated, budget, graph


def fit_warnings(gated, optimizer, callback, epochs=4):
    """Fits `gated` (8x8x3 in, 3 classes) on 64 random samples, batch 16,
    with `callback`; returns the messages of the warnings it raised."""
    gated.compile(
        optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 3), dtype=np.float32), rng.integers(0, 3, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gated.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[callback])
    return [str(w.message) for w in caught]


def nested_conv_model():
    """A dict-in, dict-out model around a nested one: block/conv, then relu."""
    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, keras.layers.Conv2D(4, 1, name="conv")(inner_in), name="block")
    inputs = {"image": keras.Input((6, 6, 4), name="image")}
    x = inner(inputs["image"])
    return keras.Model(inputs, {"out": keras.layers.ReLU(name="relu")(x)}, name="outer")


class Apply(keras.layers.Layer):
    """Applies a function given to the constructor (no `get_config`)."""

    def __init__(self, function, **kwargs):
        super().__init__(**kwargs)
        self.function = function

    def call(self, inputs):
        return self.function(inputs)
