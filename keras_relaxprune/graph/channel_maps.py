"""Channel maps: which channel group each channel of a tensor belongs to.

The last axis of every tensor in the graph is described as a tuple of
`Segment`s. A segment is a run of channels of one group (`group` is an id in
`ChannelGroups`) or of fixed channels (`group is None`: inputs, outputs of
barriers, never pruned). A convolution starts a new group; a slice takes
part of a map; a concatenation joins maps; an `Add` ties its inputs' groups.

One group may appear several times in a map: `Concatenate()([x, x])`, or
the output of a grouped convolution with `groups=G`, whose map is G copies
of one new group (output channel `g * C / G + j` is channel `j` of it).
Such copies are *tiles*: removing a channel of the group removes it from
every tile. A group whose channels must line up with tiles of a smaller
width is *split* (`ChannelGroups.split`): it becomes several copies of a
new, narrower group, and every map is rewritten in its terms.
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


def tiles_of(channel_map, count):
    """The map cut into `count` tiles of equal width (a list of maps).

    One pass over the segments (a grouped convolution's map can hold one
    segment per channel, so slicing it once per tile would be quadratic).
    """
    width = map_length(channel_map) // count
    tiles = [[] for _ in range(count)]
    offset = 0  # channels of the map before `position`
    for segment in channel_map if width else ():
        position = segment.start
        while position < segment.stop and offset < count * width:
            tile = offset // width
            taken = min(segment.stop - position, (tile + 1) * width - offset)
            tiles[tile].append(Segment(segment.group, position, position + taken))
            position += taken
            offset += taken
    return [tuple(tile) for tile in tiles]


def repeat_channels(channel_map, repeats):
    """Each channel of a map `repeats` times in a row: the output of a
    depthwise convolution with `depth_multiplier=repeats`, whose channel
    `c * repeats + m` is input channel `c` (removed with it)."""
    result = []
    for segment in channel_map:
        if segment.group is None:
            result.append(Segment(None, segment.start * repeats, segment.stop * repeats))
            continue
        for channel in range(segment.start, segment.stop):
            result.extend([Segment(segment.group, channel, channel + 1)] * repeats)
    return tuple(result)


def split_segment(segment, new_group, width):
    """`segment` of a group that was split into copies of `new_group` (of
    `width` channels): the same channels as segments of `new_group`."""
    pieces, start = [], segment.start
    while start < segment.stop:
        stop = min(segment.stop, (start // width + 1) * width)
        offset = start // width * width
        pieces.append(Segment(new_group, start - offset, stop - offset))
        start = stop
    return pieces


def aligned_pieces(map_a, map_b):
    """Cut two maps of equal length at the union of their boundaries.

    Yields `(segment_of_a, segment_of_b)` pairs covering the same channels,
    in order. One merge-like walk over both maps, linear in their segments.
    """
    a = [segment for segment in map_a if segment.length]
    b = [segment for segment in map_b if segment.length]
    i = j = used_a = used_b = 0  # used_*: channels of the current segment taken
    while i < len(a) and j < len(b):
        taken = min(a[i].length - used_a, b[j].length - used_b)
        start_a, start_b = a[i].start + used_a, b[j].start + used_b
        yield (
            Segment(a[i].group, start_a, start_a + taken),
            Segment(b[j].group, start_b, start_b + taken),
        )
        used_a, used_b = used_a + taken, used_b + taken
        if used_a == a[i].length:
            i, used_a = i + 1, 0
        if used_b == b[j].length:
            j, used_b = j + 1, 0


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

    def split(self, group, parts):
        """Re-expresses `group` as `parts` tied copies of a new, narrower group.

        Channel `p * (size / parts) + j` of the group becomes channel `j` of
        the new group, whatever `p`: removing it removes it from every copy.
        The new group inherits the protection and the producers.

        Args:
            group: a group id (any member of its union).
            parts: how many copies; must divide the group's size.

        Returns:
            The id of the new group. Segments of the old group still refer
            to the old channel positions; `current` rewrites them.
        """
        root = self.find(group)
        size, remainder = divmod(self.size[root], parts)
        if remainder or size == 0:
            raise AssertionError("split into parts that do not divide the group")
        new = self.new(size, None)
        self.producers[new] = self.producers.pop(root)
        if root in self.reasons:
            self.reasons[new] = self.reasons.pop(root)
        self._parent[root] = new
        return new

    def current(self, channel_map):
        """`channel_map` in terms of the groups as they are now: a segment
        of a group split since (channel `p`, now `p mod size`) becomes
        segments of the new group."""
        if channel_map is None:
            return None
        result, changed = [], False
        for segment in channel_map:
            root = None if segment.group is None else self.find(segment.group)
            if root is not None and segment.stop > self.size[root]:
                result.extend(split_segment(segment, root, self.size[root]))
                changed = True
            else:
                result.append(segment)
        return tuple(result) if changed else channel_map

    def protect(self, group, reason):
        self.reasons.setdefault(self.find(group), []).append(reason)

    def is_protected(self, group):
        return bool(self.reasons.get(self.find(group)))

    def roots(self):
        return [g for g in range(len(self._parent)) if self.find(g) == g]

    def is_full(self, segment):
        return segment.start == 0 and segment.stop == self.size[self.find(segment.group)]

    def whole_group(self, channel_map):
        """The root of the group `channel_map` holds whole, once or as several
        tied copies (a grouped convolution's output); None otherwise."""
        roots = {None if s.group is None else self.find(s.group) for s in channel_map}
        if len(roots) != 1 or None in roots:
            return None
        return roots.pop() if all(self.is_full(s) for s in channel_map) else None
