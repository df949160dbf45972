"""Domain types of the runner: requests in, events out. Not protobuf; the servicer converts.

Leaf module: imports nothing of ours, so engine, backends and servicer can all share it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation; role is system, user, assistant or tool."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True, slots=True)
class Conversation:
    messages: tuple[Message, ...]
    tools_json: str = ""
    add_generation_prompt: bool = True


@dataclass(frozen=True, slots=True)
class TokenPrompt:
    """A pre-tokenized prompt (Generate with token ids)."""

    ids: tuple[int, ...]


# What a generation starts from: a conversation (templated), raw text, or token ids.
PromptInput = Conversation | str | TokenPrompt


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Unset (None) fields take the model's generation config."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class StoppingParams:
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False


@dataclass(frozen=True, slots=True)
class OutputParams:
    return_token_ids: bool = False
    # Tokens per Delta after the first: 0 or 1 = every step (merged only when the reader lags).
    stream_interval: int = 0
    skip_special_tokens: bool = True


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation as the engine sees it.

    `timeout_s` is the time left on the caller's deadline when the request arrived (None = no
    deadline); the engine turns it into an absolute deadline on its own clock.
    """

    prompt: PromptInput
    request_id: str = ""
    model: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stopping: StoppingParams = field(default_factory=StoppingParams)
    output: OutputParams = field(default_factory=OutputParams)
    priority: int = 0
    timeout_s: float | None = None
    # Keep-alive for the model after this request (Ollama semantics): 0 = unload after it,
    # negative = pin; None = leave the model's keep-alive as it is.
    keep_alive_s: float | None = None


class FinishReason(enum.Enum):
    EOS = "eos"
    STOP_SEQUENCE = "stop"
    LENGTH = "length"
    CONTEXT_LENGTH = "context_length"
    TIME_LIMIT = "time_limit"
    ABORTED = "aborted"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    queue_ns: int = 0
    ttft_ns: int = 0
    total_ns: int = 0


@dataclass(frozen=True, slots=True)
class Started:
    """The request got a slot; generation begins."""

    request_id: str
    model: str
    prompt_tokens: int
    seed: int


@dataclass(frozen=True, slots=True)
class Delta:
    """New text since the previous Delta: UTF-8-complete and never part of a stop string."""

    text: str
    completion_tokens: int
    token_ids: tuple[int, ...] = ()

    def followed_by(self, later: Delta) -> Delta:
        """This Delta and the one after it as one (for callers that merge pending output)."""
        ids = self.token_ids + later.token_ids if later.token_ids else self.token_ids
        return Delta(self.text + later.text, later.completion_tokens, ids)


@dataclass(frozen=True, slots=True)
class Finished:
    reason: FinishReason
    usage: Usage
    stop_sequence: str = ""
    error_message: str = ""


GenerationEvent = Started | Delta | Finished


class ModelState(enum.Enum):
    AVAILABLE = "available"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class TokenizeResult:
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    max_context_tokens: int


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    running: int
    queued: int
    max_running: int
    max_queued: int
    draining: bool
