from __future__ import annotations

from dataclasses import dataclass

from agentgpt.runtime.config import setting


@dataclass(frozen=True)
class IndexerConfig:
    network: str = setting("", "Path of the network manifest (chains to follow and contract addresses)")
    database_url: str = setting(
        "sqlite+aiosqlite:///indexer.db", "SQLAlchemy URL of the indexer's store (SQLite or PostgreSQL)"
    )
