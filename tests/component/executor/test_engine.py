"""The engine against a real gRPC session API (in-process fake servicer) and a real content store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agentgpt.checkpoint_format import verify_document
from agentgpt.ipfs import CheckpointReader, EmbeddedStore
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.tasklog import ZERO_HASH
from tests.component.executor.fake_session import FakeSessionServer
from tests.component.executor.helpers import running_engine
from tests.support import eventually

SANCTIONED = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"


async def test_runs_tasks_in_order_commits_each_and_checkpoints(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    svc.add_session("101", spec=ss.SessionSpec(type="t", checkpoint_interval=5))
    svc.submit("101", [("count", {"i": i}) for i in range(12)])
    async with running_engine(fake_session.address, tmp_path) as p:
        await eventually(lambda: len(svc.done("101")) == 12, what="12 tasks done")
        await eventually(lambda: len(svc.sessions["101"].checkpoints) >= 3, what="3 checkpoints")
    fs = svc.sessions["101"]
    # Reports arrive strictly in seq order (the fake refuses a report while an earlier task is open).
    done_order = [seq for (_, _, seq, status) in fs.reports if status == ss.TASK_STATUS_SUCCEEDED]
    assert done_order == list(range(1, 13))
    assert [c.seq for c in fs.checkpoints] == [5, 10, 12]
    # The checkpoints' documents rebuild the whole signed hash chain up to each anchored state root.
    reader = CheckpointReader(EmbeddedStore(tmp_path / "ipfs"))
    head = ZERO_HASH
    for cp in fs.checkpoints:
        doc = await reader.read(cp.cid, session_id="101", seq=cp.seq, state_root=bytes(cp.state_root))
        verified = verify_document(doc)  # format v2: every entry, the state and the header signature
        assert verified.log_start == head and verified.head == bytes(cp.state_root)
        head = verified.log_head
        assert doc["executor"] == p.key.address and verified.executor == p.key.address
    assert fs.tasks[12].log_hash == head
    result = json.loads(fs.tasks[3].result_json)
    assert result["outputs"] == [{"note": {"i": 2}}] and result["context_epoch"] == 1
    assert result["model_score"] == 1.0  # the planner's own confidence, kept in the result
    assert int(fs.session.budget_spent) == 12 * 10**15


async def test_bad_plans_are_refused_and_recorded_and_the_session_goes_on(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    svc.add_session("102", spec=ss.SessionSpec(type="t", decorators=["ofac_filter"]), budget=3 * 10**15)
    svc.submit(
        "102",
        [
            ("x", {"plan": {"actions": [{"kind": "selfdestruct"}]}}),  # malformed
            ("transfer", {"chain": "home", "to": SANCTIONED, "value": 1}),  # unsafe
            ("ok", {}),
            ("big", {"plan": {"actions": [{"kind": "note"}], "est_gas": 10_000_000}}),  # over budget
            ("ok", {}),
            ("bad_args", {}),
        ],
    )
    svc.sessions["102"].tasks[6].input.args_json = "[1, 2]"  # not an object
    async with running_engine(fake_session.address, tmp_path):
        await eventually(lambda: len(svc.done("102")) == 6, what="6 tasks done")
    t = svc.sessions["102"].tasks
    statuses = [t[i].status for i in range(1, 7)]
    assert statuses == [
        ss.TASK_STATUS_REFUSED,
        ss.TASK_STATUS_REFUSED,
        ss.TASK_STATUS_SUCCEEDED,
        ss.TASK_STATUS_REFUSED,
        ss.TASK_STATUS_SUCCEEDED,
        ss.TASK_STATUS_REFUSED,
    ]
    assert "unknown action kind" in t[1].error
    assert "sanctions list" in t[2].error and "2026-11-25" in t[2].error
    assert "over budget" in t[4].error
    assert "args" in t[6].error
    assert all(len(t[i].log_hash) == 32 for i in range(1, 7))  # refusals are in the signed log too


async def test_context_swap_is_a_recorded_epoch(fake_session: FakeSessionServer, tmp_path: Path) -> None:
    svc = fake_session.service
    svc.add_session("103")
    svc.submit(
        "103",
        [
            ("transfer_note", {"to": SANCTIONED}),
            ("swap_context", {"decorators": ["ofac_filter"], "models": {"execution": "web3-agent-v5"}}),
            ("transfer", {"chain": "home", "to": SANCTIONED, "value": 1}),
            ("swap_context", {"decorators": ["tee_sealer"]}),
        ],
    )
    async with running_engine(fake_session.address, tmp_path):
        await eventually(lambda: len(svc.done("103")) == 4, what="4 tasks done")
    t = svc.sessions["103"].tasks
    swap = json.loads(t[2].result_json)["context"]
    assert swap["epoch"] == 2 and swap["decorators"] == ["ofac_filter"] and swap["since_seq"] == 2
    assert swap["models"] == {"execution": "web3-agent-v5"}
    assert json.loads(t[1].result_json)["context_epoch"] == 1
    assert t[3].status == ss.TASK_STATUS_REFUSED and json.loads(t[3].result_json)["context_epoch"] == 2
    assert t[4].status == ss.TASK_STATUS_REFUSED and "unknown decorator" in t[4].error


async def test_stale_epoch_stops_the_executor_at_once(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    svc.add_session("104")
    svc.submit("104", [("count", {}) for _ in range(3)])
    async with running_engine(fake_session.address, tmp_path, lease_ttl=1) as p:
        await eventually(lambda: len(svc.done("104")) == 3, what="first tasks done")
        assert "104" in p.engine.runners
        svc.steal_lease("104", "executor-2")  # the recovery oracle gave the session to someone else
        await eventually(lambda: "104" not in p.engine.runners, timeout=5, what="runner stopped")
        svc.submit("104", [("count", {})])
        await asyncio.sleep(0.5)
    fs = svc.sessions["104"]
    assert fs.tasks[4].status == ss.TASK_STATUS_QUEUED  # the fenced executor did not run it
    assert all(epoch == 1 for (_, epoch, _, _) in fs.reports)


async def test_two_executors_share_sessions(fake_session: FakeSessionServer, tmp_path: Path) -> None:
    svc = fake_session.service
    ids = [str(200 + i) for i in range(4)]
    for sid in ids:
        svc.add_session(sid)
        svc.submit(sid, [("count", {"i": i}) for i in range(25)])  # more than InspectSession's 20
    async with (
        running_engine(fake_session.address, tmp_path / "a", executor_id="ex-a", capacity=2),
        running_engine(fake_session.address, tmp_path / "b", executor_id="ex-b", capacity=2),
    ):
        await eventually(
            lambda: all(len(svc.done(s)) == 25 for s in ids), timeout=30, what="all sessions done"
        )
    by = {sid: {e for (e, _, _, _) in svc.sessions[sid].reports} for sid in ids}
    assert set().union(*by.values()) == {"ex-a", "ex-b"}  # both worked
    for sid in ids:
        seqs = [seq for (_, _, seq, st) in svc.sessions[sid].reports if st == ss.TASK_STATUS_SUCCEEDED]
        assert seqs == list(range(1, 26))  # each task exactly once, in order
