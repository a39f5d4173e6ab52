"""Fresh copies of a graph's layers that compute what the originals compute.

`rebuild` (`flat_graph.py`) calls each node's layer again in a new graph;
augmentation and removal give it copies: made from the layer's config
(with the changed widths), the same callables kept, the state (weights,
assets such as lookup vocabularies) copied as Keras' saving does, and
checked to rebuild with the same settings, else refused by name.
"""

import re
import tempfile
import warnings

import keras

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.errors import UnsupportedModelError
from keras_relaxprune.graph import config_keys


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
