"""The one mechanism every service client uses: a channel, per-call deadlines, retries with
exponential backoff on UNAVAILABLE, client metrics, and RpcError for every failure."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from agentgpt.errors import RpcError
from agentgpt.runtime import tls
from agentgpt.runtime.interceptors import go_code_name
from agentgpt.runtime.logs import request_id

R = TypeVar("R")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class ChannelOptions:
    timeout: float = 10.0  # default deadline of one attempt, seconds
    attempts: int = 4  # total attempts on UNAVAILABLE
    backoff: float = 0.1  # first retry delay, seconds; doubles, with jitter, capped at 2 s


class ClientMetrics:
    """gRPC client metrics under the go-grpc-prometheus names."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_client_started", "Total number of RPCs started on the client.", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_client_handled",
            "Total number of RPCs completed by the client.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_client_handling_seconds",
            "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
            labels,
            registry=registry,
        )


class ServiceClient:
    """Base of the typed clients. Subclasses set `service` and `stub_class`."""

    service: str = ""
    stub_class: Callable[[aio.Channel], Any]
    #: The server's identity (its certificate's name), the TLS target name when it is dialled at a
    #: loopback address; "" where it is not known in advance (executors are `executor-N`).
    peer_name: str = ""

    def __init__(
        self,
        target: str,
        options: ChannelOptions | None = None,
        metrics: ClientMetrics | None = None,
        channel: aio.Channel | None = None,
        identity: str = "",
    ) -> None:
        self.target = target
        # The calling service's name, sent as `x-agentgpt-service`. Trusted only by a loopback server
        # configured to trust it (the --no-tls local stack); with mTLS the certificate's name is the
        # identity and the header is ignored.
        self.identity = identity
        self.options = options or ChannelOptions()
        self.metrics = metrics
        self._own_channel = channel is None
        self.channel = channel or tls.channel(target, self.peer_name)
        self.stub = self.stub_class(self.channel)

    async def close(self) -> None:
        if self._own_channel:
            await self.channel.close()

    async def __aenter__(self: Any) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        md: list[tuple[str, str]] = []
        rid = request_id.get()
        if rid:
            md.append(("x-request-id", rid))
        if self.identity:
            md.append(("x-agentgpt-service", self.identity))
        return tuple(md)

    async def unary(
        self, method: str, request: Any, *, timeout: float | None = None, retry: bool = True
    ) -> Any:
        """Call `method` with a deadline; retry UNAVAILABLE with backoff; raise RpcError on failure."""
        fn = getattr(self.stub, method)
        attempts = self.options.attempts if retry else 1
        delay = self.options.backoff
        labels = ("unary", self.service, method)
        for attempt in range(1, attempts + 1):
            start = time.perf_counter()
            if self.metrics:
                self.metrics.started.labels(*labels).inc()
            try:
                response = await fn(
                    request, timeout=timeout or self.options.timeout, metadata=self._metadata()
                )
                code = grpc.StatusCode.OK
                return response
            except aio.AioRpcError as exc:
                code = exc.code()
                if code in RETRYABLE and attempt < attempts:
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                raise RpcError(self.service, method, code, exc.details() or "") from None
            finally:
                if self.metrics:
                    self.metrics.handled.labels(*labels, go_code_name(code)).inc()
                    self.metrics.seconds.labels(*labels).observe(time.perf_counter() - start)
        raise AssertionError("unreachable")

    async def stream(self, method: str, request: Any, *, timeout: float | None = None) -> AsyncIterator[Any]:
        """A server stream; `timeout` None means no deadline (long-lived watches)."""
        call = getattr(self.stub, method)(request, timeout=timeout, metadata=self._metadata())
        try:
            async for item in call:
                yield item
        except aio.AioRpcError as exc:
            raise RpcError(self.service, method, exc.code(), exc.details() or "") from None
        finally:
            call.cancel()


async def check_health(
    target: str,
    service: str = "",
    timeout: float = 2.0,
    channel: aio.Channel | None = None,
    peer_name: str = "",
) -> str:
    """The health status name ("SERVING", "NOT_SERVING", ...) of `service` at `target`.

    Raises RpcError when the server cannot be reached."""
    own = channel is None
    ch = channel or tls.channel(target, peer_name)
    try:
        stub = health_pb2_grpc.HealthStub(ch)
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
    except aio.AioRpcError as exc:
        raise RpcError("grpc.health.v1.Health", "Check", exc.code(), exc.details() or "") from None
    finally:
        if own:
            await ch.close()


def health_probe(name: str, client: ServiceClient) -> Callable[[], Any]:
    """A dependency probe (for a service's health) that another service reports SERVING."""

    async def probe() -> None:
        status = await check_health(client.target, channel=client.channel)
        if status != "SERVING":
            raise RuntimeError(f"{name} at {client.target} is {status}")

    return probe
