"""`register_composite` and the expansion of composite layers
(`graph/composite.py`): the registry, the check of each expansion, the
cache that keeps flattening stable, and keras-hub's blocks loaded only
when keras-hub is."""

import os
import subprocess
import sys

import keras
import pytest
from keras import layers

import keras_relaxprune as krp
from keras_relaxprune.graph import composite
from keras_relaxprune.graph.flat_graph import flatten

pytestmark = pytest.mark.backend_agnostic


class Block(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(4, 1)
        self.norm = layers.BatchNormalization()

    def call(self, x):
        return keras.ops.relu(self.norm(self.conv(x)))


class SubBlock(Block):
    """Not registered: a subclass is looked up on its own."""


class UntraceableBlock(Block):
    """Its `call` needs values (Keras builds it from its output shape)."""

    def build(self, input_shape):
        self.conv.build(input_shape)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 4)

    def call(self, x):
        return keras.ops.convert_to_tensor(keras.ops.convert_to_numpy(self.conv(x)))


@pytest.fixture
def registered():
    classes = (Block, UntraceableBlock)
    for cls in classes:
        krp.register_composite(cls)
    yield
    for cls in classes:
        composite._EXPANDERS.pop(cls, None)


def _model(block):
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, layers.Dense(2)(block(inputs)))


def test_a_registered_layer_is_flattened_into_its_sublayers(registered):
    block = Block(name="block")
    graph = flatten(_model(block))
    names = [node.name for node in graph.nodes]
    assert names[:2] == ["block/" + block.conv.name, "block/" + block.norm.name]
    # The op's name is Keras' next free "relu", "relu_1", ... in this process.
    assert names[2].startswith("block/relu")
    assert names[3:] == [graph.nodes[-1].operation.name]
    assert graph.nodes[0].operation is block.conv  # the same objects, no copies


def test_flattening_twice_gives_the_same_graph(registered):
    model = _model(Block(name="block"))
    first, second = flatten(model), flatten(model)
    assert [n.outputs for n in first.nodes] == [n.outputs for n in second.nodes]
    assert first.outputs == second.outputs


def test_a_subclass_is_not_expanded_unless_registered(registered):
    graph = flatten(_model(SubBlock(name="block")))
    assert [node.class_name for node in graph.nodes] == ["SubBlock", "Dense"]


def test_an_expansion_that_fails_is_refused(registered):
    with pytest.raises(krp.UnsupportedLayerError, match="'block' .UntraceableBlock. cannot be"):
        flatten(_model(UntraceableBlock(name="block")))


@pytest.mark.parametrize("bad", [lambda: None, "Block"])
def test_register_composite_takes_a_layer_class(bad):
    with pytest.raises(krp.PruningError, match="register_composite: .* not a Keras layer class"):
        krp.register_composite(bad)


def test_register_composite_takes_a_function():
    with pytest.raises(krp.PruningError, match="`expand` must be a function"):
        krp.register_composite(Block, expand="call")


def test_keras_hub_blocks_are_registered_once_keras_hub_is_imported():
    keras_hub = pytest.importorskip("keras_hub")
    from keras_hub.src.models.mobilenet import mobilenet_backbone

    block = mobilenet_backbone.ConvBnActBlock(4, "relu", name="block")
    assert composite.find_expander(block) is composite.call_as_functional
    assert keras_hub.models.MobileNetBackbone  # the public name, for the record


def test_importing_the_library_does_not_import_keras_hub():
    script = "import sys, keras_relaxprune\nprint('keras_hub' in sys.modules)\n"
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "False"
