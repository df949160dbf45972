"""One sequence while the transformers engine thread owns it: its tokens so far, sampler and
detokenizer, and what a sampled token does to it. The scheduler batches sequences; this module
is the bookkeeping of one."""

from __future__ import annotations

from model_runner.backends.base import SequenceParams
from model_runner.backends.detokenizer import IncrementalDetokenizer
from model_runner.batching.prefix_cache import CachedPrefix
from model_runner.batching.sampling import RowSampler
from model_runner.batching.stream import SequenceStream

# What the engine thread hands to the event loop for one sequence after a step:
# (stream, new ids, new text, finished, eos, error)
Output = tuple[SequenceStream, list[int], str, bool, bool, BaseException | None]


class ActiveSequence:
    """One sequence while the engine thread owns it."""

    __slots__ = (
        "detok",
        "eos_ids",
        "generated",
        "last_token",
        "max_tokens",
        "position",
        "prefix",
        "prompt",
        "reused",
        "sampler",
        "stream",
        "tokens",
    )

    def __init__(self, params: SequenceParams, stream: SequenceStream) -> None:
        self.stream = stream
        self.prompt = list(params.prompt_token_ids)
        self.max_tokens = params.max_tokens
        self.generated = 0
        self.position = len(self.prompt)  # position id of the next token fed
        self.last_token = -1
        self.sampler: RowSampler | None = None
        self.detok: IncrementalDetokenizer | None = None
        self.eos_ids: frozenset[int] = frozenset()
        self.tokens = list(self.prompt)  # prompt and sampled tokens, for the prefix store
        self.prefix: CachedPrefix | None = None  # where its first `reused` tokens come from
        self.reused = -1  # -1: the prefix store not consulted yet

    def emit(self, token: int, outputs: list[Output]) -> bool:
        """Records a sampled token and queues its output; False when the sequence is done."""
        assert self.sampler is not None
        assert self.detok is not None
        if token in self.eos_ids:
            outputs.append((self.stream, [], self.detok.flush(), True, True, None))
            return False
        self.sampler.record(token)
        self.tokens.append(token)
        self.generated += 1
        self.last_token = token
        self.position += 1
        text = self.detok.push([token])
        done = self.generated >= self.max_tokens
        if done:
            text += self.detok.flush()
        outputs.append((self.stream, [token], text, done, False, None))
        return not done


def deliver(outputs: list[Output]) -> None:
    """On the event loop: pushes a step's outputs to their streams."""
    for stream, ids, text, finished, eos, error in outputs:
        stream.push(ids, text, finished, eos, error)
