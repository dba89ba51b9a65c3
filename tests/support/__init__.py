"""Helpers shared by tests of every tier."""

from __future__ import annotations

import asyncio
import inspect
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentgpt.runtime import tls

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = 20.0,
    *,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `check` (plain or async) until it succeeds, and return what it returned. It fails by raising
    (an AssertionError or any error) or by returning False, so both an assertion function and a
    predicate (`lambda: len(done) == 3`) work. After `timeout` s the last error is raised, or an
    AssertionError naming `what` when the last call returned False."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            if time.monotonic() > deadline:
                raise
        else:
            if result is not False:
                return cast(T, result)
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(interval)


async def reflected_services(target: str) -> set[str]:
    """The service names a server lists through gRPC reflection."""
    async with tls.channel(target) as channel:  # mTLS when a local stack of this process runs it
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests():  # type: ignore[no-untyped-def]
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for resp in stub.ServerReflectionInfo(requests(), timeout=5):
            return {s.name for s in resp.list_services_response.service}
    return set()


def scrape(port: int) -> str:
    """The text a /metrics endpoint serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
