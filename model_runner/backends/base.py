"""The one interface every inference backend implements (fake, transformers, llama.cpp, openai).

Split of duties. The engine owns everything that is the same for all backends: validation,
admission, the request registry, abort by id, deadlines, stop strings (matched on decoded text
with hold-back), max_tokens, usage and timings. A backend owns the model: loading and
unloading it, describing it, tokenizing text and conversations (the chat template), and
generating one sequence as an async iterator of `GenerationStep`s.

Rules a backend must keep:
- Never block the event loop: model steps, templating and tokenizing of large inputs run in a
  thread or executor (or another process); the async methods only await them.
- `generate()` returns an async iterator; closing it (`aclose()`) or cancelling the task that
  awaits it must free the sequence (a batching backend drops it from the batch at its next step)
  and must not swallow `asyncio.CancelledError`.
- Each step's `text` is UTF-8-complete (use `IncrementalDetokenizer`); the engine never sees
  half a character.
- Stop at `params.max_tokens`; end the iterator (or set `eos`) when the model ends the sequence
  or emits one of `params.stop_token_ids`, unless `params.ignore_eos`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from model_runner.domain import Conversation, PromptInput, SamplingParams

# Called by a backend during `load` to report a step: (status, completed_bytes, total_bytes).
LoadProgressCallback = Callable[[str, int, int], None]


def _no_progress(status: str, completed_bytes: int = 0, total_bytes: int = 0) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What to load: our id for the model, where it comes from, backend-specific options.

    `on_progress` is how a backend reports load steps (LoadModel streams them); calling it is
    optional and cheap, and it must be called on the event loop's thread.
    """

    id: str
    source: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    on_progress: LoadProgressCallback = field(default=_no_progress, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A loaded model as the backend describes it."""

    id: str
    backend: str
    source: str
    max_context_tokens: int
    max_output_tokens: int
    has_chat_template: bool = True
    dtype: str = ""
    quantization: str = ""
    memory_bytes: int = 0
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SequenceParams:
    """Everything a backend needs to generate one sequence; limits are already resolved."""

    prompt_token_ids: Sequence[int]
    max_tokens: int
    sampling: SamplingParams
    seed: int
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    # The prompt as the caller sent it (conversation, text or ids), for backends that forward
    # it rather than token ids (openai); None when not known. `prompt_token_ids` stays the
    # prompt for every backend that runs a model itself.
    prompt: PromptInput | None = None


class GenerationStep(NamedTuple):
    """New output of one decode step (a NamedTuple because one is made per token).

    `token_ids` are the tokens sampled since the previous step (usually one; more when the
    backend merges steps for a slow reader). `text` is what they decode to, UTF-8-complete
    (possibly empty while a multi-byte character is incomplete). `eos` says the sequence ended
    naturally after these tokens; the EOS token itself is neither in `token_ids` nor counted.
    `cached_prompt_tokens`, on a sequence's first step only: how many prompt tokens a backend
    with a prefix cache found there instead of computing them (reported in the usage).
    """

    token_ids: Sequence[int]
    text: str
    eos: bool = False
    cached_prompt_tokens: int = 0


class Backend(Protocol):
    """One inference library behind the engine. See the module docstring for the rules."""

    @property
    def name(self) -> str:
        """Backend name as shown in ModelInfo.backend: "fake", "transformers", ..."""
        ...

    async def load(self, spec: ModelSpec) -> ModelInfo:
        """Loads (and warms up) the model. Raises `ModelNotFound` if the source is missing."""
        ...

    async def unload(self) -> None:
        """Frees the model. Idempotent."""
        ...

    async def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Tokenizes plain text as a prompt would be."""
        ...

    async def tokenize_conversation(self, conversation: Conversation) -> list[int]:
        """Renders the conversation through the chat template and tokenizes it.

        Raises `InvalidArgument` when the template rejects the conversation.
        """
        ...

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary piece of each id (for Tokenize with return_token_strings)."""
        ...

    def generate(self, params: SequenceParams) -> AsyncIterator[GenerationStep]:
        """Starts one sequence. Must not do blocking work before the first `__anext__`."""
        ...
