"""SQLAlchemy engines for the services' stores: a SQLite file (one replica; one writer at a time) or
PostgreSQL (several replicas; concurrent writers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_PREFIX = "sqlite+aiosqlite:///"
#: Connections an engine keeps open (SQLite file: each is an aiosqlite thread; PostgreSQL: a server
#: connection). All are kept: no overflow connection is opened for a burst and closed after it (that
#: churn cost a connect, and on SQLite its pragmas, per call under load); a call beyond them waits for a free
#: one, up to POOL_TIMEOUT seconds.
SQLITE_POOL_SIZE = 8
POSTGRES_POOL_SIZE = 15
POOL_TIMEOUT = 30.0


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL ("" or ":memory:" for in-memory), None for any other database."""
    return url[len(SQLITE_PREFIX) :] if url.startswith(SQLITE_PREFIX) else None


def open_engine(url: str) -> AsyncEngine:
    """An async engine for `url`. SQLite: the file's folder is made, the database runs in WAL mode
    (readers never block the writer nor it them, so a long read cannot make a write fail with "database
    is locked"), and a statement waits up to 30 s for a lock. PostgreSQL: connections checked before use.
    Either keeps a fixed pool of connections (SQLITE_POOL_SIZE, POSTGRES_POOL_SIZE)."""
    kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if path is not None:
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(
            pool_pre_ping=True, pool_size=POSTGRES_POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT
        )
    engine = create_async_engine(url, **kwargs)
    if path is not None and path and path != ":memory:":

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # still crash-safe in WAL mode
            cur.close()

    return engine


class Writes:
    """Write transactions on an engine: serialized in-process on SQLite (which allows one writer at a
    time: this avoids "database is locked"), concurrent on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        if self.is_sqlite:
            async with self._lock, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn
