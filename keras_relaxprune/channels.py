"""Channel maps: which channel group each channel of a tensor belongs to.

The last axis of every tensor in the graph is described as a tuple of
`Segment`s. A segment is a run of channels of one group (`group` is an id in
`ChannelGroups`) or of fixed channels (`group is None`: inputs, outputs of
barriers, never pruned). A convolution starts a new group; a slice takes
part of a map; a concatenation joins maps; an `Add` ties its inputs' groups.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Segment:
    group: object  # int id in ChannelGroups, or None for fixed channels
    start: int
    stop: int

    @property
    def length(self):
        return self.stop - self.start


def fixed_map(channels):
    return (Segment(None, 0, int(channels)),) if channels else ()


def map_length(channel_map):
    return sum(s.length for s in channel_map)


def concat_maps(maps):
    return tuple(segment for m in maps for segment in m)


def slice_map(channel_map, start, stop):
    """Channels `start:stop` of a map (non-negative, in range)."""
    result, offset = [], 0
    for segment in channel_map:
        lo = max(start, offset)
        hi = min(stop, offset + segment.length)
        if lo < hi:
            begin = segment.start + lo - offset
            result.append(Segment(segment.group, begin, begin + hi - lo))
        offset += segment.length
    return tuple(result)


def aligned_pieces(map_a, map_b):
    """Cut two maps of equal length at the union of their boundaries.

    Yields `(segment_of_a, segment_of_b)` pairs covering the same channels.
    """
    cuts = sorted(set(_boundaries(map_a)) | set(_boundaries(map_b)))
    for lo, hi in zip(cuts, cuts[1:]):
        (piece_a,) = slice_map(map_a, lo, hi)
        (piece_b,) = slice_map(map_b, lo, hi)
        yield piece_a, piece_b


def _boundaries(channel_map):
    offset, cuts = 0, [0]
    for segment in channel_map:
        offset += segment.length
        cuts.append(offset)
    return cuts


class ChannelGroups:
    """Union-find over channel groups, with protection and provenance."""

    def __init__(self):
        self._parent = []
        self.size = []
        self.reasons = {}  # root -> list of reasons it is protected
        self.producers = {}  # root -> list of producer layer names

    def new(self, size, producer):
        group = len(self._parent)
        self._parent.append(group)
        self.size.append(int(size))
        self.producers[group] = [producer]
        return group

    def find(self, group):
        while self._parent[group] != group:
            self._parent[group] = self._parent[self._parent[group]]
            group = self._parent[group]
        return group

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if self.size[a] != self.size[b]:
            raise AssertionError("union of groups of different sizes")
        self._parent[b] = a
        self.reasons.setdefault(a, []).extend(self.reasons.pop(b, []))
        self.producers[a].extend(self.producers.pop(b))
        return a

    def protect(self, group, reason):
        self.reasons.setdefault(self.find(group), []).append(reason)

    def is_protected(self, group):
        return bool(self.reasons.get(self.find(group)))

    def roots(self):
        return [g for g in range(len(self._parent)) if self.find(g) == g]

    def is_full(self, segment):
        return segment.start == 0 and segment.stop == self.size[segment.group]
