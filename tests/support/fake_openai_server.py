"""A small OpenAI-compatible HTTP server for tests, on 127.0.0.1 and a free port.

It serves `GET /v1/models`, streaming `POST /v1/chat/completions` and `/v1/completions`, and,
with `tokenizer=True`, vLLM's `POST /tokenize` (one token per whitespace-separated word). The
reply is `reply_words` words ("w0 w1 ..."), or the words after `echo:` in the last user message;
`max_tokens` cuts it with finish_reason "length". Every request body is recorded, and
`disconnected` is set when a client closes a stream before its end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeOpenAIState:
    model: str = "upstream-model"
    max_model_len: int = 2048
    tokenizer: bool = True
    reply_words: int = 5
    # Seconds between chunks; a slow upstream lets tests cancel mid-stream.
    chunk_delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    state: FakeOpenAIState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            model = {"id": self.state.model, "object": "model", "max_model_len": 0}
            model["max_model_len"] = self.state.max_model_len
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.state.requests.append({"path": self.path, **body})
        if self.path == "/tokenize" and self.state.tokenizer:
            self._tokenize(body)
        elif self.path in ("/v1/chat/completions", "/v1/completions"):
            if body.get("model") != self.state.model:
                self._json(404, {"error": {"message": f"model {body.get('model')} not found"}})
                return
            self._stream(body, chat=self.path == "/v1/chat/completions")
        else:
            self._json(404, {"error": {"message": "not found"}})

    def _tokenize(self, body: dict[str, Any]) -> None:
        if "messages" in body:
            text = " ".join(f"<{m['role']}> {m['content']}" for m in body["messages"])
        else:
            text = str(body.get("prompt", ""))
        tokens = [len(word) for word in text.split()]
        self._json(200, {"tokens": tokens, "count": len(tokens), "max_model_len": 2048})

    def _stream(self, body: dict[str, Any], *, chat: bool) -> None:
        words = _reply(body, self.state.reply_words)
        limit = body.get("max_tokens") or len(words)
        finish = "length" if limit < len(words) else "stop"
        words = words[:limit]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for index, word in enumerate(words):
                text = word if index == 0 else " " + word
                choice: dict[str, Any] = {"index": 0, "finish_reason": None}
                if chat:
                    choice["delta"] = {"content": text}
                else:
                    choice["text"] = text
                self._event({"choices": [choice]})
                if self.state.chunk_delay_s:
                    self.state.release.wait(self.state.chunk_delay_s)
            last: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                last["delta"] = {}
            else:
                last["text"] = ""
            self._event({"choices": [last]})
            usage = {"prompt_tokens": 3, "completion_tokens": len(words), "total_tokens": 0}
            self._event({"choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.state.disconnected.set()

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


def _reply(body: dict[str, Any], count: int) -> list[str]:
    if "messages" in body:
        last = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
    else:
        last = str(body.get("prompt", ""))
    if last.startswith("echo:"):
        return last[5:].split()
    return [f"w{i}" for i in range(count)]


@contextmanager
def fake_openai_server(
    state: FakeOpenAIState | None = None,
) -> Iterator[tuple[str, FakeOpenAIState]]:
    """Runs the server in a thread; yields its base URL (`http://127.0.0.1:PORT/v1`) and state."""
    state = state or FakeOpenAIState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
