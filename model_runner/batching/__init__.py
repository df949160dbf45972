"""Continuous batching for the transformers backend (engine thread, sampling, streams)."""
