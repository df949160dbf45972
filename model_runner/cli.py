"""`model-runner serve ...`: flags override `RUNNER_*` environment variables."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from pydantic import ValidationError

from model_runner.errors import EngineError
from model_runner.settings import RunnerSettings
from model_runner.telemetry.logs import configure_logging

# Flag name -> settings field, for the flags that map one to one.
_FLAGS: dict[str, tuple[str, type, str]] = {
    "host": ("host", str, "address to bind (default 127.0.0.1)"),
    "port": ("port", int, "port to bind; 0 picks a free one (default 50051)"),
    "backend": ("backend", str, "fake | transformers | llamacpp | openai"),
    "model": ("model", str, "model id to serve"),
    "model-source": ("model_source", str, "directory, GGUF file, hub id or URL"),
    "max-running": ("max_running", int, "sequences generating at once"),
    "max-queued": ("max_queued", int, "requests waiting for a slot"),
    "max-tokens-cap": ("max_tokens_cap", int, "cap on tokens per request"),
    "grace-seconds": ("grace_seconds", float, "drain time on SIGTERM"),
    "fake-tokens-per-second": ("fake_tokens_per_second", float, "fake backend pace; 0 = max"),
    "fake-reply-tokens": ("fake_reply_tokens", int, "fake backend reply length"),
    "fake-step-clock": ("fake_step_clock", str, "fake pacing: shared (default) | per_stream"),
    "metrics-port": ("metrics_port", int, "serve Prometheus metrics here; 0 picks a free port"),
    "keep-alive": ("keep_alive_s", float, "seconds a model stays loaded when idle (default 300)"),
    "max-loaded-models": ("max_loaded_models", int, "most models loaded at once; 0 = no cap"),
    "memory-budget-mb": ("memory_budget_mb", int, "memory for models; 0 = host memory"),
    "max-prompt-chars": ("max_prompt_chars", int, "longest prompt accepted, in characters"),
    "log-format": ("log_format", str, "text (default) or json: one JSON object per line"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-runner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the gRPC API until SIGTERM/SIGINT")
    for flag, (field, kind, help_text) in _FLAGS.items():
        serve.add_argument(f"--{flag}", dest=field, type=kind, default=None, help=help_text)
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    serve.add_argument(
        "--no-uvloop", action="store_true", help="use the default asyncio loop even if uvloop is"
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> RunnerSettings:
    """Environment first, then any flag given on the command line."""
    overrides: dict[str, Any] = {
        field: getattr(args, field)
        for field, _, _ in _FLAGS.values()
        if getattr(args, field) is not None
    }
    return RunnerSettings(**overrides)


def _announce(line: str) -> None:
    # Tests and supervisors read this line to learn the bound port, so flush it at once.
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"model-runner: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, settings.log_format)
    # Imported after parsing so that `--help` does not load grpc.
    from model_runner.server import serve

    try:
        return _run(serve(settings, _announce), use_uvloop=not args.no_uvloop)
    except EngineError as exc:
        print(f"model-runner: {exc.message}", file=sys.stderr)
        return 2


def _run(main_coro: Coroutine[Any, Any, int], *, use_uvloop: bool) -> int:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main_coro)
    return asyncio.run(main_coro)


if __name__ == "__main__":
    sys.exit(main())
