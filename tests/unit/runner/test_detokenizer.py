from __future__ import annotations

from collections.abc import Sequence

from model_runner.backends.detokenizer import IncrementalDetokenizer


def byte_decode(ids: Sequence[int]) -> str:
    """A byte-level "tokenizer": every id is one byte."""
    return bytes(ids).decode("utf-8", errors="replace")


def test_multibyte_characters_split_across_tokens_are_held_until_complete() -> None:
    detok = IncrementalDetokenizer(byte_decode)
    pieces = [detok.push([b]) for b in "a€b".encode()]
    # "€" is three bytes: nothing comes out until the third one arrives.
    assert pieces == ["a", "", "", "€", "b"]


def test_a_step_ending_mid_character_is_held_whole_until_completed() -> None:
    detok = IncrementalDetokenizer(byte_decode)
    data = "日本語".encode()
    assert detok.push(list(data[:4])) == ""  # "日" + one byte of "本"
    assert detok.push(list(data[4:])) == "日本語"


def test_flush_emits_a_truncated_character_as_replacement() -> None:
    detok = IncrementalDetokenizer(byte_decode)
    assert detok.push([*b"ok", "é".encode()[0]]) == ""
    assert detok.flush() == "ok\ufffd"


def test_context_ids_are_not_emitted() -> None:
    detok = IncrementalDetokenizer(byte_decode, context_ids=list(b"prompt "))
    assert detok.push(list(b"reply")) == "reply"


def test_concatenation_matches_full_decode() -> None:
    text = "Grüße, 世界! 🎉 done"
    detok = IncrementalDetokenizer(byte_decode)
    out = "".join(detok.push([b]) for b in text.encode()) + detok.flush()
    assert out == text
