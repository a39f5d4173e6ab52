"""What `analyze` returns: gated groups, keep vectors and kept flags."""

import numpy as np
import pytest
from helpers import linked_two_conv_net

from keras_relaxprune.graph.channel_graph import Barrier

pytestmark = pytest.mark.backend_agnostic


def test_keep_vectors_follow_the_gates_masks_and_protected_groups_stay_whole():
    _, _, _, graph = linked_two_conv_net()
    roots = graph.gated_groups()
    assert len(roots) == 2 and all(graph.gate_of(root) is not None for root in roots)
    mask = np.array([1.0] * 5 + [0.0] * 11, "float32")
    graph.gates[roots[0]].keep_mask.assign(mask)
    keep = graph.keep_vectors()
    np.testing.assert_array_equal(keep[roots[0]], mask)
    np.testing.assert_array_equal(keep[roots[1]], np.ones(16))
    for root in set(graph.groups.roots()) - set(roots):
        assert keep[root].min() == 1.0  # ungated or protected: every channel counts


def test_kept_flags_of_a_tensor_read_its_group_slice():
    _, _, _, graph = linked_two_conv_net()
    root = graph.gated_groups()[0]
    graph.gates[root].keep_mask.assign(np.array([0.0, 1.0] * 8, "float32"))
    keep = graph.keep_vectors()
    gated_keys = graph.gated_tensors()
    key = next(k for k in gated_keys if graph.groups.find(graph.maps[k][0].group) == root)
    np.testing.assert_array_equal(graph.kept_flags(graph.maps[key], keep), [0.0, 1.0] * 8)


def test_a_barrier_names_its_layer_class_and_reason():
    text = str(Barrier("lambda_1", "Lambda", "its output shape is unknown"))
    assert text == "'lambda_1' (Lambda): its output shape is unknown"
