"""The event-log archive written when a session completes: the whole hash-chained log on IPFS and, when a
gateway is configured, the same bytes on Arweave (the permanent audit log), as one tagged transaction.

The document (archive_version 2) is canonical JSON:

    {"archive_version": 2, "session_id", "owner", "home_chain_id", "head": "0x<last event hash>",
     "events": [{"cursor", "type", "state", "data", "at_us", "hash"}, ...]}

Integers only. An event's time is `at_us`, whole microseconds since the epoch: SessionDB keeps `at` as
float seconds rounded to 6 places and hashes it so (`model.event_hash`), so microseconds carry it exactly
and anyone can recompute the hash chain from the archive alone (`at_us / 1_000_000` is the hashed value).
Milliseconds would drop what the hashes commit to. Version 1 (no `archive_version`) wrote `at` as the
float itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from agentgpt.arweave import archive_tags
from agentgpt.arweave.archiver import Archiver
from agentgpt.canonical import canonical_json
from agentgpt.errors import ServiceError, Unavailable
from agentgpt.ipfs import ContentStore
from services.session.model import ZERO_HASH, EventRecord, SessionRecord
from services.session.store import SessionDB

log = logging.getLogger("agentgpt.session")

EVENT_BATCH = 500  # events read per query (SessionDB.events_after's page)
ARCHIVE_VERSION = 2
KIND = "event-log"  # the archive transaction's Kind tag
CONTENT_TYPE = "application/json"
#: Seconds CompleteSession keeps retrying an unreachable gateway by default (SessionConfig sets it).
DEFAULT_WINDOW = 20.0


@dataclass(frozen=True)
class Archived:
    """Where an event log was archived: its IPFS CID, and its Arweave transaction id ("" when no gateway is
    configured)."""

    cid: str
    arweave_tx: str


def at_us(at: float) -> int:
    """An event's time as whole microseconds: exact for SessionDB's `at` (seconds rounded to 6 places)."""
    return round(at * 1_000_000)


def archive_document(rec: SessionRecord, evs: list[EventRecord]) -> dict[str, object]:
    """The archive document of `rec`'s log `evs` (from cursor 1)."""
    return {
        "archive_version": ARCHIVE_VERSION,
        "session_id": rec.session_id,
        "owner": rec.owner,
        "home_chain_id": rec.home_chain_id,
        "head": "0x" + (evs[-1].hash if evs else ZERO_HASH).hex(),
        "events": [
            {
                "cursor": e.cursor,
                "type": e.type,
                "state": e.state,
                "data": json.loads(e.data_json),
                "at_us": at_us(e.at),
                "hash": "0x" + e.hash.hex(),
            }
            for e in evs
        ],
    }


class LogArchive:
    def __init__(
        self,
        db: SessionDB,
        store: ContentStore,
        arweave: Archiver | None = None,
        *,
        arweave_window: float = DEFAULT_WINDOW,
    ) -> None:
        self.db = db
        self.store = store
        self.arweave = arweave
        self.arweave_window = arweave_window

    async def events(self, session_id: str) -> list[EventRecord]:
        """The session's whole event log, from cursor 1."""
        evs: list[EventRecord] = []
        cursor = 0
        while True:
            batch = await self.db.events_after(session_id, cursor)
            evs.extend(batch)
            if len(batch) < EVENT_BATCH:
                return evs
            cursor = batch[-1].cursor

    async def put(self, rec: SessionRecord) -> Archived:
        """Archive the session's whole hash-chained event log; its CID and Arweave tx go into the final event.

        On IPFS it is stored in the library's file form (`put(..., "raw")`, i.e. `ipfs add --cid-version=1
        --raw-leaves --chunker=size-262144`): a log up to 256 KiB is one raw block, a longer one a UnixFS
        dag-pb file whose CID the library computes locally and verifies on read, so any node can `ipfs cat`
        it and a 72-hour session's log is not bound by the 1 MiB block limit.

        On Arweave the same bytes are one transaction tagged archive_tags(kind="event-log", the session,
        chain_id=the home chain's id, seq=the number of events archived: the final "completed" event is not
        among them, it is written after and carries the ids). An unreachable gateway is retried for
        `arweave_window` seconds; then Unavailable, and nothing was done (no transaction sent, the session
        still ACTIVE): CompleteSession may simply be asked again. Both stores are idempotent for the same
        log, so a retry archives the same bytes under the same CID and, once the gateway indexed the first
        copy, the same transaction."""
        evs = await self.events(rec.session_id)
        data = canonical_json(archive_document(rec, evs)).encode()
        try:
            cid = await self.store.put(data, "raw")
        except ServiceError:
            raise
        except Exception as exc:
            raise Unavailable(f"archiving the event log to IPFS failed: {exc}") from None
        if self.arweave is None:
            return Archived(cid, "")
        tags = archive_tags(
            kind=KIND,
            session_id=rec.session_id,
            chain_id=rec.home_chain_id,
            seq=len(evs),
            content_type=CONTENT_TYPE,
        )
        try:
            tx = await self.arweave.post(data, tags, window=self.arweave_window)
        except Unavailable as exc:
            raise Unavailable(
                f"session {rec.session_id} was not completed: its event log ({cid}) could not be archived to "
                f"Arweave: {exc.message}. Nothing was sent on chain and the session is still ACTIVE; ask "
                "CompleteSession again (a fresh nonce, the same idempotency_key) once the gateway answers"
            ) from None
        log.info("session %s: event log archived to IPFS %s and Arweave %s", rec.session_id, cid, tx)
        return Archived(cid, tx)
