"""The executor engine against the REAL session service, both in-process.

The session service is started as its own component tests start it (tests/component/session: SQLite in
tmp_path, in-memory chain, embedded IPFS archive); the engine is build_parts over GrpcSessionPort with the
executor's service identity, as in production. The owner drives the session through signed requests; the
executor only ever sees the session API. What the tests check is what SessionDB recorded, read back through
the API (ListTasks, InspectSession, WatchSession), plus the checkpoint documents in the executor's store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from eth_account import Account

from agentgpt import auth
from agentgpt.checkpoint_format import verify_document as verify_checkpoint_log
from agentgpt.clients import SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.ipfs import CheckpointReader
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.tasklog import ZERO_HASH
from services.executor.app import ExecutorParts
from services.executor.ports import Fenced, SessionPort
from services.executor.records import DONE
from tests.component.executor.helpers import KEY, parts
from tests.component.session.harness import SERVICE_MD, Harness, Owner, new_key
from tests.support import eventually

# SessionDB on SQLite (a file in tmp_path). The fixture's PostgreSQL variant is the session suite's
# business: the engine only sees the API, which that suite already checks on both databases.
pytestmark = pytest.mark.parametrize("make_service", ["sqlite"], indirect=True)

EXECUTOR_ADDRESS = Account.from_key(KEY).address  # committed on chain at activation
ORACLE_MD = ((auth.SERVICE_HEADER, "recovery-oracle"),)  # who hands a session over
TASK_FEE = 10**15  # ExecutorConfig.task_fee default
SANCTIONED = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"  # on the shipped OFAC list


# ---------------------------------------------------------------------------------------------- owner side


def spec_yaml(*, checkpoint_interval: int) -> str:
    # JSON is YAML: the seed's form with chains/models at top level and an explicit checkpoint interval.
    return json.dumps(
        {
            "type": "research_digest",
            "chains": ["arbitrum"],
            "models": {"execution": "builtin"},
            "decorators": [],
            "checkpoint_interval": checkpoint_interval,
            "params": {},
        }
    )


async def open_session(h: Harness, owner: Owner, spec: str) -> str:
    """Create (NFT minted on the in-memory chain) and activate a session, both signed by the owner."""
    req = owner.sign(
        pb.CreateSessionRequest(idempotency_key=new_key(), spec_yaml=spec, initial_budget=str(10**20))
    )
    session = (await h.stub.CreateSession(owner.chain_sign("create", None, req))).session
    assert session.state == cpb.SESSION_STATE_DRAFT
    activated = await h.activate(owner, session, EXECUTOR_ADDRESS)
    assert activated.session.state == cpb.SESSION_STATE_ACTIVE
    return str(session.session_id)


async def submit(h: Harness, owner: Owner, sid: str, tasks: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """SubmitTasks signed by the owner, once: the service re-reads and retries its own write when an
    executor commits to the session in between (it used to answer ABORTED then)."""
    req = owner.sign(
        pb.SubmitTasksRequest(
            idempotency_key=new_key(),
            session_id=sid,
            tasks=[pb.TaskInput(kind=kind, args_json=json.dumps(args)) for kind, args in tasks],
        )
    )
    return list((await h.stub.SubmitTasks(req)).task_seqs)


async def list_tasks(h: Harness, owner: Owner, sid: str) -> list[pb.Task]:
    """Every task of the session, a ListTasks page at a time, read with the owner's signature."""
    out: list[pb.Task] = []
    after = 0
    while True:
        req = owner.read(pb.ListTasksRequest(session_id=sid, after_seq=after, page_size=8))
        page = await h.stub.ListTasks(req)
        out.extend(page.tasks)
        if not page.next_after_seq:
            return out
        after = page.next_after_seq


async def events(h: Harness, owner: Owner, sid: str) -> list[pb.SessionEvent]:
    req = owner.read(pb.WatchSessionRequest(session_id=sid, history_only=True))
    return [resp.event async for resp in h.stub.WatchSession(req)]


async def all_done(h: Harness, owner: Owner, sid: str, count: int) -> list[pb.Task]:
    tasks = await list_tasks(h, owner, sid)
    assert len(tasks) == count and all(t.status in DONE for t in tasks), [
        (t.seq, pb.TaskStatus.Name(t.status)) for t in tasks
    ]
    return tasks


async def as_service(h: Harness, sid: str) -> pb.Session:
    """GetSession as a service identity (what an owner's read does not show: the lease epoch matters)."""
    resp: pb.GetSessionResponse = await h.stub.GetSession(
        pb.GetSessionRequest(session_id=sid), metadata=SERVICE_MD
    )
    return resp.session


async def take_over(h: Harness, sid: str, holder: str, new: ExecutorParts) -> tuple[int, int]:
    """The recovery oracle's move through the real API: ReleaseLease of `holder`'s current epoch, then
    `new` claims the session (ClaimLease, which bumps the fencing epoch). Returns (old, new) epochs."""
    old = (await as_service(h, sid)).lease_epoch
    await h.stub.ReleaseLease(
        pb.ReleaseLeaseRequest(session_id=sid, executor_id=holder, epoch=old), metadata=ORACLE_MD
    )
    return old, await new.engine.assign(sid)


# ---------------------------------------------------------------------------------------------- executor side


class HeldReport:
    """The real GrpcSessionPort, except that the final report of task `seq` waits until `go` is set, and
    every report's outcome is recorded: lets a test take the lease over while the engine is between
    running a task and committing it."""

    def __init__(self, inner: SessionPort, seq: int) -> None:
        self.inner, self.seq = inner, seq
        self.holding, self.go = asyncio.Event(), asyncio.Event()
        self.accepted: list[tuple[int, int]] = []  # (epoch, seq)
        self.refused: list[tuple[int, int, str]] = []  # (epoch, seq, why)

    async def claim(self, executor_id: str, session_id: str, ttl: int, address: str = "") -> pb.Lease | None:
        return await self.inner.claim(executor_id, session_id, ttl, address)

    async def renew(self, lease: pb.Lease, ttl: int) -> pb.Lease:
        return await self.inner.renew(lease, ttl)

    async def release(self, lease: pb.Lease) -> None:
        await self.inner.release(lease)

    async def session(self, session_id: str) -> pb.Session:
        return await self.inner.session(session_id)

    async def tasks(self, session_id: str, after_seq: int) -> list[pb.Task]:
        return await self.inner.tasks(session_id, after_seq)

    async def record_checkpoint(self, lease: pb.Lease, checkpoint: cpb.Checkpoint) -> None:
        await self.inner.record_checkpoint(lease, checkpoint)

    async def report(self, lease: pb.Lease, task: pb.Task) -> None:
        if task.seq == self.seq and task.status in DONE:
            self.holding.set()
            await self.go.wait()
        try:
            await self.inner.report(lease, task)
        except Fenced as exc:
            self.refused.append((lease.epoch, task.seq, str(exc)))
            raise
        self.accepted.append((lease.epoch, task.seq))


class Executors:
    """Executor engines on one session service, each with its own client, sharing one content store
    (the IPFS network every executor and verifier reads)."""

    def __init__(self, address: str, tmp: Path) -> None:
        self.address, self.tmp = address, tmp
        self.started: list[tuple[ExecutorParts, SessionClient, asyncio.Task[None] | None]] = []

    def start(self, executor_id: str, *, claim: bool = False, **overrides: Any) -> ExecutorParts:
        """An engine as build_parts makes it. claim=True runs its lease loop (it claims ACTIVE sessions on
        its own); otherwise it runs only what it is assigned (engine.assign, the AssignSession RPC)."""
        p, client = parts(self.address, self.tmp, executor_id=executor_id, **overrides)
        job = asyncio.create_task(p.engine.run()) if claim else None
        self.started.append((p, client, job))
        return p

    async def close(self) -> None:
        for p, client, job in self.started:
            if job is not None:
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
            await p.engine.stop()
            await p.store.close()
            await client.close()


@pytest_asyncio.fixture
async def executors(service: Harness, tmp_path: Path) -> AsyncIterator[Executors]:
    # Depends on `service`, so the engines stop before the session service does.
    ex = Executors(service.service.address, tmp_path / "executors")
    try:
        yield ex
    finally:
        await ex.close()


async def read_checkpoints(
    store: Any, sid: str, evs: list[pb.SessionEvent]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(event data, document) of every `checkpointed` event, each document fetched from the store and
    checked against its CID, session, seq and state root."""
    reader = CheckpointReader(store)
    out = []
    for e in evs:
        if e.type == "checkpointed":
            d = json.loads(e.data_json)
            root = bytes.fromhex(d["state_root"].removeprefix("0x"))
            out.append((d, await reader.read(d["cid"], session_id=sid, seq=d["seq"], state_root=root)))
    return out


# ---------------------------------------------------------------------------------------------- tests


async def test_executor_runs_thirty_tasks_in_order_and_checkpoints(
    service: Harness, owner: Owner, executors: Executors
) -> None:
    h = service
    sid = await open_session(h, owner, spec_yaml(checkpoint_interval=7))

    def work(seq: int) -> tuple[str, dict[str, Any]]:
        if seq % 10 == 0:
            return ("publish_report", {"title": f"digest {seq}"})  # to IPFS; off-chain without a network
        return ("collect_metrics", {"i": seq})  # the built-in planner's off-chain `note`

    assert await submit(h, owner, sid, [work(s) for s in range(1, 26)]) == list(range(1, 26))
    ex = executors.start("executor-1", claim=True)  # claims the ACTIVE session by itself

    async def idle_checkpoint_at_25() -> None:
        await all_done(h, owner, sid, 25)
        assert (await h.get(owner, sid)).latest_checkpoint.seq == 25  # queue drained: checkpointed

    await eventually(idle_checkpoint_at_25)
    # more work for a running session: the executor picks it up from the queue
    assert await submit(h, owner, sid, [work(s) for s in range(26, 31)]) == list(range(26, 31))

    async def finished() -> list[pb.Task]:
        tasks = await all_done(h, owner, sid, 30)
        assert (await h.get(owner, sid)).latest_checkpoint.seq == 30
        return tasks

    tasks = await eventually(finished)

    # Every task SUCCEEDED, as planned: notes record their args, reports went to IPFS with what the
    # session had produced so far (so task 10 ran after 9, 30 after 29 and 20).
    assert [t.seq for t in tasks] == list(range(1, 31))
    assert {t.status for t in tasks} == {pb.TASK_STATUS_SUCCEEDED}
    for t in tasks:
        result = json.loads(t.result_json)
        assert result["context_epoch"] == 1 and not t.error and len(t.log_hash) == 32
        if t.input.kind == "collect_metrics":
            assert result["outputs"] == [{"note": {"i": t.seq}}]
    store = ex.store
    final = json.loads(tasks[29].result_json)["outputs"][0]
    assert final["title"] == "digest 30"
    report = json.loads(await store.get(final["cid"]))
    assert report["session_id"] == sid
    assert report["results"]["collect_metrics"] == {"note": {"i": 29}}
    assert report["results"]["publish_report"]["title"] == "digest 20"

    # SessionDB's own records: one lease holder, one epoch, every task reported by it.
    rows = [await h.control.db.task(sid, seq) for seq in range(1, 31)]
    assert {(r.executor_id, r.epoch) for r in rows if r is not None} == {("executor-1", 1)}

    # The session's hash-chained event log: each task committed once, in seq order, and each checkpoint
    # recorded right after the task it covers (every 7 tasks, and when the queue drained at 25 and 30).
    evs = await events(h, owner, sid)
    flow = [
        (e.type, json.loads(e.data_json)["seq"]) for e in evs if e.type in ("task_succeeded", "checkpointed")
    ]
    expected: list[tuple[str, int]] = []
    for seq in range(1, 31):
        expected.append(("task_succeeded", seq))
        if seq in (7, 14, 21, 25, 30):
            expected.append(("checkpointed", seq))
    assert flow == expected

    # The checkpoints on IPFS hold the signed task log: entries 1..30 in order, linked from one checkpoint
    # to the next, ending at the state root the session service records.
    prev_cid, root, seqs = "", ZERO_HASH, []
    for cp, doc in await read_checkpoints(store, sid, evs):
        verified = verify_checkpoint_log(doc)
        assert (verified.prev_cid, doc["prev_root"]) == (prev_cid, root)
        assert verified.head == doc["state_root"] and verified.executor == EXECUTOR_ADDRESS
        seqs += [e["seq"] for e in doc["body"]["entries"]]
        prev_cid, root = cp["cid"], doc["state_root"]
    assert seqs == list(range(1, 31))
    session = await h.get(owner, sid)
    assert bytes(session.latest_checkpoint.state_root) == root
    assert verified.log_head == bytes(tasks[29].log_hash)  # the state root commits to the log head

    # What the dashboard reads.
    insp = await h.stub.InspectSession(owner.read(pb.InspectSessionRequest(session_id=sid, detail="full")))
    assert (insp.tasks_done, insp.tasks_total, insp.completion) == (30, 30, 1.0)
    assert (insp.alerts_critical, insp.alerts_warning) == (0, 0)
    assert insp.session.budget_spent == str(30 * TASK_FEE)
    assert [t.seq for t in insp.recent_tasks][:3] == [30, 29, 28]


async def test_a_taken_over_lease_fences_the_first_executor_out(
    service: Harness, owner: Owner, executors: Executors
) -> None:
    h = service
    sid = await open_session(h, owner, spec_yaml(checkpoint_interval=4))
    await submit(h, owner, sid, [("collect_metrics", {"i": i}) for i in range(1, 11)])
    held: list[HeldReport] = []

    def hold_task_6(port: SessionPort) -> SessionPort:
        held.append(HeldReport(port, seq=6))
        return held[0]

    # lease_ttl 60: its renewals (every 20 s) stay out of the way; the refused report is what fences it
    first = executors.start("executor-1", lease_ttl=60, wrap=hold_task_6)
    assert await first.engine.assign(sid) == 1
    gate = held[0]
    await asyncio.wait_for(gate.holding.wait(), 15)  # task 6 ran, its result not committed yet
    before = await list_tasks(h, owner, sid)
    assert [t.status for t in before] == [pb.TASK_STATUS_SUCCEEDED] * 5 + [pb.TASK_STATUS_QUEUED] * 5

    # The session is handed to another executor through the real lease RPCs.
    second = executors.start("executor-2")
    assert await take_over(h, sid, "executor-1", second) == (1, 2)
    assert (await as_service(h, sid)).lease_epoch == 2
    tasks = await eventually(lambda: all_done(h, owner, sid, 10))
    assert {t.status for t in tasks} == {pb.TASK_STATUS_SUCCEEDED}

    # Now executor-1 commits its task 6 with its stale lease: the session service refuses it, and
    # executor-1 stops running the session.
    gate.go.set()

    async def first_stopped() -> None:
        assert sid not in first.engine.runners
        assert gate.refused

    await eventually(first_stopped)
    assert gate.accepted == [(1, seq) for seq in range(1, 6)]
    ((epoch, seq, why),) = gate.refused
    assert (epoch, seq) == (1, 6)
    assert f"stale lease epoch 1; the current epoch of session {sid} is 2" in why
    # ... and whatever else it might try with that lease is refused too
    for call in (
        h.stub.RenewLease(
            pb.RenewLeaseRequest(session_id=sid, executor_id="executor-1", epoch=1), metadata=SERVICE_MD
        ),
        h.stub.ReportTask(
            pb.ReportTaskRequest(
                session_id=sid,
                executor_id="executor-1",
                epoch=1,
                task=pb.Task(seq=10, status=pb.TASK_STATUS_FAILED, error="stale"),
            ),
            metadata=SERVICE_MD,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "stale lease epoch 1" in str(err.value.details())

    # SessionDB: tasks 1-5 by executor-1 at epoch 1, 6-10 by executor-2 at epoch 2, each committed once,
    # in order, and charged once (executor-1's result for task 6 never landed).
    rows = [await h.control.db.task(sid, seq) for seq in range(1, 11)]
    assert [(r.executor_id, r.epoch) for r in rows if r is not None] == [("executor-1", 1)] * 5 + [
        ("executor-2", 2)
    ] * 5
    evs = await events(h, owner, sid)
    assert [json.loads(e.data_json)["seq"] for e in evs if e.type.startswith("task_")] == list(range(1, 11))
    assert (await h.get(owner, sid)).budget_spent == str(10 * TASK_FEE)
    assert second.engine.runners[sid].lease.epoch == 2

    async def checkpointed_by_second() -> None:  # as the leaseholder: at 8 (4 after 4), and when idle
        assert (await h.get(owner, sid)).latest_checkpoint.seq == 10

    await eventually(checkpointed_by_second)
    assert [
        json.loads(e.data_json)["seq"] for e in await events(h, owner, sid) if e.type == "checkpointed"
    ] == [
        4,
        8,
        10,
    ]


async def test_swap_context_moves_the_sessions_context_epoch(
    service: Harness, owner: Owner, executors: Executors
) -> None:
    h = service
    sid = await open_session(h, owner, spec_yaml(checkpoint_interval=50))
    assert (await h.get(owner, sid)).context_epoch == 0  # no context yet: nothing has run
    await submit(h, owner, sid, [("pay_vendor", {"to": SANCTIONED})])
    executors.start("executor-1", claim=True)
    await eventually(lambda: all_done(h, owner, sid, 1))
    assert (await h.get(owner, sid)).context_epoch == 1  # the spec's context, as the first report says

    await submit(
        h,
        owner,
        sid,
        [
            ("swap_context", {"decorators": ["ofac_filter"], "reason": "compliance review"}),
            ("pay_vendor", {"to": SANCTIONED}),
        ],
    )
    t = await eventually(lambda: all_done(h, owner, sid, 3))
    session = await h.get(owner, sid)
    assert session.context_epoch == 2
    swap = json.loads(t[1].result_json)["context"]
    assert (swap["epoch"], swap["decorators"], swap["since_seq"]) == (2, ["ofac_filter"], 2)
    assert swap["reason"] == "compliance review"
    # before the swap the payment note went through; after it, the new decorator refuses it
    assert t[0].status == pb.TASK_STATUS_SUCCEEDED and json.loads(t[0].result_json)["context_epoch"] == 1
    assert t[1].status == pb.TASK_STATUS_SUCCEEDED
    assert t[2].status == pb.TASK_STATUS_REFUSED and "sanctions list" in t[2].error
    assert json.loads(t[2].result_json)["context_epoch"] == 2
    evs = await events(h, owner, sid)
    assert [e.type for e in evs if e.type.startswith("task_")] == [
        "task_succeeded",
        "task_succeeded",
        "task_refused",
    ]


async def test_an_idle_executor_whose_lease_is_taken_over_stops_at_its_next_renewal(
    service: Harness, owner: Owner, executors: Executors
) -> None:
    h = service
    sid = await open_session(h, owner, spec_yaml(checkpoint_interval=50))
    await submit(h, owner, sid, [("collect_metrics", {"i": i}) for i in range(1, 4)])
    first = executors.start("executor-1", lease_ttl=3)  # renews every second
    await first.engine.assign(sid)
    await eventually(lambda: all_done(h, owner, sid, 3))
    second = executors.start("executor-2")
    assert await take_over(h, sid, "executor-1", second) == (1, 2)

    async def first_stopped() -> None:
        assert sid not in first.engine.runners

    await eventually(first_stopped, timeout=10)  # its RenewLease at epoch 1 was refused
    await submit(h, owner, sid, [("collect_metrics", {"i": 4})])
    await eventually(lambda: all_done(h, owner, sid, 4))
    rows = [await h.control.db.task(sid, seq) for seq in range(1, 5)]
    assert [(r.executor_id, r.epoch) for r in rows if r is not None] == [("executor-1", 1)] * 3 + [
        ("executor-2", 2)
    ]
    assert (await as_service(h, sid)).lease_epoch == 2


# ---------------------------------------------------------------------------------------------- takeovers
# What a new leaseholder inherits: the swapped context, and the log entries committed since the last
# checkpoint (re-signed, so its first checkpoint verifies and links to the previous one).


async def test_a_swapped_context_survives_a_takeover(
    service: Harness, owner: Owner, executors: Executors
) -> None:
    h = service
    sid = await open_session(h, owner, spec_yaml(checkpoint_interval=50))
    await submit(
        h, owner, sid, [("swap_context", {"decorators": ["ofac_filter"]}), ("pay_vendor", {"to": SANCTIONED})]
    )
    first = executors.start("executor-1")
    await first.engine.assign(sid)
    t = await eventually(lambda: all_done(h, owner, sid, 2))
    assert t[1].status == pb.TASK_STATUS_REFUSED  # the swapped-in ofac_filter at work
    second = executors.start("executor-2")
    await take_over(h, sid, "executor-1", second)
    await submit(h, owner, sid, [("pay_vendor", {"to": SANCTIONED})])
    t = await eventually(lambda: all_done(h, owner, sid, 3))
    assert (await h.get(owner, sid)).context_epoch == 2
    result = json.loads(t[2].result_json)
    assert result["context_epoch"] == 2  # executor-2 plans in the swapped context ...
    assert t[2].status == pb.TASK_STATUS_REFUSED, result  # ... and its ofac_filter refuses the payment


async def test_the_first_checkpoint_after_a_takeover_verifies(
    service: Harness, owner: Owner, executors: Executors
) -> None:
    h = service
    sid = await open_session(h, owner, spec_yaml(checkpoint_interval=4))
    await submit(
        h, owner, sid, [("survey_market", {"i": 1})] + [("collect_metrics", {"i": i}) for i in range(2, 7)]
    )
    # executor-1 checkpoints task 4, commits 5 and 6, and stops before checkpointing them (as a crashed or
    # fenced executor does; checkpoint_on_idle=False stands for the crash)
    first = executors.start("executor-1", checkpoint_on_idle=False)
    await first.engine.assign(sid)
    await eventually(lambda: all_done(h, owner, sid, 6))
    second = executors.start("executor-2")
    await take_over(h, sid, "executor-1", second)

    async def checkpointed_at_6() -> None:
        assert (await h.get(owner, sid)).latest_checkpoint.seq == 6  # executor-2, when idle

    await eventually(checkpointed_at_6)
    (cp4, doc4), (_, doc6) = await read_checkpoints(second.store, sid, await events(h, owner, sid))
    assert verify_checkpoint_log(doc4).head == doc4["state_root"]
    assert doc6["prev"].encode("base32") == cp4["cid"]
    log6 = verify_checkpoint_log(doc6)
    assert log6.head == doc6["state_root"] and log6.first_seq == 5 and log6.entries == 2
    assert log6.executor == second.key.address  # executor-2 re-signed tasks 5 and 6 after checking them
    # ... and it carries on with the session's memory, from before the checkpoint too
    await submit(h, owner, sid, [("publish_report", {"title": "after the takeover"})])
    t = await eventually(lambda: all_done(h, owner, sid, 7))
    report = json.loads(await second.store.get(json.loads(t[6].result_json)["outputs"][0]["cid"]))
    assert report["results"]["collect_metrics"] == {"note": {"i": 6}}
    assert report["results"]["survey_market"] == {"note": {"i": 1}}
