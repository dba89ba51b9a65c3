"""Kill an executor and lose nothing: the recovery protocol end to end, every service a real process, the
two anvil chains and the IPFS node real, checked on the chain.

The stack runs two executors with a 2 s lease. Each case finds the executor holding a session, hurts it
(SIGKILL, SIGSTOP past its lease then SIGCONT, SIGTERM), and checks that the session goes on on the other
executor with no operator action: every task SUCCEEDED exactly once (one task_succeeded event per seq),
the budget charged once per task on chain (the BudgetCharged ranges tile the task sequence), the home
chain assigns the session to the new executor at a higher epoch, and ListRecoveries shows the recovery
and its steps. The hurt executor is brought back afterwards, so each case starts with two.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from agentgpt.clients import ExecutorClient, RecoveryClient, SessionClient
from agentgpt.contracts import load_artifact
from agentgpt.recovery.v1 import recovery_pb2 as rc
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.stack import LocalStack, StackOptions
from tests.support import eventually
from tests.support.stack import session_ok

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.chain,
    pytest.mark.ipfs,
    pytest.mark.chaos,
    pytest.mark.timeout(600),
]

LEASE_TTL = 2
SPEC = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
checkpoint_interval: 3
"""


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    options = StackOptions(
        workdir=tmp_path_factory.mktemp("recovery"),
        base_port=0,
        metrics_base=0,
        executors=2,
        extra_env={"executor": {"AGENTGPT_LEASE_TTL": str(LEASE_TTL), "AGENTGPT_POLL_INTERVAL": "0.2"}},
    )
    s = LocalStack(options)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def executors(stack: LocalStack) -> list[str]:
    return sorted(n for n in stack.services if n.startswith("executor-"))


async def holder(stack: LocalStack, session_id: str) -> str:
    """The name of the executor process running the session now."""
    for name in executors(stack):
        proc = stack.services[name]
        if not proc.alive():
            continue
        async with ExecutorClient(proc.grpc) as client:
            try:
                status = await client.get_status(timeout=2, retry=False)
            except Exception:
                continue
        if any(s.session_id == session_id for s in status.sessions):
            return name
    raise AssertionError(f"no executor runs session {session_id}")


async def new_session(stack: LocalStack, tmp_path: Path) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    sid = (await session_ok(stack, "create", str(spec), "--budget", "50")).split()[1]
    await session_ok(stack, "activate", sid)
    return sid


async def submit(stack: LocalStack, sid: str, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await session_ok(
            stack, "submit", sid, "publish_report", "--args", json.dumps({"title": f"report {i}"})
        )


def session_client(stack: LocalStack) -> SessionClient:
    return SessionClient(stack.services["session"].grpc, identity="e2e")


async def tasks_of(stack: LocalStack, sid: str) -> list[ss.Task]:
    async with session_client(stack) as client:
        return list((await client.list_tasks(ss.ListTasksRequest(session_id=sid, page_size=1000))).tasks)


async def all_succeeded(stack: LocalStack, sid: str, count: int) -> None:
    tasks = await tasks_of(stack, sid)
    assert len(tasks) == count and all(t.status == ss.TASK_STATUS_SUCCEEDED for t in tasks), [
        (t.seq, ss.TaskStatus.Name(t.status)) for t in tasks
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


async def test_sigkill_the_executor_mid_session_resumes_on_the_other(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 4)
    victim = await holder(stack, sid)
    address_before = factory(stack).functions.getSession(int(sid)).call()[5]
    stack.services[victim].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    killed_at = time.monotonic()
    await submit(stack, sid, 6, start=4)  # acknowledged while the executor is dead: none may be lost
    await check_exactly_once(stack, sid, 10)
    took = time.monotonic() - killed_at
    survivor = await holder(stack, sid)
    assert survivor != victim
    onchain = factory(stack).functions.getSession(int(sid)).call()
    assert onchain[5] != address_before and onchain[7] >= 2  # reassigned on chain, epoch bumped
    (recovery, *_) = await recoveries(stack, sid)
    assert recovery.status == rc.RECOVERY_STATUS_RESUMED and not recovery.handoff
    assert recovery.failed_executor == address_before and recovery.new_executor == onchain[5]
    assert [s.name for s in recovery.steps] == [
        "pause",
        "choose",
        "reassign",
        "verify",
        "resume",
        "rehydrate",
    ]
    types = [e.type for e in await events_of(stack, sid)]
    assert {"paused", "executor_reassigned", "resumed"} <= set(types)
    print(f"SIGKILL -> all 10 tasks done on {survivor} in {took:.1f} s")
    await bring_back(stack, victim)


async def test_sigstop_past_the_lease_then_sigcont_is_fenced(stack: LocalStack, tmp_path: Path) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 3)
    await eventually(lambda: all_succeeded(stack, sid, 3), timeout=60)
    victim = await holder(stack, sid)
    proc = stack.services[victim]
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:

        async def moved() -> None:
            (r, *_) = await recoveries(stack, sid)
            assert r.status == rc.RECOVERY_STATUS_RESUMED

        await eventually(moved, timeout=60)
        await submit(stack, sid, 3, start=3)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    # the woken executor's lease and chain assignment are gone: it stops instead of writing
    await check_exactly_once(stack, sid, 6)
    assert await holder(stack, sid) != victim

    def fenced_in_log() -> None:
        text = proc.log_path.read_text(errors="replace")
        assert f"session {sid}" in text and ("fenced" in text or "stale" in text), text[-2000:]

    await eventually(fenced_in_log, timeout=30)


async def test_sigterm_hands_the_session_off_without_a_pause(stack: LocalStack, tmp_path: Path) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 2)
    await eventually(lambda: all_succeeded(stack, sid, 2), timeout=60)
    victim = await holder(stack, sid)
    paused_before = [e.type for e in await events_of(stack, sid)].count("paused")
    stack.services[victim].terminate()
    await submit(stack, sid, 3, start=2)
    await check_exactly_once(stack, sid, 5)
    (recovery, *_) = await recoveries(stack, sid)
    assert recovery.status == rc.RECOVERY_STATUS_RESUMED and recovery.handoff
    assert [s.name for s in recovery.steps] == ["choose", "reassign", "verify", "rehydrate"]
    assert [e.type for e in await events_of(stack, sid)].count("paused") == paused_before  # never paused
    assert stack.services[victim].wait(30) == 0  # it exited cleanly after handing off
    await bring_back(stack, victim)
