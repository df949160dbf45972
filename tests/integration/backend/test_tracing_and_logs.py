"""One chat turn followed across both processes: the backend's spans and the runner's span in
one trace (exported over OTLP/HTTP to an in-test receiver), and the client's request id in both
processes' JSON log lines. Message text appears in neither."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.integration.backend.turn_client import sse_events, ws_events_until_finished
from tests.support.backend_process import BackendProcess, running_backend
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.support.processes import ServiceProcess
from tests.support.runner_process import RunnerProcess, running_runner

SECRET = "a private question about tracing"
# The backend streams every turn over its ChatSession call; the runner spans each request.
GENERATE_SPAN = "model_runner.v1.Inference/ChatSession"
SERVER_KIND = 2  # SPAN_KIND_SERVER in OTLP


@dataclass
class TracedStack:
    receiver: OtlpReceiver
    runner: RunnerProcess
    backend: BackendProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedStack]:
    with otlp_receiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms instead of 5 s
        }
        with (
            running_runner(
                "--fake-tokens-per-second",
                "400",
                "--fake-reply-tokens",
                "24",
                env={**env, "RUNNER_LOG_FORMAT": "json"},
            ) as runner,
            running_backend(
                runner_address=runner.address,
                data_dir=tmp_path_factory.mktemp("traced") / "data",
                env={**env, "WEBUI_LOG_FORMAT": "json"},
            ) as backend,
        ):
            yield TracedStack(receiver, runner, backend)


def _json_lines(process: ServiceProcess) -> list[dict[str, Any]]:
    """The process's JSON log lines (the runner also prints plain announce lines)."""
    lines = []
    for line in list(process.output):
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _wait_for_line(
    process: ServiceProcess, matches: Callable[[dict[str, Any]], bool], timeout_s: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        for line in _json_lines(process):
            if matches(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching log line within {timeout_s} s")
        time.sleep(0.02)


def _assert_runner_span_continues(stack: TracedStack, turn: ReceivedSpan) -> ReceivedSpan:
    generate = stack.receiver.wait_for(
        lambda s: (
            s.name == GENERATE_SPAN
            and s.attributes.get("runner.request_id") == turn.attributes["chat.turn.id"]
        )
    )
    assert generate.service == "model-runner"
    assert generate.kind == SERVER_KIND
    assert generate.trace_id == turn.trace_id
    assert generate.parent_span_id == turn.span_id
    assert generate.attributes["gen_ai.usage.output_tokens"] == 5
    assert generate.attributes["gen_ai.response.finish_reasons"] == ("length",)
    for phase in ("queue", "prefill", "decode"):

        def is_phase(span: ReceivedSpan, name: str = phase) -> bool:
            return span.name == name and span.parent_span_id == generate.span_id

        assert stack.receiver.wait_for(is_phase).trace_id == turn.trace_id
    return generate


def _assert_no_message_text(stack: TracedStack) -> None:
    for span in stack.receiver.spans:
        assert SECRET not in repr(span.attributes)
    for process in (stack.backend.service, stack.runner):
        assert not any(SECRET in line for line in process.output)


async def test_an_sse_turn_is_one_trace_and_one_request_id(stack: TracedStack) -> None:
    request_id = "sse-turn-0001"
    headers = {**stack.backend.auth_headers, "X-Request-ID": request_id}
    async with (
        httpx.AsyncClient(base_url=stack.backend.base_url, headers=headers, timeout=30) as client,
        client.stream(
            "POST", "/api/turns", json={"content": SECRET, "params": {"max_tokens": 5}}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["x-request-id"] == request_id
        events = [event async for _, event in sse_events(response)]
    assert events[-1]["type"] == "turn.finished"
    turn_id = events[0]["turn_id"]

    turn = stack.receiver.wait_for(
        lambda s: s.name == "chat.turn" and s.attributes.get("chat.turn.id") == turn_id
    )
    http = stack.receiver.wait_for(lambda s: s.span_id == turn.parent_span_id)
    assert turn.service == http.service == "webui-backend"
    assert http.name == "POST /api/turns"
    assert http.attributes["request.id"] == request_id
    assert turn.trace_id == http.trace_id
    assert turn.attributes["chat.id"] == events[0]["chat_id"]
    assert turn.attributes["request.id"] == request_id
    assert turn.attributes["runner.address"] == stack.runner.address
    assert turn.attributes["gen_ai.usage.output_tokens"] == 5
    assert turn.attributes["gen_ai.response.finish_reasons"] == ("length",)
    generate = _assert_runner_span_continues(stack, turn)
    assert generate.attributes["request.id"] == request_id

    runner_line = _wait_for_line(
        stack.runner, lambda line: line["request_id"] == request_id and "finished" in line["msg"]
    )
    assert runner_line["logger"] == "model_runner.generation_telemetry"
    assert runner_line["trace_id"] == turn.trace_id
    assert runner_line["span_id"] == generate.span_id
    backend_lines = [
        line for line in _json_lines(stack.backend.service) if line["request_id"] == request_id
    ]
    assert any(line["logger"] == "uvicorn.access" for line in backend_lines)
    assert all(line["trace_id"] == turn.trace_id for line in backend_lines)
    for line in [runner_line, *backend_lines]:
        assert {"ts", "level", "logger", "msg", "request_id"} <= set(line)
    _assert_no_message_text(stack)


async def test_a_websocket_turn_hangs_off_its_frame_span(stack: TracedStack) -> None:
    request_id = "ws-conn-0001"
    headers = {**stack.backend.auth_headers, "X-Request-ID": request_id}
    async with connect(stack.backend.ws_url, additional_headers=headers) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == request_id
        frame = {"type": "chat.send", "ref": "r1", "content": SECRET, "params": {"max_tokens": 5}}
        await ws.send(json.dumps(frame))
        events = await ws_events_until_finished(ws)
    assert events[-1]["type"] == "turn.finished"
    turn_id = events[0]["turn_id"]

    turn = stack.receiver.wait_for(
        lambda s: s.name == "chat.turn" and s.attributes.get("chat.turn.id") == turn_id
    )
    frame_span = stack.receiver.wait_for(lambda s: s.span_id == turn.parent_span_id)
    assert frame_span.name == "ws chat.send"
    assert frame_span.trace_id == turn.trace_id
    connection = stack.receiver.wait_for(lambda s: s.span_id == frame_span.parent_span_id)
    assert connection.attributes["request.id"] == request_id
    assert turn.attributes["request.id"] == request_id
    _assert_runner_span_continues(stack, turn)

    _wait_for_line(
        stack.runner, lambda line: line["request_id"] == request_id and "finished" in line["msg"]
    )
    _assert_no_message_text(stack)
