"""SessionDB's hot reads (GetSession's session row, InspectSession's overview: on SQLite through plain
sqlite3 connections, `SqliteReads`) answer exactly what the engine's queries read, and see every write
committed before them."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentgpt.session.v1 import session_pb2 as pb
from services.session.control.reads import FLAGGED, MAX_ALERTS, RECENT
from services.session.model import SessionRecord
from services.session.store import SessionDB
from services.session.store.tables import sessions

from .harness import SERVICE_MD, Harness, Owner, new_key

EXECUTOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


async def engine_row(service: Harness, session_id: str) -> SessionRecord:
    async with service.control.db.engine.connect() as conn:
        row = (await conn.execute(sa.select(sessions).where(sessions.c.session_id == session_id))).one()
    return SessionRecord.from_row(row)


async def test_hot_reads_are_the_engine_reads(service: Harness, owner: Owner) -> None:
    db = service.control.db
    s = await service.create(owner, budget="100")
    assert await db.get(s.session_id) == await engine_row(service, s.session_id)
    await service.activate(owner, s, EXECUTOR)
    tasks = [pb.TaskInput(kind="publish_report", args_json=f'{{"title": "t{i}"}}') for i in range(25)]
    await service.stub.SubmitTasks(
        owner.sign(pb.SubmitTasksRequest(idempotency_key=new_key(), session_id=s.session_id, tasks=tasks))
    )
    lease = (
        await service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-a", ttl_seconds=30), metadata=SERVICE_MD
        )
    ).lease
    for seq, status in (
        (1, pb.TASK_STATUS_FAILED),
        (2, pb.TASK_STATUS_SUCCEEDED),
        (3, pb.TASK_STATUS_REFUSED),
    ):
        task = pb.Task(
            seq=seq, status=status, error="" if status == pb.TASK_STATUS_SUCCEEDED else "no", cost="1"
        )
        await service.stub.ReportTask(
            pb.ReportTaskRequest(session_id=s.session_id, executor_id="ex-a", epoch=lease.epoch, task=task),
            metadata=SERVICE_MD,
        )
    # the row as the engine reads it, right after the last commit: every field (types included) equal
    got = await db.get(s.session_id)
    assert got == await engine_row(service, s.session_id)
    assert got is not None and (got.version, got.next_task_seq, got.lease_epoch) == (
        got.version,
        26,
        lease.epoch,
    )
    seen = await db.overview(s.session_id, recent=RECENT, flagged=FLAGGED, flagged_limit=MAX_ALERTS)
    assert seen.session == got
    assert (seen.counts, seen.gas_used) == await db.task_stats(s.session_id)
    assert seen.counts[pb.TASK_STATUS_QUEUED] == 22
    assert seen.recent_tasks == await db.recent_tasks(s.session_id, RECENT)
    assert seen.recent_events == await db.recent_events(s.session_id, RECENT)
    assert [t.seq for t in seen.flagged] == [1, 3]
    assert seen.flagged == await db.tasks_after(s.session_id, 0, statuses=list(FLAGGED), limit=MAX_ALERTS)
    summary = await db.overview(s.session_id, recent=0, flagged=FLAGGED, flagged_limit=MAX_ALERTS)
    assert (summary.recent_tasks, summary.recent_events) == ([], [])


async def test_hot_reads_of_a_missing_session(service: Harness) -> None:
    from agentgpt.errors import NotFound

    db = service.control.db
    assert await db.get("999") is None
    with pytest.raises(NotFound, match="999"):
        await db.overview("999", recent=RECENT, flagged=FLAGGED, flagged_limit=MAX_ALERTS)


async def test_a_hot_read_that_would_wait_moves_to_a_worker_thread(tmp_path: Path) -> None:
    """Reads run on the event loop's connection, which never waits for a lock; one that would (here,
    made to) runs again on a worker thread, and any other error is the caller's."""
    db = await SessionDB.open(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    fast = db.fast
    assert fast is not None
    ran_on: list[str] = []

    def count(conn: sqlite3.Connection) -> int:
        ran_on.append(threading.current_thread().name)
        if threading.current_thread() is threading.main_thread() and len(ran_on) == 1:
            raise sqlite3.OperationalError("database is locked")
        return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])

    try:
        assert await fast.run(count) == 0
        assert ran_on[0] == threading.main_thread().name and ran_on[1].startswith("sessiondb-read")
        ran_on.clear()
        ran_on.append("(the first call is past)")
        assert await fast.run(count) == 0
        assert ran_on[1] == threading.main_thread().name  # no lock in the way: no hand-off

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT no_such_column FROM sessions")

        with pytest.raises(sqlite3.OperationalError, match="no such column"):
            await fast.run(broken)
    finally:
        await db.close()
