"""Shared test configuration: the repository root on sys.path for `tests.support`."""

import pytest

from tests.support.tiny_model import TinyModel


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The tiny Llama model (transformers directory + GGUF), built once per test session.

    Needs torch, transformers, tokenizers and gguf; tests that use it skip nothing, so a
    missing torch fails loudly (run `make setup`).
    """
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
