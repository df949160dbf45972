"""Choose the stream hub from the settings: Redis when a URL is set, else in-process."""

from __future__ import annotations

from webui_backend.services.redis_turn_hub import RedisTurnHub
from webui_backend.services.turn_hub import InProcessTurnHub, TurnHub
from webui_backend.settings import Settings


def build_hub(settings: Settings) -> TurnHub:
    if settings.redis_url:
        return RedisTurnHub(
            settings.redis_url,
            prefix=settings.redis_prefix,
            max_events_per_turn=settings.turn_buffer_events,
            retain_finished_s=settings.hub_retain_finished_s,
            # A live turn's keys outlive the longest generation, so a crash cannot leak them.
            live_ttl_s=settings.runner_timeout_s + 60,
            heartbeat_s=settings.worker_heartbeat_s,
        )
    return InProcessTurnHub(
        retain_finished_s=settings.hub_retain_finished_s,
        max_events_per_turn=settings.turn_buffer_events,
    )
