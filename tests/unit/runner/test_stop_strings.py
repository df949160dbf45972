from __future__ import annotations

import pytest

from model_runner.engine.stop_strings import StopStringMatcher


def feed(matcher: StopStringMatcher, pieces: list[str]) -> tuple[list[str], str | None]:
    out: list[str] = []
    for piece in pieces:
        text, matched = matcher.push(piece)
        out.append(text)
        if matched is not None:
            return out, matched
    out.append(matcher.flush())
    return out, None


def test_match_inside_one_piece_truncates_before_the_stop() -> None:
    out, matched = feed(StopStringMatcher(["END"]), ["hello END world"])
    assert "".join(out) == "hello "
    assert matched == "END"


def test_match_across_token_boundaries() -> None:
    out, matched = feed(StopStringMatcher(["<|end|>"]), ["hi <", "|e", "nd", "|> after"])
    assert "".join(out) == "hi "
    assert matched == "<|end|>"


def test_partial_stop_text_is_held_back_and_never_leaks() -> None:
    matcher = StopStringMatcher(["STOP"])
    assert matcher.push("abc ST") == ("abc ", None)  # "ST" could start "STOP"
    assert matcher.push("O") == ("", None)
    assert matcher.push("P!") == ("", "STOP")


def test_held_back_text_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    matcher = StopStringMatcher(["STOP"])
    assert matcher.push("ST") == ("", None)
    assert matcher.push("ART") == ("START", None)


def test_flush_emits_a_held_prefix_at_the_end_of_generation() -> None:
    out, matched = feed(StopStringMatcher(["STOP"]), ["the end ST"])
    assert matched is None
    assert "".join(out) == "the end ST"


def test_earliest_of_several_stops_wins() -> None:
    out, matched = feed(StopStringMatcher(["world", "lo w"]), ["hel", "lo world"])
    assert "".join(out) == "hel"
    assert matched == "lo w"


def test_text_without_stop_characters_passes_through_immediately() -> None:
    matcher = StopStringMatcher(["\n\nUser:"])
    assert matcher.push("plain words") == ("plain words", None)


def test_multibyte_stop_strings() -> None:
    out, matched = feed(StopStringMatcher(["→ß"]), ["a→", "ßb"])
    assert "".join(out) == "a"
    assert matched == "→ß"


def test_empty_stop_string_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        StopStringMatcher([""])
