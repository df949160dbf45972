"""Incremental detokenization that never emits half a UTF-8 character.

Byte-level tokenizers split multi-byte characters across tokens; decoding a prefix then yields
U+FFFD. We keep two offsets into the generated ids (the TGI / vLLM scheme): `prefix_offset`
marks a few tokens of context decoded again so that tokenizers which merge or strip spaces
decode consistently, `read_offset` marks what has been emitted. Text ending in U+FFFD is held
back until the next token completes the character.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Decodes a list of ids to text, e.g. `lambda ids: tokenizer.decode(ids, skip_special_tokens=True)`.
Decode = Callable[[Sequence[int]], str]

_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns ids one step at a time into UTF-8-complete text; one instance per sequence."""

    __slots__ = ("_decode", "_ids", "_prefix_offset", "_read_offset")

    def __init__(self, decode: Decode, *, context_ids: Sequence[int] = ()) -> None:
        # `context_ids` (e.g. the last few prompt tokens) let the first generated tokens decode
        # with the leading-space behaviour they have mid-text; they are never emitted.
        self._decode = decode
        self._ids: list[int] = list(context_ids)
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def push(self, ids: Sequence[int]) -> str:
        """Adds new ids; returns the newly complete text ("" while a character is partial)."""
        self._ids.extend(ids)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(_REPLACEMENT):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return new_text[len(prefix_text) :]
        return ""

    def flush(self) -> str:
        """Emits whatever is held back (with U+FFFD for a truncated character) at the end."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :] if len(new_text) > len(prefix_text) else ""
