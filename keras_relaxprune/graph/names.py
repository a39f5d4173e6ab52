"""Layer names for the models the library builds: never two alike.

Keras refuses a model in which two layers share a name. `add_gates` names
the layers it adds (gates, the budget layer) and `strip_pruning` names the
layers its removal rules make (a smaller copy per call of a reused layer, a
collapsed branch's offset) after layers of the model; a user layer may
already bear such a name. Names are picked here, deterministically: the
wanted name when free, else the first free `name_1`, `name_2`, ...
"""

from keras_relaxprune import keras_internals as internals
from keras_relaxprune.graph.layer_copies import safe_name


def unique_name(wanted, taken):
    """`wanted`, or `wanted_1`, `wanted_2`, ... : the first not in `taken`
    (a set of names, to which the answer is added)."""
    name, count = wanted, 0
    while name in taken:
        count += 1
        name = f"{wanted}_{count}"
    taken.add(name)
    return name


def graph_names(flat):
    """Every layer and input name of a `FlatGraph`, as a rebuilt model spells them."""
    names = {safe_name(node.name) for node in flat.nodes}
    names |= {flat.tensors[key].name for key in flat.inputs}
    return {name for name in names if name}


class NewLayerNames:
    """Renames the layers a rebuild makes for one node when their names are
    taken.

    A layer made for a node may keep its name when it is that node's own
    (the layer the node called, or its smaller copy) and no layer of the new
    model holds it yet; any other name of the original model stays with the
    layer that bears it there, and a second layer made with a name already
    held (the copy for another call of a reused layer) gets a fresh one. A
    layer of the original model reused as it is keeps its name.

    Args:
        flat: the `FlatGraph` being rebuilt.
    """

    def __init__(self, flat):
        self._owners = {}
        for index, node in enumerate(flat.nodes):
            self._owners.setdefault(safe_name(node.name), set()).add(index)
        self._taken = graph_names(flat)
        # Layers of the original model reused as they are: never renamed (the
        # user's model stays untouched).
        self._originals = {id(node.operation) for node in flat.nodes}
        self._held = {}  # name -> id of the new layer holding it
        self._seen = set()  # ids of the tensors and operations settled

    def settle(self, index, tensors):
        """Settles the names of the operations made for node `index`: those
        that `tensors` (its outputs) come from, back to the tensors settled
        before."""
        pending = [tensor for tensor in tensors if tensor is not None]
        while pending:
            tensor = pending.pop()
            if id(tensor) in self._seen:
                continue
            self._seen.add(id(tensor))
            made = internals.producer(tensor)
            if made is None:
                continue
            operation, inputs = made
            pending.extend(inputs)
            if id(operation) not in self._seen:
                self._seen.add(id(operation))
                self._name(index, operation)

    def _name(self, index, operation):
        name = getattr(operation, "name", None)
        if not name or type(operation).__name__ == "InputLayer":
            return
        own = index in self._owners.get(name, {index})
        holder = self._held.get(name)
        if (own and holder in (None, id(operation))) or id(operation) in self._originals:
            self._held[name] = id(operation)
            self._taken.add(name)
            return
        new = unique_name(name, self._taken)
        operation.name = new
        self._held[new] = id(operation)
