"""Each plane of the session control plane on its own, without gRPC: SessionDB on SQLite in tmp_path, the
in-memory chain, the embedded content store, and one injected clock that every plane and SessionDB read."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from eth_account import Account

from agentgpt import auth
from agentgpt.errors import Aborted, PermissionDenied, Unauthenticated
from agentgpt.ipfs import EmbeddedStore
from agentgpt.lifecycle import Action, Durations, SessionState
from agentgpt.session.v1 import session_pb2 as pb
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.session.control import CallContext, SessionControl, StaleVersion
from services.session.control.core import CONFLICT_ATTEMPTS, Core
from services.session.control.relay import OPS
from services.session.memory import InMemorySessionChain
from services.session.model import verify_chain
from services.session.store import Change, SessionDB, VersionConflict

KEY = DEV_PRIVATE_KEYS[1]
OWNER = str(Account.from_key(KEY).address)
EXECUTOR = str(Account.from_key(DEV_PRIVATE_KEYS[2]).address)
SPEC_YAML = 'type: "treasury_management"\nparams:\n  chains: [arbitrum]\ndecorators: ["kyc_tier4"]\n'
SERVICE = CallContext(service="executor-1")
START = 1_800_000_000.0


class FakeClock:
    """Unix seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> float:
        return self.t


_nonces = itertools.count(1)
_keys = itertools.count(1)


def signed(req: Any, clock: FakeClock) -> Any:
    out = auth.signed(req, KEY, nonce=next(_nonces), deadline=int(clock.t) + 600, chain_id=31337)
    if hasattr(out, "chain_signature"):
        out.chain_signature = b"\x01" * 65
    return out


def read(req: Any, clock: FakeClock) -> Any:
    return auth.signed(req, KEY, nonce=0, deadline=int(clock.t) + 600, chain_id=31337)


def key() -> str:
    return f"k{next(_keys)}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def control(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SessionControl]:
    db = await SessionDB.open(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}", clock=clock)
    store = EmbeddedStore(tmp_path / "ipfs")
    yield SessionControl(
        db,
        InMemorySessionChain(),
        store,
        durations=Durations(draft=3600, active=259200, paused=86400),
        auth_chain_id=31337,
        trust_service_header=True,
        clock=clock,
    )
    await store.close()
    await db.close()


async def create(control: SessionControl, clock: FakeClock, **over: Any) -> pb.Session:
    req = pb.CreateSessionRequest(idempotency_key=key(), spec_yaml=SPEC_YAML, initial_budget="1000", **over)
    return (await control.commands.create(signed(req, clock), CallContext())).session


async def active(control: SessionControl, clock: FakeClock) -> str:
    s = await create(control, clock)
    req = pb.ActivateSessionRequest(idempotency_key=key(), session_id=s.session_id, executor=EXECUTOR)
    await control.commands.activate(signed(req, clock), CallContext())
    return s.session_id


# ====================================================================== core


async def test_core_retries_a_conflict_and_gives_up_after_its_attempts() -> None:
    calls = 0

    async def conflicting() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise VersionConflict("another writer won")
        return calls

    assert await Core.retry_on_conflict(conflicting, gave_up="x") == 3

    async def always() -> int:
        raise VersionConflict("another writer won")

    with pytest.raises(Aborted) as info:
        await Core.retry_on_conflict(always, gave_up="the session kept changing; retry")
    assert info.value.message == "the session kept changing; retry"


async def test_core_never_retries_a_stale_expected_version(control: SessionControl, clock: FakeClock) -> None:
    s = await create(control, clock)
    rec = await control.db.require(s.session_id)
    with pytest.raises(StaleVersion) as info:
        control.core.check_version(pb.EditParamsRequest(expected_version=rec.version + 1), rec)
    assert info.value.message.startswith("expected_version: ")
    calls = 0

    async def stale() -> None:
        nonlocal calls
        calls += 1
        control.core.check_version(pb.EditParamsRequest(expected_version=rec.version + 1), rec)

    with pytest.raises(StaleVersion):
        await control.core.retry_on_conflict(stale, gave_up="x")
    assert calls == 1 < CONFLICT_ATTEMPTS


async def test_core_commit_wakes_watchers_and_sessiondb_uses_the_injected_clock(
    control: SessionControl, clock: FakeClock
) -> None:
    s = await create(control, clock)
    waiter = control.bus.waiter(s.session_id)
    clock.t += 42.5
    rec = await control.db.require(s.session_id)
    done = await control.core.commit(Change(s.session_id, rec.version, {}, []))
    assert waiter.is_set()
    assert done.updated_at == START + 42.5
    assert [e.at for e in await control.db.events_after(s.session_id, 0)] == [START]


# ====================================================================== callers


async def test_callers_judge_signatures_at_the_injected_clock(
    control: SessionControl, clock: FakeClock
) -> None:
    req = read(pb.GetSessionRequest(session_id="1"), clock)
    assert control.callers.read_caller(req, CallContext()).owner == OWNER
    clock.t += 601
    with pytest.raises(Unauthenticated, match="expired 1 s ago"):
        control.callers.read_caller(req, CallContext())
    assert control.callers.read_caller(pb.GetSessionRequest(), SERVICE).service == "executor-1"
    with pytest.raises(Unauthenticated, match="service identity"):
        control.callers.service_caller(pb.ClaimLeaseRequest(), CallContext(), "ClaimLease")
    untrusting = type(control.callers)(auth_chain_id=31337, trust_service_header=False, clock=clock)
    with pytest.raises(Unauthenticated):
        untrusting.read_caller(pb.GetSessionRequest(), SERVICE)


# ====================================================================== relay


def test_relay_has_one_table_entry_per_chain_operation() -> None:
    assert set(OPS) == {
        "activate",
        "update_budget",
        "pause",
        "resume",
        "terminate",
        "complete",
        "reassign_executor",
    }
    for name, op in OPS.items():
        assert op.name == name and op.action is Action(name)
        assert op.response.DESCRIPTOR.name.endswith("Response")
    assert [n for n, op in OPS.items() if op.kicks_chain_sync] == ["activate", "reassign_executor"]


async def test_relay_answers_a_retried_request_from_its_record(
    control: SessionControl, clock: FakeClock
) -> None:
    req = signed(
        pb.CreateSessionRequest(idempotency_key="same", spec_yaml=SPEC_YAML, initial_budget="5"), clock
    )
    first = await control.commands.create(req, CallContext())
    again = signed(
        pb.CreateSessionRequest(idempotency_key="same", spec_yaml=SPEC_YAML, initial_budget="5"), clock
    )
    assert await control.commands.create(again, CallContext()) == first
    assert control.chain.mints == 1  # type: ignore[attr-defined]


async def test_relay_reconciles_a_transaction_whose_caller_crashed(
    control: SessionControl, clock: FakeClock
) -> None:
    chain = control.chain
    sid = await active(control, clock)
    chain.drop_sends = True  # type: ignore[attr-defined]
    req = pb.PauseSessionRequest(idempotency_key=key(), session_id=sid, reason="lunch")
    with pytest.raises(Exception, match="crashed"):
        await control.commands.pause(signed(req, clock), CallContext())
    chain.drop_sends = False  # type: ignore[attr-defined]
    assert (await control.db.require(sid)).lifecycle_state is SessionState.ACTIVE
    assert await control.reconcile() == 1
    rec = await control.db.require(sid)
    assert rec.lifecycle_state is SessionState.PAUSED and rec.state_reason == "lunch (by " + OWNER + ")"


# ====================================================================== commands


async def test_commands_create_edit_activate_on_the_injected_clock(
    control: SessionControl, clock: FakeClock
) -> None:
    s = await create(control, clock)
    assert SessionState(s.state) is SessionState.DRAFT and s.created_at.seconds == int(START)
    assert (await control.db.require(s.session_id)).deadline == int(START) + 3600
    edit = pb.EditParamsRequest(idempotency_key=key(), session_id=s.session_id, params_json='{"risk": 0.1}')
    edited = (await control.commands.edit_params(signed(edit, clock), CallContext())).session
    assert json.loads(edited.spec.params_json)["risk"] == 0.1
    clock.t += 100
    act = pb.ActivateSessionRequest(idempotency_key=key(), session_id=s.session_id, executor=EXECUTOR)
    resp = await control.commands.activate(signed(act, clock), CallContext())
    assert SessionState(resp.session.state) is SessionState.ACTIVE and resp.session.executor == EXECUTOR
    assert resp.tx_hash
    rec = await control.db.require(s.session_id)
    assert rec.entered_at == int(START) + 100 and rec.deadline == int(START) + 100 + 259200


# ====================================================================== work


async def test_work_leases_and_reports_with_fencing(control: SessionControl, clock: FakeClock) -> None:
    sid = await active(control, clock)
    submit = pb.SubmitTasksRequest(
        idempotency_key=key(), session_id=sid, tasks=[pb.TaskInput(kind="analyze_market", args_json="{}")]
    )
    assert list((await control.work.submit_tasks(signed(submit, clock), CallContext())).task_seqs) == [1]
    lease = await control.work.claim_lease(pb.ClaimLeaseRequest(executor_id="x1", ttl_seconds=20), SERVICE)
    assert lease is not None and lease.lease_epoch == 1 and lease.lease_expires_at == START + 20
    clock.t += 5
    renewed = await control.work.renew_lease(
        pb.RenewLeaseRequest(session_id=sid, executor_id="x1", epoch=1, ttl_seconds=20), SERVICE
    )
    assert renewed.lease_expires_at == START + 25
    report = pb.ReportTaskRequest(
        session_id=sid,
        executor_id="x1",
        epoch=1,
        task=pb.Task(seq=1, status=pb.TASK_STATUS_SUCCEEDED, cost="7", gas_used=21000, result_json="{}"),
    )
    version = await control.work.report_task(report, SERVICE)
    assert await control.work.report_task(report, SERVICE) == version  # a retried report
    task = await control.db.task(sid, 1)
    assert task is not None and task.status == pb.TASK_STATUS_SUCCEEDED and task.updated_at == START + 5
    assert (await control.db.require(sid)).budget_spent == "7"
    stale = pb.ReleaseLeaseRequest(session_id=sid, executor_id="x1", epoch=2)
    with pytest.raises(Exception, match="stale lease epoch"):
        await control.work.release_lease(stale, SERVICE)
    cp = pb.RecordCheckpointRequest(session_id=sid, executor_id="x1", epoch=1)
    cp.checkpoint.session_id, cp.checkpoint.seq, cp.checkpoint.cid = sid, 1, "bafy"
    cp.checkpoint.state_root = b"\x05" * 32
    await control.work.record_checkpoint(cp, SERVICE)
    assert json.loads((await control.db.require(sid)).checkpoint_json or "{}")["at"] == START + 5


# ====================================================================== reads


async def test_reads_inspect_alerts_list_and_watch(control: SessionControl, clock: FakeClock) -> None:
    sid = await active(control, clock)
    submit = pb.SubmitTasksRequest(
        idempotency_key=key(), session_id=sid, tasks=[pb.TaskInput(kind="a"), pb.TaskInput(kind="b")]
    )
    await control.work.submit_tasks(signed(submit, clock), CallContext())
    await control.work.claim_lease(pb.ClaimLeaseRequest(executor_id="x1", ttl_seconds=10), SERVICE)
    failed = pb.Task(seq=1, status=pb.TASK_STATUS_FAILED, error="revert", result_json="{}")
    await control.work.report_task(
        pb.ReportTaskRequest(session_id=sid, executor_id="x1", epoch=1, task=failed), SERVICE
    )
    got = await control.reads.inspect(read(pb.InspectSessionRequest(session_id=sid), clock), CallContext())
    assert (got.tasks_done, got.tasks_total, got.alerts_critical) == (1, 2, 1)
    assert [a.code for a in got.alerts] == ["task_failed"] and got.recent_tasks == []
    clock.t += 11  # the lease lapses on the injected clock
    got = await control.reads.inspect(
        read(pb.InspectSessionRequest(session_id=sid, detail="full"), clock), SERVICE
    )
    assert [a.code for a in got.alerts] == ["lease_lost", "task_failed"] and got.alerts_critical == 2
    assert [t.seq for t in got.recent_tasks] == [2, 1] and got.recent_events
    rows, after = await control.reads.list_tasks(pb.ListTasksRequest(session_id=sid, page_size=1), SERVICE)
    assert [t.seq for t in rows] == [1] and after == 1
    sessions, token = await control.reads.list_sessions(pb.ListSessionsRequest(owner=OWNER), SERVICE)
    assert [r.session_id for r in sessions] == [sid] and token == ""
    events = [
        e
        async for e in control.reads.watch(pb.WatchSessionRequest(session_id=sid, history_only=True), SERVICE)
    ]
    assert [e.type for e in events][:2] == ["created", "activated"] and events[-1].type == "task_failed"
    with pytest.raises(PermissionDenied):
        await control.reads.list_sessions(read(pb.ListSessionsRequest(owner=EXECUTOR), clock), CallContext())


# ====================================================================== archive


async def test_archive_puts_the_whole_hash_chained_log(control: SessionControl, clock: FakeClock) -> None:
    sid = await active(control, clock)
    rec = await control.db.require(sid)
    archived = await control.log_archive.put(rec)
    assert archived.arweave_tx == ""  # no gateway configured: IPFS only
    doc = json.loads(await control.archive.get(archived.cid))
    evs = await control.db.events_after(sid, 0)
    assert doc["archive_version"] == 2
    assert [e["at_us"] for e in doc["events"]] == [round(e.at * 1_000_000) for e in evs]
    assert [e["type"] for e in doc["events"]] == [e.type for e in evs] == ["created", "activated"]
    assert doc["head"] == "0x" + evs[-1].hash.hex() and verify_chain(evs)
    done = await control.commands.complete(
        signed(pb.CompleteSessionRequest(idempotency_key=key(), session_id=sid), clock), CallContext()
    )
    assert SessionState(done.session.state) is SessionState.COMPLETED and done.log_cid and done.burn_tx_hash


# ====================================================================== expiry


async def test_expiry_fires_on_the_injected_clock_and_settles_on_chain(
    control: SessionControl, clock: FakeClock
) -> None:
    s = await create(control, clock)
    assert await control.fire_due() == 0
    clock.t += 3601
    assert await control.fire_due() == 1
    rec = await control.db.require(s.session_id)
    assert rec.lifecycle_state is SessionState.TERMINATED and rec.chain_expiry_due == clock.t
    assert await control.settle_chain_expiries() == 1
    assert [e.type for e in await control.db.events_after(s.session_id, 0)][-2:] == [
        "expired",
        "expired_on_chain",
    ]
