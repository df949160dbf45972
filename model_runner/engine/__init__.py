"""Scheduling, admission, cancellation, deadlines, stop strings and the model registry."""

from model_runner.engine.engine import Engine
from model_runner.engine.model_entry import LoadUpdate, ModelStatus
from model_runner.engine.registry import ModelRegistry

__all__ = ["Engine", "LoadUpdate", "ModelRegistry", "ModelStatus"]
