"""Shared test configuration: the repository root on sys.path for `tests.support`."""

from collections.abc import Iterator

import pytest

from tests.support.databases import backend_databases
from tests.support.tiny_model import TinyModel


@pytest.fixture(scope="session", autouse=True)
def _backend_databases() -> Iterator[None]:
    """PostgreSQL mode (WEBUI_TEST_DATABASE_URL): fresh databases for this session, dropped
    at its end (tests/support/databases.py). Nothing to do for SQLite."""
    with backend_databases():
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The tiny Llama model (transformers directory + GGUF), built once per test session.

    Needs torch, transformers, tokenizers and gguf; tests that use it skip nothing, so a
    missing torch fails loudly (run `make setup`).
    """
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
