"""The Keras internals the library relies on exist in this Keras."""

import keras
import pytest

from keras_relaxprune import keras_internals as internals

pytestmark = pytest.mark.backend_agnostic


def test_every_keras_internal_is_present():
    """Fails, naming each one, when a Keras release drops an internal."""
    missing = internals.missing_internals()
    assert not missing, (
        f"Keras {keras.__version__} lacks internals keras_relaxprune relies on: "
        f"{', '.join(missing)}. Update keras_relaxprune/keras_internals.py."
    )


def test_raw_op_classes_are_found():
    """Every raw-op family used by the channel rules resolved to classes."""
    for name in (
        "ELEMENTWISE_OPS",
        "MERGE_OPS",
        "ADD_OPS",
        "CONCATENATE_OPS",
        "SPLIT_OPS",
        "GET_ITEM_OPS",
    ):
        assert getattr(internals, name), name
    assert len(internals.ELEMENTWISE_OPS) == 42  # 22 activations, 20 element-wise math ops


def test_a_missing_internal_is_reported_not_raised(monkeypatch):
    """A lookup that fails is recorded by name; import does not break."""
    monkeypatch.setattr(internals, "_MISSING", [])
    assert internals._lookup("keras.src.ops.numpy", "NoSuchOp") is None
    assert internals._lookup("keras.src.no_such_module", "X") is None
    assert internals.missing_internals()[:2] == [
        "keras.src.ops.numpy.NoSuchOp",
        "keras.src.no_such_module.X",
    ]


def test_graph_nodes_refuses_clearly_without_node_records():
    """A model object without the node records gets a message naming them."""
    with pytest.raises(RuntimeError, match="_nodes_by_depth"):
        internals.graph_nodes(object())


def test_sublayers_lists_the_layer_and_what_it_tracks():
    """The walk Keras' own saving uses to restore each layer's state."""
    inner = keras.layers.Dense(2)
    outer = keras.layers.Bidirectional(keras.layers.LSTM(2))
    assert internals.sublayers(inner) == [inner]
    assert internals.sublayers(outer)[0] is outer and len(internals.sublayers(outer)) >= 3
