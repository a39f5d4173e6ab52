"""Channel maps and the union-find of channel groups."""

import pytest

from keras_relaxprune.graph.channel_maps import (
    ChannelGroups,
    Segment,
    aligned_pieces,
    concat_maps,
    fixed_map,
    map_length,
    slice_map,
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
