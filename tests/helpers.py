"""Inspection helpers shared by the tests."""

import numpy as np

from keras_relaxprune.gates import ChannelGate


def gate_inputs(gated):
    """Gate layer name -> sorted names of the layers whose outputs it gates."""
    result = {}
    for layer in gated.layers:
        if isinstance(layer, ChannelGate):
            names = [
                node.input_tensors[0]._keras_history.operation.name
                for node in layer._inbound_nodes
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
