"""Reporting: the pruning report, its charts and the TensorBoard summaries."""
