"""A deterministic fake backend for tests and gateway benchmarks; no model, no threads.

Tokens: the prompt splits into whitespace-led word pieces (`"hello world"` -> `"hello"`,
`" world"`), each piece an id from a growing vocabulary. Chat "template": every message renders
as `<|role|>\\n{content}\\n`, then `<|assistant|>\\n` when a generation prompt is asked for.

Reply: `fake_reply_tokens` words from a fixed list, starting at a position derived from the
last user message (and from the caller's seed, if one is given), so the same prompt always gets
the same reply. Words arrive at `fake_tokens_per_second` per stream (0 = as fast as the reader
takes them, still yielding to the loop between tokens).

Paced streams step together, as in a batching engine: one forward pass gives every running
sequence its next token, so their tokens leave in the same instant (and, over a ChatSession, in
one message). The step clock starts when a stream arrives at an idle model; a stream that joins
a running clock gets its first token at the first step at least one interval after it arrived
(its prefill), never sooner than alone. `step_clock="per_stream"` gives every stream its own
timer instead, a harder load for a caller (one wake-up per stream per token) that no batching
engine produces.

Test hooks, read from the start of the last user message (or of a raw prompt):
- `/echo TEXT`   the reply is exactly TEXT, one token per whitespace-led word piece.
- `/chars TEXT`  the reply is exactly TEXT, one token per character.
- `/bytes TEXT`  the reply is exactly TEXT, one token per UTF-8 byte, decoded through
                 `IncrementalDetokenizer` (multi-byte characters span several tokens).
- `/long N`      the reply is N words.
- `/fail N`      N words, then the backend raises (the stream ends with Finished ERROR).
- `/tps R REST`  this request streams at R tokens per second; REST is read for hooks again,
                 e.g. `/tps 5 /long 100`.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from model_runner.backends.base import GenerationStep, ModelInfo, ModelSpec, SequenceParams
from model_runner.backends.detokenizer import IncrementalDetokenizer
from model_runner.domain import Conversation
from model_runner.errors import ModelNotLoaded

EOS_ID = 0
UNK_ID = 1
_BYTE_BASE = 2  # ids 2..257 are raw bytes, for the /bytes hook
_PIECE_BASE = 300
_MAX_PIECES = 1_000_000  # the vocabulary stops growing here; later pieces become UNK
_THREAD_TOKENIZE_CHARS = 16_384  # longer inputs are tokenized off the event loop

_WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dogs",
    "while",
    "a",
    "small",
    "red",
    "hen",
    "counts",
    "golden",
    "seeds",
    "beneath",
    "tall",
    "green",
    "trees",
    "and",
    "seven",
    "silver",
    "fish",
    "swim",
    "past",
    "old",
    "stone",
    "bridges",
    "near",
    "quiet",
    "mills",
    "under",
    "bright",
    "morning",
    "skies",
)
_PIECE_RE = re.compile(r"\s*\S+|\s+")
_USER_TAG = "<|user|>\n"
_ASSISTANT_TAG = "\n<|assistant|>\n"


@dataclass(frozen=True, slots=True)
class FakeBackendConfig:
    tokens_per_second: float = 0.0
    reply_tokens: int = 64
    context_tokens: int = 4096
    max_output_tokens: int = 4096
    load_seconds: float = 0.0
    step_clock: Literal["shared", "per_stream"] = "shared"


class _StepClock:
    """The step times shared by the paced streams of one pace: epoch + k * interval."""

    __slots__ = ("epoch", "interval", "streams")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.epoch = 0.0
        self.streams = 0

    def join(self, now: float) -> float:
        """Registers a stream arriving at `now`; returns the time its token 0 is due, minus
        one interval (so token i is due at the returned time + (i + 1) * interval)."""
        if self.streams == 0:
            self.epoch = now
        self.streams += 1
        steps = math.ceil((now - self.epoch) / self.interval - 1e-9)
        return self.epoch + steps * self.interval

    def leave(self) -> int:
        """Unregisters a stream; returns how many are left."""
        self.streams -= 1
        return self.streams


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one request will produce: a piece function, its natural length, pacing, failure."""

    piece: Callable[[int], tuple[int, str]]
    length: int
    tokens_per_second: float
    fail_after: int | None = None
    byte_text: bytes | None = None


class FakeBackend:
    """Implements `model_runner.backends.base.Backend` without a model."""

    def __init__(self, config: FakeBackendConfig) -> None:
        self._config = config
        self._pieces: list[str] = []
        self._ids: dict[str, int] = {}
        self._vocab_lock = threading.Lock()
        self._loaded = False
        self._clocks: dict[float, _StepClock] = {}
        for word in _WORDS:
            self._piece_id(word)
            self._piece_id(" " + word)

    @property
    def name(self) -> str:
        return "fake"

    async def load(self, spec: ModelSpec) -> ModelInfo:
        if self._config.load_seconds:
            await asyncio.sleep(self._config.load_seconds)
        self._loaded = True
        return ModelInfo(
            id=spec.id,
            backend=self.name,
            source=spec.source or "builtin:fake",
            max_context_tokens=self._config.context_tokens,
            max_output_tokens=self._config.max_output_tokens,
            has_chat_template=True,
            dtype="none",
        )

    async def unload(self) -> None:
        self._loaded = False

    async def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if len(text) > _THREAD_TOKENIZE_CHARS:
            return await asyncio.to_thread(self._encode, text)
        return self._encode(text)

    async def tokenize_conversation(self, conversation: Conversation) -> list[int]:
        return await self.tokenize(render_conversation(conversation))

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        return [self._decode([token_id]) for token_id in ids]

    def generate(self, params: SequenceParams) -> AsyncIterator[GenerationStep]:
        if not self._loaded:
            raise ModelNotLoaded("the fake model is not loaded")
        return self._generate(params)

    async def _generate(self, params: SequenceParams) -> AsyncIterator[GenerationStep]:
        plan = self._plan(_user_text(self._decode(params.prompt_token_ids)), params)
        loop = asyncio.get_running_loop()
        interval = 1.0 / plan.tokens_per_second if plan.tokens_per_second > 0 else 0.0
        start = loop.time()
        clock = None
        if interval and self._config.step_clock == "shared":
            clock = self._clocks.get(interval)
            if clock is None:
                clock = self._clocks[interval] = _StepClock(interval)
            start = clock.join(start)
        length = plan.length
        count = min(params.max_tokens, length) if not params.ignore_eos else params.max_tokens
        detok = IncrementalDetokenizer(self._decode) if plan.byte_text is not None else None
        produced = 0
        try:
            while produced < count:
                if interval:
                    # Pace against the start, not the previous token, so lag does not build up.
                    delay = start + (produced + 1) * interval - loop.time()
                    await asyncio.sleep(delay if delay > 0 else 0)
                    # A reader that fell behind gets every due token in one step, as a batching
                    # engine's per-sequence queue would give it: fewer, larger messages under load.
                    due = int((loop.time() - start) / interval)
                    n = min(max(1, due - produced), count - produced)
                else:
                    await asyncio.sleep(0)
                    n = 1
                if plan.fail_after is not None:
                    n = min(n, plan.fail_after - produced)
                    if n <= 0:
                        raise RuntimeError(
                            f"fake backend failure after {produced} tokens (/fail hook)"
                        )
                ids: list[int] = []
                texts: list[str] = []
                for i in range(produced, produced + n):
                    token_id, text = plan.piece(i)
                    if token_id in params.stop_token_ids:
                        yield GenerationStep(ids, self._text(detok, ids, texts), True)
                        return
                    ids.append(token_id)
                    texts.append(text)
                produced += n
                eos = produced == length and not params.ignore_eos
                yield GenerationStep(ids, self._text(detok, ids, texts), eos)
        finally:
            if clock is not None and clock.leave() == 0:
                self._clocks.pop(interval, None)

    @staticmethod
    def _text(detok: IncrementalDetokenizer | None, ids: list[int], texts: list[str]) -> str:
        if detok is not None:
            return detok.push(ids) if ids else ""
        return texts[0] if len(texts) == 1 else "".join(texts)

    def _plan(self, text: str, params: SequenceParams) -> _Plan:
        rate = self._config.tokens_per_second
        while text.startswith("/tps "):
            head, _, text = text[5:].partition(" ")
            rate = float(head)
        seed = params.sampling.seed
        offset = zlib.crc32(text.encode()) ^ (seed if seed is not None else 0)
        words = self._word_piece
        command, _, rest = text.partition(" ")
        if command == "/echo":
            pieces = [(self._piece_id(p), p) for p in _PIECE_RE.findall(rest)]
            return _Plan(_listed(pieces, words, offset), len(pieces), rate)
        if command == "/chars":
            pieces = [(self._piece_id(c), c) for c in rest]
            return _Plan(_listed(pieces, words, offset), len(pieces), rate)
        if command == "/bytes":
            data = rest.encode()
            pieces = [(_BYTE_BASE + b, "") for b in data]
            return _Plan(_listed(pieces, words, offset), len(pieces), rate, byte_text=data)
        if command in ("/long", "/fail") and rest.strip().isdigit():
            n = int(rest.strip())
            if command == "/long":
                return _Plan(lambda i: words(offset, i), n, rate)
            return _Plan(lambda i: words(offset, i), n + 1, rate, fail_after=n)
        return _Plan(lambda i: words(offset, i), self._config.reply_tokens, rate)

    def _word_piece(self, offset: int, i: int) -> tuple[int, str]:
        word = _WORDS[(offset + i * 7) % len(_WORDS)]
        piece = word if i == 0 else " " + word
        return self._ids[piece], piece

    def _piece_id(self, piece: str) -> int:
        token_id = self._ids.get(piece)
        if token_id is not None:
            return token_id
        with self._vocab_lock:
            token_id = self._ids.get(piece)
            if token_id is None:
                if len(self._pieces) >= _MAX_PIECES:
                    return UNK_ID
                token_id = _PIECE_BASE + len(self._pieces)
                self._pieces.append(piece)
                self._ids[piece] = token_id
        return token_id

    def _encode(self, text: str) -> list[int]:
        return [self._piece_id(piece) for piece in _PIECE_RE.findall(text)]

    def _decode(self, ids: Sequence[int]) -> str:
        out = bytearray()
        pieces = self._pieces
        for token_id in ids:
            if token_id >= _PIECE_BASE and token_id - _PIECE_BASE < len(pieces):
                out += pieces[token_id - _PIECE_BASE].encode()
            elif _BYTE_BASE <= token_id < _BYTE_BASE + 256:
                out.append(token_id - _BYTE_BASE)
        return out.decode("utf-8", errors="replace")


def render_conversation(conversation: Conversation) -> str:
    """The fake chat template: role-tagged messages, then the assistant tag."""
    parts = [f"<|{m.role}|>\n{m.content}\n" for m in conversation.messages]
    if conversation.add_generation_prompt:
        parts.append("<|assistant|>\n")
    return "".join(parts)


def _user_text(prompt: str) -> str:
    """The last user message of a rendered conversation, or the whole raw prompt."""
    at = prompt.rfind(_USER_TAG)
    if at < 0:
        return prompt
    text = prompt[at + len(_USER_TAG) :]
    if text.endswith(_ASSISTANT_TAG):
        text = text[: -len(_ASSISTANT_TAG)]
    return text.removesuffix("\n")


def _listed(
    pieces: list[tuple[int, str]],
    words: Callable[[int, int], tuple[int, str]],
    offset: int,
) -> Callable[[int], tuple[int, str]]:
    """Pieces from a list, continuing with words past its end (for ignore_eos)."""

    def piece(i: int) -> tuple[int, str]:
        return pieces[i] if i < len(pieces) else words(offset, i)

    return piece
