"""The final anchor a completion or termination carries (SessionFactory.FinalAnchor): the session's history
closed on chain in the same transaction that ends it.

It names the final checkpoint — the one covering every task the executor logged — and the archived event
log (its IPFS CID and Arweave transaction id). Which checkpoint:

* the newest one the executor recorded (RecordCheckpoint), when the chain has not anchored it yet: its
  format-v2 header carries the executor's EIP-712 Checkpoint signature, which the factory checks on chain
  against the assigned executor, then anchors it (a v1 checkpoint carries none: the last anchored one is
  re-affirmed instead);
* otherwise the one anchored last, re-affirmed (seq = lastSeq, no CID, no signature).

A completion waits (up to `wait` seconds) for the executor's checkpoint to cover its last logged task — the
executor writes one as soon as its queue is empty — and otherwise answers UNAVAILABLE: retrying the same
request later is safe. A termination does not wait: it is how a session whose executor is gone is ended,
and its final anchor covers what was checkpointed (the archived event log records the rest).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from multiformats import CID

from agentgpt.errors import Unavailable
from agentgpt.ipfs import ContentStore, decode
from services.session.control.core import Core
from services.session.model import SessionRecord

log = logging.getLogger("agentgpt.session.final")

ZERO32 = b"\x00" * 32
RECENT = 50  # tasks read back to find the last one the executor logged


@dataclass(frozen=True)
class FinalAnchor:
    """SessionFactory.FinalAnchor, with CIDs as text (see the contract's NatSpec for the three cases)."""

    seq: int
    state_root: bytes = ZERO32
    prev_root: bytes = ZERO32
    cid: str = ""  # empty: the checkpoint anchored last, re-affirmed
    executor_signature: bytes = b""
    log_cid: str = ""
    arweave_tx: str = ""  # base64url Arweave transaction id; "" when the log is not on Arweave

    def with_log(self, log_cid: str, arweave_tx: str = "") -> FinalAnchor:
        return FinalAnchor(
            self.seq, self.state_root, self.prev_root, self.cid, self.executor_signature, log_cid, arweave_tx
        )

    def to_abi(self) -> tuple[int, bytes, bytes, bytes, bytes, bytes, bytes]:
        from agentgpt.arweave import tx_id_bytes

        return (
            self.seq,
            self.state_root,
            self.prev_root,
            bytes(CID.decode(self.cid)) if self.cid else b"",
            self.executor_signature,
            bytes(CID.decode(self.log_cid)) if self.log_cid else b"",
            tx_id_bytes(self.arweave_tx) if self.arweave_tx else ZERO32,
        )

    def to_json(self) -> dict[str, Any]:
        """For the final event's payload."""
        return {
            "seq": self.seq,
            "cid": self.cid,
            "state_root": "0x" + self.state_root.hex(),
            "new_anchor": bool(self.executor_signature),
            "log_cid": self.log_cid,
            "log_arweave_tx": self.arweave_tx,
        }


class FinalAnchors:
    def __init__(self, core: Core, store: ContentStore, *, wait: float = 20.0, poll: float = 0.25) -> None:
        self.core = core
        self.store = store
        self.wait = wait
        self.poll = poll

    async def _last_logged(self, session_id: str) -> int:
        for t in await self.core.db.recent_tasks(session_id, RECENT):
            if t.log_hash:
                return t.seq
        return 0

    async def covering(self, rec: SessionRecord, *, wait: bool) -> FinalAnchor:
        """The final anchor of `rec` (without the log; see FinalAnchor.with_log)."""
        sid = rec.session_id
        last_logged = await self._last_logged(sid)
        until = time.monotonic() + (self.wait if wait else 0.0)
        while True:
            cp = json.loads(rec.checkpoint_json) if rec.checkpoint_json else None
            covered = int(cp["seq"]) if cp else 0
            if covered >= last_logged or time.monotonic() >= until:
                break
            await asyncio.sleep(self.poll)
            rec = await self.core.db.require(sid)
        if wait and covered < last_logged:
            raise Unavailable(
                f"session {sid}: tasks {covered + 1}..{last_logged} are not in a checkpoint yet (the executor "
                "writes one when its queue is empty); retry CompleteSession with the same idempotency key in "
                "a few seconds, or terminate the session if its executor is gone"
            )
        anchored = await self.core.chain.last_anchored_seq(int(sid))
        if cp is None or covered <= anchored:
            return FinalAnchor(seq=anchored)
        header = await self._header(str(cp["cid"]))
        if header is None:
            return FinalAnchor(seq=anchored)
        return FinalAnchor(
            seq=covered,
            state_root=bytes(header["state_root"]),
            prev_root=bytes(header["prev_root"]),
            cid=str(cp["cid"]),
            executor_signature=bytes(header["signature"]),
        )

    async def _header(self, cid: str) -> dict[str, Any] | None:
        """The v2 header of checkpoint `cid` (its body may be sealed: it is not needed); None for a v1
        checkpoint or one that cannot be read (then the last anchored checkpoint is re-affirmed)."""
        try:
            doc = decode(await self.store.get(cid))
        except Unavailable:
            raise
        except Exception as exc:
            log.warning(
                "final anchor: checkpoint %s cannot be read (%s); re-affirming the last anchor", cid, exc
            )
            return None
        if doc.get("version") != 2 or not isinstance(doc.get("signature"), bytes):
            return None
        return doc
