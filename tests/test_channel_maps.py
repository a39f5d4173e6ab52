"""Channel maps and the union-find of channel groups."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_relaxprune.graph.channel_maps import (
    ChannelGroups,
    Segment,
    aligned_pieces,
    concat_maps,
    fixed_map,
    map_length,
    slice_map,
    tiles_of,
)

pytestmark = pytest.mark.backend_agnostic


def test_slice_and_concat_maps_keep_group_offsets():
    groups = ChannelGroups()
    a, b = groups.new(4, "a"), groups.new(3, "b")
    joined = concat_maps([(Segment(a, 0, 4),), (Segment(b, 0, 3),)])
    assert map_length(joined) == 7
    assert slice_map(joined, 2, 6) == (Segment(a, 2, 4), Segment(b, 0, 2))
    assert slice_map(joined, 4, 7) == (Segment(b, 0, 3),)
    assert fixed_map(0) == () and fixed_map(2) == (Segment(None, 0, 2),)


def test_aligned_pieces_cut_both_maps_at_every_boundary():
    left = (Segment(0, 0, 2), Segment(1, 0, 3))
    right = (Segment(2, 0, 1), Segment(3, 0, 4))
    pairs = list(aligned_pieces(left, right))
    assert [(p.length, q.length) for p, q in pairs] == [(1, 1), (1, 1), (3, 3)]
    assert pairs[1] == (Segment(0, 1, 2), Segment(3, 0, 1))


def _segments(lengths, first_group):
    """A map of one segment per length, each of its own group, at offset 1."""
    return tuple(Segment(first_group + i, 1, 1 + n) for i, n in enumerate(lengths))


def _sliced_pieces(map_a, map_b):
    """aligned_pieces by slicing both maps at every boundary (quadratic)."""
    cuts = set()
    for channel_map in (map_a, map_b):
        offset = 0
        for segment in channel_map:
            offset += segment.length
            cuts.add(offset)
    cuts = sorted(cuts | {0})
    return [
        (slice_map(map_a, lo, hi)[0], slice_map(map_b, lo, hi)[0]) for lo, hi in zip(cuts, cuts[1:])
    ]


@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=12),
    st.lists(st.integers(1, 5), min_size=1, max_size=12),
)
def test_aligned_pieces_and_tiles_match_slicing_at_every_boundary(lengths, other):
    """The one-pass walks give what slicing the maps at each boundary gives
    (zero-width segments included: they cover no channel)."""
    total = sum(lengths)
    other = other + [total]  # cut `other` down to the same total width
    widths, left = [], total
    for n in other:
        widths.append(min(n, left))
        left -= widths[-1]
    map_a, map_b = _segments(lengths, 0), _segments([w for w in widths if w], 100)
    assert list(aligned_pieces(map_a, map_b)) == _sliced_pieces(map_a, map_b)
    for count in (1, 2, 3, total or 1):
        width = total // count
        expected = [slice_map(map_a, t * width, (t + 1) * width) for t in range(count)]
        assert tiles_of(map_a, count) == expected


def test_union_merges_reasons_and_producers_and_refuses_unequal_sizes():
    groups = ChannelGroups()
    a, b, c = groups.new(4, "a"), groups.new(4, "b"), groups.new(2, "c")
    groups.protect(b, "output")
    root = groups.union(a, b)
    assert groups.find(a) == groups.find(b) == root
    assert groups.is_protected(a) and groups.reasons[root] == ["output"]
    assert sorted(groups.producers[root]) == ["a", "b"]
    assert sorted(groups.roots()) == sorted([root, c])
    with pytest.raises(AssertionError):
        groups.union(a, c)
