"""The local stack as real processes for end-to-end tests, and the owner's CLI run against it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from apps.localnet.stack import LocalStack, StackOptions


@contextlib.asynccontextmanager
async def local_stack(workdir: Path) -> AsyncIterator[LocalStack]:
    """Two anvils, the IPFS node and the four services on free ports, stopped when the block ends."""
    s = LocalStack(StackOptions(workdir=workdir, base_port=0, metrics_base=0))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`agentgpt ARGS` against `stack`, as a separate process."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "apps.cli.main", *args, "--workdir", str(stack.workdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def session_cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`agentgpt session ARGS` against `stack`, as a separate process."""
    return await cli(stack, "session", *args)


async def session_ok(stack: LocalStack, *args: str) -> str:
    """`agentgpt session ARGS`, which must succeed; its standard output."""
    proc = await session_cli(stack, *args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout
