"""Test-time evaluation: the metric, per-episode scoring, the encode-once path, the feature cache."""
