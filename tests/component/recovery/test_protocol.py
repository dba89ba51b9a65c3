"""The recovery protocol against a real session service (in-memory chain): every step once, in order, and a
recovery cut short mid-way (an oracle crash) finished by another replica without any chain call twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agentgpt.clients import SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import NotFound
from agentgpt.executor.v1 import executor_pb2 as ex
from agentgpt.recovery.v1 import recovery_pb2 as pb
from services.recovery_oracle.executors import ExecutorPool, Member
from services.recovery_oracle.metrics import RecoveryMetrics
from services.recovery_oracle.protocol import ProtocolConfig, Recoverer
from services.recovery_oracle.store import RecoveryStore
from tests.component.session.harness import Harness, Owner

OLD = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
NEW = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


class FakeExecutor:
    """The new executor as the oracle sees it: its status, and what it was asked to do."""

    def __init__(self) -> None:
        self.assigned: list[str] = []
        self.gate: asyncio.Event | None = None

    async def assign_session(self, session_id: str) -> ex.AssignSessionResponse:
        if self.gate is not None:
            await self.gate.wait()
        self.assigned.append(session_id)
        return ex.AssignSessionResponse(epoch=3)

    async def close(self) -> None:
        return None


class NoCheckpoints:
    async def newest_verified(self, session_id: str) -> Any:
        raise NotFound(f"session {session_id} has no anchored checkpoint on any chain")


def pool_with(executor: FakeExecutor) -> ExecutorPool:
    pool = ExecutorPool(())
    status = ex.GetExecutorStatusResponse(executor_id="executor-2", address=NEW, capacity=4)
    pool.members = [Member("127.0.0.1:1", executor, status=status)]  # type: ignore[arg-type]
    return pool


async def recoverer(
    service: Harness, store: RecoveryStore, pool: ExecutorPool, holder: str, clock: Any = time.time
) -> tuple[Recoverer, SessionClient]:
    client = SessionClient(service.service.address, identity="recovery_oracle")
    r = Recoverer(
        store,
        client,
        NoCheckpoints(),  # type: ignore[arg-type]
        pool,
        RecoveryMetrics(CollectorRegistry()),
        ProtocolConfig(holder=holder, lease=2.0, retry_base=0.05),
        clock=clock,
    )
    return r, client


async def finished(store: RecoveryStore, session_id: str, timeout: float = 20.0) -> pb.Recovery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows, _ = await store.list(session_id=session_id)
        if rows and rows[0].status in (pb.RECOVERY_STATUS_RESUMED, pb.RECOVERY_STATUS_FAILED):
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"recovery of {session_id} did not finish: {rows}")


async def test_every_step_once_in_order(service: Harness, owner: Owner, tmp_path: Path) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, OLD)
    store = await RecoveryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    new_executor = FakeExecutor()
    r, client = await recoverer(service, store, pool_with(new_executor), "oracle-a")
    try:
        started = await r.start(s.session_id, "executor stopped answering")
        assert started.failed_executor == OLD and started.status == pb.RECOVERY_STATUS_DETECTED
        done = await finished(store, s.session_id)
        assert done.status == pb.RECOVERY_STATUS_RESUMED, done
        assert [st.name for st in done.steps] == [
            "pause",
            "choose",
            "reassign",
            "verify",
            "resume",
            "rehydrate",
        ]
        assert all(st.HasField("finished_at") and st.attempts == 1 for st in done.steps)
        assert done.new_executor == NEW and done.chain_epoch == 2 and not done.HasField("checkpoint")
        session = await client.get_session(s.session_id)
        assert session.state == cpb.SESSION_STATE_ACTIVE and session.executor == NEW
        assert service.control.chain.calls.count("pause") == 1  # type: ignore[attr-defined]
        assert service.control.chain.calls.count("reassign") == 1  # type: ignore[attr-defined]
        assert new_executor.assigned == [s.session_id]
        evs = [e.type for e in await service.control.db.events_after(s.session_id, 0)]
        assert evs[-3:] == ["paused", "executor_reassigned", "resumed"]
    finally:
        await r.stop()
        await client.close()
        await store.close()


async def test_a_recovery_cut_short_is_finished_by_another_replica_once(
    service: Harness, owner: Owner, tmp_path: Path
) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, OLD)
    store = await RecoveryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    stuck = FakeExecutor()
    stuck.gate = asyncio.Event()  # replica A hangs in the rehydration step...
    a, client_a = await recoverer(service, store, pool_with(stuck), "oracle-a")
    offset = [0.0]
    b, client_b = await recoverer(
        service, store, pool_with(stuck), "oracle-b", clock=lambda: time.time() + offset[0]
    )
    try:
        await a.start(s.session_id, "lease lapsed")
        for _ in range(200):
            rows, _ = await store.list(session_id=s.session_id)
            if rows[0].status == pb.RECOVERY_STATUS_REHYDRATING and len(rows[0].steps) == 6:
                break
            await asyncio.sleep(0.05)
        await a.stop()  # ...and dies there
        await b.resume_orphans()
        assert not b.running(s.session_id)  # A's lease is still live: B waits
        offset[0] = 60.0  # later: A's lease lapsed
        stuck.gate.set()
        await b.resume_orphans()
        assert b.running(s.session_id)
        done = await finished(store, s.session_id)
        assert done.status == pb.RECOVERY_STATUS_RESUMED and done.holder == "oracle-b" and done.fence == 2
        # the steps A finished were not run again; the chain saw each transition once
        assert [st.name for st in done.steps] == [
            "pause",
            "choose",
            "reassign",
            "verify",
            "resume",
            "rehydrate",
        ]
        calls = service.control.chain.calls  # type: ignore[attr-defined]
        assert (calls.count("pause"), calls.count("reassign"), calls.count("resume")) == (1, 1, 1)
    finally:
        await a.stop()
        await b.stop()
        await client_a.close()
        await client_b.close()
        await store.close()


async def test_a_handoff_moves_the_session_without_pausing(
    service: Harness, owner: Owner, tmp_path: Path
) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, OLD)
    store = await RecoveryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    r, client = await recoverer(service, store, pool_with(FakeExecutor()), "oracle-a")
    try:
        await r.start(s.session_id, "handoff: executor-1 is shutting down", handoff=True)
        done = await finished(store, s.session_id)
        assert done.status == pb.RECOVERY_STATUS_RESUMED and done.handoff
        assert [st.name for st in done.steps] == ["choose", "reassign", "verify", "rehydrate"]
        calls = service.control.chain.calls  # type: ignore[attr-defined]
        assert "pause" not in calls and calls.count("reassign") == 1
        assert (await client.get_session(s.session_id)).state == cpb.SESSION_STATE_ACTIVE
    finally:
        await r.stop()
        await client.close()
        await store.close()


async def test_a_chain_outage_makes_the_recovery_wait_then_complete(
    service: Harness, owner: Owner, tmp_path: Path
) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, OLD)
    store = await RecoveryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    r, client = await recoverer(service, store, pool_with(FakeExecutor()), "oracle-a")
    chain = service.control.chain
    chain.down = True  # type: ignore[attr-defined]
    try:
        await r.start(s.session_id, "executor stopped answering")
        for _ in range(100):  # the pause keeps failing while the chain is unreachable
            rows, _ = await store.list(session_id=s.session_id)
            if rows[0].steps and rows[0].steps[0].attempts >= 3:
                break
            await asyncio.sleep(0.05)
        pause = rows[0].steps[0]
        assert rows[0].status == pb.RECOVERY_STATUS_PAUSED and pause.attempts >= 3, rows[0]
        assert not pause.HasField("finished_at") and "failed" in pause.detail  # waiting, says why
        chain.down = False  # type: ignore[attr-defined]
        done = await finished(store, s.session_id)
        assert done.status == pb.RECOVERY_STATUS_RESUMED and done.steps[0].attempts >= 3
        assert chain.calls.count("pause") == 1  # type: ignore[attr-defined]
    finally:
        await r.stop()
        await client.close()
        await store.close()


async def test_with_no_other_executor_the_restarted_one_gets_its_session_back(
    service: Harness, owner: Owner, tmp_path: Path
) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, OLD)
    store = await RecoveryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    restarted = FakeExecutor()
    pool = ExecutorPool(())
    status = ex.GetExecutorStatusResponse(executor_id="executor-1", address=OLD, capacity=4)
    pool.members = [Member("127.0.0.1:1", restarted, status=status)]  # type: ignore[arg-type]
    r, client = await recoverer(service, store, pool, "oracle-a")
    try:
        await r.start(s.session_id, "executor stopped answering")
        await asyncio.sleep(0.5)
        (waiting,), _ = await store.list(session_id=s.session_id)
        assert waiting.status == pb.RECOVERY_STATUS_REASSIGNING  # the same process that failed: not chosen
        status.started_at.FromSeconds(int(time.time()) + 5)  # ...until it comes back as a new process
        done = await finished(store, s.session_id)
        assert done.status == pb.RECOVERY_STATUS_RESUMED and done.new_executor == OLD
        assert "restarted" in next(st.detail for st in done.steps if st.name == "reassign")
        assert "reassign" not in service.control.chain.calls  # type: ignore[attr-defined]
        assert restarted.assigned == [s.session_id]
    finally:
        await r.stop()
        await client.close()
        await store.close()
