"""Restore: bring back a session SessionDB lost, from the home chain and IPFS alone (an operator command).

The chain says who owns the session, its state and clock, its executor, its escrow and its newest
anchored checkpoint; the checkpoint document (read from IPFS, checked against the anchored CID and state
root) carries the session's spec, whose keccak256 must equal the workflowHash the chain committed. The
row rebuilt from them stands at the checkpoint: its next task is the checkpoint's seq + 1, the task log
continues from the anchored state root, and the executor of record claims it as usual. What happened
after the last anchor — tasks committed but not yet checkpointed — is not on the chain or IPFS and is
not restored: the restored session says so in its `restored` event.
"""

from __future__ import annotations

import json
import logging

from eth_utils.crypto import keccak
from multiformats import CID

from agentgpt.canonical import canonical_json
from agentgpt.errors import FailedPrecondition, NotFound
from agentgpt.ipfs import CheckpointReader, ContentStore
from agentgpt.lifecycle import SessionClock, SessionState
from agentgpt.session.v1 import session_pb2 as pb
from services.session.control.callers import CallContext, Callers
from services.session.control.core import Core
from services.session.control.specs import spec_from_dict, spec_to_dict
from services.session.model import NewEvent, SessionRecord

log = logging.getLogger("agentgpt.session.restore")

RESTORABLE = (SessionState.ACTIVE, SessionState.PAUSED)


class Restore:
    def __init__(self, core: Core, callers: Callers, store: ContentStore) -> None:
        self.core = core
        self.callers = callers
        self.reader = CheckpointReader(store)

    async def restore(self, req: pb.RestoreSessionRequest, ctx: CallContext) -> SessionRecord:
        # the recovery oracle, or an operator's certificate (`agentgpt session restore`)
        caller = self.callers.service_caller(req, ctx, "RestoreSession", operator_allowed=True)
        core = self.core
        sid = req.session_id
        if await core.db.get(sid) is not None:
            raise FailedPrecondition(
                f"session {sid} is in SessionDB; restore only rebuilds a session SessionDB lost"
            )
        onchain = await core.chain.on_chain(int(sid))
        if onchain is None:
            raise NotFound(f"session {sid} was never minted on chain {core.chain.chain_id}")
        state = SessionState(onchain.state)
        if state not in RESTORABLE:
            raise FailedPrecondition(
                f"session {sid} is {state.name} on chain; only ACTIVE or PAUSED sessions are restored "
                "(a DRAFT holds nothing anchored, a final one is over)"
            )
        cp = onchain.latest
        if cp is None:
            raise FailedPrecondition(f"session {sid} has no anchored checkpoint: nothing to restore it from")
        try:
            doc = await self.reader.read(cp.cid, session_id=sid, seq=cp.seq, state_root=cp.state_root)
        except Exception as exc:
            raise FailedPrecondition(f"checkpoint {cp.cid} (seq {cp.seq}) of session {sid}: {exc}") from None
        text = doc.get("spec")
        if isinstance(text, CID):  # format v2: a link to the spec's canonical JSON, published on IPFS
            try:
                text = (await self.reader.store.get(str(text))).decode()
            except Exception as exc:
                raise FailedPrecondition(
                    f"checkpoint {cp.cid}: its spec {text} cannot be read: {exc}"
                ) from None
        if not isinstance(text, str) or not text:
            raise FailedPrecondition(
                f"checkpoint {cp.cid} carries no spec (written by an older executor): session {sid} cannot "
                "be restored from chain + IPFS"
            )
        if keccak(text.encode()) != onchain.workflow_hash:
            raise FailedPrecondition(
                f"checkpoint {cp.cid}: its spec hashes to 0x{keccak(text.encode()).hex()}, but the chain "
                f"committed workflowHash 0x{onchain.workflow_hash.hex()}"
            )
        spec = spec_from_dict(json.loads(text))
        now = core.clock()
        clock = SessionClock(state, onchain.entered_at, onchain.active_used)
        checkpoint = {
            "seq": cp.seq,
            "cid": cp.cid,
            "state_root": cp.state_root.hex(),
            "at": now,
            "anchors": [
                {"chain_id": core.chain.chain_id, "number": cp.block_number, "hash": cp.block_hash.hex()}
            ],
        }
        values = {
            "session_id": sid,
            "owner": onchain.owner,
            "type": spec.type,
            "spec_json": canonical_json(spec_to_dict(spec)),
            "workflow_hash": spec.workflow_hash(),
            "budget": str(onchain.budget + onchain.spent),
            "budget_spent": str(onchain.spent),
            "home_chain_id": core.chain.chain_id,
            "mint_tx_hash": onchain.mint_tx_hash,
            "executor": onchain.executor,
            "lease_executor": "",
            "lease_epoch": 0,
            "lease_expires_at": None,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "context_epoch": 0,
            "checkpoint_json": canonical_json(checkpoint),
            "next_task_seq": cp.seq + 1,
            "gas_used": 0,
            "gas_cost_wei": "0",
            "log_cid": None,
            "final_tx_hash": None,
            **core.clock_values(clock, f"restored from chain + IPFS at checkpoint {cp.seq}"),
        }
        event = NewEvent(
            "restored",
            {
                "checkpoint_seq": cp.seq,
                "cid": cp.cid,
                "state_root": "0x" + cp.state_root.hex(),
                "executor": onchain.executor,
                "chain_epoch": onchain.epoch,
                "charged_through": onchain.charged_seq,
                "by": f"service {caller.service}",
                "note": "tasks after the last anchored checkpoint are not on chain or IPFS and were not restored",
            },
        )
        rec = await core.db.insert(values, [event], None)
        core.bus.notify(sid)
        log.warning("session %s restored from chain + IPFS at checkpoint %d (%s)", sid, cp.seq, cp.cid)
        return rec
