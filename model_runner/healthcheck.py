"""`python -m model_runner.healthcheck HOST:PORT`: exit 0 when the runner serves a warm model.

For container health checks and process managers; asks the standard grpc.health.v1 service.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

INFERENCE_SERVICE = "model_runner.v1.Inference"


def check(target: str, *, service: str = INFERENCE_SERVICE, timeout_s: float = 3.0) -> bool:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = args[0] if args else "127.0.0.1:50051"
    healthy = check(target)
    print("SERVING" if healthy else "NOT_SERVING")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
