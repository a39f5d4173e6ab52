"""Pruning under a budget: `PruningCallback`, the closing, BN recalibration, baseline masks."""
