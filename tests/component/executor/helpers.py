from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from agentgpt.clients import SessionClient
from agentgpt.ipfs import EmbeddedStore
from agentgpt.runtime.config import load
from services.executor.app import ExecutorParts, build_parts
from services.executor.config import ExecutorConfig
from services.executor.grpc_port import GrpcSessionPort, session_client
from services.executor.ports import SessionPort

KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"


def parts(
    address: str,
    tmp: Path,
    *,
    wrap: Callable[[SessionPort], SessionPort] | None = None,
    **overrides: Any,
) -> tuple[ExecutorParts, SessionClient]:
    """The executor engine (not started) over GrpcSessionPort to the session API at `address`, calling
    with the service identity production gives it (services.executor.app.build). `wrap` may put a test
    port around the real one (e.g. to hold a report back)."""
    settings: dict[str, Any] = {
        "executor_key": KEY,
        "poll_interval": 0.05,
        "lease_ttl": 3,
        "ipfs_embedded_dir": str(tmp / "ipfs"),
        **overrides,
    }
    config = load(ExecutorConfig, env={}, **settings)
    client = session_client(address, f"executor:{config.executor_id}")
    port: SessionPort = GrpcSessionPort(client)
    if wrap is not None:
        port = wrap(port)
    return build_parts(config, port, store=EmbeddedStore(tmp / "ipfs")), client


def poison_outputs(p: ExecutorParts, kind: str = "note") -> None:
    """Make every `kind` action return text with a lone surrogate, as a remote model or API may: valid in
    JSON's escapes, impossible to store, hash or sign as UTF-8 (the outside tester's crash, reached through
    a planner instead of the task's own args, which both services now refuse at the door)."""
    actions = p.engine.deps.actions
    run = actions.run

    async def poisoned(session_id: str, step: Any, action: Any, *args: Any) -> Any:
        outcome = await run(session_id, step, action, *args)
        if action.kind == kind and action.params.get("poison"):
            outcome.result = {"text": "\ud800"}
        return outcome

    actions.run = poisoned  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def running_engine(
    address: str,
    tmp: Path,
    *,
    prepare: Callable[[ExecutorParts], None] | None = None,
    **overrides: Any,
) -> AsyncIterator[ExecutorParts]:
    """An executor engine leasing from the session API at `address` until the block ends; `prepare` may
    adjust the parts before the engine starts (e.g. to inject a fault)."""
    p, client = parts(address, tmp, **overrides)
    if prepare is not None:
        prepare(p)
    task = asyncio.create_task(p.engine.run())
    try:
        yield p
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await p.engine.stop()
        await client.close()
