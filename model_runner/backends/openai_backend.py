"""The `openai` backend: forwards generation to any OpenAI-compatible server.

A team with a GPU cluster keeps its serving engine (vLLM, llama.cpp's `llama-server`, Ollama,
...) and puts our runner in front: admission, deadlines, stop strings, abort, keep-alive and
metrics stay ours; the upstream generates. The model's source is the upstream's base URL
(`http://host:8000/v1`; `/v1` is appended when missing); options: `upstream_model` (the name
the upstream knows; default: our model id), `api_key` (default `RUNNER_OPENAI_API_KEY`),
`max_context_tokens` (default: what the upstream reports, else `RUNNER_OPENAI_CONTEXT_TOKENS`).

Conversations go to `/v1/chat/completions` (the upstream applies its chat template), raw prompts
and token ids to `/v1/completions`, both streamed (SSE). Closing the iterator closes the HTTP
response, which vLLM, llama-server and Ollama all take as "stop generating".

Tokens. The upstream's tokenizer is used when it offers one: vLLM's `POST /tokenize` (text and
chat messages) or llama-server's `POST /tokenize` + `POST /apply-template`. Otherwise counts
are APPROXIMATE: one token per 4 UTF-8 bytes (the usual rule of thumb for English BPE
vocabularies) and ids are placeholders (0), so Tokenize returns no real ids or strings and
context checks are estimates. Streamed text arrives in chunks of about one token each; the
completion count is one per chunk, corrected from the upstream's final `usage` when it sends one.
Token ids in Deltas are placeholders (0) with this backend; tool calls are not relayed.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import httpx

from model_runner.backends.base import GenerationStep, ModelInfo, ModelSpec, SequenceParams
from model_runner.backends.chat_format import openai_messages
from model_runner.domain import Conversation, TokenPrompt
from model_runner.errors import EngineUnavailable, InvalidArgument, ModelNotFound, ModelNotLoaded
from model_runner.settings import RunnerSettings

TokenizerMode = Literal["vllm", "llamacpp", "approximate"]
_BYTES_PER_TOKEN = 4
_MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators a chat template adds per message
_CONNECT_TIMEOUT_S = 10.0
_PROBE_TIMEOUT_S = 10.0


def approximate_token_count(text: str) -> int:
    """About one token per 4 UTF-8 bytes; at least 1 for non-empty text."""
    size = len(text.encode())
    return math.ceil(size / _BYTES_PER_TOKEN) if size else 0


class OpenAIBackend:
    """Implements `model_runner.backends.base.Backend` over HTTP; see the module docstring."""

    def __init__(self, settings: RunnerSettings) -> None:
        self._settings = settings
        self._client: httpx.AsyncClient | None = None
        self._root = ""  # server root, for the non-/v1 endpoints (/tokenize, /props)
        self._upstream_model = ""
        self._mode: TokenizerMode = "approximate"

    @property
    def name(self) -> str:
        return "openai"

    @property
    def tokenizer_mode(self) -> TokenizerMode:
        """Which tokenizer counts come from: the upstream's ("vllm", "llamacpp") or estimates."""
        return self._mode

    async def load(self, spec: ModelSpec) -> ModelInfo:
        base = _base_url(spec.source)
        self._root = base.removesuffix("/v1")
        self._upstream_model = spec.options.get("upstream_model") or spec.id
        api_key = spec.options.get("api_key") or self._settings.openai_api_key.get_secret_value()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(self._settings.openai_timeout_s, connect=_CONNECT_TIMEOUT_S)
        client = httpx.AsyncClient(headers=headers, timeout=timeout)
        try:
            spec.on_progress(f"asking {base} for its models", 0, 0)
            listed = await self._upstream_models(client, base)
            if listed and self._upstream_model not in listed:
                raise ModelNotFound(
                    f"the upstream at {base} serves {', '.join(sorted(listed))}, not "
                    f"{self._upstream_model!r}; set the option upstream_model"
                )
            context = await self._context_tokens(client, spec, listed.get(self._upstream_model))
            spec.on_progress("probing the upstream's tokenizer", 0, 0)
            self._mode = await self._probe_tokenizer(client)
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        return ModelInfo(
            id=spec.id,
            backend=self.name,
            source=base,
            max_context_tokens=context,
            max_output_tokens=min(self._settings.max_tokens_cap, context),
            has_chat_template=True,
            aliases=(self._upstream_model,) if self._upstream_model != spec.id else (),
        )

    async def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- tokens --------------------------------------------------------------------------------

    async def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if self._mode == "vllm":
            body: dict[str, Any] = {"model": self._upstream_model, "prompt": text}
            body["add_special_tokens"] = add_special_tokens
            return await self._tokens("/tokenize", body)
        if self._mode == "llamacpp":
            body = {"content": text, "add_special": add_special_tokens}
            return await self._tokens("/tokenize", body)
        return [0] * approximate_token_count(text)

    async def tokenize_conversation(self, conversation: Conversation) -> list[int]:
        messages = openai_messages(conversation)
        body: dict[str, Any]
        if self._mode == "vllm":
            body = {
                "model": self._upstream_model,
                "messages": messages,
                "add_generation_prompt": conversation.add_generation_prompt,
            }
            return await self._tokens("/tokenize", body)
        if self._mode == "llamacpp":
            rendered = await self._post(self._root + "/apply-template", {"messages": messages})
            if isinstance(rendered, dict) and isinstance(rendered.get("prompt"), str):
                return await self.tokenize(rendered["prompt"])
        count = sum(
            approximate_token_count(m.content) + _MESSAGE_OVERHEAD_TOKENS
            for m in conversation.messages
        )
        return [0] * (count + approximate_token_count(conversation.tools_json))

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        # The upstream APIs have no cheap id -> piece lookup; documented as not available.
        return [""] * len(ids)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, params: SequenceParams) -> AsyncIterator[GenerationStep]:
        client = self._client
        if client is None:
            raise ModelNotLoaded("the openai backend is not loaded")
        return self._generate(client, params)

    async def _generate(
        self, client: httpx.AsyncClient, params: SequenceParams
    ) -> AsyncIterator[GenerationStep]:
        path, body = self._request_body(params)
        chat = path.endswith("/chat/completions")
        count = 0
        reported: int | None = None
        finish: str | None = None
        async with client.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                detail = _error_text(await response.aread())
                raise RuntimeError(f"upstream answered HTTP {response.status_code}: {detail}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise RuntimeError(f"upstream error: {_error_text(chunk)}")
                usage = chunk.get("usage")
                if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                    reported = usage["completion_tokens"]
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    text = delta.get("content") if chat else choice.get("text")
                    if text:
                        count += 1
                        yield GenerationStep((0,), text)
                    finish = choice.get("finish_reason") or finish
        # Reconcile the chunk count with the upstream's own token count, so usage and the
        # LENGTH finish reason are right even when a chunk carried several tokens.
        target = reported if reported is not None else count
        if finish == "length":
            target = max(target, params.max_tokens)
        if target > count:
            yield GenerationStep((0,) * (target - count), "", finish != "length")

    def _request_body(self, params: SequenceParams) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self._upstream_model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "seed": params.seed,
        }
        prompt = params.prompt
        if isinstance(prompt, Conversation):
            path = "/chat/completions"
            body["messages"] = openai_messages(prompt)
            if prompt.tools_json:
                body["tools"] = json.loads(prompt.tools_json)
        elif isinstance(prompt, str):
            path, body["prompt"] = "/completions", prompt
        elif isinstance(prompt, TokenPrompt) or self._mode != "approximate":
            ids = prompt.ids if isinstance(prompt, TokenPrompt) else params.prompt_token_ids
            path, body["prompt"] = "/completions", list(ids)
        else:
            raise InvalidArgument("this upstream has no tokenizer, so it cannot take token ids")
        s = params.sampling
        # Standard OpenAI fields, then the extensions vLLM, llama-server and Ollama accept; an
        # extension is only sent when the caller set it, so strict upstreams are not upset.
        for key, value in (
            ("temperature", s.temperature),
            ("top_p", s.top_p),
            ("presence_penalty", s.presence_penalty),
            ("frequency_penalty", s.frequency_penalty),
            ("top_k", s.top_k),
            ("min_p", s.min_p),
            ("repetition_penalty", s.repetition_penalty),
        ):
            if value is not None:
                body[key] = value
        if params.stop_token_ids:
            body["stop_token_ids"] = sorted(params.stop_token_ids)
        if params.ignore_eos:
            body["ignore_eos"] = True
        if not params.skip_special_tokens:
            body["skip_special_tokens"] = False
        return self._root + "/v1" + path, body

    # -- upstream calls ------------------------------------------------------------------------

    async def _upstream_models(self, client: httpx.AsyncClient, base: str) -> dict[str, Any]:
        """The upstream's models by id (empty if it does not list them)."""
        try:
            response = await client.get(base + "/models", timeout=_PROBE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"cannot reach the upstream at {base}: {exc!r}") from exc
        if response.status_code in (401, 403):
            raise InvalidArgument(
                f"the upstream at {base} refused our credentials (HTTP {response.status_code}); "
                "set RUNNER_OPENAI_API_KEY or the option api_key"
            )
        if response.status_code != 200:
            return {}
        data = response.json().get("data")
        if not isinstance(data, list):
            return {}
        return {m["id"]: m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)}

    async def _context_tokens(
        self, client: httpx.AsyncClient, spec: ModelSpec, listed: dict[str, Any] | None
    ) -> int:
        option = spec.options.get("max_context_tokens")
        if option:
            if not option.isdigit() or int(option) < 16:
                raise InvalidArgument(f"option max_context_tokens is {option!r}; use a number")
            return int(option)
        if listed and isinstance(listed.get("max_model_len"), int):  # vLLM
            return int(listed["max_model_len"])
        props = await self._get_json(client, self._root + "/props")  # llama-server
        if isinstance(props, dict):
            settings = props.get("default_generation_settings") or {}
            n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
            if isinstance(n_ctx, int) and n_ctx > 0:
                return n_ctx
        return self._settings.openai_context_tokens

    async def _probe_tokenizer(self, client: httpx.AsyncClient) -> TokenizerMode:
        url = self._root + "/tokenize"
        for mode, body in (
            ("vllm", {"model": self._upstream_model, "prompt": "hello"}),
            ("llamacpp", {"content": "hello"}),
        ):
            try:
                response = await client.post(url, json=body, timeout=_PROBE_TIMEOUT_S)
            except httpx.HTTPError:
                return "approximate"
            if response.status_code == 200:
                tokens = response.json().get("tokens")
                if isinstance(tokens, list) and tokens:
                    return mode  # type: ignore[return-value]
        return "approximate"

    async def _tokens(self, path: str, body: dict[str, Any]) -> list[int]:
        answer = await self._post(self._root + path, body)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise EngineUnavailable(f"the upstream's {path} answered without tokens")
        # llama-server may return {"id", "piece"} objects when asked for pieces.
        return [t["id"] if isinstance(t, dict) else int(t) for t in tokens]

    async def _post(self, url: str, body: dict[str, Any]) -> Any:
        client = self._client
        if client is None:
            raise ModelNotLoaded("the openai backend is not loaded")
        try:
            response = await client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"the upstream did not answer {url}: {exc!r}") from exc
        if 400 <= response.status_code < 500:
            detail = _error_text(response.content)
            raise InvalidArgument(f"the upstream refused the input: {detail}")
        if response.status_code >= 500:
            raise EngineUnavailable(f"the upstream failed ({response.status_code}) on {url}")
        return response.json()

    @staticmethod
    async def _get_json(client: httpx.AsyncClient, url: str) -> Any:
        try:
            response = await client.get(url, timeout=_PROBE_TIMEOUT_S)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None


def _base_url(source: str | None) -> str:
    if not source or not source.startswith(("http://", "https://")):
        raise InvalidArgument(
            f"the openai backend needs the http(s) URL of an OpenAI-compatible server as the "
            f"model source, e.g. http://127.0.0.1:8000/v1; got {source!r}"
        )
    base = source.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def _error_text(payload: bytes | dict[str, Any]) -> str:
    """The upstream's error message, from `{"error": {"message"}}`, `{"error": "..."}` or text."""
    if isinstance(payload, bytes):
        raw = payload
        try:
            payload = json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")[:500]
    if not isinstance(payload, dict):
        return str(payload)[:500]
    error = payload.get("error", payload)
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error)[:500]
