"""Every Keras internal the library relies on, behind one door.

Keras 3 has no public API for five things the library needs: the nodes of a
functional graph (which layer was called on which tensors, with which
arguments), the classes of raw ops recorded in a graph (`keras.ops.add`,
`x[..., :8]`), the sublayers of a layer (to copy each one's state the way
Keras' own loading does), excluding a variable from weight decay once the optimizer
is built (`fit` builds it before callbacks start), and the other callbacks
of a running `fit` (to find its TensorBoard log folder). Everything of that kind is
looked up here, defensively: a Keras release that renames one of them makes
the affected feature refuse with a clear message (raw ops become barriers,
their channels protected), never breaks `import keras_relaxprune`.
`missing_internals()` names each one that this Keras lacks; the test suite
fails on it with that list.

Tested with Keras 3.10 to 3.15 (see `pyproject.toml`).
"""

import importlib
import inspect

import keras

_MISSING = []


def _lookup(module_name, attribute):
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        _MISSING.append(f"{module_name}.{attribute}")
        return None


def _op_classes(module_name, names):
    classes = (_lookup(module_name, name) for name in names)
    return tuple(cls for cls in classes if cls is not None)


# The class of functional models (`keras.Model(inputs, outputs)` builds one).
FUNCTIONAL = _lookup("keras.src.models.functional", "Functional")

# Raw-op classes that functional graphs record for `keras.ops.*` calls.
_NN = "keras.src.ops.nn"
_NUMPY = "keras.src.ops.numpy"
ELEMENTWISE_OPS = (
    _op_classes(
        _NN,
        (
            "Relu",
            "Relu6",
            "Sigmoid",
            "Silu",
            "Gelu",
            "Elu",
            "Selu",
            "LeakyRelu",
            "HardSigmoid",
            "HardSilu",
            "Softplus",
            "Celu",
            "HardTanh",
            "Softsign",
            "LogSigmoid",
            "SoftShrink",
            "HardShrink",
            "TanhShrink",
            "SparsePlus",
            "SparseSigmoid",
            "Squareplus",
            "Threshold",
        ),
    )
    + _op_classes(
        _NUMPY,
        (
            "Tanh",
            "Abs",
            "Absolute",
            "Negative",
            "Square",
            "Sqrt",
            "Exp",
            "Expm1",
            "Log1p",
            "Clip",
            "Sign",
            "Floor",
            "Ceil",
            "Round",
            "Sin",
            "Cos",
            "Arctan",
            "Sinh",
            "Arcsinh",
        ),
    )
    + _op_classes("keras.src.ops.math", ("Erf",))
)
# Elementwise ops of a tensor and scalars (`x / 2.0`, `x ** 2`, `x > 0`, `where`).
SCALAR_OPS = _op_classes(
    _NUMPY,
    (
        "TrueDivide",
        "Power",
        "Greater",
        "GreaterEqual",
        "Less",
        "LessEqual",
    ),
)
WHERE_OPS = _op_classes(_NUMPY, ("Where",))
MEAN_OPS = _op_classes(_NUMPY, ("Mean",))
RESHAPE_OPS = _op_classes(_NUMPY, ("Reshape",))
ADD_OPS = _op_classes(_NUMPY, ("Add",))
MULTIPLY_OPS = _op_classes(_NUMPY, ("Multiply",))
MERGE_OPS = ADD_OPS + _op_classes(_NUMPY, ("Subtract", "Multiply", "Divide", "Maximum", "Minimum"))
CONCATENATE_OPS = _op_classes(_NUMPY, ("Concatenate",))
SPLIT_OPS = _op_classes(_NUMPY, ("Split",))
GET_ITEM_OPS = _op_classes(_NUMPY, ("GetItem",))

_NODE_ATTRIBUTES = ("operation", "is_input", "input_tensors", "outputs", "arguments")


def is_functional(model):
    """Whether `model` is a functional model (a graph of layer calls)."""
    return FUNCTIONAL is not None and isinstance(model, FUNCTIONAL)


def graph_nodes(model):
    """The call nodes of a functional model, inputs first (topological).

    Each node has `operation`, `is_input`, `input_tensors`, `outputs` and
    `arguments` (the call's `args`, `kwargs`, `keras_tensors` and
    `fill_in(values)`).
    """
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:
        raise RuntimeError(
            f"This Keras ({_keras_version()}) keeps no `_nodes_by_depth` on "
            "functional models; keras_relaxprune supports the versions named "
            "in its README."
        )
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def call_arguments(node):
    """The recorded arguments of one call node (`args`, `kwargs`, ...)."""
    return node.arguments


def sublayers(layer):
    """`layer` and every layer it tracks, depth first, in a stable order.

    Keras' own saving walks this tree to save and load each layer's state.
    """
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return [layer]
    return list(flatten(include_self=True, recursive=True))


def producer(tensor):
    """The operation that made the symbolic `tensor` and the tensors it read,
    or None for a tensor no operation made (a model input)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    operation, node_index = history[0], history[1]
    return operation, list(operation._inbound_nodes[node_index].input_tensors)


def exclude_from_weight_decay(optimizer, variables):
    """Keeps `variables` out of `optimizer`'s weight decay, built or not.

    Before the optimizer is built this is its public
    `exclude_from_weight_decay`, merged with what was excluded already.
    After (`fit` builds it before callbacks run) the only record left is
    the optimizer's own exclusion set: the variables are added to it and
    any cached decision about them is dropped.
    """
    variables = list(variables)
    existing = set(getattr(optimizer, "_exclude_from_weight_decay", set()))
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    if not getattr(optimizer, "built", False):
        optimizer.exclude_from_weight_decay(var_list=variables)
        optimizer._exclude_from_weight_decay |= existing
        optimizer._exclude_from_weight_decay_pattern = pattern
        return
    keys = {optimizer._var_key(variable) for variable in variables}
    optimizer._exclude_from_weight_decay = existing | keys
    cache = getattr(optimizer, "_exclude_from_weight_decay_cache", None)
    if cache is not None:
        for key in keys:
            cache.pop(key, None)


def fellow_callbacks(callback):
    """The callbacks of the `fit` that is calling `callback` (empty if none).

    Keras gives a callback no handle on the others. `fit` holds them in a
    `keras.callbacks.CallbackList`, which calls each in turn; while it calls
    `callback`, that list is the `self` of a calling frame.
    """
    frame = inspect.currentframe()
    try:
        for _ in range(16):
            frame = frame.f_back
            if frame is None:
                return []
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList) and any(
                each is callback for each in owner.callbacks
            ):
                return list(owner.callbacks)
        return []
    finally:
        del frame


def missing_internals():
    """Names of the Keras internals this Keras lacks (empty when all present)."""
    missing = list(_MISSING)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    if not hasattr(model, "_nodes_by_depth"):
        missing.append("Functional._nodes_by_depth")
    else:
        node = graph_nodes(model)[-1]
        missing += [f"Node.{a}" for a in _NODE_ATTRIBUTES if not hasattr(node, a)]
        arguments = getattr(node, "arguments", None)
        missing += [
            f"Node.arguments.{a}"
            for a in ("args", "kwargs", "keras_tensors", "fill_in")
            if not hasattr(arguments, a)
        ]
    if not hasattr(keras.layers.Layer, "_flatten_layers"):
        missing.append("Layer._flatten_layers")
    optimizer = keras.optimizers.AdamW(weight_decay=0.1)
    for name in ("_var_key", "_use_weight_decay", "exclude_from_weight_decay"):
        if not hasattr(optimizer, name):
            missing.append(f"Optimizer.{name}")
    if not hasattr(keras.layers.MultiHeadAttention, "_compute_attention"):
        # GatedMultiHeadAttention gates the heads' outputs there.
        missing.append("MultiHeadAttention._compute_attention")
    if not hasattr(keras.callbacks.CallbackList([]), "callbacks"):
        missing.append("CallbackList.callbacks")
    return missing


def _keras_version():
    return keras.__version__
