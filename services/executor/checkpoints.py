"""Checkpoints: the session's state every N tasks, written to IPFS.

The document (canonical dag-cbor, optionally sealed with AES-256-GCM by agentgpt.ipfs) holds the task
log entries since the previous checkpoint, a link to that checkpoint, the context epochs, the budget,
the session's memory and the executor's public key, so a verifier can recheck the hash chain and the
signatures and arrive at `state_root`. The CID is computed locally and checked against the node's
answer (agentgpt.ipfs), recorded with the session service at once, then anchored on chain
(anchoring.AnchorQueue).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentgpt.ipfs import CheckpointWriter
from agentgpt.sealing import Sealing
from agentgpt.tasklog import ExecutorKey


@dataclass(frozen=True)
class CheckpointMade:
    session_id: str
    seq: int
    cid: str
    state_root: bytes
    size: int
    created_at: float
    encode_add_s: float  # encode + (encrypt) + IPFS add, seconds


class Checkpointer:
    """Writes checkpoint documents for one executor (all its sessions)."""

    def __init__(self, writer: CheckpointWriter, key: ExecutorKey) -> None:
        self.writer = writer
        self.key = key

    async def make(self, doc: Mapping[str, Any], *, sealing: Sealing | None = None) -> CheckpointMade:
        """Write `doc`; with `sealing` (the runner's: its session's data key), the body sealed."""
        start = time.perf_counter()
        stored = await self.writer.write(doc, sealing=sealing)
        return CheckpointMade(
            str(doc["session_id"]),
            int(doc["seq"]),
            stored.cid,
            bytes(doc["state_root"]),
            stored.size,
            time.time(),
            time.perf_counter() - start,
        )
