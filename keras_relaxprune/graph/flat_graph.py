"""A flat view of a Keras functional graph, and a way to rebuild it.

Nested functional models (a keras-hub backbone inside a task model, a
`Sequential` block inside a `Model`) are inlined, so that channel groups can
cross model boundaries; so are composite layers registered with
`register_composite` (`composite.py`), as the sub-graph of their sublayers.
Both network augmentation and removal rebuild the graph through `rebuild`,
node by node, each with its own `call_node`.
"""

import dataclasses
import re
import tempfile
import warnings

import keras

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.errors import UnsupportedModelError
from keras_relaxprune.graph import composite, config_keys


@dataclasses.dataclass
class FlatNode:
    """One call of an operation (layer or raw op) in the flattened graph.

    Attributes:
        operation: the Keras `Layer` or `Operation` called.
        node: the Keras `Node` of that call (holds its arguments).
        inputs: keys of the input tensors, in `node.input_tensors` order.
        outputs: keys of the output tensors.
        arg_keys: `id(KerasTensor)` of each argument -> tensor key.
        scope: names of the enclosing nested models, joined by "/".
    """

    operation: object
    node: object
    inputs: list
    outputs: list
    arg_keys: dict
    scope: str

    @property
    def name(self):
        name = getattr(self.operation, "name", type(self.operation).__name__)
        return f"{self.scope}/{name}" if self.scope else name

    @property
    def class_name(self):
        return type(self.operation).__name__

    def fill_in(self, values):
        """Arguments of the call with each tensor replaced by `values[key]`."""
        tensor_dict = {arg_id: values[key] for arg_id, key in self.arg_keys.items()}
        return internals.call_arguments(self.node).fill_in(tensor_dict)

    @property
    def call_args(self):
        """The positional arguments of the call, as recorded."""
        return internals.call_arguments(self.node).args


@dataclasses.dataclass
class FlatGraph:
    """Nodes in topological order; tensors keyed by the id of a KerasTensor."""

    model: object
    inputs: list
    outputs: list
    nodes: list
    tensors: dict

    def consumers(self):
        """Tensor key -> list of (node index, argument position)."""
        result = {}
        for index, flat in enumerate(self.nodes):
            for position, key in enumerate(flat.inputs):
                result.setdefault(key, []).append((index, position))
        return result


def as_functional(model):
    """The model itself if functional; a built `Sequential` made functional."""
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise UnsupportedModelError(
                f"Sequential model '{model.name}' is not built: give it an "
                "`keras.Input(shape=...)` first layer, or call it once on data."
            )
        inputs = keras.Input(batch_shape=model.inputs[0].shape)
        outputs = inputs
        for layer in model.layers:
            outputs = layer(outputs)
        return keras.Model(inputs, outputs, name=model.name)
    if internals.is_functional(model):
        return model
    raise UnsupportedModelError(
        f"Model '{getattr(model, 'name', model)}' of class "
        f"{type(model).__name__} is not a functional model: keras_relaxprune "
        "needs the layer graph, which a subclassed model (custom `call`) does "
        "not expose. Build it with the functional API "
        "(`keras.Model(inputs, outputs)`) or `keras.Sequential`."
    )


def flatten(model):
    """The `FlatGraph` of a functional or Sequential model."""
    model = as_functional(model)
    graph = FlatGraph(model, [], [], [], {})
    graph.inputs = [id(x) for x in model.inputs]
    for tensor in model.inputs:
        graph.tensors[id(tensor)] = tensor
    graph.outputs = _walk(model, list(graph.inputs), "", graph)
    return graph


def _walk(model, input_keys, scope, graph):
    alias = {id(x): key for x, key in zip(model.inputs, input_keys)}

    def key_of(tensor):
        return alias.get(id(tensor), id(tensor))

    for node in internals.graph_nodes(model):
        if not node.operation or node.is_input:
            continue
        operation = node.operation
        inputs = [key_of(t) for t in node.input_tensors]
        inner = composite.expansion(node, _scoped(scope, getattr(operation, "name", "")))
        if inner is None and (
            internals.is_functional(operation) or isinstance(operation, keras.Sequential)
        ):
            inner = as_functional(operation)
        if inner is not None:
            inner_scope = f"{scope}/{inner.name}" if scope else inner.name
            inner_outputs = _walk(inner, inputs, inner_scope, graph)
            for tensor, key in zip(node.outputs, inner_outputs):
                alias[id(tensor)] = key
            continue
        arguments = internals.call_arguments(node)
        arg_keys = {id(t): key_of(t) for t in arguments.keras_tensors}
        outputs = [id(t) for t in node.outputs]
        for tensor in node.outputs:
            graph.tensors[id(tensor)] = tensor
        graph.nodes.append(FlatNode(operation, node, inputs, outputs, arg_keys, scope))
    return [key_of(t) for t in model.outputs]


def _scoped(scope, name):
    return f"{scope}/{name}" if scope else name


def rebuild(graph, call_node, name=None, input_shapes=None, wrap_input=None, unwrap_output=None):
    """A new functional model from `graph`, calling `call_node` at each node.

    `call_node(index, flat_node, args, kwargs)` returns the node's outputs
    (a value or a list matching `flat_node.outputs`). Values are tensors
    unless `wrap_input(position, input_tensor)` makes the inputs something
    else; `unwrap_output(value)` then gives the output tensors back.
    `input_shapes` (one per input, without batch) replaces the input shapes.
    """
    values = {}
    new_inputs = []
    for position, key in enumerate(graph.inputs):
        old = graph.tensors[key]
        shape = old.shape
        if input_shapes is not None:
            shape = (shape[0], *input_shapes[position])
        new = keras.Input(batch_shape=shape, dtype=old.dtype, name=_input_name(old))
        values[key] = wrap_input(position, new) if wrap_input else new
        new_inputs.append(new)
    for index, flat in enumerate(graph.nodes):
        args, kwargs = flat.fill_in(values)
        outputs = call_node(index, flat, args, kwargs)
        for key, value in zip(flat.outputs, keras.tree.flatten(outputs)):
            values[key] = value
    model = graph.model
    unwrap = unwrap_output or (lambda value: value)
    outputs = keras.tree.pack_sequence_as(
        model.output, [unwrap(values[key]) for key in graph.outputs]
    )
    inputs = keras.tree.pack_sequence_as(model.input, new_inputs)
    return keras.Model(inputs, outputs, name=name or model.name)


def _input_name(tensor):
    return getattr(tensor, "name", None)


def call_original(index, flat, args, kwargs):
    """A `call_node` for `rebuild` that calls the original operation."""
    return flat.operation(*args, **kwargs)


class LayerCloner:
    """Fresh copies of layers, made once each: shared layers stay shared."""

    def __init__(self):
        self._clones = {}

    def clone(self, flat, **config_changes):
        """The copy of `flat.operation` (raw ops, which hold no state, as is)."""
        operation = flat.operation
        if not isinstance(operation, keras.layers.Layer):
            return operation
        if id(operation) not in self._clones:
            self._clones[id(operation)] = (operation, fresh_layer(flat, **config_changes))
        return self._clones[id(operation)][1]

    def copy_weights(self):
        """Copies the original state into every clone (after building)."""
        for original, copy in self._clones.values():
            copy_state(original, copy)


def fresh_layer(flat, **config_changes):
    """A new, unbuilt layer with the config of `flat.operation` and `changes`.

    The copy is made from the layer's config, with the layer's own callables
    (activations, regularizers, constraints, functions given to a custom
    layer) put back in place of their serialised form: a function is kept as
    the very object the user gave, never looked up again by name. Without
    changes, the copy's public settings must equal the original's. A config
    its own constructor refuses (a key it derives, such as keras-hub's
    `num_patches`) is tried again without the keys no constructor names; that
    copy is used only if it computes what the original computes on a random
    input (`config_keys`). A layer whose config cannot give such a copy is
    reused as is when it holds no weights (it then computes exactly what it
    did), and refused otherwise.
    Nested-scope names are flattened with `safe_name`. The layer is the
    caller's live object, not an untrusted file, so a `Lambda`'s Python
    function may be copied (`safe_mode=False`).
    """
    layer = flat.operation
    try:
        config = _config_of(layer)
        live = _live_callables(layer, config)
        config.update(live)
        if flat.scope:
            config["name"] = safe_name(flat.name)
        config.update(config_changes)
        copy = _from_config(type(layer), config)
        _put_back(copy, live)
    except Exception as error:
        reason = f"its config does not rebuild it ({_first_line(error)})"
        copy = None if config_changes else _copy_without_unaccepted_keys(flat)
        return _uncopyable(flat, config_changes, reason) if copy is None else copy
    if not config_changes:
        differences = _differences(layer, copy)
        if differences:
            return _uncopyable(
                flat,
                config_changes,
                f"its config rebuilds it with other settings ({', '.join(differences)})",
            )
    return copy


def _copy_without_unaccepted_keys(flat):
    """A copy from the config less the keys no constructor names, if it has
    the original's settings and computes what it computes; else None."""
    layer = flat.operation
    try:
        config = _config_of(layer)
        dropped = config_keys.unaccepted_keys(type(layer), config)
        if not dropped:
            return None
        live = _live_callables(layer, config)
        config = {key: value for key, value in config.items() if key not in dropped}
        config.update(live)
        if flat.scope:
            config["name"] = safe_name(flat.name)
        copy, trial = (_from_config(type(layer), config) for _ in range(2))
        for made in (copy, trial):
            _put_back(made, live)
    except Exception:
        return None
    if _differences(layer, copy) or not config_keys.computes_the_same(flat, trial, copy_state):
        return None
    return copy


def copy_state(original, copy):
    """Gives `copy` (built like `original`) all of `original`'s state.

    Beyond the weights, this is what Keras does when loading a saved model:
    each (sub)layer's own-variable hook (an adapted `Normalization` then
    finalises its statistics) and its assets (a lookup layer's vocabulary).
    """
    if copy is original:
        return
    copy.set_weights(original.get_weights())
    pairs = zip(internals.sublayers(original), internals.sublayers(copy))
    for source, target in pairs:
        if type(source) is not type(target):
            break
        if type(source).load_own_variables is not keras.layers.Layer.load_own_variables:
            store = {}
            source.save_own_variables(store)
            # Values, not the variables: a JAX copy sharing the original's
            # buffers loses them when either model's `predict` donates them.
            store = {
                key: value.numpy().copy() if isinstance(value, keras.Variable) else value
                for key, value in store.items()
            }
            target.load_own_variables(store)
        if hasattr(source, "save_assets") and hasattr(target, "load_assets"):
            with tempfile.TemporaryDirectory() as folder:
                source.save_assets(folder)
                target.load_assets(folder)


def _from_config(cls, config):
    name = f"{cls.__module__}.{cls.__qualname__}"
    return keras.saving.deserialize_keras_object(
        {"class_name": name, "config": config, "module": None, "registered_name": name},
        custom_objects={name: cls},
        safe_mode=False,
    )


def _config_of(layer):
    """`layer.get_config()`, even where a callable in it does not serialise.

    Such callables (a lambda, a `functools.partial`, a plain function given
    as a regularizer) are replaced by `keras.activations.linear` while the
    config is read, then put back; the copy gets the live objects anyway.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "serialising a lambda is unsafe"
        try:
            return layer.get_config()
        except Exception:
            pass
        live = {
            key: value
            for key, value in vars(layer).items()
            if not key.startswith("_")
            and not hasattr(type(layer), key)
            and _is_live_callable(value)
            and not isinstance(value, keras.layers.Layer)
        }
        try:
            for key in live:
                setattr(layer, key, keras.activations.linear)
            return layer.get_config()
        finally:
            for key, value in live.items():
                setattr(layer, key, value)


def _is_live_callable(value):
    """A callable setting kept as the same object in the copy.

    Initializers are rebuilt from their config (the copy's weights are
    overwritten anyway; a shared seeded initializer would warn), and layers
    with weights are copied, not shared.
    """
    if not callable(value) or isinstance(value, type):
        return False
    if isinstance(value, keras.initializers.Initializer):
        return False
    if isinstance(value, keras.layers.Layer):
        return not value.weights
    return True


def _live_callables(layer, config):
    """Config key -> the layer's own callable object of that name."""
    found = {key: getattr(layer, key, None) for key in config if key != "name"}
    return {
        key: value
        for key, value in found.items()
        if _is_live_callable(value) and getattr(value, "__self__", None) is not layer
    }


def _put_back(copy, live):
    """Sets each live callable on the copy where its constructor wrapped it."""
    for key, value in live.items():
        if getattr(copy, key, None) is not value:
            setattr(copy, key, value)


_VOLATILE = ("name", "built", "path")


def _settings(layer):
    """The layer's public plain settings and callables, by attribute name
    (methods that Keras wraps on the instance, such as `build`, aside)."""
    plain = (bool, int, float, str, tuple, type(None))
    return {
        key: value
        for key, value in vars(layer).items()
        if not key.startswith("_")
        and key not in _VOLATILE
        and not hasattr(type(layer), key)
        and (isinstance(value, plain) or _is_live_callable(value))
    }


def _differences(original, copy):
    """Names of the public settings on which `copy` differs from `original`."""
    before, after = _settings(original), _settings(copy)
    return sorted(key for key in before.keys() & after.keys() if not _same(before[key], after[key]))


def _same(a, b):
    if callable(a) or callable(b):
        return a is b or (isinstance(a, keras.layers.Layer) and type(a) is type(b))
    return type(a) is type(b) and a == b


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _uncopyable(flat, config_changes, reason):
    """The original layer itself when it holds no weights; else a refusal."""
    layer = flat.operation
    if not config_changes and not layer.weights:
        return layer
    raise UnsupportedModelError(
        f"Layer '{flat.name}' ({flat.class_name}) cannot be copied: {reason}. "
        "keras_relaxprune copies every layer from its config. Give the class a "
        "`get_config()` that returns every constructor argument (callables may be "
        'returned as they are), e.g. `return {**super().get_config(), "fn": self.fn}`.'
    )


def safe_name(name):
    """A layer name without the "/" of nested scopes."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
