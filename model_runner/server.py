"""The runner process: grpc.aio server, health, reflection, model load, graceful stop.

Lifecycle: bind and start serving (health "" SERVING, Inference NOT_SERVING), announce the
bound address, load and warm up the model (Inference SERVING). On SIGTERM/SIGINT: Inference
NOT_SERVING and new requests get UNAVAILABLE, in-flight streams get `grace_seconds` to finish,
the rest end with Finished(ABORTED), then the server stops. A second signal aborts at once.
In between, Inference health follows the engine: SERVING exactly while the default model is
READY and the runner is not draining (an UnloadModel of the default model turns it off).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from model_runner.backends import create_backend
from model_runner.engine import Engine
from model_runner.generation_telemetry import GenerationTelemetry
from model_runner.interceptor import ErrorMappingInterceptor
from model_runner.servicer import InferenceServicer, ModelsServicer
from model_runner.settings import RunnerSettings
from model_runner.telemetry.tracing import build_tracer_provider
from model_runner.v1 import runner_pb2, runner_pb2_grpc

logger = logging.getLogger(__name__)

INFERENCE_SERVICE = runner_pb2.DESCRIPTOR.services_by_name["Inference"].full_name
MODELS_SERVICE = runner_pb2.DESCRIPTOR.services_by_name["Models"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_STOP_GRACE_S = 1.0  # streams are already drained when the server stops; this is for unary calls


def server_options(settings: RunnerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Tolerate client keepalive pings (every 10 s or slower, even with no call active)
        # instead of answering GOAWAY too_many_pings.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        # Our own pings find dead clients whose streams would otherwise hold slots.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        # Fail loudly if the port is taken rather than silently sharing it.
        ("grpc.so_reuseport", 0),
    ]


class RunnerServer:
    """Wires the engine into a grpc.aio server; `run()` serves until a signal stops it."""

    def __init__(
        self,
        settings: RunnerSettings,
        engine: Engine,
        announce: Callable[[str], None],
        telemetry: GenerationTelemetry | None = None,
    ) -> None:
        self._settings = settings
        self._announce = announce
        self._engine = engine
        self._health = HealthServicer()
        self._server = aio.server(
            interceptors=[ErrorMappingInterceptor()], options=server_options(settings)
        )
        self._stop_requested = asyncio.Event()
        self._exit_code = 0
        self._health_task: asyncio.Task[None] | None = None
        self._health_dirty = asyncio.Event()
        self._serving = False
        runner_pb2_grpc.add_InferenceServicer_to_server(
            InferenceServicer(engine, telemetry), self._server
        )
        runner_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(engine), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (
                INFERENCE_SERVICE,
                MODELS_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )

    async def start(self) -> int:
        """Binds and starts serving; returns the bound port. Raises RuntimeError if it cannot."""
        address = f"{self._settings.host}:{self._settings.port}"
        port = self._server.add_insecure_port(address)
        if port == 0:
            raise RuntimeError(f"cannot bind {address}")
        await self._server.start()
        await self._health.set("", _SERVING)
        await self._health.set(INFERENCE_SERVICE, _NOT_SERVING)
        # Health follows the engine (default model loaded or not, draining) from now on.
        self._health_task = asyncio.create_task(self._follow_health())
        self._engine.add_listener(self._health_dirty.set)
        return port

    async def _follow_health(self) -> None:
        while True:
            await self._health_dirty.wait()
            self._health_dirty.clear()
            await self._sync_health()

    async def _sync_health(self) -> None:
        serving = self._engine.ready
        if serving != self._serving:
            self._serving = serving
            await self._health.set(INFERENCE_SERVICE, _SERVING if serving else _NOT_SERVING)

    def request_stop(self) -> None:
        """Signal handler: the first call drains gracefully, a second aborts everything now."""
        if self._stop_requested.is_set():
            logger.warning("second stop signal: aborting %d requests", self._engine.abort_all())
        self._stop_requested.set()

    async def run(self) -> int:
        """Loads the model, serves until stopped, and returns the process exit code."""
        load = asyncio.create_task(self._load())
        stopper = asyncio.create_task(self._stop_when_requested(load))
        await self._server.wait_for_termination()
        await stopper
        return self._exit_code

    async def _load(self) -> None:
        try:
            await self._engine.start()
        except Exception:
            logger.exception("loading model %r failed", self._settings.model)
            self._exit_code = 1
            self._stop_requested.set()
            return
        await self._sync_health()
        self._announce(f"model-runner ready: model {self._settings.model}")

    async def _stop_when_requested(self, load: asyncio.Task[None]) -> None:
        await self._stop_requested.wait()
        logger.info("stopping: draining for up to %.1f s", self._settings.grace_seconds)
        if not load.done():
            load.cancel()
        if self._health_task is not None:
            self._health_task.cancel()
        await self._health.set(INFERENCE_SERVICE, _NOT_SERVING)
        aborted = await self._engine.drain(self._settings.grace_seconds)
        if aborted:
            logger.warning("aborted %d requests at the end of the grace period", aborted)
        await self._health.enter_graceful_shutdown()
        await self._server.stop(_STOP_GRACE_S)
        await self._engine.close()


async def serve(settings: RunnerSettings, announce: Callable[[str], None]) -> int:
    """Runs a runner until SIGTERM/SIGINT. `announce` gets two lines for supervisors and tests:
    "model-runner listening on HOST:PORT" once bound (health "" SERVING), then
    "model-runner ready: model ID" once the model is warm (Inference SERVING)."""
    engine = Engine(create_backend(settings), settings)
    tracing = settings.tracing_config("model-runner")
    provider = build_tracer_provider(tracing)
    if provider is not None:
        logger.info("tracing on: service %s, exporters %s", tracing.service_name, tracing.exporters)
    tracer = provider.get_tracer("model_runner") if provider is not None else None
    server = RunnerServer(settings, engine, announce, GenerationTelemetry(tracer))
    port = await server.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)
    announce(f"model-runner listening on {settings.host}:{port}")
    if settings.metrics_port is not None:
        metrics_port = engine.metrics.serve(settings.host, settings.metrics_port)
        announce(f"model-runner metrics on http://{settings.host}:{metrics_port}/metrics")
    try:
        return await server.run()
    finally:
        engine.metrics.stop()
        if provider is not None:
            provider.shutdown()  # exports the spans still batched
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
