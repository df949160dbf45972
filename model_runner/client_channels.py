"""How the client's gRPC channels are configured: message limits, keepalive, reconnects, and
whether a target's calls are spread over several runners."""

from __future__ import annotations

import json

# Matches the runner's default, so an oversized prompt reaches the runner's validation (a clear
# INVALID_ARGUMENT) instead of failing locally with RESOURCE_EXHAUSTED, which reads as "busy".
_MAX_MESSAGE_BYTES = 128 * 1024 * 1024


# A target whose resolver may answer several addresses (`dns:///runners.internal:50051`, or
# `ipv4:10.0.0.1:50051,10.0.0.2:50051`) is one channel over all of them, each call going to
# the next ready address. A plain host:port keeps gRPC's default, pick_first: one runner.
_SPREAD_SCHEMES = ("dns:", "ipv4:", "ipv6:")
_ROUND_ROBIN_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def spreads_calls(target: str) -> bool:
    """True when `target` is a name or list of runners whose calls round_robin spreads."""
    return target.startswith(_SPREAD_SCHEMES)


def channel_options(target: str) -> list[tuple[str, int | str]]:
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        # Pings find a dead runner during a long silent prefill; the runner permits them.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect soon after a runner restart instead of backing off for minutes.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5_000),
        # Each channel of the pool gets its own connection (and its own stream limit).
        ("grpc.use_local_subchannel_pool", 1),
    ]
    if spreads_calls(target):
        options.append(("grpc.service_config", _ROUND_ROBIN_CONFIG))
    return options
