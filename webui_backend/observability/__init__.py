"""Metrics, logs and traces: how operators see the backend."""
