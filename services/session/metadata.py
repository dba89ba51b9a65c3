"""Each session's NFT metadata, kept current by the session service (ERC-721 metadata JSON + ERC-4906).

A wallet or an explorer reads `tokenURI(sessionId)` from the SessionFactory: `ipfs://<CID>` of a JSON
document in the ERC-721 metadata shape (name, description, image, attributes) whose `properties` carry
what the session is: state, owner, executor, spec CID, latest checkpoint CID and state root, budget. The
contract emits ERC-4906 `MetadataUpdate(sessionId)` whenever something the document shows changes on chain
(state, executor, budget, checkpoint) and again when a new document is set, so they fetch it again.

A converging controller, safe to repeat. Every SessionDB change of a session wakes it (`mark`); at most once
per AGENTGPT_METADATA_INTERVAL it takes the sessions marked since, builds each live (DRAFT, ACTIVE, PAUSED)
session's document from SessionDB and computes its CID locally. Only when the chain's `tokenURI` differs
are the document and the spec it links added to IPFS and `setTokenURI` sent with the relayer key (which
holds ORACLE_ROLE), serialised with the relayed owner transactions on that key. A failed pass is retried on
the next one, and a restarted service starts with a pass over every live session, so a crash loses
nothing. A final session's NFT is burned, and with it its token URI: nothing is published for it.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from agentgpt.canonical import canonical_json
from agentgpt.errors import FailedPrecondition
from agentgpt.ipfs import ContentStore
from agentgpt.ipfs.cid import compute_cid
from agentgpt.lifecycle import SessionState
from services.session.chain import SessionChain
from services.session.model import SessionRecord
from services.session.store import SessionDB

log = logging.getLogger("agentgpt.session.metadata")

LIVE = (SessionState.DRAFT, SessionState.ACTIVE, SessionState.PAUSED)
AGPT_DECIMALS = 18
_COLOURS = {"DRAFT": "#9aa0a6", "ACTIVE": "#1e8e3e", "PAUSED": "#f9ab00"}


def _agpt(base_units: str | int) -> str:
    """Base units as a decimal AGPT amount ("12.5"), exact."""
    return format(Decimal(int(base_units)).scaleb(-AGPT_DECIMALS).normalize(), "f")


def _image(session_id: str, state: str, type_: str) -> str:
    """A small SVG card (data URI) so wallets show the session's number and state (text XML-escaped)."""
    type_ = html.escape(type_[:36])
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="180" viewBox="0 0 320 180">'
        '<rect width="320" height="180" rx="16" fill="#202124"/>'
        f'<text x="20" y="48" font-family="monospace" font-size="22" fill="#fff">Session #{session_id}</text>'
        f'<text x="20" y="84" font-family="monospace" font-size="14" fill="#bdc1c6">{type_}</text>'
        f'<rect x="20" y="112" width="120" height="36" rx="8" fill="{_COLOURS.get(state, "#5f6368")}"/>'
        f'<text x="32" y="137" font-family="monospace" font-size="16" fill="#fff">{state}</text>'
        "</svg>"
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def spec_bytes(rec: SessionRecord) -> bytes:
    """The spec as the document links it: its canonical JSON (the bytes whose CID is `spec_cid`)."""
    return canonical_json(rec.spec).encode()


def metadata_document(rec: SessionRecord) -> dict[str, Any]:
    """The session's ERC-721 metadata JSON, from its SessionDB record alone (so it is reproducible)."""
    state = rec.lifecycle_state.name
    type_ = rec.type or "session"
    checkpoint: dict[str, Any] | None = None
    if rec.checkpoint_json:
        cp = json.loads(rec.checkpoint_json)
        checkpoint = {"seq": int(cp["seq"]), "cid": cp["cid"], "state_root": "0x" + cp["state_root"]}
    attributes: list[dict[str, Any]] = [
        {"trait_type": "State", "value": state},
        {"trait_type": "Type", "value": type_},
        {"trait_type": "Owner", "value": rec.owner},
        {"trait_type": "Budget left (AGPT)", "display_type": "number", "value": float(_agpt(rec.budget))},
        {"trait_type": "Spent (AGPT)", "display_type": "number", "value": float(_agpt(rec.budget_spent))},
        {
            "trait_type": "Checkpoint",
            "display_type": "number",
            "value": checkpoint["seq"] if checkpoint else 0,
        },
    ]
    if rec.executor:
        attributes.insert(3, {"trait_type": "Executor", "value": rec.executor})
    return {
        "name": f"AgentGPT session #{rec.session_id}",
        "description": (
            f"A {type_} automation session, {state}: {_agpt(rec.budget)} AGPT left in escrow, "
            f"{_agpt(rec.budget_spent)} AGPT spent"
            + (f", checkpoint {checkpoint['seq']} anchored." if checkpoint else ", no checkpoint yet.")
        ),
        "image": _image(rec.session_id, state, type_),
        "attributes": attributes,
        "properties": {
            "session_id": rec.session_id,
            "home_chain_id": rec.home_chain_id,
            "state": state,
            "owner": rec.owner,
            "executor": rec.executor or None,
            "workflow_hash": "0x" + rec.workflow_hash.hex(),
            "spec_cid": compute_cid(spec_bytes(rec), "raw"),
            "budget": {"remaining": rec.budget, "spent": rec.budget_spent, "decimals": AGPT_DECIMALS},
            "checkpoint": checkpoint,
        },
    }


def document_bytes(rec: SessionRecord) -> bytes:
    return canonical_json(metadata_document(rec)).encode()


def token_uri(rec: SessionRecord) -> str:
    """The `ipfs://` URI the session's token should have now."""
    return "ipfs://" + compute_cid(document_bytes(rec), "raw")


class MetadataSync:
    """Publishes each changed live session's metadata document and points its token at it."""

    def __init__(
        self,
        db: SessionDB,
        chain: SessionChain,
        store: ContentStore,
        registry: CollectorRegistry,
        *,
        interval: float = 5.0,
        receipt_timeout: float = 60.0,
    ) -> None:
        self.db, self.chain, self.store = db, chain, store
        self.interval = interval
        self.receipt_timeout = receipt_timeout
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._current: dict[str, str] = {}  # session -> the URI its token has (as last seen or set)
        self.updates = Counter(
            "agentgpt_session_metadata_updates",
            "Session NFT metadata documents published and set as the token URI, by result",
            ["result"],
            registry=registry,
        )
        for result in ("ok", "failed"):
            self.updates.labels(result)

    def mark(self, session_id: str) -> None:
        """Something about `session_id` changed: look at its metadata on the next pass."""
        self._dirty.add(session_id)
        self._wake.set()

    async def run(self) -> None:
        await self._mark_live()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.sync_once()
            await asyncio.sleep(self.interval)  # changes meanwhile are taken together on the next pass

    async def _mark_live(self) -> None:
        token = ""
        while True:
            page, token = await self.db.list_sessions(
                owner=None, states=[int(s) for s in LIVE], type=None, page_token=token, limit=500
            )
            for rec in page:
                self.mark(rec.session_id)
            if not token:
                return

    async def sync_once(self) -> None:
        batch, self._dirty = self._dirty, set()
        for session_id in sorted(batch, key=lambda s: (len(s), s)):
            try:
                await self.sync_session(session_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the chain or IPFS away, a race with a final transition: retry
                self.updates.labels("failed").inc()
                log.warning(
                    "session %s: metadata not updated (%s); retrying on the next pass", session_id, exc
                )
                self.mark(session_id)

    async def sync_session(self, session_id: str) -> bool:
        """Bring `session_id`'s token URI up to date; True when a new document was set."""
        rec = await self.db.get(session_id)
        if rec is None or rec.lifecycle_state not in LIVE:
            self._current.pop(session_id, None)
            return False
        uri = token_uri(rec)
        if self._current.get(session_id) == uri:
            return False
        sid = int(session_id)
        if await self.chain.token_uri(sid) != uri:
            data = document_bytes(rec)
            await self.store.put(spec_bytes(rec))
            if "ipfs://" + await self.store.put(data) != uri:  # (put checks the node's CID against ours)
                raise FailedPrecondition("the IPFS node stored the metadata document under another CID")
            async with self.chain.lock:
                tx = await self.chain.prepare_set_token_uri(sid, uri)
                receipt = await self.chain.send(tx, self.receipt_timeout)
            if not receipt.ok:
                raise FailedPrecondition(f"setTokenURI transaction 0x{receipt.tx_hash.hex()} reverted")
            self.updates.labels("ok").inc()
            log.info("session %s: metadata %s (%s)", session_id, uri, rec.lifecycle_state.name)
        self._current[session_id] = uri
        return True
