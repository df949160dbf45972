"""Request ids: what a client may send, and what replaces anything else."""

from __future__ import annotations

import pytest

from model_runner.telemetry.request_id import (
    MAX_REQUEST_ID_CHARS,
    bind_request_id,
    current_request_id,
    new_request_id,
    reset_request_id,
    valid_request_id,
)


@pytest.mark.parametrize(
    "value",
    ["abc", "4bf92f3577b34da6a3ce929d0e0e4736", "req-1_2.3:4", "A" * MAX_REQUEST_ID_CHARS],
)
def test_short_safe_ids_are_kept(value: str) -> None:
    assert valid_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "A" * (MAX_REQUEST_ID_CHARS + 1),
        "has space",
        "line\nbreak",
        'quote"',
        "-leading-dash",
        "ünïcode",
        "a/b",
        "<script>",
    ],
)
def test_unsafe_or_long_ids_are_refused(value: str | None) -> None:
    assert valid_request_id(value) is None


def test_new_ids_are_valid_and_distinct() -> None:
    first, second = new_request_id(), new_request_id()
    assert valid_request_id(first) == first
    assert first != second


def test_binding_is_undone_by_reset() -> None:
    assert current_request_id() is None
    token = bind_request_id("outer")
    assert current_request_id() == "outer"
    reset_request_id(token)
    assert current_request_id() is None
