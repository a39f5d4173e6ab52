"""Export: `.keras`, SavedModel and TFLite files, and TFLite latency measurement."""
