"""A flat view of a Keras functional graph, and a way to rebuild it.

Nested functional models (a keras-hub backbone inside a task model, a
`Sequential` block inside a `Model`) are inlined, so that channel groups can
cross model boundaries; so are composite layers registered with
`register_composite` (`composite.py`), as the sub-graph of their sublayers.
Both network augmentation and removal rebuild the graph through `rebuild`,
node by node, each with its own `call_node` (fresh copies of its layers:
`layer_copies.py`).
"""

import dataclasses

import keras

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.errors import UnsupportedModelError
from keras_relaxprune.graph import composite


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
