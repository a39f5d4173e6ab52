"""What `analyze` finds in a model: its channel groups, maps, barriers and gates.

A `ChannelGraph` is the one description of a model's prunable structure that
augmentation, the cost counts, the budget and removal read; `tracing.py`
builds it.
"""

import dataclasses

import numpy as np

from keras_relaxprune.graph.channel_maps import ChannelGroups


@dataclasses.dataclass
class Barrier:
    layer: str
    class_name: str
    reason: str

    def __str__(self):
        return f"'{self.layer}' ({self.class_name}): {self.reason}"


@dataclasses.dataclass
class ChannelGraph:
    """The result of `analyze`.

    Attributes:
        flat: the flattened graph (`flat_graph.FlatGraph`).
        groups: the `ChannelGroups` union-find.
        maps: tensor key -> channel map (tuple of `Segment`) or None.
        producers: list of (node index, group id) of layers starting a group.
        gates: group root -> `ChannelGate` serving it (gated models).
        barriers: the layers that stopped channel tracing.
        inner_maps: node index -> channel map of channels that live inside
            the node only (a `MultiHeadAttention`'s heads): they are in no
            tensor, yet its cost and removal depend on them.
    """

    flat: object
    groups: ChannelGroups
    maps: dict
    producers: list
    gates: dict
    barriers: list
    inner_maps: dict = dataclasses.field(default_factory=dict)

    def prunable_groups(self):
        """Roots of the groups that may lose channels, in graph order."""
        seen, result = set(), []
        for _, group in self.producers:
            root = self.groups.find(group)
            if root not in seen and not self.groups.is_protected(root):
                seen.add(root)
                result.append(root)
        return result

    def gated_groups(self):
        """Roots of the prunable groups that have a `ChannelGate` (gated model)."""
        return [root for root in self.prunable_groups() if root in self.gates]

    def gate_of(self, group):
        return self.gates.get(self.groups.find(group))

    def keep_vectors(self):
        """Group root -> 0/1 numpy vector of alive channels (hard count)."""
        result = {}
        for root in self.groups.roots():
            gate = self.gates.get(root)
            if gate is None or self.groups.is_protected(root):
                result[root] = np.ones(self.groups.size[root], "float32")
            else:
                result[root] = np.asarray(gate.keep_mask.numpy(), "float32")
        return result

    def kept_flags(self, channel_map, keep):
        """0/1 per channel of `channel_map`: alive by `keep` (group root ->
        vector); fixed channels are alive."""
        flags = [
            np.ones(s.length)
            if s.group is None
            else keep[self.groups.find(s.group)][s.start : s.stop]
            for s in channel_map
        ]
        return np.concatenate(flags) if flags else np.zeros(0)

    def gated_tensors(self):
        """Keys of the tensors carrying channels of a gated group (gated
        models): a BatchNormalization writing one takes a folded gate."""
        return {
            key
            for key, channel_map in self.maps.items()
            if channel_map
            and any(s.group is not None and self.gate_of(s.group) is not None for s in channel_map)
        }

    def in_maps(self, index):
        return [self.maps.get(key) for key in self.flat.nodes[index].inputs]

    def out_maps(self, index):
        return [self.maps.get(key) for key in self.flat.nodes[index].outputs]
