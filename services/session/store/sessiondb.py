"""SessionDB: the session service's system of record, on SQLite (default) or PostgreSQL.

Every session update is optimistic (`WHERE version = :expected`, ABORTED when another writer won) and
commits, in the same transaction, the events it appends (hash-chained from the session's log head),
the task rows it touches and the idempotency record of the request that caused it. Nothing is
acknowledged before it is committed here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentgpt.canonical import canonical_json
from agentgpt.errors import Aborted, FailedPrecondition, NotFound, PermissionDenied
from agentgpt.runtime.validation import INT64_MAX
from agentgpt.sql import Writes, open_engine
from services.session.clock import Clock, system_clock
from services.session.model import (
    ZERO_HASH,
    EventRecord,
    KeyRecord,
    NewEvent,
    SessionRecord,
    TaskRecord,
    event_hash,
)
from services.session.store.tables import events, nonces, requests, session_keys, sessions, tasks

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
READ_THREADS = 4  # threads (each with its connection) of a SQLite SessionDB's hot reads


def _column_list(record: type) -> str:
    """The columns of a record's fields, in the fields' order: a row of them is the record's arguments."""
    return ", ".join(f'"{f.name}"' for f in dataclass_fields(record))


class SqliteReads:
    """The hot reads of a SQLite SessionDB (GetSession, InspectSession) on plain sqlite3 connections: the
    event loop's own, and one per worker thread for a read that would wait (`run`). Through SQLAlchemy and
    aiosqlite a query is several hops between the event loop and a connection's thread (cursor, execute,
    fetch, close, rollback) plus the statement's compilation checks; here a whole read is no hop and
    fixed SQL. The connections are read-only (`query_only`) and
    in autocommit mode, so every read sees every committed write (WAL: readers never block the writer);
    a read of several statements is one read transaction, a consistent snapshot. Writes, and the other
    reads, stay on the engine."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="sessiondb-read")
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._inline: sqlite3.Connection | None = None  # the event loop thread's
        self._guard = threading.Lock()
        cols = _column_list
        self.session_sql = f"SELECT {cols(SessionRecord)} FROM sessions WHERE session_id = ?"
        self.stats_sql = "SELECT status, count(*), coalesce(sum(gas_used), 0) FROM tasks WHERE session_id = ? GROUP BY status"
        self.flagged_sql = f"SELECT {cols(TaskRecord)} FROM tasks WHERE session_id = ? AND status IN ({{marks}}) ORDER BY seq LIMIT ?"
        self.recent_tasks_sql = (
            f"SELECT {cols(TaskRecord)} FROM tasks WHERE session_id = ? ORDER BY seq DESC LIMIT ?"
        )
        self.recent_events_sql = (
            f"SELECT {cols(EventRecord)} FROM events WHERE session_id = ? ORDER BY cursor DESC LIMIT ?"
        )

    def _open(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")  # rows are tuples: a record is built from one positionally
        with self._guard:
            self._opened.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open(30)
        return conn

    async def run(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """`read` on the event loop's own connection, at once; on a worker thread when that would wait.

        A read in WAL mode does not wait for the writer: a point read from the page cache takes tens of
        microseconds, less than handing it to a thread and back (and, on a busy loop, far less than the
        GIL hand-offs that costs). The loop's connection never waits for a lock (busy timeout 0): in the
        rare case a read would (WAL recovery after a crash, a checkpoint resetting the log), it is
        retried on a worker thread, which may wait."""
        if self._inline is None:
            self._inline = self._open(0)
        try:
            return read(self._inline)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: read(self._conn()))

    async def session(self, session_id: str) -> SessionRecord | None:
        def read(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute(self.session_sql, (session_id,)).fetchone()
            return SessionRecord(*row) if row is not None else None

        return await self.run(read)

    async def overview(
        self, session_id: str, *, recent: int, flagged: Sequence[int], flagged_limit: int
    ) -> Overview | None:
        def read(conn: sqlite3.Connection) -> Overview | None:
            conn.execute("BEGIN")
            try:
                row = conn.execute(self.session_sql, (session_id,)).fetchone()
                if row is None:
                    return None
                stats = conn.execute(self.stats_sql, (session_id,)).fetchall()
                counts = {int(st): int(n) for st, n, _ in stats}
                flagged_rows = []
                if any(counts.get(st, 0) for st in flagged):
                    sql = self.flagged_sql.format(marks=", ".join("?" * len(flagged)))
                    flagged_rows = conn.execute(sql, (session_id, *flagged, flagged_limit)).fetchall()
                recent_tasks = recent_events = []
                if recent:
                    recent_tasks = conn.execute(self.recent_tasks_sql, (session_id, recent)).fetchall()
                    recent_events = conn.execute(self.recent_events_sql, (session_id, recent)).fetchall()
            finally:
                conn.execute("COMMIT")
            return Overview(
                session=SessionRecord(*row),
                counts=counts,
                gas_used=sum(int(g) for _, _, g in stats),
                flagged=[TaskRecord(*r) for r in flagged_rows],
                recent_tasks=[TaskRecord(*r) for r in recent_tasks],
                recent_events=[EventRecord(*r) for r in recent_events],
            )

        return await self.run(read)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._guard:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._inline = None


class VersionConflict(Aborted):
    """Another writer committed first: the session is no longer at the expected version. Re-reading and
    applying the change again is safe (what the control plane's retry-on-conflict helper does)."""


@dataclass(frozen=True)
class StoredRequest:
    """An idempotency record: a finished response, or a pending chain operation."""

    principal: str
    key: str
    method: str
    request_hash: bytes
    status: str
    response: bytes | None
    session_id: str | None
    op: str | None
    payload_json: str | None
    tx_hash: bytes | None
    raw_tx: bytes | None
    created_at: float

    @classmethod
    def from_row(cls, row: Any) -> StoredRequest:
        m = row._mapping
        return cls(**{k: m[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Overview:
    """A session with its task statistics and latest records, as one read (`SessionDB.overview`)."""

    session: SessionRecord
    counts: dict[int, int]  # tasks by status
    gas_used: int
    flagged: list[TaskRecord]
    recent_tasks: list[TaskRecord]
    recent_events: list[EventRecord]


@dataclass
class Change:
    """One atomic update of a session: column values, appended events, task rows, request record."""

    session_id: str
    expected_version: int
    values: dict[str, Any] = field(default_factory=dict)
    events: Sequence[NewEvent] = ()
    new_tasks: Sequence[dict[str, Any]] = ()
    task_update: dict[str, Any] | None = None  # must contain session_id and seq
    # (principal, key, respond): respond(the updated row) -> the serialized response stored for the key
    finish_request: tuple[str, str, Callable[[SessionRecord], bytes]] | None = None
    # session_keys rows to add (a new executor epoch's data key); one already there for its epoch is kept
    new_keys: Sequence[dict[str, Any]] = ()


class SessionDB:
    def __init__(self, engine: AsyncEngine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock  # stamps updated_at, event times, nonce and request records
        self.writes = Writes(engine)
        self.is_sqlite = self.writes.is_sqlite
        path = engine.url.database if self.is_sqlite else None
        # (an in-memory database is one connection's own: it has no fast reads)
        self.fast: SqliteReads | None = SqliteReads(path) if path and path != ":memory:" else None

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, clock: Clock = system_clock) -> SessionDB:
        db = cls(open_engine(url), clock=clock)
        if migrate:
            await db.migrate()
        return db

    async def close(self) -> None:
        if self.fast is not None:
            await asyncio.to_thread(self.fast.close)
        await self.engine.dispose()

    async def migrate(self) -> None:
        """`alembic upgrade head` on this database (idempotent)."""

        def upgrade(sync_conn: Any) -> None:
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        async with self._writing() as conn:
            await conn.run_sync(upgrade)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    def _writing(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self.writes.begin()

    # ------------------------------------------------------------------ sessions

    async def get(self, session_id: str) -> SessionRecord | None:
        if self.fast is not None:
            return await self.fast.session(session_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(sessions).where(sessions.c.session_id == session_id))).first()
        return SessionRecord.from_row(row) if row else None

    async def require(self, session_id: str) -> SessionRecord:
        rec = await self.get(session_id)
        if rec is None:
            raise NotFound(f"session {session_id} does not exist")
        return rec

    async def insert(
        self,
        values: dict[str, Any],
        first_events: Sequence[NewEvent],
        finish_request: tuple[str, str, Callable[[SessionRecord], bytes]] | None,
    ) -> SessionRecord:
        """Insert a new session with its first events; the idempotency record is finished in the same commit."""
        async with self._writing() as conn:
            row = dict(values)
            row.setdefault("event_cursor", 0)
            row.setdefault("event_head", ZERO_HASH)
            await conn.execute(sa.insert(sessions).values(**row))
            await self._append_events(conn, row["session_id"], row["state"], 0, ZERO_HASH, first_events)
            got = SessionRecord.from_row(
                (
                    await conn.execute(sa.select(sessions).where(sessions.c.session_id == row["session_id"]))
                ).one()
            )
            if finish_request:
                principal, key, respond = finish_request
                await self._finish_request(conn, principal, key, respond(got))
        return got

    async def commit(self, change: Change) -> SessionRecord:
        """Apply `change` if the session is still at `expected_version`; ABORTED otherwise."""
        async with self._writing() as conn:
            cur = (
                await conn.execute(
                    sa.select(
                        sessions.c.version, sessions.c.state, sessions.c.event_cursor, sessions.c.event_head
                    )
                    .where(sessions.c.session_id == change.session_id)
                    .with_for_update()
                )
            ).first()
            if cur is None:
                raise NotFound(f"session {change.session_id} does not exist")
            if cur.version != change.expected_version:
                raise VersionConflict(
                    f"session {change.session_id} changed (version {cur.version}, expected {change.expected_version}); "
                    "re-read and retry"
                )
            state = change.values.get("state", cur.state)
            cursor, head = await self._append_events(
                conn,
                change.session_id,
                state,
                cur.event_cursor,
                cur.event_head,
                change.events,
                update_head=False,  # (set with the other values below)
            )
            values = {**change.values, "version": cur.version + 1, "updated_at": self.clock()}
            if change.events:
                values.update(event_cursor=cursor, event_head=head)
            result = await conn.execute(
                sa.update(sessions)
                .where(
                    sessions.c.session_id == change.session_id, sessions.c.version == change.expected_version
                )
                .values(**values)
            )
            if result.rowcount != 1:
                raise VersionConflict(f"session {change.session_id} changed concurrently; re-read and retry")
            for t in change.new_tasks:
                await conn.execute(sa.insert(tasks).values(**t))
            for k in change.new_keys:
                held = (
                    await conn.execute(
                        sa.select(session_keys.c.epoch).where(
                            session_keys.c.session_id == k["session_id"], session_keys.c.epoch == k["epoch"]
                        )
                    )
                ).first()
                if held is None:  # a settlement applied twice keeps the key the first one made
                    await conn.execute(sa.insert(session_keys).values(**k))
            if change.task_update is not None:
                upd = dict(change.task_update)
                sid, seq = upd.pop("session_id"), upd.pop("seq")
                await conn.execute(
                    sa.update(tasks).where(tasks.c.session_id == sid, tasks.c.seq == seq).values(**upd)
                )
            got = SessionRecord.from_row(
                (
                    await conn.execute(sa.select(sessions).where(sessions.c.session_id == change.session_id))
                ).one()
            )
            if change.finish_request:
                principal, key, respond = change.finish_request
                await self._finish_request(conn, principal, key, respond(got))
        return got

    async def _append_events(
        self,
        conn: AsyncConnection,
        session_id: str,
        state: int,
        cursor: int,
        head: bytes,
        new: Sequence[NewEvent],
        *,
        update_head: bool = True,
    ) -> tuple[int, bytes]:
        """Append `new` to the session's log; the new (cursor, head), also stored on the session's row
        unless the caller stores them (`update_head=False`)."""
        for ev in new:
            cursor += 1
            at = round(self.clock(), 6)
            data_json = canonical_json(ev.data)
            head = event_hash(
                head,
                session_id=session_id,
                cursor=cursor,
                type=ev.type,
                state=state,
                data_json=data_json,
                at=at,
            )
            await conn.execute(
                sa.insert(events).values(
                    session_id=session_id,
                    cursor=cursor,
                    type=ev.type,
                    state=state,
                    data_json=data_json,
                    at=at,
                    hash=head,
                )
            )
        if new and update_head:
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.session_id == session_id)
                .values(event_cursor=cursor, event_head=head)
            )
        return cursor, head

    async def list_sessions(
        self,
        *,
        owner: str | None,
        states: Sequence[int],
        type: str | None,
        page_token: str,
        limit: int,
        lease_lapsed_before: float | None = None,
        executor: str | None = None,
    ) -> tuple[list[SessionRecord], str]:
        """Newest first; the page token is the last row's insertion number. `lease_lapsed_before`: only
        sessions without a live lease since before that time (expired before it, or none held and
        unchanged since before it); `executor`: only sessions assigned to that address."""
        q = sa.select(sessions).order_by(sessions.c.pk.desc()).limit(limit + 1)
        if owner:
            q = q.where(sa.func.lower(sessions.c.owner) == owner.lower())
        if states:
            q = q.where(sessions.c.state.in_(list(states)))
        if type:
            q = q.where(sessions.c.type == type)
        if lease_lapsed_before is not None:
            q = q.where(
                sa.or_(
                    sessions.c.lease_expires_at < lease_lapsed_before,
                    sa.and_(
                        sessions.c.lease_expires_at.is_(None), sessions.c.updated_at < lease_lapsed_before
                    ),
                )
            )
        if executor:
            q = q.where(sa.func.lower(sessions.c.executor) == executor.lower())
        if page_token:
            q = q.where(sessions.c.pk < decode_page_token(page_token))
        async with self.engine.connect() as conn:
            rows = [SessionRecord.from_row(r) for r in (await conn.execute(q)).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_page_token(rows[-1].pk) if more and rows else "")

    async def due(self, now: int, limit: int = 100) -> list[SessionRecord]:
        """Non-final sessions whose lifecycle timer has fired."""
        q = (
            sa.select(sessions)
            .where(sessions.c.deadline.is_not(None), sessions.c.deadline <= now)
            .order_by(sessions.c.deadline)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [SessionRecord.from_row(r) for r in (await conn.execute(q)).all()]

    async def chain_expiries_due(self, now: float, limit: int = 20) -> list[SessionRecord]:
        """Sessions whose timer-driven expiry is still to be mirrored on chain, next attempt due by `now`."""
        q = (
            sa.select(sessions)
            .where(sessions.c.chain_expiry_due.is_not(None), sessions.c.chain_expiry_due <= now)
            .order_by(sessions.c.chain_expiry_due)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [SessionRecord.from_row(r) for r in (await conn.execute(q)).all()]

    async def postpone_chain_expiry(self, session_id: str, *, attempts: int, due: float) -> None:
        """Note a failed on-chain expiry attempt and when to try again. Bookkeeping of the retry only: the
        session's version and log do not change (the settled outcome is committed as an event)."""
        async with self._writing() as conn:
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.session_id == session_id, sessions.c.chain_expiry_due.is_not(None))
                .values(chain_expiry_due=due, chain_expiry_attempts=attempts)
            )

    async def count_by_state(self) -> dict[int, int]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(sessions.c.state, sa.func.count()).group_by(sessions.c.state))
            ).all()
        return {int(s): int(n) for s, n in rows}

    # ------------------------------------------------------------------ leases

    async def claim(
        self,
        *,
        executor_id: str,
        session_id: str | None,
        ttl: float,
        now: float,
        active_state: int,
        executor_address: str | None = None,
    ) -> SessionRecord | None:
        """Take the lease of `session_id` (or of the next ACTIVE session without a live lease), bumping the
        fencing epoch; with `executor_address`, only a session assigned to that executor on chain; without,
        never the next session whose spec has an attestation block. On
        PostgreSQL concurrent claimers skip each other's rows (FOR UPDATE SKIP LOCKED)."""
        async with self._writing() as conn:
            q = sa.select(
                sessions.c.session_id,
                sessions.c.version,
                sessions.c.lease_epoch,
                sessions.c.lease_executor,
                sessions.c.lease_expires_at,
                sessions.c.state,
                sessions.c.executor,
            )
            if session_id is not None:
                row = (
                    await conn.execute(q.where(sessions.c.session_id == session_id).with_for_update())
                ).first()
                if row is None:
                    raise NotFound(f"session {session_id} does not exist")
                if row.state != active_state:
                    raise FailedPrecondition(
                        f"session {session_id} is not ACTIVE; only ACTIVE sessions can be leased"
                    )
                if executor_address is not None and row.executor.lower() != executor_address.lower():
                    raise FailedPrecondition(
                        f"session {session_id} is assigned to executor {row.executor} on chain, not "
                        f"{executor_address}"
                    )
                live = row.lease_expires_at is not None and row.lease_expires_at > now
                if live and row.lease_executor != executor_id:
                    raise FailedPrecondition(
                        f"session {session_id} is leased by {row.lease_executor} (epoch {row.lease_epoch}) until "
                        f"{row.lease_expires_at:.0f}"
                    )
            else:
                row = (
                    await conn.execute(
                        q.where(
                            sessions.c.state == active_state,
                            sa.or_(sessions.c.lease_expires_at.is_(None), sessions.c.lease_expires_at <= now),
                            *(
                                [sa.func.lower(sessions.c.executor) == executor_address.lower()]
                                if executor_address is not None
                                # a claimer without an address never gets a session with an attestation
                                # block (its key appears in the canonical spec JSON only as that key)
                                else [sa.not_(sessions.c.spec_json.contains('"attestation"'))]
                            ),
                        )
                        .order_by(sessions.c.pk)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
                if row is None:
                    return None
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.session_id == row.session_id)
                .values(
                    lease_executor=executor_id,
                    lease_epoch=row.lease_epoch + 1,
                    lease_expires_at=now + ttl,
                    version=row.version + 1,
                    updated_at=self.clock(),
                )
            )
            got = (
                await conn.execute(sa.select(sessions).where(sessions.c.session_id == row.session_id))
            ).one()
        return SessionRecord.from_row(got)

    # ------------------------------------------------------------------ checkpoint keys

    async def session_keys(self, session_id: str) -> list[KeyRecord]:
        """The session's checkpoint data keys (still wrapped to the custodian), oldest epoch first."""
        q = (
            sa.select(session_keys)
            .where(session_keys.c.session_id == session_id)
            .order_by(session_keys.c.epoch)
        )
        async with self.engine.connect() as conn:
            return [KeyRecord.from_row(r) for r in (await conn.execute(q)).all()]

    # ------------------------------------------------------------------ tasks and events

    async def task(self, session_id: str, seq: int) -> TaskRecord | None:
        if not 0 < seq <= INT64_MAX:
            return None
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(tasks).where(tasks.c.session_id == session_id, tasks.c.seq == seq)
                )
            ).first()
        return TaskRecord.from_row(row) if row else None

    async def recent_tasks(self, session_id: str, limit: int = 20) -> list[TaskRecord]:
        q = sa.select(tasks).where(tasks.c.session_id == session_id).order_by(tasks.c.seq.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [TaskRecord.from_row(r) for r in (await conn.execute(q)).all()]

    async def tasks_after(
        self, session_id: str, after_seq: int, *, statuses: Sequence[int] = (), limit: int = 100
    ) -> list[TaskRecord]:
        """Up to `limit` tasks with seq > after_seq, in seq order, optionally only in `statuses`."""
        q = sa.select(tasks).where(tasks.c.session_id == session_id, tasks.c.seq > min(after_seq, INT64_MAX))
        if statuses:
            q = q.where(tasks.c.status.in_(list(statuses)))
        q = q.order_by(tasks.c.seq).limit(limit)
        async with self.engine.connect() as conn:
            return [TaskRecord.from_row(r) for r in (await conn.execute(q)).all()]

    async def task_costs_through(self, session_id: str, through_seq: int) -> int:
        """What SessionDB recorded as charged for the session's tasks 1..through_seq (AGPT base units)."""
        q = sa.select(tasks.c.cost).where(
            tasks.c.session_id == session_id,
            tasks.c.seq <= min(through_seq, INT64_MAX),
            tasks.c.cost.is_not(None),
            tasks.c.cost != "0",
        )
        async with self.engine.connect() as conn:
            return sum(int(c or 0) for (c,) in (await conn.execute(q)).all())

    async def task_stats(self, session_id: str) -> tuple[dict[int, int], int]:
        """(count by status, total gas used), in one query."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        tasks.c.status, sa.func.count(), sa.func.coalesce(sa.func.sum(tasks.c.gas_used), 0)
                    )
                    .where(tasks.c.session_id == session_id)
                    .group_by(tasks.c.status)
                )
            ).all()
        counts = {int(s): int(n) for s, n, _ in rows}
        gas = sum(int(g) for _, _, g in rows)
        return counts, gas

    async def overview(
        self, session_id: str, *, recent: int, flagged: Sequence[int], flagged_limit: int
    ) -> Overview:
        """What InspectSession shows, read on one connection: the session (NOT_FOUND when there is none),
        its task counts by status and gas, its first `flagged_limit` tasks in the `flagged` statuses (only
        when there are some), and its `recent` newest tasks and events (none when 0)."""
        if self.fast is not None:
            seen = await self.fast.overview(
                session_id, recent=recent, flagged=flagged, flagged_limit=flagged_limit
            )
            if seen is None:
                raise NotFound(f"session {session_id} does not exist")
            return seen
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(sessions).where(sessions.c.session_id == session_id))).first()
            if row is None:
                raise NotFound(f"session {session_id} does not exist")
            stats = (
                await conn.execute(
                    sa.select(
                        tasks.c.status, sa.func.count(), sa.func.coalesce(sa.func.sum(tasks.c.gas_used), 0)
                    )
                    .where(tasks.c.session_id == session_id)
                    .group_by(tasks.c.status)
                )
            ).all()
            counts = {int(st): int(n) for st, n, _ in stats}
            flagged_rows: list[Any] = []
            if any(counts.get(st, 0) for st in flagged):
                flagged_rows = list(
                    (
                        await conn.execute(
                            sa.select(tasks)
                            .where(tasks.c.session_id == session_id, tasks.c.status.in_(list(flagged)))
                            .order_by(tasks.c.seq)
                            .limit(flagged_limit)
                        )
                    ).all()
                )
            recent_tasks: list[Any] = []
            recent_events: list[Any] = []
            if recent:
                recent_tasks = list(
                    (
                        await conn.execute(
                            sa.select(tasks)
                            .where(tasks.c.session_id == session_id)
                            .order_by(tasks.c.seq.desc())
                            .limit(recent)
                        )
                    ).all()
                )
                recent_events = list(
                    (
                        await conn.execute(
                            sa.select(events)
                            .where(events.c.session_id == session_id)
                            .order_by(events.c.cursor.desc())
                            .limit(recent)
                        )
                    ).all()
                )
        return Overview(
            session=SessionRecord.from_row(row),
            counts=counts,
            gas_used=sum(int(g) for _, _, g in stats),
            flagged=[TaskRecord.from_row(r) for r in flagged_rows],
            recent_tasks=[TaskRecord.from_row(r) for r in recent_tasks],
            recent_events=[EventRecord.from_row(r) for r in recent_events],
        )

    async def events_after(self, session_id: str, cursor: int, limit: int = 500) -> list[EventRecord]:
        cursor = min(cursor, INT64_MAX)
        q = (
            sa.select(events)
            .where(events.c.session_id == session_id, events.c.cursor > cursor)
            .order_by(events.c.cursor)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [EventRecord.from_row(r) for r in (await conn.execute(q)).all()]

    async def recent_events(self, session_id: str, limit: int = 20) -> list[EventRecord]:
        q = (
            sa.select(events)
            .where(events.c.session_id == session_id)
            .order_by(events.c.cursor.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [EventRecord.from_row(r) for r in (await conn.execute(q)).all()]

    # ------------------------------------------------------------------ owner nonces

    async def use_nonce(self, owner: str, nonce: int) -> None:
        """Mark an owner's request nonce used; PERMISSION_DENIED when it already was (a replay)."""
        try:
            async with self._writing() as conn:
                await conn.execute(
                    sa.insert(nonces).values(owner=owner.lower(), nonce=str(nonce), used_at=self.clock())
                )
        except IntegrityError:
            raise _replayed(owner, nonce) from None

    # ------------------------------------------------------------------ idempotency and chain intents

    async def begin_request(
        self, principal: str, key: str, method: str, req_hash: bytes, *, nonce: tuple[str, int] | None = None
    ) -> StoredRequest | None:
        """Reserve idempotency key `key`; returns the existing record when the key was seen before.

        Same key with a different method or request -> FAILED_PRECONDITION. With `nonce` (owner, nonce),
        a new key is reserved only together with that nonce marked used (what `use_nonce` does, in the
        same transaction): PERMISSION_DENIED, and nothing reserved, when it already was. A key seen
        before uses no nonce.
        """
        for _ in range(3):
            try:
                # the look-up and the reservation in one transaction (one connection, one commit)
                async with self._writing() as conn:
                    row = (
                        await conn.execute(
                            sa.select(requests).where(
                                requests.c.principal == principal, requests.c.key == key
                            )
                        )
                    ).first()
                    if row is None and nonce is not None:
                        owner, n = nonce
                        used = (
                            await conn.execute(
                                sa.select(nonces.c.nonce).where(
                                    nonces.c.owner == owner.lower(), nonces.c.nonce == str(n)
                                )
                            )
                        ).first()
                        if used is not None:
                            raise _replayed(owner, n)
                        # (a concurrent writer of the same nonce: IntegrityError, then the look-up again)
                        await conn.execute(
                            sa.insert(nonces).values(owner=owner.lower(), nonce=str(n), used_at=self.clock())
                        )
                    if row is None:
                        await conn.execute(
                            sa.insert(requests).values(
                                principal=principal,
                                key=key,
                                method=method,
                                request_hash=req_hash,
                                status="pending",
                                created_at=self.clock(),
                            )
                        )
            except IntegrityError:
                continue  # a concurrent request took the key first: read what it stored
            if row is None:
                return None
            rec = StoredRequest.from_row(row)
            if rec.method != method or rec.request_hash != req_hash:
                raise FailedPrecondition(
                    f"idempotency_key: {key!r} was already used for a different request ({rec.method}); "
                    "use a new key for a new request"
                )
            return rec
        raise Aborted(f"idempotency_key: {key!r} is being used concurrently; retry")

    async def record_intent(
        self,
        principal: str,
        key: str,
        *,
        op: str,
        session_id: str | None,
        payload_json: str,
        tx_hash: bytes,
        raw_tx: bytes,
    ) -> None:
        """Durably note the signed transaction about to be broadcast for this request."""
        async with self._writing() as conn:
            await conn.execute(
                sa.update(requests)
                .where(requests.c.principal == principal, requests.c.key == key)
                .values(
                    op=op, session_id=session_id, payload_json=payload_json, tx_hash=tx_hash, raw_tx=raw_tx
                )
            )

    async def abandon_request(self, principal: str, key: str, *, even_with_intent: bool = False) -> None:
        """Forget a pending request that failed before any effect, so the key can be retried. A request
        whose transaction may have been broadcast is kept (the reconciler decides) unless `even_with_intent`
        (its transaction is known to have reverted or to be dropped)."""
        async with self._writing() as conn:
            await conn.execute(
                sa.delete(requests).where(
                    requests.c.principal == principal,
                    requests.c.key == key,
                    requests.c.status == "pending",
                    sa.true() if even_with_intent else requests.c.tx_hash.is_(None),
                )
            )

    async def finish_request(self, principal: str, key: str, response: bytes) -> None:
        async with self._writing() as conn:
            await self._finish_request(conn, principal, key, response)

    async def _finish_request(self, conn: AsyncConnection, principal: str, key: str, response: bytes) -> None:
        await conn.execute(
            sa.update(requests)
            .where(requests.c.principal == principal, requests.c.key == key)
            .values(status="done", response=response, raw_tx=None)
        )

    async def pending_intents(self) -> list[StoredRequest]:
        """Requests whose chain transaction was signed (maybe sent) but whose outcome is not recorded."""
        q = sa.select(requests).where(requests.c.status == "pending", requests.c.tx_hash.is_not(None))
        async with self.engine.connect() as conn:
            return [StoredRequest.from_row(r) for r in (await conn.execute(q)).all()]

    async def get_request(self, principal: str, key: str) -> StoredRequest | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(requests).where(requests.c.principal == principal, requests.c.key == key)
                )
            ).first()
        return StoredRequest.from_row(row) if row else None


def _replayed(owner: str, nonce: int) -> PermissionDenied:
    return PermissionDenied(
        f"auth.nonce: nonce {nonce} of {owner} was already used; sign the request with a fresh nonce"
    )


def encode_page_token(pk: int) -> str:
    return base64.urlsafe_b64encode(f"pk:{pk}".encode()).decode()


def decode_page_token(token: str) -> int:
    from agentgpt.errors import InvalidArgument

    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
        if not raw.startswith("pk:"):
            raise ValueError
        pk = int(raw[3:])
        if not 0 < pk <= INT64_MAX:
            raise ValueError
        return pk
    except (ValueError, UnicodeError):
        raise InvalidArgument("page.page_token", "is not a token this service issued") from None
