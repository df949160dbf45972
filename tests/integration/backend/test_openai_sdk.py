"""The official `openai` package against a real backend's `/v1` and a real runner process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from tests.integration.backend.conftest import rows
from tests.support.accounts import signed_in
from tests.support.backend_process import BackendProcess, running_backend
from tests.support.runner_process import RunnerProcess, running_runner

_LIMIT_PER_MINUTE = 8


@pytest.fixture(scope="module")
def runner() -> Iterator[RunnerProcess]:
    with running_runner("--backend", "fake", "--fake-tokens-per-second", "400") as process:
        yield process


@pytest.fixture(scope="module")
def backend(
    runner: RunnerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackendProcess]:
    env = {"WEBUI_CHAT_MESSAGES_PER_MINUTE": str(_LIMIT_PER_MINUTE)}
    data_dir = tmp_path_factory.mktemp("openai") / "data"
    with running_backend(runner_address=runner.address, data_dir=data_dir, env=env) as process:
        yield process


@pytest.fixture
async def client(backend: BackendProcess) -> AsyncIterator[AsyncOpenAI]:
    key = await (await signed_in(backend)).create_api_key("openai-sdk")
    assert key.startswith("sk-")
    # No retries: a 429 or 5xx must surface as the SDK's exception, not be retried away.
    async with AsyncOpenAI(
        base_url=f"{backend.base_url}/v1", api_key=key, max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def _usage_rows(backend: BackendProcess) -> list[tuple[str, int, int, int]]:
    return [
        (r["model"], r["requests"], r["prompt_tokens"], r["completion_tokens"])
        for r in rows(
            backend,
            "SELECT model, requests, prompt_tokens, completion_tokens FROM usage_daily",
        )
    ]


async def test_models_streaming_non_streaming_usage_and_errors(
    backend: BackendProcess, client: AsyncOpenAI
) -> None:
    models = await client.models.list()
    assert "fake" in [m.id for m in models.data]

    completion = await client.chat.completions.create(
        model="fake",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "/echo one two three"},
        ],
        temperature=0.2,
        top_p=0.9,
        seed=7,
    )
    assert completion.choices[0].message.content == "one two three"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    # The fake backend has no prefix cache; the field is there in OpenAI's shape.
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0

    stream = await client.chat.completions.create(
        model="fake",
        messages=[{"role": "user", "content": "/echo four five six seven"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=3,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "four five six"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 3

    plain = await client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "/echo a b"}], stream=True
    )
    plain_chunks = [chunk async for chunk in plain]
    assert all(c.usage is None for c in plain_chunks)
    assert "".join(c.choices[0].delta.content or "" for c in plain_chunks) == "a b"

    # Usage is recorded per user and day, like chat turns: three requests so far.
    recorded = _usage_rows(backend)
    assert [(m, n) for m, n, _, _ in recorded] == [("fake", 3)]
    assert recorded[0][3] == 3 + 3 + 2

    with pytest.raises(openai.BadRequestError) as bad_n:
        await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert bad_n.value.code == "invalid_n"
    assert bad_n.value.type == "invalid_request_error"

    with pytest.raises(openai.BadRequestError) as bad_temperature:
        await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "hi"}], temperature=7
        )
    assert bad_temperature.value.param == "temperature"

    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(
            model="gpt-404", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.code == "model_not_found"

    async with AsyncOpenAI(
        base_url=f"{backend.base_url}/v1", api_key="sk-not-a-key", max_retries=0
    ) as stranger:
        with pytest.raises(openai.AuthenticationError) as refused:
            await stranger.models.list()
    assert refused.value.type == "authentication_error"


async def test_a_disabled_model_is_neither_listed_nor_served(
    backend: BackendProcess, client: AsyncOpenAI
) -> None:
    account = await signed_in(backend)
    async with httpx.AsyncClient(base_url=backend.base_url, headers=account.headers) as admin:
        answer = await admin.patch("/api/admin/models/fake", json={"enabled": False})
        assert answer.status_code == 200, answer.text
        try:
            assert "fake" not in [m.id for m in (await client.models.list()).data]
            with pytest.raises(openai.NotFoundError) as refused:
                await client.chat.completions.create(
                    model="fake", messages=[{"role": "user", "content": "hi"}]
                )
            assert refused.value.code == "model_not_found"
        finally:
            await admin.patch("/api/admin/models/fake", json={"enabled": True})
    assert "fake" in [m.id for m in (await client.models.list()).data]


async def test_v1_shares_the_per_user_rate_limit(client: AsyncOpenAI) -> None:
    # The module's backend allows _LIMIT_PER_MINUTE requests per user and minute (the same
    # limit as chat messages); the first test used some, this one runs into the limit.
    async def ask() -> None:
        await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "/echo ok"}], max_tokens=2
        )

    for _ in range(_LIMIT_PER_MINUTE):
        try:
            await ask()
        except openai.RateLimitError:
            break
    with pytest.raises(openai.RateLimitError) as limited:
        await ask()
    assert limited.value.code == "rate_limited"
    assert limited.value.type == "rate_limit_error"
    assert limited.value.response.headers.get("retry-after")
