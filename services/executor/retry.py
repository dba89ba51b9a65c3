"""Which failures are worth retrying, how long to wait, and error text safe to record.

A task attempt can fail two ways. A dependency is down (the session service, a chain's RPC endpoint,
the IPFS node, the model endpoint): the same attempt can succeed later, so it is retried with capped
exponential backoff. Anything else (bad data, a bug, a contract revert) fails the same way every time:
retrying it would only loop, so the task is recorded FAILED once and the session moves on.
"""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
from web3.exceptions import ProviderConnectionError, TimeExhausted

from agentgpt.errors import Aborted, DeadlineExceeded, RpcError, Unavailable
from services.executor.planners.openai import ModelUnavailable

# Remote statuses that mean "not now" rather than "never".
_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


def failure_kind(exc: BaseException) -> str | None:
    """A short label when `exc` is a dependency failure worth retrying; None when it is deterministic."""
    if isinstance(exc, RpcError):
        return "service_unavailable" if exc.code in _RETRYABLE_CODES else None
    if isinstance(exc, ModelUnavailable):
        return "model_unavailable"
    if isinstance(exc, Unavailable | DeadlineExceeded | Aborted):
        return "dependency_unavailable"
    if isinstance(exc, ProviderConnectionError | TimeExhausted | aiohttp.ClientError):
        return "chain_unavailable"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError):
        return "timeout"
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError):
        return "network"
    return None


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number `attempt` (1-based): base, 2·base, 4·base, ... at most `cap`."""
    return float(min(cap, base * 2 ** max(0, min(attempt - 1, 30))))


def printable(text: str) -> str:
    """`text` as valid UTF-8 (lone surrogates and other unencodable characters escaped), so an error that
    quotes the bad input can itself be stored, logged and signed."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
