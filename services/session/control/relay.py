"""The idempotent chain-operation pipeline and its reconciliation.

Chain effects follow one pattern (docs/design.md §5): authorise -> reserve the idempotency key -> prepare and
sign the transaction -> record its hash durably -> broadcast and wait for the receipt -> commit the state
change together with the stored response. A crash anywhere is reconciled from the recorded hash
(`reconcile()`), so a mint or a burn is never done twice; a failure before the receipt leaves the session
as it was and answers a retriable error.

What each operation commits once its receipt succeeded is one entry of `OPS`: its lifecycle Action, its
response type, and the SessionDB values and events it commits. The mint (`create`) makes the session row
itself and is settled by `finish_create`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from google.protobuf.message import Message

from agentgpt import auth as owner_auth
from agentgpt.canonical import canonical_json
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.errors import Aborted, FailedPrecondition, Unavailable
from agentgpt.lifecycle import ALLOWED_ACTIONS, Action, SessionClock, SessionState
from agentgpt.session.v1 import session_pb2 as pb
from services.session.chain import PreparedTx, Receipt
from services.session.control.callers import CallContext, Callers
from services.session.control.core import Core
from services.session.control.specs import spec_from_dict, spec_to_dict
from services.session.convert import session_to_pb
from services.session.model import Caller, NewEvent, SessionRecord
from services.session.store import Change, StoredRequest

log = logging.getLogger("agentgpt.session")

R = TypeVar("R", bound=Message)

STALE_PENDING_S = 30.0  # a reserved key with no recorded effect after this long belongs to a crashed call
CREATE = "create"  # the op name of a mint (recorded with its intent)


# ====================================================================== the operations


@dataclass(frozen=True)
class Effect:
    """What a settled chain operation commits: column values and events, and, for a lifecycle
    transition, the state reason its clock columns are committed with (None: the clock stays)."""

    values: dict[str, Any]
    events: list[NewEvent]
    reason: str | None = None


def _tx(receipt: Receipt) -> str:
    return "0x" + receipt.tx_hash.hex()


def _activated(rec: SessionRecord, payload: dict[str, Any], receipt: Receipt) -> Effect:
    return Effect(
        {"executor": payload["executor"]},
        [
            NewEvent(
                "activated",
                {
                    "executor": payload["executor"],
                    "tx": _tx(receipt),
                    "workflow_hash": "0x" + rec.workflow_hash.hex(),
                },
            )
        ],
        reason="activated by owner; workflow and executor committed on chain",
    )


def _budget_updated(rec: SessionRecord, payload: dict[str, Any], receipt: Receipt) -> Effect:
    return Effect(
        {"budget": str(int(rec.budget) + int(payload["amount"]))},
        [NewEvent("budget_updated", {"added": payload["amount"], "tx": _tx(receipt)})],
    )


def _completed(rec: SessionRecord, payload: dict[str, Any], receipt: Receipt) -> Effect:
    # the log's Arweave copy, when one was made (none configured, or an intent recorded before: no key)
    arweave = {"log_arweave_tx": payload["log_arweave_tx"]} if payload.get("log_arweave_tx") else {}
    return Effect(
        {"log_cid": payload["log_cid"], "final_tx_hash": receipt.tx_hash, "lease_expires_at": None},
        [NewEvent("completed", {"log_cid": payload["log_cid"], **arweave, "burn_tx": _tx(receipt)})],
        reason="completed by owner; log archived, NFT burned",
    )


def _oracle_effect(
    event: str, *, fence: bool = False, final: bool = False
) -> Callable[[SessionRecord, dict[str, Any], Receipt], Effect]:
    """pause / resume / terminate: the reason and who asked. `fence` voids the executor's lease (until it
    claims again); `final` records the transaction as the session's last."""

    def effect(rec: SessionRecord, payload: dict[str, Any], receipt: Receipt) -> Effect:
        values: dict[str, Any] = {}
        if fence:
            values["lease_expires_at"] = None
        if final:
            values["final_tx_hash"] = receipt.tx_hash
        return Effect(
            values,
            [NewEvent(event, {"reason": payload["reason"], "by": payload["by"], "tx": _tx(receipt)})],
            reason=f"{payload['reason']} (by {payload['by']})",
        )

    return effect


def _reassigned(rec: SessionRecord, payload: dict[str, Any], receipt: Receipt) -> Effect:
    """The chain fenced the old executor out: its SessionDB lease goes too (the new one claims its own)."""
    return Effect(
        {"executor": payload["executor"], "lease_expires_at": None},
        [
            NewEvent(
                "executor_reassigned",
                {
                    "from": payload["from"],
                    "to": payload["executor"],
                    "reason": payload["reason"],
                    "by": payload["by"],
                    "chain_epoch": receipt.assigned_epoch or 0,
                    "tx": _tx(receipt),
                },
            )
        ],
    )


def _no_extra(payload: dict[str, Any], receipt: Receipt) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ChainOp(Generic[R]):
    """One chain-mirrored operation on an existing session."""

    action: Action  # the lifecycle action (its value is the op name recorded with the intent)
    response: type[R]
    effect: Callable[[SessionRecord, dict[str, Any], Receipt], Effect]
    # fields of the response besides the session, from the payload and the receipt
    extra: Callable[[dict[str, Any], Receipt], dict[str, Any]] = field(default=_no_extra)
    kicks_chain_sync: bool = False  # writer grants may be due at once (a new executor)
    new_key_epoch: bool = (
        False  # a new executor of record: a new checkpoint data key (services/session/keys.py)
    )

    @property
    def name(self) -> str:
        return self.action.value

    def respond(self, rec: SessionRecord, payload: dict[str, Any], receipt: Receipt) -> R:
        return self.response(session=session_to_pb(rec), **self.extra(payload, receipt))


ACTIVATE = ChainOp(
    Action.ACTIVATE,
    pb.ActivateSessionResponse,
    _activated,
    extra=lambda _p, r: {"tx_hash": r.tx_hash},
    kicks_chain_sync=True,
    new_key_epoch=True,
)
UPDATE_BUDGET = ChainOp(Action.UPDATE_BUDGET, pb.UpdateBudgetResponse, _budget_updated)
COMPLETE = ChainOp(
    Action.COMPLETE,
    pb.CompleteSessionResponse,
    _completed,
    extra=lambda p, r: {"log_cid": p["log_cid"], "burn_tx_hash": r.tx_hash},
)
REASSIGN = ChainOp(
    Action.REASSIGN,
    pb.ReassignExecutorResponse,
    _reassigned,
    extra=lambda _p, r: {"tx_hash": r.tx_hash, "chain_epoch": r.assigned_epoch or 0},
    kicks_chain_sync=True,
    new_key_epoch=True,
)
PAUSE = ChainOp(Action.PAUSE, pb.PauseSessionResponse, _oracle_effect("paused", fence=True))
RESUME = ChainOp(Action.RESUME, pb.ResumeSessionResponse, _oracle_effect("resumed"))
TERMINATE = ChainOp(
    Action.TERMINATE,
    pb.TerminateSessionResponse,
    _oracle_effect("terminated", fence=True, final=True),
)

OPS: dict[str, ChainOp[Any]] = {
    op.name: op for op in (ACTIVATE, UPDATE_BUDGET, COMPLETE, PAUSE, RESUME, TERMINATE, REASSIGN)
}


# ====================================================================== the pipeline


class _Idempotent(Protocol):
    """The fields every idempotent request has."""

    idempotency_key: str
    auth: common.OwnerSignature


class Relay:
    def __init__(self, core: Core, callers: Callers) -> None:
        self.core = core
        self.callers = callers

    async def idempotent(
        self,
        request: Message,
        ctx: CallContext,
        response_type: type[R],
        body: Callable[[Caller, str], Awaitable[R]],
        *,
        service_allowed: bool = False,
    ) -> R:
        """Authenticate, reserve the request's idempotency key and run `body`; a key seen before answers
        its stored response (after settling its transaction, when one was recorded)."""
        db = self.core.db
        caller = self.callers.caller(request, ctx, service_allowed=service_allowed)
        method = type(request).DESCRIPTOR.name.removesuffix("Request")
        fields = cast(_Idempotent, request)
        key = str(fields.idempotency_key)
        principal = caller.principal
        # an owner's nonce is used as the new key is reserved (a key seen before uses none)
        nonce = (caller.owner, int(fields.auth.nonce)) if caller.owner is not None else None
        existing = await db.begin_request(
            principal, key, method, owner_auth.request_hash(request), nonce=nonce
        )
        if existing is not None:
            if existing.status == "done" and existing.response is not None:
                return response_type.FromString(existing.response)
            if existing.tx_hash is not None:
                await self.reconcile_one(existing)
                done = await db.get_request(principal, key)
                if done is not None and done.status == "done" and done.response is not None:
                    return response_type.FromString(done.response)
                raise Unavailable(f"idempotency_key {key!r}: its transaction is not settled yet; retry")
            if self.core.clock() - existing.created_at < STALE_PENDING_S:
                raise Aborted(f"idempotency_key {key!r}: the same request is in progress; retry shortly")
            if nonce is not None:  # a stale reservation, taken over: this request's nonce is used now
                await db.use_nonce(*nonce)
        try:
            return await body(caller, key)
        except BaseException:
            await db.abandon_request(principal, key)
            raise

    async def send(
        self,
        principal: str,
        key: str,
        op: str,
        session_id: str | None,
        payload: dict[str, Any],
        prepare: Callable[[], Awaitable[PreparedTx]],
    ) -> Receipt:
        """Prepare, record, broadcast, wait. Raises (leaving the session as it was) on any failure."""
        chain = self.core.chain
        async with chain.lock:
            tx = await prepare()
            await self.core.db.record_intent(
                principal,
                key,
                op=op,
                session_id=session_id,
                payload_json=canonical_json(payload),
                tx_hash=tx.tx_hash,
                raw_tx=tx.raw,
            )
            receipt = await chain.send(tx, self.core.receipt_timeout)
        if not receipt.ok:
            await self.core.db.abandon_request(principal, key, even_with_intent=True)
            raise FailedPrecondition(f"{op}: transaction 0x{receipt.tx_hash.hex()} reverted on chain")
        return receipt

    async def run(
        self,
        op: ChainOp[R],
        caller: Caller,
        key: str,
        session_id: str,
        payload: dict[str, Any],
        prepare: Callable[[], Awaitable[PreparedTx]],
    ) -> R:
        """Relay `op`'s transaction and settle it: the response the request's key stores."""
        receipt = await self.send(caller.principal, key, op.name, session_id, payload, prepare)
        return await self.settle(op, caller.principal, key, session_id, payload, receipt)

    # ------------------------------------------------------------------ settling a receipt

    async def finish_create(
        self, principal: str, key: str, payload: dict[str, Any], receipt: Receipt
    ) -> SessionRecord:
        """Insert the session a mint made (idempotent: a row that is this mint's just settles the key)."""
        core = self.core
        if receipt.session_id is None:
            raise FailedPrecondition(
                f"mint transaction 0x{receipt.tx_hash.hex()} has no SessionCreated event"
            )
        sid = str(receipt.session_id)
        existing = await core.db.get(sid)

        def respond(rec: SessionRecord) -> bytes:
            return pb.CreateSessionResponse(session=session_to_pb(rec)).SerializeToString()

        if existing is not None:
            if existing.mint_tx_hash != receipt.tx_hash or existing.home_chain_id != core.chain.chain_id:
                # The chain minted this token id anew (a reset chain, another deployment): the row is
                # another NFT's, never an answer to this request.
                raise FailedPrecondition(
                    f"session {sid}: SessionDB and the home chain disagree: chain {core.chain.chain_id} "
                    f"minted NFT #{sid} in transaction 0x{receipt.tx_hash.hex()}, but SessionDB's session "
                    f"{sid} was minted in 0x{existing.mint_tx_hash.hex()} on chain {existing.home_chain_id} "
                    "(the store describes other chains: point the service at its own chain, or at a fresh "
                    "SessionDB)"
                )
            # reconciled twice: the row is this mint's, just settle the request
            await core.db.finish_request(principal, key, respond(existing))
            return existing
        spec = spec_from_dict(payload["spec"])
        now = core.clock()
        clock = SessionClock(SessionState.DRAFT, int(now))
        values = {
            "session_id": sid,
            "owner": payload["owner"],
            "type": spec.type,
            "spec_json": canonical_json(spec_to_dict(spec)),
            "workflow_hash": spec.workflow_hash(),
            "budget": payload["budget"],
            "budget_spent": "0",
            "home_chain_id": core.chain.chain_id,
            "mint_tx_hash": receipt.tx_hash,
            "executor": "",
            "lease_executor": "",
            "lease_epoch": 0,
            "lease_expires_at": None,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "context_epoch": 0,
            "checkpoint_json": None,
            "next_task_seq": 1,
            "gas_used": 0,
            "gas_cost_wei": "0",
            "log_cid": None,
            "final_tx_hash": None,
            **core.clock_values(clock, "created by owner; NFT minted"),
        }
        event = NewEvent(
            "created",
            {
                "owner": payload["owner"],
                "mint_tx": "0x" + receipt.tx_hash.hex(),
                "budget": payload["budget"],
                "workflow_hash": "0x" + spec.workflow_hash().hex(),
            },
        )
        rec = await core.db.insert(values, [event], (principal, key, respond))
        core.bus.notify(sid)
        return rec

    async def settle(
        self,
        op: ChainOp[R],
        principal: str,
        key: str,
        session_id: str,
        payload: dict[str, Any],
        receipt: Receipt,
    ) -> R:
        """Commit the DB side of a chain operation whose receipt succeeded (also used by reconcile)."""
        core = self.core

        def respond(rec: SessionRecord) -> bytes:
            return op.respond(rec, payload, receipt).SerializeToString()

        async def attempt() -> R:
            rec = await core.db.require(session_id)
            if op.action not in ALLOWED_ACTIONS[rec.lifecycle_state]:
                # The commit that settles a request also finishes it, so getting here means the session moved
                # on meanwhile (e.g. a timer fired): answer with what it is now.
                await core.db.finish_request(principal, key, respond(rec))
                return op.respond(rec, payload, receipt)
            clock = core.next_clock(rec, op.action, settled=True)
            effect = op.effect(rec, payload, receipt)
            values = effect.values
            if effect.reason is not None:
                values = {**core.clock_values(clock, effect.reason), **values}
            new_keys: list[dict[str, Any]] = []
            if op.new_key_epoch:
                values, new_keys = await self._epoch_key(rec, payload, receipt, values)
            # a task report or lease renewal landing in between is a conflict: re-read and apply again
            done = await core.commit(
                Change(
                    session_id,
                    rec.version,
                    values,
                    effect.events,
                    finish_request=(principal, key, respond),
                    new_keys=new_keys,
                )
            )
            if op.kicks_chain_sync and core.chain_sync is not None:
                core.chain_sync.kick(session_id)  # the executor may anchor on the secondary chains at once
            return op.respond(done, payload, receipt)

        return await core.retry_on_conflict(
            attempt,
            gave_up=f"session {session_id} keeps changing; the {op.name} is on chain and will be recorded on retry",
        )

    async def _epoch_key(
        self, rec: SessionRecord, payload: dict[str, Any], receipt: Receipt, values: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A new executor of record (activation, reassignment): the session's data key for the chain's new
        assignment epoch, committed with it; and the owner's public key the activation recovered."""
        core = self.core
        owner_key = rec.owner_public_key
        if payload.get("owner_public_key"):
            owner_key = bytes.fromhex(payload["owner_public_key"])
            values = {**values, "owner_public_key": owner_key}
        if core.custody is None:
            return values, []
        if owner_key is None:
            log.warning(
                "session %s has no owner public key (activated before checkpoint keys were kept): no data "
                "key for its new executor; its checkpoints stay plaintext",
                rec.session_id,
            )
            return values, []
        held = await core.db.session_keys(rec.session_id)
        epoch = receipt.assigned_epoch or (max((k.epoch for k in held), default=0) + 1)
        if any(k.epoch == epoch for k in held):
            return values, []
        return values, [core.custody.new_key_row(rec.session_id, epoch, payload["executor"], core.clock())]

    # ------------------------------------------------------------------ reconciliation

    async def reconcile(self) -> int:
        """Settle every request whose transaction was recorded but whose outcome was not (crash recovery)."""
        n = 0
        for stored in await self.core.db.pending_intents():
            try:
                await self.reconcile_one(stored)
                n += 1
            except Exception:
                log.exception("reconciling %s %s failed; will retry", stored.op, stored.key)
        return n

    async def reconcile_one(self, stored: StoredRequest) -> None:
        assert stored.tx_hash is not None
        core = self.core
        receipt = await core.chain.receipt(stored.tx_hash)
        if receipt is None and stored.raw_tx:
            try:
                async with core.chain.lock:
                    receipt = await core.chain.send(
                        PreparedTx(stored.tx_hash, stored.raw_tx), min(core.receipt_timeout, 10)
                    )
            except Unavailable:
                receipt = await core.chain.receipt(stored.tx_hash)
        if receipt is None:
            log.warning(
                "transaction 0x%s of %s is not on chain; the request is forgotten",
                stored.tx_hash.hex(),
                stored.op,
            )
            await core.db.abandon_request(stored.principal, stored.key, even_with_intent=True)
            return
        if not receipt.ok:
            await core.db.abandon_request(stored.principal, stored.key, even_with_intent=True)
            return
        payload = json.loads(stored.payload_json or "{}")
        if stored.op == CREATE:
            await self.finish_create(stored.principal, stored.key, payload, receipt)
        else:
            assert stored.session_id is not None and stored.op is not None
            await self.settle(
                OPS[stored.op], stored.principal, stored.key, stored.session_id, payload, receipt
            )
        log.info(
            "reconciled %s of session %s from transaction 0x%s",
            stored.op,
            stored.session_id,
            stored.tx_hash.hex(),
        )
