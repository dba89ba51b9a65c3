"""The recovery tests' shared parts: a local stack with two executors and a short lease, and the checks
that a session lost nothing (every task SUCCEEDED once, charged once on chain)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from web3 import Web3

from agentgpt.clients import RecoveryClient, SessionClient
from agentgpt.contracts import load_artifact
from agentgpt.recovery.v1 import recovery_pb2 as rc
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.stack import LocalStack, StackOptions
from tests.support import eventually
from tests.support.stack import session_cli, session_ok

LEASE_TTL = 2  # seconds: short, so a lapsed lease is seen within the test
SPEC = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
checkpoint_interval: 3
"""


def executors(stack: LocalStack) -> list[str]:
    return sorted(n for n in stack.services if n.startswith("executor-"))


async def holder(stack: LocalStack, session_id: str) -> str:
    """The name of the executor process running the session now."""
    name = await stack.holder_of(session_id)
    assert name is not None, f"no executor runs session {session_id}"
    return name


async def new_session(stack: LocalStack, tmp_path: Path) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    sid = (await session_ok(stack, "create", str(spec), "--budget", "50")).split()[1]
    await session_ok(stack, "activate", sid)
    return sid


async def submit(stack: LocalStack, sid: str, count: int, start: int = 0) -> None:
    """Submit `count` tasks as the owner would: a session a recovery holds PAUSED refuses tasks (with
    FAILED_PRECONDITION naming the state), so such a refusal is retried until it resumes (60 s)."""
    for i in range(start, start + count):
        args = ("submit", sid, "publish_report", "--args", json.dumps({"title": f"report {i}"}))
        deadline = time.monotonic() + 60
        while True:
            proc = await session_cli(stack, *args)
            if proc.returncode == 0:
                break
            paused = "not allowed in state PAUSED" in proc.stderr
            assert paused and time.monotonic() < deadline, (args, proc.stdout, proc.stderr)
            await asyncio.sleep(0.2)


def session_client(stack: LocalStack) -> SessionClient:
    return SessionClient(stack.services["session"].grpc, identity="e2e")


async def tasks_of(stack: LocalStack, sid: str) -> list[ss.Task]:
    async with session_client(stack) as client:
        return list((await client.list_tasks(ss.ListTasksRequest(session_id=sid, page_size=1000))).tasks)


async def all_succeeded(stack: LocalStack, sid: str, count: int) -> None:
    tasks = await tasks_of(stack, sid)
    assert len(tasks) == count and all(t.status == ss.TASK_STATUS_SUCCEEDED for t in tasks), [
        (t.seq, ss.TaskStatus.Name(t.status), t.error) for t in tasks
    ]


async def events_of(stack: LocalStack, sid: str) -> list[ss.SessionEvent]:
    async with session_client(stack) as client:
        req = ss.WatchSessionRequest(session_id=sid, history_only=True)
        return [r.event async for r in client.stream("WatchSession", req, timeout=30)]


def factory(stack: LocalStack) -> Any:
    network = json.loads(Path(stack.state()["network"]).read_text())
    home = network["chains"][0]
    w3 = Web3(Web3.HTTPProvider(home["rpc_url"], request_kwargs={"timeout": 10}))
    return w3.eth.contract(
        address=home["contracts"]["SessionFactory"], abi=load_artifact("SessionFactory").abi
    )


async def recoveries(stack: LocalStack, sid: str) -> list[rc.Recovery]:
    async with RecoveryClient(stack.services["recovery_oracle"].grpc) as client:
        return list((await client.list_recoveries(rc.ListRecoveriesRequest(session_id=sid))).recoveries)


async def check_exactly_once(stack: LocalStack, sid: str, count: int) -> None:
    """Every task SUCCEEDED once in the log, and the chain charged each seq once."""
    await eventually(lambda: all_succeeded(stack, sid, count), timeout=60)
    succeeded = [
        json.loads(e.data_json)["seq"] for e in await events_of(stack, sid) if e.type == "task_succeeded"
    ]
    assert sorted(succeeded) == list(range(1, count + 1)), succeeded  # once each, none lost
    f = factory(stack)

    async def charged_through_all() -> None:
        assert f.functions.budgetOf(int(sid)).call()[2] == count

    await eventually(charged_through_all, timeout=60)
    charges = f.events.BudgetCharged().get_logs(from_block=0, argument_filters={"sessionId": int(sid)})
    ranges = sorted((int(c["args"]["fromSeq"]), int(c["args"]["throughSeq"])) for c in charges)
    covered = [seq for lo, hi in ranges for seq in range(lo + 1, hi + 1)]  # (fromSeq, throughSeq]
    assert covered == list(range(1, count + 1)), ranges  # tiles: no seq paid twice, none skipped


async def bring_back(stack: LocalStack, name: str) -> None:
    proc = stack.services[name]
    if proc.alive():
        return
    proc.start()
    await asyncio.to_thread(proc.wait_ready, 60)


@contextlib.asynccontextmanager
async def two_executor_stack(workdir: Path, **more: Any) -> AsyncIterator[LocalStack]:
    """The local stack with two executors holding 2 s leases, on free ports (`more`: other StackOptions)."""
    options = StackOptions(
        workdir=workdir,
        base_port=0,
        metrics_base=0,
        executors=2,
        extra_env={"executor": {"AGENTGPT_LEASE_TTL": str(LEASE_TTL), "AGENTGPT_POLL_INTERVAL": "0.2"}},
        **more,
    )
    s = LocalStack(options)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()
