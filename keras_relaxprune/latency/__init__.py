"""Latency as a budget: targets, per-layer tables and estimates."""
