"""The indexer's SQL store (SQLAlchemy async; SQLite by default, PostgreSQL supported).

Tables:
- `chains`: per chain, the next block to ingest (the cursor), halt state and reorg count.
- `blocks`: headers of the unfinalized window only (what reorg detection compares against).
- `events`: every indexed event and every retraction, with a global autoincrement `cursor` (the
  stream position). An event replaced by a reorg keeps its row with `live = false`, and a copy with
  `removed = true` is appended under a new cursor, so a stream that delivered the original sees the
  retraction.
- `schema_version`: the schema is created with `metadata.create_all` and stamped; a database with a
  different stamp is refused (start-up error) instead of being used half-migrated. Chosen over alembic
  while there is one schema version; the first change of it should introduce alembic scripts.

Crash safety: each ingested block range (headers, events, cursor) is one transaction, and the cursor
moves with a compare-and-set on its old value, so a range can be committed only once (idempotent),
and a SIGKILL leaves either the whole range or none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentgpt.sql import open_engine
from services.indexer.decoding import DecodedEvent
from services.indexer.rpc import BlockHeader

SCHEMA_VERSION = 1

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

chains = sa.Table(
    "chains",
    metadata,
    sa.Column("chain_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("next_block", sa.BigInteger, nullable=False),
    sa.Column("halted", sa.Boolean, nullable=False, default=False),
    sa.Column("halt_reason", sa.Text, nullable=False, default=""),
    sa.Column("reorgs_total", sa.BigInteger, nullable=False, default=0),
)

blocks = sa.Table(
    "blocks",
    metadata,
    sa.Column("chain_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(66), nullable=False),
    sa.Column("parent_hash", sa.String(66), nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "cursor", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("block_number", sa.BigInteger, nullable=False),
    sa.Column("block_hash", sa.String(66), nullable=False),
    sa.Column("log_index", sa.Integer, nullable=False),
    sa.Column("tx_hash", sa.String(66), nullable=False),
    sa.Column("address", sa.String(42), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("args_json", sa.Text, nullable=False),
    sa.Column("session_id", sa.String(80), nullable=False, default=""),
    sa.Column("removed", sa.Boolean, nullable=False, default=False),
    # False once a reorg replaced the block (for originals) and always for retractions.
    sa.Column("live", sa.Boolean, nullable=False, default=True),
    # At most one live event per log position: a second ingestion of a block is refused, not duplicated.
    # It is also the index of every query by position, which all read live events only: its predicate is
    # spelled the way SQLAlchemy renders `live.is_(True)`, so the query planners can use it (SQLite
    # matches a partial index's WHERE term literally). One index less to maintain on every insert.
    sa.Index(
        "events_live_position",
        "chain_id",
        "block_number",
        "log_index",
        unique=True,
        sqlite_where=sa.text("live IS 1"),
        postgresql_where=sa.text("live IS true"),
    ),
    sa.Index("events_session", "session_id", "name"),
)


class SchemaMismatch(RuntimeError):
    pass


class CursorMoved(RuntimeError):
    """The chain's cursor is not where the writer expected: another writer (or a replay) got there first."""


@dataclass(frozen=True)
class ChainCursor:
    chain_id: int
    next_block: int
    halted: bool
    halt_reason: str
    reorgs_total: int


@dataclass(frozen=True)
class ChainReset:
    """What `reset_chain` did, for the operator."""

    chain_id: int
    old_next_block: int
    new_next_block: int
    was_halted: bool
    halt_reason: str
    events_retracted: int


@dataclass(frozen=True)
class StoredEvent:
    cursor: int
    chain_id: int
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    address: str
    name: str
    args_json: str
    session_id: str
    removed: bool

    @property
    def args(self) -> dict[str, Any]:
        return dict(json.loads(self.args_json))


@dataclass(frozen=True)
class EventQuery:
    """Filters shared by ListEvents and StreamEvents (0 / empty = unbounded)."""

    chain_ids: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    session_id: str = ""
    from_block: int = 0
    to_block: int = 0


_EVENT_COLUMNS = [
    events.c.cursor,
    events.c.chain_id,
    events.c.block_number,
    events.c.block_hash,
    events.c.log_index,
    events.c.tx_hash,
    events.c.address,
    events.c.name,
    events.c.args_json,
    events.c.session_id,
    events.c.removed,
]


_INSERT_COLUMNS = (
    "chain_id",
    "block_number",
    "block_hash",
    "log_index",
    "tx_hash",
    "address",
    "name",
    "args_json",
    "session_id",
    "removed",
    "live",
)


def _filtered(stmt: Any, q: EventQuery) -> Any:
    if q.chain_ids:
        stmt = stmt.where(events.c.chain_id.in_(q.chain_ids))
    if q.names:
        stmt = stmt.where(events.c.name.in_(q.names))
    if q.session_id:
        stmt = stmt.where(events.c.session_id == q.session_id)
    if q.from_block:
        stmt = stmt.where(events.c.block_number >= q.from_block)
    if q.to_block:
        stmt = stmt.where(events.c.block_number <= q.to_block)
    return stmt


class RangeWriter:
    """Adds events to an ingestion transaction; see `IndexerStore.ingesting`."""

    def __init__(self, store: IndexerStore, conn: AsyncConnection, chain_id: int) -> None:
        self._store, self._conn, self._chain_id = store, conn, chain_id
        self.added = 0

    async def add(self, decoded: Sequence[DecodedEvent]) -> None:
        if not decoded:
            return
        chain_id = self._chain_id
        # Straight to the driver's executemany with tuples: SQLAlchemy's per-row parameter processing
        # cost more than SQLite's own work for the same rows.
        await self._conn.exec_driver_sql(
            self._store._insert_event_sql(self._conn),
            [
                (
                    chain_id,
                    lg.block_number,
                    lg.block_hash,
                    lg.log_index,
                    lg.tx_hash,
                    lg.address,
                    d.name,
                    d.args_json,
                    d.session_id,
                    False,
                    True,
                )
                for d in decoded
                for lg in (d.log,)
            ],
        )
        self.added += len(decoded)


class IndexerStore:
    """All reads and writes of the indexer's database. `changed` wakes stream readers after commits."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._changed = asyncio.Condition()
        self.last_cursor = 0
        self._insert_sql: str | None = None

    def _insert_event_sql(self, conn: AsyncConnection) -> str:
        """The events INSERT in the dialect's own positional parameter style, columns in _INSERT_COLUMNS order."""
        if self._insert_sql is None:
            compiled = (
                events.insert().inline().compile(dialect=conn.dialect, column_keys=list(_INSERT_COLUMNS))
            )
            order = compiled.positiontup
            if order is None or tuple(order) != _INSERT_COLUMNS:
                raise RuntimeError(f"{conn.dialect.name}: unexpected INSERT parameter order {order}")
            self._insert_sql = str(compiled)
        return self._insert_sql

    @classmethod
    async def open(cls, url: str) -> IndexerStore:
        store = cls(open_engine(url))
        await store.migrate()
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            found = (await conn.execute(sa.select(schema_version.c.version))).scalars().all()
            if not found:
                await conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            elif list(found) != [SCHEMA_VERSION]:
                raise SchemaMismatch(
                    f"indexer database has schema {found}, this build needs {SCHEMA_VERSION}"
                )
            self.last_cursor = int(
                (
                    await conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.cursor), 0)))
                ).scalar_one()
            )

    # ------------------------------------------------------------------ cursor
    async def cursor(self, chain_id: int, start_block: int) -> ChainCursor:
        """The chain's cursor, created at `start_block` on first use."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(chains).where(chains.c.chain_id == chain_id))).first()
            if row is None:
                await conn.execute(
                    chains.insert().values(
                        chain_id=chain_id,
                        next_block=start_block,
                        halted=False,
                        halt_reason="",
                        reorgs_total=0,
                    )
                )
                return ChainCursor(chain_id, start_block, False, "", 0)
            return ChainCursor(chain_id, row.next_block, bool(row.halted), row.halt_reason, row.reorgs_total)

    async def kept_blocks(self, chain_id: int) -> dict[int, BlockHeader]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(blocks).where(blocks.c.chain_id == chain_id))
            return {r.number: BlockHeader(r.number, r.hash, r.parent_hash) for r in rows}

    async def _move_cursor(self, conn: AsyncConnection, chain_id: int, expected: int, new: int) -> None:
        result = await conn.execute(
            chains.update()
            .where(chains.c.chain_id == chain_id, chains.c.next_block == expected, chains.c.halted.is_(False))
            .values(next_block=new)
        )
        if result.rowcount != 1:
            raise CursorMoved(f"chain {chain_id}: cursor is no longer at block {expected}")

    # ------------------------------------------------------------------ writes
    async def ingest(
        self,
        chain_id: int,
        from_block: int,
        to_block: int,
        headers: Sequence[BlockHeader],
        decoded: Sequence[DecodedEvent],
        prune_below: int,
    ) -> int:
        """Commit blocks [from_block, to_block] (headers kept for the unfinalized part) in one transaction."""
        async with self.ingesting(chain_id, from_block, to_block, headers, prune_below) as writer:
            await writer.add(decoded)
        return len(decoded)

    @contextlib.asynccontextmanager
    async def ingesting(
        self,
        chain_id: int,
        from_block: int,
        to_block: int,
        headers: Sequence[BlockHeader],
        prune_below: int,
    ) -> AsyncIterator[RangeWriter]:
        """One transaction ingesting blocks [from_block, to_block]: the cursor moves (compare-and-set, so
        CursorMoved at once if another writer got there first), the caller adds the range's events in
        chain order as it decodes them (`RangeWriter.add`, any number of times), and on a normal exit the
        headers are stored, headers below `prune_below` dropped and everything committed together. An
        exception rolls all of it back.

        The transaction stays open while the caller fetches and decodes the rest of the range, so the
        inserts of one part overlap the node's work on the next. For SQLite that holds the write lock
        for the range (readers are not blocked, WAL); ranges are bounded and the RPC has a timeout.
        """
        async with self.engine.begin() as conn:
            await self._move_cursor(conn, chain_id, from_block, to_block + 1)
            writer = RangeWriter(self, conn, chain_id)
            yield writer
            if headers:
                await conn.execute(
                    blocks.insert(),
                    [
                        {
                            "chain_id": chain_id,
                            "number": h.number,
                            "hash": h.hash,
                            "parent_hash": h.parent_hash,
                        }
                        for h in headers
                    ],
                )
            await conn.execute(
                blocks.delete().where(blocks.c.chain_id == chain_id, blocks.c.number < prune_below)
            )
            top = (
                (await conn.execute(sa.select(sa.func.max(events.c.cursor)))).scalar_one()
                if writer.added
                else None
            )
        if top is not None:
            await self._notify(int(top))

    async def rollback_to(self, chain_id: int, expected_next: int, ancestor: int) -> int:
        """Undo every block above `ancestor`: retract its events (new cursors), drop its headers."""
        async with self.engine.begin() as conn:
            await self._move_cursor(conn, chain_id, expected_next, ancestor + 1)
            gone = await self._retract_above(conn, chain_id, ancestor)
            await conn.execute(
                chains.update()
                .where(chains.c.chain_id == chain_id)
                .values(reorgs_total=chains.c.reorgs_total + 1)
            )
            top = (await conn.execute(sa.select(sa.func.max(events.c.cursor)))).scalar_one()
        if gone:
            await self._notify(int(top))
        return gone

    async def reset_chain(self, chain_id: int, to_block: int) -> ChainReset:
        """The operator's way out of a halt: forget blocks >= `to_block` and clear the halt.

        Events of those blocks are retracted exactly as a reorg retracts them (live=false, a removed=true
        copy under a new cursor), so stream readers that saw them are told; their headers are dropped and
        the cursor goes back to `to_block`, so the next run re-ingests from there. Headers below `to_block`
        stay: if the chain forked below `to_block`, the follower sees it again (a rollback, or a new halt)
        instead of stitching a new branch onto an orphaned one. Meant for a stopped service: a running
        follower would only notice at its next cursor compare-and-set.
        """
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(chains).where(chains.c.chain_id == chain_id))).first()
            if row is None:
                raise LookupError(f"chain {chain_id} has never been indexed in this database")
            if to_block > row.next_block:
                raise ValueError(
                    f"chain {chain_id}: block {to_block} is past the cursor (next block {row.next_block});"
                    " resetting forward would leave a gap"
                )
            retracted = await self._retract_above(conn, chain_id, to_block - 1)
            await conn.execute(
                chains.update()
                .where(chains.c.chain_id == chain_id)
                .values(next_block=to_block, halted=False, halt_reason="")
            )
            top = (await conn.execute(sa.select(sa.func.max(events.c.cursor)))).scalar_one()
        if retracted:
            await self._notify(int(top))
        return ChainReset(chain_id, row.next_block, to_block, bool(row.halted), row.halt_reason, retracted)

    async def _retract_above(self, conn: AsyncConnection, chain_id: int, ancestor: int) -> int:
        """Retract the live events of blocks above `ancestor` and drop those blocks' headers."""
        gone = (
            await conn.execute(
                sa.select(*_EVENT_COLUMNS)
                .where(
                    events.c.chain_id == chain_id,
                    events.c.block_number > ancestor,
                    events.c.live.is_(True),
                )
                .order_by(events.c.cursor.desc())
            )
        ).all()
        if gone:
            await conn.execute(
                events.update()
                .where(
                    events.c.chain_id == chain_id,
                    events.c.block_number > ancestor,
                    events.c.live.is_(True),
                )
                .values(live=False)
            )
            # Newest first, so a consumer undoing effects in stream order unwinds them in reverse.
            await conn.execute(
                events.insert(),
                [
                    {
                        **{k: v for k, v in r._mapping.items() if k != "cursor"},
                        "removed": True,
                        "live": False,
                    }
                    for r in gone
                ],
            )
        await conn.execute(blocks.delete().where(blocks.c.chain_id == chain_id, blocks.c.number > ancestor))
        return len(gone)

    async def halt(self, chain_id: int, reason: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                chains.update().where(chains.c.chain_id == chain_id).values(halted=True, halt_reason=reason)
            )

    async def _notify(self, top: int) -> None:
        async with self._changed:
            self.last_cursor = max(self.last_cursor, top)
            self._changed.notify_all()

    async def wait_for_cursor_above(self, cursor: int, timeout: float) -> None:
        """Return once an event past `cursor` may exist, or after `timeout` (readers re-query either way)."""
        async with self._changed:
            if self.last_cursor > cursor:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ reads
    async def events_after(self, cursor: int, q: EventQuery, limit: int) -> list[StoredEvent]:
        """Stream order: every entry (originals and retractions) with cursor > `cursor`."""
        stmt = _filtered(sa.select(*_EVENT_COLUMNS).where(events.c.cursor > cursor), q)
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt.order_by(events.c.cursor).limit(limit))
            return [StoredEvent(**r._mapping) for r in rows]

    async def live_events(
        self, q: EventQuery, after: tuple[int, int, int] | None, limit: int
    ) -> list[StoredEvent]:
        """The canonical view (no retracted events), ordered by (chain, block, log index), keyset-paged."""
        stmt = _filtered(sa.select(*_EVENT_COLUMNS).where(events.c.live.is_(True)), q)
        if after is not None:
            stmt = stmt.where(
                sa.tuple_(events.c.chain_id, events.c.block_number, events.c.log_index) > sa.tuple_(*after)
            )
        stmt = stmt.order_by(events.c.chain_id, events.c.block_number, events.c.log_index).limit(limit)
        async with self.engine.connect() as conn:
            return [StoredEvent(**r._mapping) for r in await conn.execute(stmt)]

    async def session_events(
        self, session_id: str, names: Sequence[str], chain_id: int | None = None
    ) -> list[StoredEvent]:
        stmt = sa.select(*_EVENT_COLUMNS).where(
            events.c.live.is_(True), events.c.session_id == session_id, events.c.name.in_(list(names))
        )
        if chain_id is not None:
            stmt = stmt.where(events.c.chain_id == chain_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                stmt.order_by(events.c.chain_id, events.c.block_number, events.c.log_index)
            )
            return [StoredEvent(**r._mapping) for r in rows]

    async def account_addresses(self, chain_id: int, factory: str) -> set[str]:
        """Session accounts created by `factory` (from its live SessionCreated events)."""
        stmt = sa.select(events.c.args_json).where(
            events.c.chain_id == chain_id,
            events.c.address == factory,
            events.c.name == "SessionCreated",
            events.c.live.is_(True),
        )
        async with self.engine.connect() as conn:
            return {json.loads(r.args_json)["account"] for r in await conn.execute(stmt)}

    async def block_hash(self, chain_id: int, number: int) -> str | None:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    sa.select(blocks.c.hash).where(blocks.c.chain_id == chain_id, blocks.c.number == number)
                )
            ).scalar_one_or_none()

    async def canonical_snapshot(self, chain_id: int, up_to_block: int) -> list[tuple[Any, ...]]:
        """The live events of a chain up to a block, without cursors: what a differential check compares."""
        stmt = (
            sa.select(
                events.c.block_number,
                events.c.block_hash,
                events.c.log_index,
                events.c.tx_hash,
                events.c.address,
                events.c.name,
                events.c.args_json,
                events.c.session_id,
            )
            .where(
                events.c.chain_id == chain_id, events.c.live.is_(True), events.c.block_number <= up_to_block
            )
            .order_by(events.c.block_number, events.c.log_index)
        )
        async with self.engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(stmt)]
