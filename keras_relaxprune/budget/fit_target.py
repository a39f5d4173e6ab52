"""What `PruningCallback` needs to know of the model `fit` trains.

The gated model (itself, or a `keras.distillation.Distiller`'s student, whose
loss is given the budget penalty back), and of its optimizer: whether it is
plain SGD (adaptive lambda by default) and that gate logits get no weight decay.
"""

import keras

from keras_relaxprune import keras_internals as internals


def gated_model(model):
    """The gated model being trained: `model`, or a Distiller's student.

    `keras.distillation.Distiller.compute_loss` leaves out the losses the
    student adds with `add_loss` (our budget penalty among them), which the
    base `Model.compute_loss` includes; it is given them back here, before
    `fit` traces its train step.
    """
    if not isinstance(model, keras.distillation.Distiller):
        return model
    if not getattr(model, "_relaxprune_adds_model_losses", False):
        distill_loss = model.compute_loss

        def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = distill_loss(x, y, y_pred, sample_weight, training=training)
            for extra in model.losses:  # a list of tensors (tracers on JAX)
                loss = loss + keras.ops.cast(extra, loss.dtype)
            return loss

        model.compute_loss = compute_loss
        model._relaxprune_adds_model_losses = True
        model.train_function = None
    return model.student


def exclude_gates_from_weight_decay(model, graph):
    """Weight decay would pull gate logits to 0, the 0.5 fence."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        logits = [gate.logits for gate in graph.gates.values()]
        internals.exclude_from_weight_decay(optimizer, logits)


def inner_optimizer(optimizer):
    """The optimizer that steps: a `LossScaleOptimizer`'s inner one, else `optimizer`."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def is_sgd(optimizer):
    """Whether `optimizer` (inside a `LossScaleOptimizer` too) is plain SGD."""
    return isinstance(inner_optimizer(optimizer), keras.optimizers.SGD)
