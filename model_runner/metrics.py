"""Prometheus metrics of the runner, served over HTTP on `RUNNER_METRICS_PORT`.

Each runner has its own `CollectorRegistry` (never the global one), so several engines in one
test process do not collide. Counters and histograms are updated on the event loop at the end
of a request, never per token; queue depth, running sequences and loaded models are read from
the engine when Prometheus scrapes (from the HTTP server's thread: plain int reads, which the
GIL keeps consistent enough for a gauge).

| metric | type | labels |
|---|---|---|
| runner_requests_total | counter | model, outcome (a finish reason, or the rejection) |
| runner_time_to_first_token_seconds | histogram | model |
| runner_queue_wait_seconds | histogram | model |
| runner_generated_tokens_total | counter | model |
| runner_prompt_tokens_total | counter | model |
| runner_cached_prompt_tokens_total | counter | model (prompt tokens a prefix cache served) |
| runner_decode_tokens_per_second | histogram | model (per request, after its first token) |
| runner_model_load_seconds | histogram | model, backend |
| runner_model_loads_total | counter | model, backend, outcome (ok, failed) |
| runner_queue_depth, runner_running_sequences | gauge | |
| runner_max_running, runner_max_queued, runner_draining, runner_models_loaded | gauge | |
| runner_prefix_cache_bytes | gauge | model (keys and values a backend keeps for reuse) |
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from model_runner.domain import Finished, LoadSnapshot

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0)
_LOAD_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def outcome_of(error: Exception) -> str:
    """The `outcome` label of a rejected request: its error class in snake case."""
    return _SNAKE.sub("_", type(error).__name__).lower()


class _LoadCollector(Collector):
    def __init__(
        self,
        load: Callable[[], LoadSnapshot],
        models: Callable[[], int],
        prefix_bytes: Callable[[], dict[str, int]],
    ) -> None:
        self._load = load
        self._models = models
        self._prefix_bytes = prefix_bytes

    def collect(self) -> Iterator[Metric]:
        load = self._load()
        for name, doc, value in (
            ("runner_queue_depth", "Requests waiting for a slot", load.queued),
            ("runner_running_sequences", "Sequences generating", load.running),
            ("runner_max_running", "Most sequences generating at once", load.max_running),
            ("runner_max_queued", "Most requests waiting", load.max_queued),
            ("runner_draining", "1 while shutting down", int(load.draining)),
            ("runner_models_loaded", "Models in state READY", self._models()),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        prefixes = GaugeMetricFamily(
            "runner_prefix_cache_bytes",
            "Keys and values of earlier sequences kept for reuse (RUNNER_PREFIX_CACHE_MB bounds "
            "each model's)",
            labels=["model"],
        )
        for model, nbytes in sorted(self._prefix_bytes().items()):
            prefixes.add_metric([model], nbytes)
        yield prefixes


class RunnerMetrics:
    """The runner's metrics; `serve()` exposes them at http://HOST:PORT/metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "runner_requests", "Generation requests by outcome", ["model", "outcome"], registry=r
        )
        self._ttft = Histogram(
            "runner_time_to_first_token_seconds",
            "From admission to the first generated token",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self._queue_wait = Histogram(
            "runner_queue_wait_seconds",
            "From arrival to a running slot",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self._generated = Counter(
            "runner_generated_tokens", "Completion tokens generated", ["model"], registry=r
        )
        self._prompt = Counter("runner_prompt_tokens", "Prompt tokens", ["model"], registry=r)
        self._cached = Counter(
            "runner_cached_prompt_tokens",
            "Prompt tokens served from a prefix cache, not computed",
            ["model"],
            registry=r,
        )
        self._rate = Histogram(
            "runner_decode_tokens_per_second",
            "Per request: completion tokens per second after the first token",
            ["model"],
            buckets=_RATE_BUCKETS,
            registry=r,
        )
        self._load_time = Histogram(
            "runner_model_load_seconds",
            "Time to load a model",
            ["model", "backend"],
            buckets=_LOAD_BUCKETS,
            registry=r,
        )
        self._loads = Counter(
            "runner_model_loads", "Model loads", ["model", "backend", "outcome"], registry=r
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def bind(
        self,
        load: Callable[[], LoadSnapshot],
        models_loaded: Callable[[], int],
        prefix_bytes: Callable[[], dict[str, int]] = dict,
    ) -> None:
        """Registers the gauges read at scrape time."""
        self.registry.register(_LoadCollector(load, models_loaded, prefix_bytes))

    def request_finished(self, model: str, event: Finished) -> None:
        usage = event.usage
        self._requests.labels(model, event.reason.value).inc()
        self._prompt.labels(model).inc(usage.prompt_tokens)
        if usage.cached_prompt_tokens:
            self._cached.labels(model).inc(usage.cached_prompt_tokens)
        self._queue_wait.labels(model).observe(usage.queue_ns / 1e9)
        if usage.completion_tokens:
            self._generated.labels(model).inc(usage.completion_tokens)
        if usage.ttft_ns:
            self._ttft.labels(model).observe(usage.ttft_ns / 1e9)
            decode_s = (usage.total_ns - usage.queue_ns - usage.ttft_ns) / 1e9
            if usage.completion_tokens > 1 and decode_s > 0:
                self._rate.labels(model).observe((usage.completion_tokens - 1) / decode_s)

    def request_rejected(self, model: str, error: Exception) -> None:
        self._requests.labels(model, outcome_of(error)).inc()

    def model_loaded(self, model: str, backend: str, seconds: float) -> None:
        self._load_time.labels(model, backend).observe(seconds)
        self._loads.labels(model, backend, "ok").inc()

    def model_load_failed(self, model: str, backend: str) -> None:
        self._loads.labels(model, backend, "failed").inc()

    def serve(self, host: str, port: int) -> int:
        """Starts the HTTP endpoint in a daemon thread; returns the bound port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
