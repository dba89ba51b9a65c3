"""Read models over the indexed events: latest anchors and a session's on-chain state.

Both are folds over live events (no separate tables to keep consistent through reorgs: a retracted
event simply stops counting).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

from services.indexer.store import IndexerStore, StoredEvent

ANCHOR_EVENT = "CheckpointAnchored"
SESSION_EVENTS = (
    "SessionCreated",
    "SessionStateChanged",
    "SessionActivated",
    "ExecutorAssigned",
    "BudgetAdded",
    "BudgetCharged",
    "BudgetRefunded",
    "CheckpointAnchored",
    "Transfer",
)
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def cid_text(cid_hex: str) -> str:
    """The anchored `bytes cid` as CIDv1 text: binary CIDs become base32 ("b..."), text CIDs stay as they are."""
    raw = bytes.fromhex(cid_hex[2:] if cid_hex.startswith("0x") else cid_hex)
    if raw[:1] == b"\x01":
        return "b" + base64.b32encode(raw).decode().lower().rstrip("=")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return cid_hex


@dataclass(frozen=True)
class Anchor:
    chain_id: int
    session_id: str
    seq: int
    cid: str
    state_root: bytes
    block_number: int
    block_hash: str
    confirmations: int


@dataclass(frozen=True)
class OnChainSession:
    session_id: str
    owner: str
    state: int
    workflow_hash: bytes
    budget: int
    spent: int
    executor: str
    executor_epoch: int
    latest_seq: int


class IndexerQueries:
    def __init__(self, store: IndexerStore, home_chain_id: int, head_of: Callable[[int], int]) -> None:
        self.store = store
        self.home_chain_id = home_chain_id
        self.head_of = head_of  # chain id -> latest head seen (for confirmations)

    async def latest_anchors(self, session_id: str, home_chain_id: int = 0) -> list[Anchor]:
        """The highest-seq anchor of the session on each chain, ordered by chain id."""
        home = str(home_chain_id or self.home_chain_id)
        best: dict[int, StoredEvent] = {}
        for e in await self.store.session_events(session_id, [ANCHOR_EVENT]):
            args = e.args
            if args.get("homeChainId") != home:
                continue
            if e.chain_id not in best or int(args["seq"]) > int(best[e.chain_id].args["seq"]):
                best[e.chain_id] = e
        out = []
        for chain_id in sorted(best):
            e = best[chain_id]
            args = e.args
            out.append(
                Anchor(
                    chain_id=chain_id,
                    session_id=session_id,
                    seq=int(args["seq"]),
                    cid=cid_text(str(args["cid"])),
                    state_root=bytes.fromhex(str(args["stateRoot"])[2:]),
                    block_number=e.block_number,
                    block_hash=e.block_hash,
                    confirmations=max(0, self.head_of(chain_id) - e.block_number),
                )
            )
        return out

    async def on_chain_session(self, session_id: str, home_chain_id: int = 0) -> OnChainSession | None:
        """Fold the home chain factory's events for the session; None if it was never created."""
        chain_id = home_chain_id or self.home_chain_id
        evs = await self.store.session_events(session_id, SESSION_EVENTS, chain_id=chain_id)
        created = [e for e in evs if e.name == "SessionCreated"]
        if not created:
            return None
        factory = created[0].address
        s = OnChainSession(session_id, ZERO_ADDRESS, 0, b"", 0, 0, ZERO_ADDRESS, 0, 0)
        fields = s.__dict__.copy()
        for e in evs:
            if e.address != factory:
                continue
            a = e.args
            if e.name == "SessionCreated":
                fields.update(owner=a["owner"], workflow_hash=_b(a["workflowHash"]), budget=int(a["budget"]))
            elif e.name == "SessionStateChanged":
                fields["state"] = int(a["to"])
            elif e.name == "SessionActivated":
                fields["workflow_hash"] = _b(a["workflowHash"])
            elif e.name == "ExecutorAssigned":
                fields.update(executor=a["executor"], executor_epoch=int(a["epoch"]))
            elif e.name == "BudgetAdded":
                fields["budget"] = int(a["budget"])
            elif e.name == "BudgetCharged":
                fields.update(budget=int(a["remaining"]), spent=fields["spent"] + int(a["amount"]))
            elif e.name == "BudgetRefunded":
                fields["budget"] = 0
            elif e.name == "CheckpointAnchored":
                fields["latest_seq"] = max(fields["latest_seq"], int(a["seq"]))
            elif e.name == "Transfer" and a.get("to") != ZERO_ADDRESS:
                fields["owner"] = a["to"]  # NFT transfers move ownership; the burn keeps the last owner
        return OnChainSession(**fields)


def _b(hex_value: str) -> bytes:
    return bytes.fromhex(hex_value[2:])
