"""Re-estimating BatchNormalization statistics after channels were removed."""

import keras
import numpy as np

from keras_relaxprune.layer_support import has_moving_statistics


def recalibrate_batchnorm(model, data, steps=None, batch_size=128):
    """Recomputes the moving mean and variance of every BatchNormalization.

    Pruning switches channels off while the moving statistics, averaged with
    momentum 0.99, still describe the network as it was some hundred steps
    before: in inference mode a freshly pruned network can score far below
    what it scores in training mode. This runs the model forward in training
    mode over `data` with each BN's momentum set so that its moving
    statistics become the plain average of the batch statistics (what
    PyTorch's `swa_utils.update_bn` does). No weight is trained, and every
    other non-trainable variable (the gates' masks and temperature, the
    pruning schedule) is restored afterwards.

    Args:
        model: a Keras model, gated or dense.
        data: a NumPy array of inputs, or an iterable of batches (a
            `keras.utils.PyDataset`, a `tf.data.Dataset`, a list) yielding
            inputs or `(inputs, targets)` tuples.
        steps: number of batches to use. Defaults to all of `data`.
        batch_size: batch size when `data` is an array. Defaults to 128.

    Returns:
        The number of batches used.

    Example:

    ```python
    krp.recalibrate_batchnorm(gated, x_train[:5000])
    small = krp.strip_pruning(gated)
    ```
    """
    norms = list(
        {id(layer): layer for layer in _all_layers(model) if has_moving_statistics(layer)}.values()
    )
    if not norms:
        return 0
    moving = {id(v) for layer in norms for v in (layer.moving_mean, layer.moving_variance)}
    others = [v for v in model.non_trainable_variables if id(v) not in moving]
    saved = [keras.ops.convert_to_numpy(v) for v in others]
    momenta = [layer.momentum for layer in norms]
    used = 0
    try:
        for batch in _batches(data, batch_size):
            if steps is not None and used >= steps:
                break
            for layer in norms:
                layer.momentum = used / (used + 1.0)
            model(batch, training=True)
            used += 1
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        for variable, value in zip(others, saved):
            variable.assign(value)
    return used


def _all_layers(layer):
    yield layer
    for sublayer in getattr(layer, "layers", ()):
        yield from _all_layers(sublayer)


def _batches(data, batch_size):
    if isinstance(data, np.ndarray):
        for start in range(0, len(data), batch_size):
            yield data[start : start + batch_size]
        return
    if isinstance(data, keras.utils.PyDataset):
        dataset = data
        data = (dataset[index] for index in range(len(dataset)))
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch
