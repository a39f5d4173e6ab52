"""What a model costs: one rule per node, counted dense, hard (as
stripped), incrementally and relaxed."""
