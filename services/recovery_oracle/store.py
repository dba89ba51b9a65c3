"""RecoveryStore: every recovery the oracle ran or runs, durable, with a holder lease per recovery.

One row per recovery: the `Recovery` message itself (serialized; its steps, times, executors and the
checkpoint used) plus the columns the queries need. While a recovery is open, `open_session` holds its
session id, so the unique index on it allows one open recovery per session however many oracle replicas
share the database (SQLite for one replica, PostgreSQL for several).

A replica works on a recovery only while it holds the recovery's lease (`holder`, `holder_until`); every
write names the fencing token (`fence`) it read, and a write whose token is stale is refused (`Fenced`),
so a replica that stalled past its lease cannot overwrite the replica that took the recovery over. The
chain-side effects are idempotent on their own (each step's request carries an idempotency key derived
from the recovery id), so a step cut short by a crash is simply run again by the next holder.
"""

from __future__ import annotations

import contextlib
import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentgpt.errors import InvalidArgument
from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.sql import Writes, open_engine

metadata = sa.MetaData()

recoveries = sa.Table(
    "recoveries",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recovery_id", sa.String(64), nullable=False, unique=True),
    sa.Column("session_id", sa.String(78), nullable=False, index=True),
    # the session id while the recovery is open, NULL once it ended: one open recovery per session
    sa.Column("open_session", sa.String(78), nullable=True, unique=True),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("fence", sa.BigInteger, nullable=False),
    sa.Column("holder_until", sa.Float, nullable=False, index=True),
    sa.Column("doc", sa.LargeBinary, nullable=False),  # the serialized Recovery
)

FINAL = (pb.RECOVERY_STATUS_RESUMED, pb.RECOVERY_STATUS_FAILED)


class Fenced(Exception):
    """Another oracle replica holds this recovery now (a newer fencing token)."""


class RecoveryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writes = Writes(engine)

    @classmethod
    async def open(cls, url: str) -> RecoveryStore:
        store = cls(open_engine(url))
        async with store._writing() as conn:
            await conn.run_sync(metadata.create_all)
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    def _writing(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._writes.begin()

    # ------------------------------------------------------------------ holding a recovery

    async def begin(self, rec: pb.Recovery, *, holder: str, ttl: float, now: float) -> pb.Recovery | None:
        """Open `rec` (a new recovery of rec.session_id), or take over the session's open one when its
        holder's lease lapsed (or it is ours). None when another replica holds the open one."""
        rec.recovery_id = rec.recovery_id or secrets.token_hex(8)
        rec.holder, rec.fence = holder, 1
        try:
            async with self._writing() as conn:
                await conn.execute(
                    sa.insert(recoveries).values(
                        recovery_id=rec.recovery_id,
                        session_id=rec.session_id,
                        open_session=rec.session_id,
                        status=rec.status,
                        holder=holder,
                        fence=1,
                        holder_until=now + ttl,
                        doc=rec.SerializeToString(),
                    )
                )
            return rec
        except IntegrityError:
            pass  # the session has an open recovery already
        return await self.take_over(rec.session_id, holder=holder, ttl=ttl, now=now)

    async def take_over(self, session_id: str, *, holder: str, ttl: float, now: float) -> pb.Recovery | None:
        """The session's open recovery, now held by `holder` (fence bumped), unless another holder's lease
        is still live."""
        async with self._writing() as conn:
            row = (
                await conn.execute(
                    sa.select(recoveries).where(recoveries.c.open_session == session_id).with_for_update()
                )
            ).first()
            if row is None:
                return None
            if row.holder != holder and row.holder_until > now:
                return None
            rec = pb.Recovery.FromString(row.doc)
            rec.holder, rec.fence = holder, int(row.fence) + (0 if row.holder == holder else 1)
            result = await conn.execute(
                sa.update(recoveries)
                .where(recoveries.c.pk == row.pk, recoveries.c.fence == row.fence)
                .values(holder=holder, fence=rec.fence, holder_until=now + ttl, doc=rec.SerializeToString())
            )
            return rec if result.rowcount == 1 else None

    async def save(self, rec: pb.Recovery, *, ttl: float, now: float) -> None:
        """Write `rec` and extend its holder's lease; Fenced if another replica took it over. A recovery in
        a final status is closed (its session may get a new one)."""
        final = rec.status in FINAL
        async with self._writing() as conn:
            result = await conn.execute(
                sa.update(recoveries)
                .where(
                    recoveries.c.recovery_id == rec.recovery_id,
                    recoveries.c.fence == rec.fence,
                    recoveries.c.holder == rec.holder,
                )
                .values(
                    status=rec.status,
                    holder_until=now + ttl,
                    doc=rec.SerializeToString(),
                    **({"open_session": None} if final else {}),
                )
            )
        if result.rowcount != 1:
            raise Fenced(f"recovery {rec.recovery_id} is held by another oracle replica now")

    # ------------------------------------------------------------------ reads

    async def orphaned(self, now: float, limit: int = 100) -> list[str]:
        """Session ids of open recoveries whose holder's lease lapsed (a crashed or stalled replica)."""
        q = (
            sa.select(recoveries.c.session_id)
            .where(recoveries.c.open_session.is_not(None), recoveries.c.holder_until < now)
            .order_by(recoveries.c.pk)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [str(r.session_id) for r in (await conn.execute(q)).all()]

    async def open_sessions(self) -> set[str]:
        q = sa.select(recoveries.c.open_session).where(recoveries.c.open_session.is_not(None))
        async with self.engine.connect() as conn:
            return {str(r.open_session) for r in (await conn.execute(q)).all()}

    async def list(
        self, *, session_id: str = "", recovery_id: str = "", page_token: str = "", limit: int = 50
    ) -> tuple[list[pb.Recovery], str]:
        """Newest first; the page token is the last row's insertion number."""
        q = sa.select(recoveries.c.pk, recoveries.c.doc).order_by(recoveries.c.pk.desc()).limit(limit + 1)
        if session_id:
            q = q.where(recoveries.c.session_id == session_id)
        if recovery_id:
            q = q.where(recoveries.c.recovery_id == recovery_id)
        if page_token:
            try:
                q = q.where(recoveries.c.pk < int(page_token, 16))
            except ValueError:
                raise InvalidArgument("page.page_token", "is not a token this service issued") from None
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return [pb.Recovery.FromString(r.doc) for r in rows], (format(rows[-1].pk, "x") if more else "")

    async def count_open(self) -> int:
        async with self.engine.connect() as conn:
            n = await conn.execute(
                sa.select(sa.func.count())
                .select_from(recoveries)
                .where(recoveries.c.open_session.is_not(None))
            )
            return int(n.scalar_one())
