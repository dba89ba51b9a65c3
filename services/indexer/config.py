from __future__ import annotations

from dataclasses import dataclass

from agentgpt.runtime.config import setting


@dataclass(frozen=True)
class IndexerConfig:
    network: str = setting("", "Path of the network manifest (chains to follow and contract addresses)")
    database_url: str = setting(
        "sqlite+aiosqlite:///indexer.db", "SQLAlchemy URL of the indexer's store (SQLite or PostgreSQL)"
    )
    poll_interval: float = setting(1.0, "Seconds between head polls once a chain is caught up")
    max_batch_blocks: int = setting(
        2000, "Largest block range per eth_getLogs (halved when the node refuses or times out)"
    )
    rpc_timeout: float = setting(10.0, "Seconds before a chain RPC call counts as timed out")
    stream_wait: float = setting(1.0, "Longest a StreamEvents reader waits before re-checking the store")
