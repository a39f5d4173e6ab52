"""Removal: `strip_pruning` rebuilds the gated model without its pruned channels."""
