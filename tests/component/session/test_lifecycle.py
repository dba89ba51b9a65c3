"""The session service over real gRPC with SQLite and the in-memory chain: lifecycle, auth, idempotency."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from grpc import aio

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.session.v1 import session_pb2 as pb
from services.session.model import verify_chain

from .harness import SERVICE_MD, Harness, Owner, new_key

EXECUTOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


async def expect_status(coro: object, code: grpc.StatusCode, fragment: str = "") -> str:
    with pytest.raises(aio.AioRpcError) as info:
        await coro  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    assert fragment in (info.value.details() or ""), info.value.details()
    return info.value.details() or ""


async def test_full_lifecycle_with_events(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    assert s.state == common.SESSION_STATE_DRAFT and s.session_id == "1"
    assert s.spec.type == "treasury_management" and list(s.spec.chains) == ["arbitrum", "polygon"]
    assert s.owner == owner.address and s.budget == "1000" and len(s.mint_tx_hash) == 32
    act = await service.activate(owner, s, EXECUTOR)
    assert act.session.state == common.SESSION_STATE_ACTIVE and act.session.executor == EXECUTOR
    pause = pb.PauseSessionRequest(
        idempotency_key=new_key(), session_id=s.session_id, reason="operator pause"
    )
    paused = (await service.stub.PauseSession(pause, metadata=SERVICE_MD)).session
    assert paused.state == common.SESSION_STATE_PAUSED and "operator pause" in paused.state_reason
    resume = owner.sign(
        pb.ResumeSessionRequest(idempotency_key=new_key(), session_id=s.session_id, reason="back")
    )
    assert (await service.stub.ResumeSession(resume)).session.state == common.SESSION_STATE_ACTIVE
    complete = owner.sign(pb.CompleteSessionRequest(idempotency_key=new_key(), session_id=s.session_id))
    done = await service.stub.CompleteSession(owner.chain_sign("complete", s, complete))
    assert done.session.state == common.SESSION_STATE_COMPLETED
    assert done.log_cid.startswith("bafk") and len(done.burn_tx_hash) == 32
    # the archived log is the hash-chained event log up to completion
    archived = await service.control.archive.get(done.log_cid)
    assert b'"activated"' in archived and b'"paused"' in archived
    evs = await service.control.db.events_after(s.session_id, 0)
    assert [e.type for e in evs] == ["created", "activated", "paused", "resumed", "completed"]
    assert verify_chain(evs)
    chain = service.control.chain
    assert chain.mints == 1 and chain.states[1] == 4  # type: ignore[attr-defined]


async def test_draft_only_and_active_only_actions(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    edit = owner.sign(
        pb.EditParamsRequest(
            idempotency_key=new_key(), session_id=s.session_id, params_json='{"rebalance": 0.3}'
        )
    )
    edited = (await service.stub.EditParams(edit)).session
    assert '"rebalance": 0.3' in edited.spec.params_json and edited.workflow_hash != s.workflow_hash
    submit = owner.sign(
        pb.SubmitTasksRequest(
            idempotency_key=new_key(), session_id=s.session_id, tasks=[pb.TaskInput(kind="analyze_market")]
        )
    )
    await expect_status(
        service.stub.SubmitTasks(submit), grpc.StatusCode.FAILED_PRECONDITION, "execute_tasks"
    )
    await service.activate(owner, edited, EXECUTOR)
    attach = owner.sign(
        pb.AttachDecoratorsRequest(
            idempotency_key=new_key(), session_id=s.session_id, decorators=["gas_optimizer_v3"]
        )
    )
    await expect_status(service.stub.AttachDecorators(attach), grpc.StatusCode.FAILED_PRECONDITION, "ACTIVE")


async def test_idempotency_same_and_different_request(service: Harness, owner: Owner) -> None:
    key = new_key()
    first = await service.create(owner, key=key)
    again = await service.create(owner, key=key)  # new nonce, same request: the first response
    assert again == first
    assert service.control.chain.mints == 1  # type: ignore[attr-defined]
    await expect_status(
        service.create(owner, key=key, budget="5"), grpc.StatusCode.FAILED_PRECONDITION, "idempotency_key"
    )


async def test_owner_auth_wrong_signer_expired_replay(
    service: Harness, owner: Owner, stranger: Owner
) -> None:
    s = await service.create(owner)
    req = stranger.sign(
        pb.EditParamsRequest(idempotency_key=new_key(), session_id=s.session_id, params_json="{}")
    )
    await expect_status(service.stub.EditParams(req), grpc.StatusCode.PERMISSION_DENIED, "not the owner")
    forged = owner.sign(
        pb.EditParamsRequest(idempotency_key=new_key(), session_id=s.session_id, params_json="{}")
    )
    forged.auth.signer = stranger.address
    await expect_status(service.stub.EditParams(forged), grpc.StatusCode.PERMISSION_DENIED, "signed by")
    tampered = owner.sign(
        pb.EditParamsRequest(idempotency_key=new_key(), session_id=s.session_id, params_json="{}")
    )
    tampered.params_json = '{"x": 1}'
    await expect_status(service.stub.EditParams(tampered), grpc.StatusCode.PERMISSION_DENIED)
    import time

    expired = owner.sign(
        pb.EditParamsRequest(idempotency_key=new_key(), session_id=s.session_id, params_json="{}"),
        deadline=int(time.time()) - 5,
    )
    await expect_status(service.stub.EditParams(expired), grpc.StatusCode.UNAUTHENTICATED, "expired")
    ok = owner.sign(
        pb.EditParamsRequest(idempotency_key=new_key(), session_id=s.session_id, params_json="{}"), nonce=777
    )
    await service.stub.EditParams(ok)
    replay = owner.sign(
        pb.EditParamsRequest(idempotency_key=new_key(), session_id=s.session_id, params_json="{}"), nonce=777
    )
    await expect_status(service.stub.EditParams(replay), grpc.StatusCode.PERMISSION_DENIED, "already used")
    # reads: owner signature or service identity; strangers and anonymous callers are refused
    assert (await service.get(owner, s.session_id)).session_id == s.session_id
    await expect_status(service.get(stranger, s.session_id), grpc.StatusCode.PERMISSION_DENIED)
    await expect_status(
        service.stub.GetSession(pb.GetSessionRequest(session_id=s.session_id)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    got = await service.stub.GetSession(pb.GetSessionRequest(session_id=s.session_id), metadata=SERVICE_MD)
    assert got.session.owner == owner.address


async def test_optimistic_concurrency(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    stale = owner.sign(
        pb.EditParamsRequest(
            idempotency_key=new_key(),
            session_id=s.session_id,
            params_json="{}",
            expected_version=s.version + 5,
        )
    )
    await expect_status(service.stub.EditParams(stale), grpc.StatusCode.ABORTED, "version")
    fresh = owner.sign(
        pb.EditParamsRequest(
            idempotency_key=new_key(), session_id=s.session_id, params_json="{}", expected_version=s.version
        )
    )
    assert (await service.stub.EditParams(fresh)).session.version == s.version + 1


async def test_chain_failure_leaves_session_unchanged(service: Harness, owner: Owner) -> None:
    from agentgpt.errors import Unavailable

    s = await service.create(owner)
    chain = service.control.chain
    chain.fail_next = Unavailable("rpc down")  # type: ignore[attr-defined]
    await expect_status(service.activate(owner, s, EXECUTOR), grpc.StatusCode.UNAVAILABLE, "rpc down")
    assert (await service.get(owner, s.session_id)).state == common.SESSION_STATE_DRAFT
    act = await service.activate(owner, s, EXECUTOR)  # retriable: a new attempt succeeds
    assert act.session.state == common.SESSION_STATE_ACTIVE


async def test_leases_tasks_and_inspect(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, EXECUTOR)
    submit = owner.sign(
        pb.SubmitTasksRequest(
            idempotency_key=new_key(),
            session_id=s.session_id,
            tasks=[pb.TaskInput(kind="analyze_market"), pb.TaskInput(kind="rebalance")],
        )
    )
    assert list((await service.stub.SubmitTasks(submit)).task_seqs) == [1, 2]
    lease = (
        await service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-a", ttl_seconds=30), metadata=SERVICE_MD
        )
    ).lease
    assert lease.session_id == s.session_id and lease.epoch == 1
    await expect_status(
        service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-b", session_id=s.session_id), metadata=SERVICE_MD
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "leased by",
    )
    report = pb.ReportTaskRequest(
        session_id=s.session_id,
        executor_id="ex-a",
        epoch=1,
        task=pb.Task(
            seq=1,
            status=pb.TASK_STATUS_SUCCEEDED,
            result_json='{"model_score": 0.8}',
            gas_used=21000,
            cost="10",
        ),
    )
    assert (await service.stub.ReportTask(report, metadata=SERVICE_MD)).version > 0
    # the lease is taken over (e.g. by the recovery oracle's choice): the old epoch is fenced out
    await service.stub.ReleaseLease(
        pb.ReleaseLeaseRequest(session_id=s.session_id, executor_id="ex-a", epoch=1), metadata=SERVICE_MD
    )
    new = (
        await service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-b", session_id=s.session_id), metadata=SERVICE_MD
        )
    ).lease
    assert new.epoch == 2
    stale = pb.ReportTaskRequest(
        session_id=s.session_id,
        executor_id="ex-a",
        epoch=1,
        task=pb.Task(seq=2, status=pb.TASK_STATUS_FAILED, error="boom"),
    )
    await expect_status(
        service.stub.ReportTask(stale, metadata=SERVICE_MD),
        grpc.StatusCode.FAILED_PRECONDITION,
        "current epoch of session 1 is 2",
    )
    await expect_status(
        service.stub.ReportTask(report, metadata=SERVICE_MD),  # the old holder is fenced
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    insp = await service.stub.InspectSession(
        pb.InspectSessionRequest(session_id=s.session_id, detail="full"), metadata=SERVICE_MD
    )
    assert (insp.tasks_done, insp.tasks_total, insp.gas_used) == (1, 2, 21000)
    # the one finished task succeeded: the Model Score is outcomes (1 of 1), not the plan's reported 0.8
    assert insp.completion == 0.5 and insp.model_score == 1.0
    assert insp.session.budget_spent == "10" and list(insp.decorators) == ["kyc_tier4", "ofac_filter"]
    assert [t.seq for t in insp.recent_tasks] == [2, 1]
    assert insp.recent_events[0].type == "task_succeeded"


async def test_executors_lease_only_the_sessions_assigned_to_them(service: Harness, owner: Owner) -> None:
    other = "0x" + "cd" * 20
    mine = await service.create(owner)
    await service.activate(owner, mine, EXECUTOR)
    theirs = await service.create(owner)
    await service.activate(owner, theirs, other)

    async def claim(executor_id: str, address: str, session_id: str = "") -> pb.Lease:
        req = pb.ClaimLeaseRequest(executor_id=executor_id, session_id=session_id, executor_address=address)
        return (await service.stub.ClaimLease(req, metadata=SERVICE_MD)).lease

    assert (await claim("ex-other", other.upper().replace("0X", "0x"))).session_id == theirs.session_id
    assert not (await claim("ex-other", other)).session_id  # the other session is not assigned to it
    await expect_status(
        claim("ex-other", other, mine.session_id), grpc.StatusCode.FAILED_PRECONDITION, "assigned to executor"
    )
    assert (await claim("ex-mine", EXECUTOR)).session_id == mine.session_id
    await expect_status(claim("ex", "0x12"), grpc.StatusCode.INVALID_ARGUMENT, "executor_address")


async def test_list_tasks_pages_in_seq_order(service: Harness, owner: Owner, stranger: Owner) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, EXECUTOR)
    submit = owner.sign(
        pb.SubmitTasksRequest(
            idempotency_key=new_key(),
            session_id=s.session_id,
            tasks=[pb.TaskInput(kind="step", args_json=f'{{"i": {i}}}') for i in range(25)],
        )
    )
    await service.stub.SubmitTasks(submit)
    # an executor (service identity) reads the whole queue, a page at a time, inputs included
    seen: list[int] = []
    after = 0
    while True:
        page = await service.stub.ListTasks(
            pb.ListTasksRequest(session_id=s.session_id, after_seq=after, page_size=10), metadata=SERVICE_MD
        )
        seen += [t.seq for t in page.tasks]
        assert all(t.input.kind == "step" and t.status == pb.TASK_STATUS_QUEUED for t in page.tasks)
        if not page.next_after_seq:
            break
        after = page.next_after_seq
    assert seen == list(range(1, 26))
    assert json.loads(page.tasks[-1].input.args_json) == {"i": 24}
    # the owner reads with a signature; statuses filter
    lease = (
        await service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-a", session_id=s.session_id), metadata=SERVICE_MD
        )
    ).lease
    done = pb.Task(seq=1, status=pb.TASK_STATUS_SUCCEEDED, result_json="{}")
    await service.stub.ReportTask(
        pb.ReportTaskRequest(session_id=s.session_id, executor_id="ex-a", epoch=lease.epoch, task=done),
        metadata=SERVICE_MD,
    )
    mine = await service.stub.ListTasks(
        owner.read(pb.ListTasksRequest(session_id=s.session_id, statuses=[pb.TASK_STATUS_SUCCEEDED]))
    )
    assert [t.seq for t in mine.tasks] == [1] and mine.next_after_seq == 0
    await expect_status(
        service.stub.ListTasks(stranger.read(pb.ListTasksRequest(session_id=s.session_id))),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_status(
        service.stub.ListTasks(
            pb.ListTasksRequest(session_id=s.session_id, page_size=5000), metadata=SERVICE_MD
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )
    await expect_status(
        service.stub.ListTasks(
            pb.ListTasksRequest(session_id=s.session_id, statuses=[99]), metadata=SERVICE_MD
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "statuses[0]",
    )


async def test_checkpoints_gain_anchors_and_reports_move_the_context_epoch(
    service: Harness, owner: Owner
) -> None:
    s = await service.create(owner)
    activated = (await service.activate(owner, s, EXECUTOR)).session
    await service.stub.SubmitTasks(
        owner.sign(
            pb.SubmitTasksRequest(
                idempotency_key=new_key(), session_id=s.session_id, tasks=[pb.TaskInput(kind="swap_context")]
            )
        )
    )
    lease = (
        await service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-a", session_id=s.session_id), metadata=SERVICE_MD
        )
    ).lease
    leased = {"session_id": s.session_id, "executor_id": "ex-a", "epoch": lease.epoch}
    result = json.dumps({"context_epoch": activated.context_epoch + 1})
    await service.stub.ReportTask(
        pb.ReportTaskRequest(
            **leased, task=pb.Task(seq=1, status=pb.TASK_STATUS_SUCCEEDED, result_json=result)
        ),
        metadata=SERVICE_MD,
    )
    assert (await service.get(owner, s.session_id)).context_epoch == activated.context_epoch + 1

    def checkpoint(seq: int, cid: str, *chains: int) -> pb.RecordCheckpointRequest:
        cp = common.Checkpoint(session_id=s.session_id, seq=seq, cid=cid, state_root=bytes([seq]) * 32)
        cp.anchors.extend(common.BlockRef(chain_id=c, number=100 + c, hash=bytes(32)) for c in chains)
        return pb.RecordCheckpointRequest(**leased, checkpoint=cp)

    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    await service.stub.RecordCheckpoint(checkpoint(1, cid, 31337), metadata=SERVICE_MD)
    # the same checkpoint, anchored on a second chain since: merged, one event
    await service.stub.RecordCheckpoint(checkpoint(1, cid, 31338), metadata=SERVICE_MD)
    await service.stub.RecordCheckpoint(checkpoint(1, cid, 31338), metadata=SERVICE_MD)  # a retry
    latest = (await service.get(owner, s.session_id)).latest_checkpoint
    assert (latest.seq, latest.cid) == (1, cid)
    assert sorted(a.chain_id for a in latest.anchors) == [31337, 31338]
    await expect_status(
        service.stub.RecordCheckpoint(checkpoint(1, "bafkreiother", 31337), metadata=SERVICE_MD),
        grpc.StatusCode.FAILED_PRECONDITION,
        "never change",
    )
    await service.stub.RecordCheckpoint(checkpoint(2, cid), metadata=SERVICE_MD)
    await expect_status(
        service.stub.RecordCheckpoint(checkpoint(1, cid, 31337), metadata=SERVICE_MD),
        grpc.StatusCode.FAILED_PRECONDITION,
        "below the latest checkpoint 2",
    )
    events = [e.type for e in await service.control.db.events_after(s.session_id, 0)]
    assert events.count("checkpoint_anchored") == 1 and events.count("checkpointed") == 2


async def test_list_sessions_filters_and_pages(service: Harness, owner: Owner, stranger: Owner) -> None:
    mine = [await service.create(owner) for _ in range(3)]
    await service.create(stranger)
    await service.activate(owner, mine[0], EXECUTOR)
    req = pb.ListSessionsRequest(owner=owner.address, page=common.PageRequest(page_size=2))
    first = await service.stub.ListSessions(owner.read(req))
    assert [x.session_id for x in first.sessions] == [mine[2].session_id, mine[1].session_id]
    req2 = pb.ListSessionsRequest(
        owner=owner.address, page=common.PageRequest(page_size=2, page_token=first.page.next_page_token)
    )
    second = await service.stub.ListSessions(owner.read(req2))
    assert [x.session_id for x in second.sessions] == [mine[0].session_id] and not second.page.next_page_token
    active = await service.stub.ListSessions(
        pb.ListSessionsRequest(states=[common.SESSION_STATE_ACTIVE]), metadata=SERVICE_MD
    )
    assert [x.session_id for x in active.sessions] == [mine[0].session_id]
    everyone = pb.ListSessionsRequest()
    await expect_status(
        service.stub.ListSessions(owner.read(everyone)),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_watch_replays_then_follows_and_resumes(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    req = pb.WatchSessionRequest(session_id=s.session_id)
    call = service.stub.WatchSession(owner.read(req))
    first = await call.read()
    assert first.event.type == "created" and first.event.cursor == 1
    await service.activate(owner, s, EXECUTOR)
    second = await call.read()
    assert second.event.type == "activated" and second.event.cursor == 2
    call.cancel()
    resumed = pb.WatchSessionRequest(session_id=s.session_id, from_cursor=1, history_only=True)
    got = [r.event.type async for r in service.stub.WatchSession(owner.read(resumed))]
    assert got == ["activated"]


async def test_reassign_fences_the_lease_and_the_lapsed_query_finds_orphans(
    service: Harness, owner: Owner
) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    other = "0x" + "cd" * 20
    s = await service.create(owner)
    await service.activate(owner, s, EXECUTOR)
    lease = (
        await service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-1", executor_address=EXECUTOR, ttl_seconds=1),
            metadata=SERVICE_MD,
        )
    ).lease
    assert lease.session_id == s.session_id

    def mine(req: pb.ListSessionsRequest) -> pb.ListSessionsRequest:
        req.owner = owner.address
        return req

    def lapsed(before: float, executor: str = "") -> pb.ListSessionsRequest:
        ts = Timestamp()
        ts.FromNanoseconds(int(before * 1e9))
        return pb.ListSessionsRequest(lease_lapsed_before=ts, executor=executor)

    now = time.time()
    assert not (await service.stub.ListSessions(lapsed(now), metadata=SERVICE_MD)).sessions  # live lease
    later = (await service.stub.ListSessions(lapsed(now + 5, EXECUTOR), metadata=SERVICE_MD)).sessions
    assert [x.session_id for x in later] == [s.session_id]  # expired by then, assigned to EXECUTOR
    # owners may not run the detection query
    await expect_status(
        service.stub.ListSessions(owner.read(mine(lapsed(now)))),
        grpc.StatusCode.PERMISSION_DENIED,
        "reserved to services",
    )

    req = pb.ReassignExecutorRequest(
        idempotency_key=new_key(), session_id=s.session_id, executor=other, reason="node_failure: ex-1"
    )
    moved = await service.stub.ReassignExecutor(req, metadata=SERVICE_MD)
    assert moved.session.executor.lower() == other and moved.chain_epoch == 2 and len(moved.tx_hash) == 32
    again = await service.stub.ReassignExecutor(req, metadata=SERVICE_MD)  # same key: same answer, one tx
    assert again == moved and service.control.chain.calls.count("reassign") == 1  # type: ignore[attr-defined]
    # the old holder is fenced: its lease is void, the new executor claims its own
    await expect_status(
        service.stub.RenewLease(
            pb.RenewLeaseRequest(session_id=s.session_id, executor_id="ex-1", epoch=lease.epoch),
            metadata=SERVICE_MD,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    got = await service.stub.ClaimLease(
        pb.ClaimLeaseRequest(executor_id="ex-2", executor_address=other), metadata=SERVICE_MD
    )
    assert got.lease.session_id == s.session_id and got.lease.epoch > lease.epoch
    evs = await service.control.db.events_after(s.session_id, 0)
    reassigned = [json.loads(e.data_json) for e in evs if e.type == "executor_reassigned"]
    assert reassigned[0]["from"] == EXECUTOR and reassigned[0]["to"].lower() == other
    # the same executor again, an owner's signature, a bad address: refused with the reason
    await expect_status(
        service.stub.ReassignExecutor(
            pb.ReassignExecutorRequest(
                idempotency_key=new_key(), session_id=s.session_id, executor=other, reason="x"
            ),
            metadata=SERVICE_MD,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "already assigned",
    )
    await expect_status(
        service.stub.ReassignExecutor(
            pb.ReassignExecutorRequest(
                idempotency_key=new_key(), session_id=s.session_id, executor="0x12", reason="x"
            ),
            metadata=SERVICE_MD,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "executor",
    )
