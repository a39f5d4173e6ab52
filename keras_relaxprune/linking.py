"""Attaching the cost model to the `PruningBudget` layer of a gated model.

The link is rebuilt from the graph itself (never serialised), so a gated
model loaded from `.keras` is linked again by `PruningCallback`.
"""

from keras_relaxprune.budget import PruningBudget
from keras_relaxprune.errors import PruningError
from keras_relaxprune.graph import analyze


def find_budget(model):
    budgets = [layer for layer in model.layers if isinstance(layer, PruningBudget)]
    if not budgets:
        raise PruningError(
            f"Model '{model.name}' has no gates: call `krp.add_gates(model)` "
            "and train the model it returns."
        )
    return budgets[0]


def link_budget(model):
    """Links the model's budget layer to its channel graph; returns both."""
    budget = find_budget(model)
    graph = analyze(model)
    budget.link(graph)
    return budget, graph
