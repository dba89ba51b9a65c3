"""The session control plane: lifecycle, owner authentication, idempotency, chain relaying, leases,
tasks, timers and event streams. Knows nothing about gRPC transport: it takes API messages plus a
`CallContext` (what the transport authenticated) and raises agentgpt.errors.

Chain effects follow one pattern (DESIGN.md §5): authorise -> reserve the idempotency key -> prepare and
sign the transaction -> record its hash durably -> broadcast and wait for the receipt -> commit the state
change together with the stored response. A crash anywhere is reconciled from the recorded hash
(`reconcile()`), so a mint or a burn is never done twice; a failure before the receipt leaves the session
as it was and answers a retriable error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from eth_utils.address import to_checksum_address
from google.protobuf.message import Message

from agentgpt import auth as owner_auth
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from agentgpt.ipfs import ContentStore
from agentgpt.lifecycle import (
    ALLOWED_ACTIONS,
    Action,
    Durations,
    SessionClock,
    SessionState,
)
from agentgpt.runtime.validation import INT64_MAX
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.spec import SessionSpec, allowlist_of, build_spec, parse_yaml
from services.session import rules
from services.session.chain import ChainRejected, PreparedTx, Receipt, SessionChain
from services.session.chain_sync import ChainSync
from services.session.convert import event_to_pb, session_to_pb, task_to_pb
from services.session.model import ZERO_HASH, Caller, EventRecord, NewEvent, SessionRecord, canonical_json
from services.session.store import Change, SessionDB, StoredRequest
from services.session.validation import Deployment, edited_params

log = logging.getLogger("agentgpt.session")

DEFAULT_LEASE_TTL = 15
DEFAULT_PAGE_SIZE = 50
DEFAULT_TASK_PAGE = 100
STALE_PENDING_S = 30.0  # a reserved key with no recorded effect after this long belongs to a crashed call
FINAL_TASK = {pb.TASK_STATUS_SUCCEEDED, pb.TASK_STATUS_FAILED, pb.TASK_STATUS_REFUSED}


@dataclass(frozen=True)
class CallContext:
    """What the transport knows about a call: a trusted service identity, and the values older clients
    send as (deprecated) metadata instead of request fields — an owner's read signature and the owner's
    SessionFactory signature to relay (see agentgpt.auth). Request fields win over these."""

    service: str | None = None
    read_auth: common.OwnerSignature | None = None
    chain_signature: bytes = b""


def spec_to_dict(spec: SessionSpec) -> dict[str, Any]:
    return dict(json.loads(spec.canonical()))


def spec_from_dict(d: dict[str, Any]) -> SessionSpec:
    return build_spec(
        type=d["type"],
        chains=d["chains"],
        models=d["models"],
        decorators=d["decorators"],
        params=d["params"],
        checkpoint_interval=d["checkpoint_interval"],
    )


def spec_from_request(req: pb.CreateSessionRequest) -> SessionSpec:
    if req.spec_yaml:
        return parse_yaml(req.spec_yaml)
    s = req.spec
    params = json.loads(s.params_json) if s.params_json else {}
    return build_spec(
        type=s.type,
        chains=list(s.chains),
        models=dict(s.models),
        decorators=list(s.decorators),
        params=params,
        checkpoint_interval=s.checkpoint_interval,
    )


def read_signature(request: Message, ctx: CallContext) -> common.OwnerSignature | None:
    """The owner's read signature: the request's `auth` field, else the deprecated metadata header."""
    field: common.OwnerSignature | None = getattr(request, "auth", None)
    if field is not None and field.signature:
        return field
    if ctx.read_auth is not None and ctx.read_auth.signature:
        return ctx.read_auth
    return None


def chain_signature(request: Any, ctx: CallContext) -> bytes:
    """The owner's SessionFactory signature: the `chain_signature` field, else the deprecated header."""
    return bytes(getattr(request, "chain_signature", b"")) or ctx.chain_signature


class EventBus:
    """In-process wake-ups for watchers: one asyncio.Event per session, replaced on every notify."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def waiter(self, session_id: str) -> asyncio.Event:
        return self._events.setdefault(session_id, asyncio.Event())

    def notify(self, session_id: str) -> None:
        ev = self._events.pop(session_id, None)
        if ev is not None:
            ev.set()


MAX_ALERTS = 20  # per InspectSession answer


class SessionControl:
    def __init__(
        self,
        db: SessionDB,
        chain: SessionChain,
        archive: ContentStore,
        *,
        durations: Durations,
        auth_chain_id: int,
        default_executor: str = "",
        receipt_timeout: float = 60.0,
        trust_service_header: bool = False,
        chain_retry_base: float = 1.0,
        chain_retry_cap: float = 60.0,
        clock: Callable[[], float] = time.time,
        deployment: Deployment | None = None,
        chain_sync: ChainSync | None = None,
    ) -> None:
        self.db = db
        self.chain = chain
        self.archive = archive
        self.durations = durations
        self.auth_chain_id = auth_chain_id
        self.default_executor = default_executor
        self.receipt_timeout = receipt_timeout
        self.trust_service_header = trust_service_header
        self.chain_retry_base = chain_retry_base
        self.chain_retry_cap = chain_retry_cap
        self.clock = clock
        self.deployment = deployment or Deployment()  # the decorators and chains a spec may name
        self.bus = EventBus()
        self.chain_sync = chain_sync  # writer grants and budget audits (None without a network)

    def now(self) -> int:
        return int(self.clock())

    # ================================================================== authentication

    def _verify_owner_signature(self, request: Message, sig: common.OwnerSignature) -> str:
        now = self.clock()
        if sig.deadline < now:
            raise Unauthenticated(
                f"auth.deadline: the owner signature expired {int(now - sig.deadline)} s ago "
                f"(deadline {sig.deadline}); sign the request again with a later deadline"
            )
        try:
            recovered = owner_auth.recover_signer(sig, request, chain_id=self.auth_chain_id)
        except ValueError as exc:
            raise PermissionDenied(f"auth.signature: {exc}") from None
        if not owner_auth.same_address(recovered, sig.signer):
            raise PermissionDenied(
                f"auth.signature: signed by {recovered}, not by auth.signer {sig.signer} "
                "(wrong key, or the request changed after signing)"
            )
        return to_checksum_address(sig.signer)

    def _service(self, ctx: CallContext) -> str | None:
        # A plain header is only trusted when configured (dev/local); mTLS identities replace it later.
        return ctx.service if (self.trust_service_header and ctx.service) else None

    def _caller(self, request: Message, ctx: CallContext, *, service_allowed: bool) -> Caller:
        """Authenticate a mutating request: the owner's signature in `auth`, or a trusted service."""
        sig: common.OwnerSignature | None = getattr(request, "auth", None)
        has_sig = sig is not None and bool(sig.signature)
        service = self._service(ctx)
        if has_sig:
            assert sig is not None
            return Caller(owner=self._verify_owner_signature(request, sig), service=service)
        if service_allowed and service:
            return Caller(service=service)
        if service_allowed:
            raise Unauthenticated("auth: an owner signature or a service identity is required")
        raise Unauthenticated("auth: an owner signature is required")

    def _read_caller(self, request: Message, ctx: CallContext) -> Caller:
        service = self._service(ctx)
        if service:
            return Caller(service=service)
        sig = read_signature(request, ctx)
        if sig is not None:
            return Caller(owner=self._verify_owner_signature(request, sig))
        raise Unauthenticated("auth: reads need the owner's signature or a service identity")

    @staticmethod
    def _require_owner_or_service(caller: Caller, rec: SessionRecord) -> None:
        if caller.service:
            return
        if caller.owner is None or not owner_auth.same_address(caller.owner, rec.owner):
            raise PermissionDenied(
                f"auth.signer: {caller.owner} is not the owner of session {rec.session_id}"
            )

    @staticmethod
    def _require_service(caller: Caller, what: str) -> None:
        if not caller.service:
            raise PermissionDenied(
                f"{what} is reserved to service identities (executors, the recovery oracle)"
            )

    # ================================================================== idempotent mutations

    async def _idempotent(
        self,
        request: Message,
        ctx: CallContext,
        response_type: type[Message],
        body: Callable[[Caller, str], Awaitable[Message]],
        *,
        service_allowed: bool = False,
    ) -> Message:
        caller = self._caller(request, ctx, service_allowed=service_allowed)
        method = type(request).DESCRIPTOR.name.removesuffix("Request")
        key = str(request.idempotency_key)  # type: ignore[attr-defined]
        principal = caller.principal
        existing = await self.db.begin_request(principal, key, method, owner_auth.request_hash(request))
        if existing is not None:
            if existing.status == "done" and existing.response is not None:
                return response_type.FromString(existing.response)
            if existing.tx_hash is not None:
                await self._reconcile_one(existing)
                done = await self.db.get_request(principal, key)
                if done is not None and done.status == "done" and done.response is not None:
                    return response_type.FromString(done.response)
                raise Unavailable(f"idempotency_key {key!r}: its transaction is not settled yet; retry")
            if time.time() - existing.created_at < STALE_PENDING_S:
                raise Aborted(f"idempotency_key {key!r}: the same request is in progress; retry shortly")
        if caller.owner is not None:
            sig = request.auth  # type: ignore[attr-defined]
            await self.db.use_nonce(caller.owner, int(sig.nonce))
        try:
            return await body(caller, key)
        except BaseException:
            await self.db.abandon_request(principal, key)
            raise

    def _check_version(self, req: Any, rec: SessionRecord) -> None:
        expected = int(getattr(req, "expected_version", 0))
        if expected and expected != rec.version:
            raise Aborted(
                f"expected_version: session {rec.session_id} is at version {rec.version}, not {expected}"
            )

    def _next_clock(self, rec: SessionRecord, action: Action, *, settled: bool = False) -> SessionClock:
        return rules.next_clock(rec, action, self.now(), self.durations, settled=settled)

    def _clock_values(self, clock: SessionClock, reason: str) -> dict[str, Any]:
        return rules.clock_values(clock, reason, self.durations)

    def _respond(self, response_type: type[Message], **extra: Any) -> Callable[[SessionRecord], bytes]:
        def respond(rec: SessionRecord) -> bytes:
            return response_type(session=session_to_pb(rec), **extra).SerializeToString()

        return respond

    async def _commit(self, change: Change) -> SessionRecord:
        rec = await self.db.commit(change)
        self.bus.notify(change.session_id)
        return rec

    # ------------------------------------------------------------------ chain relaying

    async def _relay(
        self,
        principal: str,
        key: str,
        op: str,
        session_id: str | None,
        payload: dict[str, Any],
        prepare: Callable[[], Awaitable[PreparedTx]],
    ) -> Receipt:
        """Prepare, record, broadcast, wait. Raises (leaving the session as it was) on any failure."""
        async with self.chain.lock:
            tx = await prepare()
            await self.db.record_intent(
                principal,
                key,
                op=op,
                session_id=session_id,
                payload_json=canonical_json(payload),
                tx_hash=tx.tx_hash,
                raw_tx=tx.raw,
            )
            receipt = await self.chain.send(tx, self.receipt_timeout)
        if not receipt.ok:
            await self.db.abandon_request(principal, key, even_with_intent=True)
            raise FailedPrecondition(f"{op}: transaction 0x{receipt.tx_hash.hex()} reverted on chain")
        return receipt

    @staticmethod
    def _chain_signature(req: Any, ctx: CallContext) -> bytes:
        sig = chain_signature(req, ctx)
        if len(sig) != 65:
            raise InvalidArgument(
                "chain_signature",
                "the owner's 65-byte SessionFactory EIP-712 signature is required for this on-chain action "
                f"(got {len(sig)} bytes)",
            )
        return sig

    # ================================================================== create

    async def create(self, req: pb.CreateSessionRequest, ctx: CallContext) -> pb.CreateSessionResponse:
        async def body(caller: Caller, key: str) -> Message:
            assert caller.owner is not None
            spec = spec_from_request(req)
            budget = int(req.initial_budget)
            chain_sig = self._chain_signature(req, ctx)
            owner = caller.owner
            payload = {"owner": owner, "spec": spec_to_dict(spec), "budget": str(budget)}

            async def prepare() -> PreparedTx:
                nonce = await self.chain.owner_nonce(owner)
                return await self.chain.prepare_create(
                    owner,
                    spec.workflow_hash(),
                    budget,
                    nonce=nonce,
                    deadline=int(req.auth.deadline),
                    signature=chain_sig,
                    permit=rules.permit_tuple(req.budget_permit, req.budget_permit_deadline),
                )

            receipt = await self._relay(caller.principal, key, "create", None, payload, prepare)
            rec = await self._finish_create(caller.principal, key, payload, receipt)
            return pb.CreateSessionResponse(session=session_to_pb(rec))

        return await self._idempotent(req, ctx, pb.CreateSessionResponse, body)  # type: ignore[return-value]

    async def _finish_create(
        self, principal: str, key: str, payload: dict[str, Any], receipt: Receipt
    ) -> SessionRecord:
        if receipt.session_id is None:
            raise FailedPrecondition(
                f"mint transaction 0x{receipt.tx_hash.hex()} has no SessionCreated event"
            )
        sid = str(receipt.session_id)
        existing = await self.db.get(sid)
        respond = self._respond(pb.CreateSessionResponse)
        if existing is not None:
            if existing.mint_tx_hash != receipt.tx_hash or existing.home_chain_id != self.chain.chain_id:
                # The chain minted this token id anew (a reset chain, another deployment): the row is
                # another NFT's, never an answer to this request.
                raise FailedPrecondition(
                    f"session {sid}: SessionDB and the home chain disagree: chain {self.chain.chain_id} "
                    f"minted NFT #{sid} in transaction 0x{receipt.tx_hash.hex()}, but SessionDB's session "
                    f"{sid} was minted in 0x{existing.mint_tx_hash.hex()} on chain {existing.home_chain_id} "
                    "(the store describes other chains: point the service at its own chain, or at a fresh "
                    "SessionDB)"
                )
            # reconciled twice: the row is this mint's, just settle the request
            await self.db.finish_request(principal, key, respond(existing))
            return existing
        spec = spec_from_dict(payload["spec"])
        now = self.clock()
        clock = SessionClock(SessionState.DRAFT, int(now))
        values = {
            "session_id": sid,
            "owner": payload["owner"],
            "type": spec.type,
            "spec_json": canonical_json(spec_to_dict(spec)),
            "workflow_hash": spec.workflow_hash(),
            "budget": payload["budget"],
            "budget_spent": "0",
            "home_chain_id": self.chain.chain_id,
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
            **self._clock_values(clock, "created by owner; NFT minted"),
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
        rec = await self.db.insert(values, [event], (principal, key, respond))
        self.bus.notify(sid)
        return rec

    # ================================================================== DRAFT edits

    async def _load_owned(self, session_id: str, caller: Caller) -> SessionRecord:
        rec = await self.db.require(session_id)
        self._require_owner_or_service(caller, rec)
        return rec

    async def edit_params(self, req: pb.EditParamsRequest, ctx: CallContext) -> pb.EditParamsResponse:
        async def body(caller: Caller, key: str) -> Message:
            rec = await self._load_owned(req.session_id, caller)
            self._check_version(req, rec)
            self._next_clock(rec, Action.EDIT_PARAMS)
            spec = {**rec.spec, "params": edited_params(req.params_json, rec.spec)}
            new = spec_from_dict(spec)
            done = await self._commit(
                Change(
                    rec.session_id,
                    rec.version,
                    {"spec_json": canonical_json(spec_to_dict(new)), "workflow_hash": new.workflow_hash()},
                    [NewEvent("params_edited", {"workflow_hash": "0x" + new.workflow_hash().hex()})],
                    finish_request=(caller.principal, key, self._respond(pb.EditParamsResponse)),
                )
            )
            return pb.EditParamsResponse(session=session_to_pb(done))

        return await self._idempotent(req, ctx, pb.EditParamsResponse, body)  # type: ignore[return-value]

    async def attach_decorators(
        self, req: pb.AttachDecoratorsRequest, ctx: CallContext
    ) -> pb.AttachDecoratorsResponse:
        async def body(caller: Caller, key: str) -> Message:
            rec = await self._load_owned(req.session_id, caller)
            self._check_version(req, rec)
            self._next_clock(rec, Action.ATTACH_DECORATORS)
            current = list(rec.spec["decorators"])
            dup = [d for d in req.decorators if d in current]
            if dup or len(set(req.decorators)) != len(req.decorators):
                raise InvalidArgument(
                    "decorators", f"already attached or listed twice: {', '.join(dup) or 'duplicates'}"
                )
            spec = {**rec.spec, "decorators": current + list(req.decorators)}
            try:
                new = spec_from_dict(spec)
            except InvalidArgument as exc:
                raise InvalidArgument("decorators", exc.message) from None
            done = await self._commit(
                Change(
                    rec.session_id,
                    rec.version,
                    {
                        "spec_json": canonical_json(spec_to_dict(new)),
                        "workflow_hash": new.workflow_hash(),
                        "context_epoch": rec.context_epoch + 1,
                    },
                    [NewEvent("decorators_attached", {"decorators": list(req.decorators)})],
                    finish_request=(caller.principal, key, self._respond(pb.AttachDecoratorsResponse)),
                )
            )
            return pb.AttachDecoratorsResponse(session=session_to_pb(done))

        return await self._idempotent(req, ctx, pb.AttachDecoratorsResponse, body)  # type: ignore[return-value]

    # ================================================================== chain-mirrored transitions

    async def activate(self, req: pb.ActivateSessionRequest, ctx: CallContext) -> pb.ActivateSessionResponse:
        async def body(caller: Caller, key: str) -> Message:
            rec = await self._load_owned(req.session_id, caller)
            if caller.owner is None:
                raise PermissionDenied("activation needs the owner's signature")
            self._check_version(req, rec)
            self._next_clock(rec, Action.ACTIVATE)
            # what is committed on chain must still be supported here (the draft may predate a change)
            self.deployment.check_spec(spec_from_dict(rec.spec), "spec")
            executor = req.executor or self.default_executor
            if not executor:
                raise FailedPrecondition(
                    "executor: none given and the service has no default executor configured"
                )
            chain_sig = self._chain_signature(req, ctx)
            payload = {"executor": to_checksum_address(executor)}
            # The account's allowlist is the spec's (params.allowlist), as the owner signed it.
            allowlist = allowlist_of(rec.spec.get("params") or {})

            async def prepare() -> PreparedTx:
                nonce = await self.chain.owner_nonce(rec.owner)
                return await self.chain.prepare_activate(
                    int(rec.session_id),
                    rec.workflow_hash,
                    executor,
                    allowlist,
                    nonce=nonce,
                    deadline=int(req.auth.deadline),
                    signature=chain_sig,
                )

            receipt = await self._relay(caller.principal, key, "activate", rec.session_id, payload, prepare)
            done = await self._settle(caller.principal, key, "activate", rec.session_id, payload, receipt)
            return pb.ActivateSessionResponse(session=session_to_pb(done), tx_hash=receipt.tx_hash)

        return await self._idempotent(req, ctx, pb.ActivateSessionResponse, body)  # type: ignore[return-value]

    async def update_budget(self, req: pb.UpdateBudgetRequest, ctx: CallContext) -> pb.UpdateBudgetResponse:
        async def body(caller: Caller, key: str) -> Message:
            rec = await self._load_owned(req.session_id, caller)
            if caller.owner is None:
                raise PermissionDenied("budget updates need the owner's signature")
            self._check_version(req, rec)
            self._next_clock(rec, Action.UPDATE_BUDGET)
            chain_sig = self._chain_signature(req, ctx)
            amount = int(req.add_amount)
            payload = {"amount": str(amount)}

            async def prepare() -> PreparedTx:
                nonce = await self.chain.owner_nonce(rec.owner)
                return await self.chain.prepare_update_budget(
                    int(rec.session_id),
                    amount,
                    nonce=nonce,
                    deadline=int(req.auth.deadline),
                    signature=chain_sig,
                    permit=rules.permit_tuple(req.budget_permit, req.budget_permit_deadline),
                )

            receipt = await self._relay(
                caller.principal, key, "update_budget", rec.session_id, payload, prepare
            )
            done = await self._settle(
                caller.principal, key, "update_budget", rec.session_id, payload, receipt
            )
            return pb.UpdateBudgetResponse(session=session_to_pb(done))

        return await self._idempotent(req, ctx, pb.UpdateBudgetResponse, body)  # type: ignore[return-value]

    async def _oracle_transition(
        self, req: Any, ctx: CallContext, action: Action, op: str, response_type: type[Message]
    ) -> Message:
        async def body(caller: Caller, key: str) -> Message:
            rec = await self._load_owned(req.session_id, caller)
            self._check_version(req, rec)
            self._next_clock(rec, action)
            who = caller.owner or f"service {caller.service}"
            payload = {"reason": (req.reason or f"{op} requested")[:256], "by": who}
            receipt = await self._relay(
                caller.principal,
                key,
                op,
                rec.session_id,
                payload,
                lambda: self.chain.prepare_oracle(op, int(rec.session_id)),
            )
            done = await self._settle(caller.principal, key, op, rec.session_id, payload, receipt)
            return response_type(session=session_to_pb(done))

        return await self._idempotent(req, ctx, response_type, body, service_allowed=True)

    async def pause(self, req: pb.PauseSessionRequest, ctx: CallContext) -> pb.PauseSessionResponse:
        return await self._oracle_transition(req, ctx, Action.PAUSE, "pause", pb.PauseSessionResponse)  # type: ignore[return-value]

    async def resume(self, req: pb.ResumeSessionRequest, ctx: CallContext) -> pb.ResumeSessionResponse:
        return await self._oracle_transition(req, ctx, Action.RESUME, "resume", pb.ResumeSessionResponse)  # type: ignore[return-value]

    async def terminate(
        self, req: pb.TerminateSessionRequest, ctx: CallContext
    ) -> pb.TerminateSessionResponse:
        return await self._oracle_transition(
            req, ctx, Action.TERMINATE, "terminate", pb.TerminateSessionResponse
        )  # type: ignore[return-value]

    async def complete(self, req: pb.CompleteSessionRequest, ctx: CallContext) -> pb.CompleteSessionResponse:
        async def body(caller: Caller, key: str) -> Message:
            rec = await self._load_owned(req.session_id, caller)
            if caller.owner is None:
                raise PermissionDenied("completion needs the owner's signature")
            self._check_version(req, rec)
            self._next_clock(rec, Action.COMPLETE)
            chain_sig = self._chain_signature(req, ctx)
            log_cid = await self._archive_log(rec)
            payload = {"log_cid": log_cid}

            async def prepare() -> PreparedTx:
                nonce = await self.chain.owner_nonce(rec.owner)
                return await self.chain.prepare_complete(
                    int(rec.session_id), nonce=nonce, deadline=int(req.auth.deadline), signature=chain_sig
                )

            receipt = await self._relay(caller.principal, key, "complete", rec.session_id, payload, prepare)
            done = await self._settle(caller.principal, key, "complete", rec.session_id, payload, receipt)
            return pb.CompleteSessionResponse(
                session=session_to_pb(done), log_cid=log_cid, burn_tx_hash=receipt.tx_hash
            )

        return await self._idempotent(req, ctx, pb.CompleteSessionResponse, body)  # type: ignore[return-value]

    async def _archive_log(self, rec: SessionRecord) -> str:
        """Put the session's whole hash-chained event log on IPFS; its CID goes into the final event.

        Stored in the IPFS library's file form (`put(..., "raw")`, i.e. `ipfs add --cid-version=1
        --raw-leaves --chunker=size-262144`): a log up to 256 KiB is one raw block, a longer one a UnixFS
        dag-pb file whose CID the library computes locally and verifies on read, so any node can
        `ipfs cat` it and a 72-hour session's log is not bound by the 1 MiB block limit."""
        evs: list[EventRecord] = []
        cursor = 0
        while True:
            batch = await self.db.events_after(rec.session_id, cursor)
            evs.extend(batch)
            if len(batch) < 500:
                break
            cursor = batch[-1].cursor
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
            return await self.archive.put(canonical_json(doc).encode(), "raw")
        except ServiceError:
            raise
        except Exception as exc:
            raise Unavailable(f"archiving the event log to IPFS failed: {exc}") from None

    async def _settle(
        self, principal: str, key: str, op: str, session_id: str, payload: dict[str, Any], receipt: Receipt
    ) -> SessionRecord:
        """Commit the DB side of a chain operation whose receipt succeeded (also used by reconcile)."""
        action = {
            "activate": Action.ACTIVATE,
            "pause": Action.PAUSE,
            "resume": Action.RESUME,
            "terminate": Action.TERMINATE,
            "complete": Action.COMPLETE,
            "update_budget": Action.UPDATE_BUDGET,
        }[op]
        tx = "0x" + receipt.tx_hash.hex()
        response_type: type[Message] = {
            "activate": pb.ActivateSessionResponse,
            "pause": pb.PauseSessionResponse,
            "resume": pb.ResumeSessionResponse,
            "terminate": pb.TerminateSessionResponse,
            "complete": pb.CompleteSessionResponse,
            "update_budget": pb.UpdateBudgetResponse,
        }[op]
        extra: dict[str, Any] = {}
        if op == "activate":
            extra = {"tx_hash": receipt.tx_hash}
        elif op == "complete":
            extra = {"log_cid": payload["log_cid"], "burn_tx_hash": receipt.tx_hash}
        respond = self._respond(response_type, **extra)
        for _ in range(5):
            rec = await self.db.require(session_id)
            if action not in ALLOWED_ACTIONS[rec.lifecycle_state]:
                # The commit that settles a request also finishes it, so getting here means the session moved
                # on meanwhile (e.g. a timer fired): answer with what it is now.
                await self.db.finish_request(principal, key, respond(rec))
                return rec
            clock = self._next_clock(rec, action, settled=True)
            values: dict[str, Any] = {}
            events: list[NewEvent] = []
            if op == "activate":
                values = {
                    **self._clock_values(
                        clock, "activated by owner; workflow and executor committed on chain"
                    ),
                    "executor": payload["executor"],
                }
                events = [
                    NewEvent(
                        "activated",
                        {
                            "executor": payload["executor"],
                            "tx": tx,
                            "workflow_hash": "0x" + rec.workflow_hash.hex(),
                        },
                    )
                ]
            elif op == "update_budget":
                values = {"budget": str(int(rec.budget) + int(payload["amount"]))}
                events = [NewEvent("budget_updated", {"added": payload["amount"], "tx": tx})]
            elif op == "complete":
                values = {
                    **self._clock_values(clock, "completed by owner; log archived, NFT burned"),
                    "log_cid": payload["log_cid"],
                    "final_tx_hash": receipt.tx_hash,
                    "lease_expires_at": None,
                }
                events = [NewEvent("completed", {"log_cid": payload["log_cid"], "burn_tx": tx})]
            else:
                reason = f"{payload['reason']} (by {payload['by']})"
                values = self._clock_values(clock, reason)
                if op in ("pause", "terminate"):
                    values["lease_expires_at"] = None  # fence the executor out until it claims again
                if op == "terminate":
                    values["final_tx_hash"] = receipt.tx_hash
                events = [
                    NewEvent(
                        {"pause": "paused", "resume": "resumed", "terminate": "terminated"}[op],
                        {"reason": payload["reason"], "by": payload["by"], "tx": tx},
                    )
                ]
            try:
                done = await self._commit(
                    Change(session_id, rec.version, values, events, finish_request=(principal, key, respond))
                )
            except Aborted:
                continue  # a task report or lease renewal landed in between: re-read and apply again
            if op == "activate" and self.chain_sync is not None:
                self.chain_sync.kick()  # the executor may anchor on the secondary chains at once
            return done
        raise Aborted(
            f"session {session_id} keeps changing; the {op} is on chain and will be recorded on retry"
        )

    # ================================================================== reconciliation

    async def reconcile(self) -> int:
        """Settle every request whose transaction was recorded but whose outcome was not (crash recovery)."""
        n = 0
        for stored in await self.db.pending_intents():
            try:
                await self._reconcile_one(stored)
                n += 1
            except Exception:
                log.exception("reconciling %s %s failed; will retry", stored.op, stored.key)
        return n

    async def _reconcile_one(self, stored: StoredRequest) -> None:
        assert stored.tx_hash is not None
        receipt = await self.chain.receipt(stored.tx_hash)
        if receipt is None and stored.raw_tx:
            try:
                async with self.chain.lock:
                    receipt = await self.chain.send(
                        PreparedTx(stored.tx_hash, stored.raw_tx), min(self.receipt_timeout, 10)
                    )
            except Unavailable:
                receipt = await self.chain.receipt(stored.tx_hash)
        if receipt is None:
            log.warning(
                "transaction 0x%s of %s is not on chain; the request is forgotten",
                stored.tx_hash.hex(),
                stored.op,
            )
            await self.db.abandon_request(stored.principal, stored.key, even_with_intent=True)
            return
        if not receipt.ok:
            await self.db.abandon_request(stored.principal, stored.key, even_with_intent=True)
            return
        payload = json.loads(stored.payload_json or "{}")
        if stored.op == "create":
            await self._finish_create(stored.principal, stored.key, payload, receipt)
        else:
            assert stored.session_id is not None and stored.op is not None
            await self._settle(stored.principal, stored.key, stored.op, stored.session_id, payload, receipt)
        log.info(
            "reconciled %s of session %s from transaction 0x%s",
            stored.op,
            stored.session_id,
            stored.tx_hash.hex(),
        )

    # ================================================================== timers

    async def fire_due(self) -> int:
        """Expire every session whose lifecycle deadline has passed (durable: deadlines live in SessionDB).

        The same commit records that the expiry is still to be mirrored on chain (`chain_expiry_due`), so
        `settle_chain_expiries` retries it until the chain confirms, across outages and restarts."""
        fired = 0
        for rec in await self.db.due(self.now()):
            try:
                clock = self._next_clock(rec, Action.EXPIRE)
            except FailedPrecondition:
                continue
            reason = clock.terminal_reason.value if clock.terminal_reason else "expired"
            try:
                await self._commit(
                    Change(
                        rec.session_id,
                        rec.version,
                        {
                            **self._clock_values(clock, reason),
                            "lease_expires_at": None,
                            "chain_expiry_due": self.clock(),
                            "chain_expiry_attempts": 0,
                        },
                        [NewEvent("expired", {"reason": reason, "from": SessionState(rec.state).name})],
                    )
                )
            except Aborted:
                continue  # changed meanwhile; the next scan re-evaluates it
            fired += 1
        return fired

    async def settle_chain_expiries(self) -> int:
        """Mirror fired timers on chain: call SessionFactory.expire for each session whose expiry is pending
        and due for an attempt. Settled when the transaction succeeds or the contract answers that the
        session is already final (or unknown); any other failure (chain down, reverted, not yet past the
        contract's own deadline) is retried later with exponential backoff. Returns how many settled."""
        settled = 0
        for rec in await self.db.chain_expiries_due(self.clock()):
            outcome = await self._expire_on_chain(rec.session_id)
            if outcome is None:
                attempts = rec.chain_expiry_attempts + 1
                delay = rules.retry_delay(attempts, base=self.chain_retry_base, cap=self.chain_retry_cap)
                await self.db.postpone_chain_expiry(
                    rec.session_id, attempts=attempts, due=self.clock() + delay
                )
                continue
            try:
                await self._commit(
                    Change(
                        rec.session_id,
                        rec.version,
                        {"chain_expiry_due": None, "chain_expiry_attempts": rec.chain_expiry_attempts + 1},
                        [
                            NewEvent(
                                "expired_on_chain", {**outcome, "attempts": rec.chain_expiry_attempts + 1}
                            )
                        ],
                    )
                )
            except Aborted:
                continue  # re-read next tick; a second expire() is refused by the contract, never redone
            settled += 1
        return settled

    async def _expire_on_chain(self, session_id: str) -> dict[str, Any] | None:
        """One attempt at SessionFactory.expire: the settled outcome, or None to retry later. The contract
        enforces the same deadlines on its own; expire() settles the escrow and burns the NFT. It can never
        take effect twice: once final, the contract refuses it (InvalidState), which settles the retry."""
        try:
            async with self.chain.lock:
                tx = await self.chain.prepare_oracle("expire", int(session_id))
                receipt = await self.chain.send(tx, self.receipt_timeout)
        except ChainRejected as exc:
            if exc.error in ("InvalidState", "SessionNotFound"):
                log.info("session %s needs no on-chain expire: %s", session_id, exc.message)
                return {"outcome": "already_final", "detail": exc.error}
            log.warning("on-chain expire of session %s refused (%s); will retry", session_id, exc.message)
            return None
        except Exception as exc:
            log.warning("on-chain expire of session %s failed (%s); will retry", session_id, exc)
            return None
        if not receipt.ok:
            log.warning(
                "on-chain expire of session %s reverted (0x%s); will retry", session_id, receipt.tx_hash.hex()
            )
            return None
        return {"outcome": "expired", "tx": "0x" + receipt.tx_hash.hex()}

    # ================================================================== tasks and leases

    async def submit_tasks(self, req: pb.SubmitTasksRequest, ctx: CallContext) -> pb.SubmitTasksResponse:
        async def body(caller: Caller, key: str) -> Message:
            # Executors update an ACTIVE session all the time (reports, leases, checkpoints): appending
            # to its queue re-reads and retries on a version conflict instead of failing the owner.
            for _ in range(5):
                try:
                    return await attempt(caller, key)
                except Aborted as exc:
                    if "expected_version" in exc.message:
                        raise
            raise Aborted(f"session {req.session_id} kept changing; retry the submission")

        async def attempt(caller: Caller, key: str) -> Message:
            rec = await self._load_owned(req.session_id, caller)
            self._check_version(req, rec)
            self._next_clock(rec, Action.EXECUTE_TASKS)
            first = rec.next_task_seq
            now = time.time()
            rows = [
                {
                    "session_id": rec.session_id,
                    "seq": first + i,
                    "kind": t.kind,
                    "args_json": t.args_json or "{}",
                    "status": pb.TASK_STATUS_QUEUED,
                    "result_json": "",
                    "error": "",
                    "intents": b"",
                    "gas_used": 0,
                    "cost": "0",
                    "log_hash": b"",
                    "score": None,
                    "executor_id": "",
                    "epoch": 0,
                    "updated_at": now,
                }
                for i, t in enumerate(req.tasks)
            ]
            seqs = [first + i for i in range(len(req.tasks))]
            resp = pb.SubmitTasksResponse(task_seqs=seqs)
            await self._commit(
                Change(
                    rec.session_id,
                    rec.version,
                    {"next_task_seq": first + len(rows)},
                    [NewEvent("tasks_submitted", {"first_seq": first, "count": len(rows)})],
                    new_tasks=rows,
                    finish_request=(caller.principal, key, lambda _r: resp.SerializeToString()),
                )
            )
            return resp

        return await self._idempotent(req, ctx, pb.SubmitTasksResponse, body)  # type: ignore[return-value]

    def _lease_pb(self, rec: SessionRecord) -> pb.Lease:
        from services.session.convert import timestamp

        return pb.Lease(
            session_id=rec.session_id,
            executor_id=rec.lease_executor,
            epoch=rec.lease_epoch,
            expires_at=timestamp(rec.lease_expires_at or 0),
        )

    async def claim_lease(self, req: pb.ClaimLeaseRequest, ctx: CallContext) -> pb.ClaimLeaseResponse:
        caller = self._caller(req, ctx, service_allowed=True)
        self._require_service(caller, "ClaimLease")
        ttl = req.ttl_seconds or DEFAULT_LEASE_TTL
        rec = await self.db.claim(
            executor_id=req.executor_id,
            executor_address=to_checksum_address(req.executor_address) if req.executor_address else None,
            session_id=req.session_id or None,
            ttl=ttl,
            now=self.clock(),
            active_state=int(SessionState.ACTIVE),
        )
        if rec is None:
            return pb.ClaimLeaseResponse()
        self.bus.notify(rec.session_id)
        return pb.ClaimLeaseResponse(lease=self._lease_pb(rec))

    async def renew_lease(self, req: pb.RenewLeaseRequest, ctx: CallContext) -> pb.RenewLeaseResponse:
        caller = self._caller(req, ctx, service_allowed=True)
        self._require_service(caller, "RenewLease")
        for _ in range(5):
            rec = await self.db.require(req.session_id)
            rules.check_lease(rec, req.executor_id, req.epoch)
            if rec.lifecycle_state is not SessionState.ACTIVE or rec.lease_expires_at is None:
                raise FailedPrecondition(
                    f"session {rec.session_id} is {rec.lifecycle_state.name}; the lease is void"
                )
            ttl = req.ttl_seconds or DEFAULT_LEASE_TTL
            try:
                rec = await self.db.commit(
                    Change(rec.session_id, rec.version, {"lease_expires_at": self.clock() + ttl})
                )
            except Aborted:
                continue
            return pb.RenewLeaseResponse(lease=self._lease_pb(rec))
        raise Aborted("the session kept changing; retry")

    async def release_lease(self, req: pb.ReleaseLeaseRequest, ctx: CallContext) -> pb.ReleaseLeaseResponse:
        caller = self._caller(req, ctx, service_allowed=True)
        self._require_service(caller, "ReleaseLease")
        for _ in range(5):
            rec = await self.db.require(req.session_id)
            rules.check_lease(rec, req.executor_id, req.epoch)
            try:
                await self.db.commit(Change(rec.session_id, rec.version, {"lease_expires_at": None}))
            except Aborted:
                continue
            return pb.ReleaseLeaseResponse()
        raise Aborted("the session kept changing; retry")

    async def report_task(self, req: pb.ReportTaskRequest, ctx: CallContext) -> pb.ReportTaskResponse:
        caller = self._caller(req, ctx, service_allowed=True)
        self._require_service(caller, "ReportTask")
        t = req.task
        for _ in range(5):
            rec = await self.db.require(req.session_id)
            rules.check_lease(rec, req.executor_id, req.epoch)
            self._next_clock(rec, Action.EXECUTE_TASKS)
            current = await self.db.task(rec.session_id, t.seq)
            if current is None:
                raise NotFound(f"task.seq: session {rec.session_id} has no task {t.seq}")
            if current.status in FINAL_TASK:
                if current.status == t.status:
                    return pb.ReportTaskResponse(version=rec.version)  # a retried report: already recorded
                raise FailedPrecondition(
                    f"task.status: task {t.seq} already ended as {pb.TaskStatus.Name(cast(pb.TaskStatus.ValueType, current.status))}"
                )
            result = json.loads(t.result_json) if t.result_json else {}
            score = result.get("model_score", result.get("plan_score"))
            score = float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
            values: dict[str, Any] = {}
            finishing = t.status in FINAL_TASK
            if finishing:
                values = {
                    "budget_spent": str(int(rec.budget_spent) + int(t.cost or 0)),
                    "gas_used": min(rec.gas_used + t.gas_used, INT64_MAX),
                }
                gas_cost = result.get("gas_cost_wei")
                if isinstance(gas_cost, int | str) and str(gas_cost).isdigit():
                    values["gas_cost_wei"] = str(int(rec.gas_cost_wei) + int(gas_cost))
                # a swap_context task moved the session to a new context epoch (models, rail, decorators)
                epoch = result.get("context_epoch")
                if (
                    isinstance(epoch, int)
                    and not isinstance(epoch, bool)
                    and rec.context_epoch < epoch <= INT64_MAX
                ):
                    values["context_epoch"] = epoch
            status_name = pb.TaskStatus.Name(t.status).removeprefix("TASK_STATUS_").lower()
            update = {
                "session_id": rec.session_id,
                "seq": t.seq,
                "status": t.status,
                "result_json": t.result_json,
                "error": t.error[:4096],
                "intents": pb.Task(intents=t.intents).SerializeToString(),
                "gas_used": min(t.gas_used, INT64_MAX),
                "cost": t.cost or "0",
                "log_hash": t.log_hash,
                "score": score,
                "executor_id": req.executor_id,
                "epoch": req.epoch,
                "updated_at": time.time(),
            }
            try:
                done = await self._commit(
                    Change(
                        rec.session_id,
                        rec.version,
                        values,
                        [
                            NewEvent(
                                f"task_{status_name}",
                                {
                                    "seq": t.seq,
                                    "kind": current.kind,
                                    "gas_used": t.gas_used,
                                    "cost": t.cost or "0",
                                    "error": t.error[:512],
                                    "log_hash": "0x" + t.log_hash.hex(),
                                },
                            )
                        ],
                        task_update=update,
                    )
                )
            except Aborted:
                continue
            return pb.ReportTaskResponse(version=done.version)
        raise Aborted("the session kept changing; retry the report")

    async def record_checkpoint(
        self, req: pb.RecordCheckpointRequest, ctx: CallContext
    ) -> pb.RecordCheckpointResponse:
        caller = self._caller(req, ctx, service_allowed=True)
        self._require_service(caller, "RecordCheckpoint")
        cp = req.checkpoint
        for _ in range(5):
            rec = await self.db.require(req.session_id)
            rules.check_lease(rec, req.executor_id, req.epoch)
            if rec.lifecycle_state not in (SessionState.ACTIVE, SessionState.PAUSED):
                raise FailedPrecondition(f"session {rec.session_id} is {rec.lifecycle_state.name}")
            latest = json.loads(rec.checkpoint_json) if rec.checkpoint_json else None
            anchors = [{"chain_id": a.chain_id, "number": a.number, "hash": a.hash.hex()} for a in cp.anchors]
            if latest is not None and cp.seq == latest["seq"]:
                # the same checkpoint again, with the anchors confirmed since it was first recorded
                event = rules.checkpoint_anchors(latest, cp.cid, cp.state_root.hex(), anchors)
                if event is None:
                    return pb.RecordCheckpointResponse()  # nothing new: a retry
                doc = {**latest, "anchors": event["anchors"]}
                new_event = NewEvent("checkpoint_anchored", event)
            elif latest is not None and cp.seq < latest["seq"]:
                raise FailedPrecondition(
                    f"checkpoint.seq: {cp.seq} is below the latest checkpoint {latest['seq']}"
                )
            else:
                doc = {
                    "seq": cp.seq,
                    "cid": cp.cid,
                    "state_root": cp.state_root.hex(),
                    "at": self.clock(),
                    "anchors": anchors,
                }
                new_event = NewEvent(
                    "checkpointed", {"seq": cp.seq, "cid": cp.cid, "state_root": "0x" + cp.state_root.hex()}
                )
            try:
                await self._commit(
                    Change(rec.session_id, rec.version, {"checkpoint_json": canonical_json(doc)}, [new_event])
                )
            except Aborted:
                continue
            return pb.RecordCheckpointResponse()
        raise Aborted("the session kept changing; retry")

    # ================================================================== reads

    async def get(self, req: pb.GetSessionRequest, ctx: CallContext) -> pb.GetSessionResponse:
        caller = self._read_caller(req, ctx)
        rec = await self._load_owned(req.session_id, caller)
        return pb.GetSessionResponse(session=session_to_pb(rec))

    async def list_sessions(self, req: pb.ListSessionsRequest, ctx: CallContext) -> pb.ListSessionsResponse:
        caller = self._read_caller(req, ctx)
        if not caller.service:
            if not req.owner or not owner_auth.same_address(req.owner, caller.owner or ""):
                raise PermissionDenied(
                    "owner: owners may only list their own sessions (set owner to your address)"
                )
        size = req.page.page_size or DEFAULT_PAGE_SIZE
        rows, token = await self.db.list_sessions(
            owner=req.owner or None,
            states=list(req.states),
            type=req.type or None,
            page_token=req.page.page_token,
            limit=size,
        )
        return pb.ListSessionsResponse(
            sessions=[session_to_pb(r) for r in rows], page=common.PageResponse(next_page_token=token)
        )

    async def list_tasks(self, req: pb.ListTasksRequest, ctx: CallContext) -> pb.ListTasksResponse:
        caller = self._read_caller(req, ctx)
        rec = await self._load_owned(req.session_id, caller)
        size = req.page_size or DEFAULT_TASK_PAGE
        rows = await self.db.tasks_after(
            rec.session_id, int(req.after_seq), statuses=list(req.statuses), limit=size + 1
        )
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListTasksResponse(
            tasks=[task_to_pb(t) for t in rows], next_after_seq=rows[-1].seq if more else 0
        )

    async def inspect(self, req: pb.InspectSessionRequest, ctx: CallContext) -> pb.InspectSessionResponse:
        caller = self._read_caller(req, ctx)
        rec = await self._load_owned(req.session_id, caller)
        counts, gas, score = await self.db.task_stats(rec.session_id)
        done = sum(counts.get(s, 0) for s in FINAL_TASK)
        total = rec.next_task_seq - 1
        failed, refused = counts.get(pb.TASK_STATUS_FAILED, 0), counts.get(pb.TASK_STATUS_REFUSED, 0)
        lease_lost = (
            rec.lifecycle_state is SessionState.ACTIVE
            and rec.lease_epoch > 0
            and (rec.lease_expires_at is None or rec.lease_expires_at < self.clock())
        )
        alerts = await self._alerts(rec, counts, lease_lost)
        resp = pb.InspectSessionResponse(
            session=session_to_pb(rec),
            tasks_done=done,
            tasks_total=total,
            gas_used=gas,
            gas_cost_wei=rec.gas_cost_wei,
            completion=(done / total) if total else 0.0,
            # critical: failed tasks, a lapsed executor lease, budget overrun, escrow/SessionDB mismatch
            alerts_critical=failed
            + sum(1 for a in alerts if a.severity == "critical" and a.code != "task_failed"),
            # warning: refused tasks, tasks retrying on a failing dependency, budget 90 % used
            alerts_warning=refused
            + sum(1 for a in alerts if a.severity == "warning" and a.code != "task_refused"),
            model_score=score or 0.0,
            decorators=list(rec.spec["decorators"]),
            alerts=alerts[:MAX_ALERTS],
        )
        if req.detail == "full":
            resp.recent_tasks.extend(task_to_pb(t) for t in await self.db.recent_tasks(rec.session_id))
            resp.recent_events.extend(event_to_pb(e) for e in await self.db.recent_events(rec.session_id))
        return resp

    async def _alerts(self, rec: SessionRecord, counts: dict[int, int], lease_lost: bool) -> list[pb.Alert]:
        critical: list[pb.Alert] = []
        warning: list[pb.Alert] = []
        budget, spent = int(rec.budget), int(rec.budget_spent)
        mismatch = self.chain_sync.mismatches.get(rec.session_id) if self.chain_sync is not None else None
        if mismatch is not None:
            critical.append(pb.Alert(severity="critical", code="budget_mismatch", message=mismatch.message))
        if lease_lost:
            critical.append(
                pb.Alert(
                    severity="critical",
                    code="lease_lost",
                    message="the session is ACTIVE but no executor holds a live lease on it",
                )
            )
        if spent > budget:
            critical.append(
                pb.Alert(
                    severity="critical",
                    code="budget_overrun",
                    message=f"spent {spent} of a budget of {budget}",
                )
            )
        elif budget > 0 and spent * 10 >= budget * 9:
            warning.append(
                pb.Alert(
                    severity="warning", code="budget_low", message=f"spent {spent} of {budget} (90 % or more)"
                )
            )
        wanted = [pb.TASK_STATUS_FAILED, pb.TASK_STATUS_REFUSED, pb.TASK_STATUS_RUNNING]
        if any(counts.get(s, 0) for s in wanted):
            for t in await self.db.tasks_after(rec.session_id, 0, statuses=wanted, limit=MAX_ALERTS):
                if t.status == pb.TASK_STATUS_FAILED:
                    critical.append(
                        pb.Alert(
                            severity="critical",
                            code="task_failed",
                            message=f"task {t.seq} failed: {t.error[:300]}",
                            task_seq=t.seq,
                        )
                    )
                elif t.status == pb.TASK_STATUS_REFUSED:
                    warning.append(
                        pb.Alert(
                            severity="warning",
                            code="task_refused",
                            message=f"task {t.seq} refused: {t.error[:300]}",
                            task_seq=t.seq,
                        )
                    )
                elif t.error.startswith("retrying:"):
                    warning.append(
                        pb.Alert(
                            severity="warning",
                            code="task_retrying",
                            message=f"task {t.seq} {t.error[:300]}",
                            task_seq=t.seq,
                        )
                    )
        return critical + warning

    async def watch(
        self, req: pb.WatchSessionRequest, ctx: CallContext
    ) -> AsyncIterator[pb.WatchSessionResponse]:
        caller = self._read_caller(req, ctx)
        await self._load_owned(req.session_id, caller)
        cursor = min(req.from_cursor, INT64_MAX)
        while True:
            wake = self.bus.waiter(req.session_id)  # taken before reading: no event can slip in between
            batch = await self.db.events_after(req.session_id, cursor)
            for e in batch:
                yield pb.WatchSessionResponse(event=event_to_pb(e))
                cursor = e.cursor
            if batch:
                continue
            if req.history_only:
                return
            rec = await self.db.require(req.session_id)
            if SessionState(rec.state).is_final and rec.event_cursor <= cursor:
                return
            try:
                # Wakes on commits made by this process; the timeout covers writers in other replicas.
                await asyncio.wait_for(wake.wait(), timeout=1.0)
            except TimeoutError:
                pass
