"""A layer whose `get_config()` returns keys its constructor refuses.

Some layers save values they derive from their arguments (keras-hub 0.32's
`ViTPatchingAndEmbedding` saves `num_patches` and `num_positions`, which its
`__init__` passes on to `keras.layers.Layer`, which refuses them). A copy
can then be made without those keys; it is used only if it computes what the
original computes, checked on a random input (`computes_the_same`).
"""

import inspect

import keras
import numpy as np

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def unaccepted_keys(cls, config):
    """Keys of `config` that no constructor along `cls`'s chain names.

    The chain is followed while each `__init__` passes `**kwargs` on to its
    parent's. Returns an empty list where a constructor's signature cannot
    be read.
    """
    accepted = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        try:
            parameters = list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):
            return []
        accepted |= {p.name for p in parameters if p.kind in _NAMED}
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return sorted(set(config) - accepted)


def computes_the_same(flat, copy, copy_state, seed=0):
    """Whether `copy`, given `flat.operation`'s state, computes its outputs.

    Both are called (in inference) on one random input of the recorded call's
    shapes, batch 2. A call whose inputs have an unknown size beyond the batch
    axis cannot be checked: False.

    Args:
        flat: the `FlatNode` of the original layer's call.
        copy: an unbuilt copy of that layer (it is built here).
        copy_state: `copy_state(original, copy)`, giving the copy the
            original's weights and state once it is built.
        seed: seed of the random input.
    """
    rng = np.random.default_rng(seed)
    values = {}
    for tensor in flat.node.input_tensors:
        value = _random_like(tensor, rng)
        if value is None:
            return False
        values[flat.arg_keys[id(tensor)]] = value
    try:
        args, kwargs = flat.fill_in(values)
        expected = keras.tree.flatten(flat.operation(*args, **kwargs))
        copy(*args, **kwargs)
        copy_state(flat.operation, copy)
        actual = keras.tree.flatten(copy(*args, **kwargs))
    except Exception:
        return False
    if len(actual) != len(expected):
        return False
    for a, b in zip(actual, expected):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=1e-6):
            return False
    return True


def _random_like(tensor, rng):
    """A random value of the KerasTensor's shape (batch 2), or None."""
    shape = list(tensor.shape)
    if shape and shape[0] is None:
        shape[0] = 2
    if any(size is None for size in shape):
        return None
    if "float" in str(tensor.dtype):
        return keras.ops.convert_to_tensor(rng.normal(size=shape), tensor.dtype)
    return keras.ops.zeros(shape, tensor.dtype)
