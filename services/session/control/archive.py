"""The event-log archive written when a session completes: the whole hash-chained log on IPFS."""

from __future__ import annotations

import json

from agentgpt.canonical import canonical_json
from agentgpt.errors import ServiceError, Unavailable
from agentgpt.ipfs import ContentStore
from services.session.model import ZERO_HASH, EventRecord, SessionRecord
from services.session.store import SessionDB

EVENT_BATCH = 500  # events read per query (SessionDB.events_after's page)


class LogArchive:
    def __init__(self, db: SessionDB, store: ContentStore) -> None:
        self.db = db
        self.store = store

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

    async def put(self, rec: SessionRecord) -> str:
        """Put the session's whole hash-chained event log on IPFS; its CID goes into the final event.

        Stored in the IPFS library's file form (`put(..., "raw")`, i.e. `ipfs add --cid-version=1
        --raw-leaves --chunker=size-262144`): a log up to 256 KiB is one raw block, a longer one a UnixFS
        dag-pb file whose CID the library computes locally and verifies on read, so any node can
        `ipfs cat` it and a 72-hour session's log is not bound by the 1 MiB block limit."""
        evs = await self.events(rec.session_id)
        doc = {
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
                    "at": e.at,
                    "hash": "0x" + e.hash.hex(),
                }
                for e in evs
            ],
        }
        try:
            return await self.store.put(canonical_json(doc).encode(), "raw")
        except ServiceError:
            raise
        except Exception as exc:
            raise Unavailable(f"archiving the event log to IPFS failed: {exc}") from None
