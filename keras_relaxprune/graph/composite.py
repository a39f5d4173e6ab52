"""Composite layers: subclassed layers whose `call` is made of Keras layers.

A layer such as keras-hub's `InvertedResidualBlock` holds a convolution, a
BatchNormalization and an activation, and calls them in its own `call`.
As one node of the graph it is a barrier: its channels cannot be traced.
`register_composite(cls, expand)` says how to write its computation as a
functional sub-graph of its own sublayers; `flat_graph.flatten` then inlines
that sub-graph in place of the layer, the way it inlines nested models. The
sublayers are the layer's own objects (nothing is copied), so the inlined
graph holds the same weights, and `add_gates` copies them like any other
layer: the gated and the stripped models are made of plain Keras layers.

Each expansion is checked once, on a random input: the sub-graph must
compute what the layer computes, else `UnsupportedLayerError` names the
layer (a new version of a library may change what a block does).
"""

import sys
import weakref

import keras
import numpy as np

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.errors import PruningError, UnsupportedLayerError

_EXPANDERS = {}
# Node of a composite layer's call -> its functional sub-model (one per node,
# so flattening a model twice gives the same tensors, and sublayers are not
# called again on each flattening).
_EXPANSIONS = weakref.WeakKeyDictionary()
# Spatial or batch sizes the check uses where the graph leaves them unknown.
_CHECK_BATCH, _CHECK_SIZE = 2, 16


def call_as_functional(layer, *args, **kwargs):
    """The default expander: the layer's own `call`, run on symbolic tensors.

    Every Keras layer and `keras.ops` function that `call` uses then records
    a node, so the sub-graph is the block's computation, step by step.
    """
    return layer.call(*args, **kwargs)


def register_composite(layer_class, expand=None):
    """Makes the insides of a composite layer class prunable.

    A composite layer is a subclassed layer whose `call` calls other Keras
    layers (its sublayers) and `keras.ops`. Registered, each call of it is
    replaced, before channels are traced, by the same computation written
    as a functional sub-graph of its sublayers: their channels are then
    pruned like any other layer's, and `strip_pruning` returns a model of
    plain Keras layers that computes the same function. Each expansion is
    checked against the layer on a random input; a mismatch raises
    `UnsupportedLayerError` at `add_gates`.

    Args:
        layer_class: the layer class (looked up exactly: a subclass must be
            registered on its own).
        expand: `expand(layer, *args, **kwargs) -> outputs`, called with
            symbolic tensors in place of the arguments of the layer's call;
            it calls the layer's sublayers (the same objects) and
            `keras.ops` on them. Defaults to the layer's own `call`, which is
            right whenever `call` is made of Keras layers and `keras.ops`
            only (no Python branch on tensor values, no backend-specific op,
            no weight used directly).

    Example:

    ```python
    class ConvBlock(keras.layers.Layer):
        def __init__(self, filters, **kwargs):
            super().__init__(**kwargs)
            self.filters = filters
            self.conv = keras.layers.Conv2D(filters, 3, padding="same")
            self.norm = keras.layers.BatchNormalization()

        def call(self, x):
            return keras.ops.relu(self.norm(self.conv(x)))

        def get_config(self):
            return {**super().get_config(), "filters": self.filters}

    krp.register_composite(ConvBlock)  # its own `call` is traced
    # Or written out, for a `call` that cannot be traced as it is:
    krp.register_composite(
        ConvBlock, lambda block, x: keras.ops.relu(block.norm(block.conv(x)))
    )
    ```
    """
    if not isinstance(layer_class, type) or not issubclass(layer_class, keras.layers.Layer):
        raise PruningError(
            f"register_composite: {layer_class!r} is not a Keras layer class; pass the "
            "class itself (e.g. `register_composite(MyBlock)`)."
        )
    if expand is not None and not callable(expand):
        raise PruningError(
            "register_composite: `expand` must be a function `expand(layer, *args, "
            f"**kwargs) -> outputs`; got {expand!r}."
        )
    _EXPANDERS[layer_class] = expand or call_as_functional


def find_expander(operation):
    """The expander registered for `operation`'s exact class, or None."""
    _register_installed_libraries()
    return _EXPANDERS.get(type(operation))


def expansion(node, name):
    """The functional sub-model computing the call `node` of a composite
    layer (named `name` in messages), or None if its class is not registered."""
    expand = find_expander(node.operation)
    if expand is None:
        return None
    cached = _EXPANSIONS.get(node)
    if cached is None or cached[0] is not expand:  # new, or registered anew
        _EXPANSIONS[node] = (expand, _expand(node, expand, name))
    return _EXPANSIONS[node][1]


def _expand(node, expand, name):
    layer = node.operation
    arguments = internals.call_arguments(node)
    originals = arguments.keras_tensors
    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in originals]
    args, kwargs = arguments.fill_in({id(t): x for t, x in zip(originals, inputs)})
    try:
        outputs = expand(layer, *args, **kwargs)
        sub_model = keras.Model(inputs, outputs, name=layer.name)
    except Exception as error:
        raise _refusal(layer, name, f"its expansion fails ({_first_line(error)})") from error
    _check(layer, name, arguments, originals, sub_model)
    return sub_model


def _check(layer, name, arguments, originals, sub_model):
    """The sub-model must compute what the layer computes (inference mode)."""
    rng = np.random.default_rng(0)
    values = [_random_value(rng, t) for t in originals]
    args, kwargs = arguments.fill_in({id(t): x for t, x in zip(originals, values)})
    try:
        expected = keras.tree.flatten(layer(*args, **kwargs))
        actual = keras.tree.flatten(sub_model(values))
    except Exception as error:
        raise _refusal(layer, name, f"its expansion fails ({_first_line(error)})") from error
    if len(expected) != len(actual):
        raise _refusal(layer, name, "its expansion returns other outputs")
    for want, got in zip(expected, actual):
        want, got = keras.ops.convert_to_numpy(want), keras.ops.convert_to_numpy(got)
        scale = max(float(np.abs(want).max(initial=0.0)), 1.0)
        if want.shape != got.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5 * scale):
            raise _refusal(layer, name, "its expansion computes something else")


def _random_value(rng, tensor):
    shape = [
        (_CHECK_BATCH if axis == 0 else _CHECK_SIZE) if size is None else size
        for axis, size in enumerate(tensor.shape)
    ]
    if "int" in str(tensor.dtype):
        return keras.ops.convert_to_tensor(rng.integers(0, 2, shape), dtype=tensor.dtype)
    return keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"), tensor.dtype)


def _refusal(layer, name, reason):
    cls = type(layer).__name__
    return UnsupportedLayerError(
        f"Composite layer '{name}' ({cls}) cannot be inlined: {reason} on a random "
        "input. Its expander must compute what its `call` computes (a new version of "
        "the library that defines it may have changed the block): register one that "
        f"does, `krp.register_composite({cls}, expand)`, or use the version of that "
        "library named in docs/layers.md."
    )


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


_LOADED = set()


def _register_installed_libraries():
    """Registers the composite blocks of libraries the process has imported.

    A model holding keras-hub blocks was built with keras-hub imported, so
    its records load then, and `import keras_relaxprune` never imports it.
    """
    if "keras_hub" in sys.modules and "keras_hub" not in _LOADED:
        _LOADED.add("keras_hub")
        from keras_relaxprune.layer_support import keras_hub_blocks

        keras_hub_blocks.register()
