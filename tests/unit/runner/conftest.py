from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from model_runner.backends.fake import FakeBackend, FakeBackendConfig
from model_runner.engine import Engine
from model_runner.settings import RunnerSettings

from .helpers import EngineFactory


@pytest.fixture
async def make_engine() -> AsyncIterator[EngineFactory]:
    """Builds started engines over the fake backend; settings fields as keyword arguments."""
    engines: list[Engine] = []

    async def factory(*, start: bool = True, **fields: Any) -> Engine:
        settings = RunnerSettings(**fields)
        backend = FakeBackend(
            FakeBackendConfig(
                tokens_per_second=settings.fake_tokens_per_second,
                reply_tokens=settings.fake_reply_tokens,
                context_tokens=settings.fake_context_tokens,
                max_output_tokens=settings.max_tokens_cap,
            )
        )
        engine = Engine(backend, settings)
        if start:
            await engine.start()
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.close()
