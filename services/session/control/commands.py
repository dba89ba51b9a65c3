"""Owner commands: create, edit params, attach decorators (DRAFT edits, committed in SessionDB), and the
chain-mirrored transitions relayed through `relay` (activate, update budget, pause, resume, terminate,
complete)."""

from __future__ import annotations

from typing import Any

from eth_utils.address import to_checksum_address

from agentgpt.attestation import spec_policy
from agentgpt.canonical import canonical_json
from agentgpt.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from agentgpt.lifecycle import Action
from agentgpt.policies import encode_policies, policies_of
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.spec import allowlist_of
from services.session import rules
from services.session.attest import AttestationCheck
from services.session.chain import PreparedTx
from services.session.control import relay as ops
from services.session.control.archive import LogArchive
from services.session.control.callers import CallContext, required_chain_signature
from services.session.control.core import Core
from services.session.control.final import FinalAnchor, FinalAnchors
from services.session.control.relay import ChainOp, R, Relay
from services.session.control.specs import spec_from_dict, spec_from_request, spec_to_dict
from services.session.convert import session_to_pb
from services.session.keys import owner_public_key
from services.session.model import Caller, NewEvent, SessionRecord
from services.session.store import Change
from services.session.validation import edited_params


def _session_response(response_type: type[R]) -> Any:
    def respond(rec: SessionRecord) -> bytes:
        return response_type(session=session_to_pb(rec)).SerializeToString()

    return respond


class Commands:
    def __init__(
        self,
        core: Core,
        relay: Relay,
        archive: LogArchive,
        finals: FinalAnchors,
        *,
        default_executor: str = "",
        attestation: AttestationCheck | None = None,
    ) -> None:
        self.attestation = attestation or AttestationCheck()
        self.finals = finals
        self.core = core
        self.relay = relay
        self.archive = archive
        self.default_executor = default_executor

    # ------------------------------------------------------------------ create

    async def create(self, req: pb.CreateSessionRequest, ctx: CallContext) -> pb.CreateSessionResponse:
        chain = self.core.chain

        async def body(caller: Caller, key: str) -> pb.CreateSessionResponse:
            assert caller.owner is not None
            spec = spec_from_request(req)
            budget = int(req.initial_budget)
            chain_sig = required_chain_signature(req, ctx)
            owner = caller.owner
            payload = {"owner": owner, "spec": spec_to_dict(spec), "budget": str(budget)}

            async def prepare() -> PreparedTx:
                nonce = await chain.owner_nonce(owner)
                return await chain.prepare_create(
                    owner,
                    spec.workflow_hash(),
                    budget,
                    nonce=nonce,
                    deadline=int(req.auth.deadline),
                    signature=chain_sig,
                    permit=rules.permit_tuple(req.budget_permit, req.budget_permit_deadline),
                )

            receipt = await self.relay.send(caller.principal, key, ops.CREATE, None, payload, prepare)
            rec = await self.relay.finish_create(caller.principal, key, payload, receipt)
            return pb.CreateSessionResponse(session=session_to_pb(rec))

        return await self.relay.idempotent(req, ctx, pb.CreateSessionResponse, body)

    # ------------------------------------------------------------------ DRAFT edits

    async def edit_params(self, req: pb.EditParamsRequest, ctx: CallContext) -> pb.EditParamsResponse:
        core = self.core

        async def body(caller: Caller, key: str) -> pb.EditParamsResponse:
            rec = await core.load_owned(req.session_id, caller)
            core.check_version(req, rec)
            core.next_clock(rec, Action.EDIT_PARAMS)
            spec = {**rec.spec, "params": edited_params(req.params_json, rec.spec)}
            new = spec_from_dict(spec)
            done = await core.commit(
                Change(
                    rec.session_id,
                    rec.version,
                    {"spec_json": canonical_json(spec_to_dict(new)), "workflow_hash": new.workflow_hash()},
                    [NewEvent("params_edited", {"workflow_hash": "0x" + new.workflow_hash().hex()})],
                    finish_request=(caller.principal, key, _session_response(pb.EditParamsResponse)),
                )
            )
            return pb.EditParamsResponse(session=session_to_pb(done))

        return await self.relay.idempotent(req, ctx, pb.EditParamsResponse, body)

    async def attach_decorators(
        self, req: pb.AttachDecoratorsRequest, ctx: CallContext
    ) -> pb.AttachDecoratorsResponse:
        core = self.core

        async def body(caller: Caller, key: str) -> pb.AttachDecoratorsResponse:
            rec = await core.load_owned(req.session_id, caller)
            core.check_version(req, rec)
            core.next_clock(rec, Action.ATTACH_DECORATORS)
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
            done = await core.commit(
                Change(
                    rec.session_id,
                    rec.version,
                    {
                        "spec_json": canonical_json(spec_to_dict(new)),
                        "workflow_hash": new.workflow_hash(),
                        "context_epoch": rec.context_epoch + 1,
                    },
                    [NewEvent("decorators_attached", {"decorators": list(req.decorators)})],
                    finish_request=(caller.principal, key, _session_response(pb.AttachDecoratorsResponse)),
                )
            )
            return pb.AttachDecoratorsResponse(session=session_to_pb(done))

        return await self.relay.idempotent(req, ctx, pb.AttachDecoratorsResponse, body)

    # ------------------------------------------------------------------ chain-mirrored transitions

    async def activate(self, req: pb.ActivateSessionRequest, ctx: CallContext) -> pb.ActivateSessionResponse:
        core = self.core

        async def body(caller: Caller, key: str) -> pb.ActivateSessionResponse:
            rec = await core.load_owned(req.session_id, caller)
            if caller.owner is None:
                raise PermissionDenied("activation needs the owner's signature")
            core.check_version(req, rec)
            core.next_clock(rec, Action.ACTIVATE)
            # what is committed on chain must still be supported here (the draft may predate a change)
            core.deployment.check_spec(spec_from_dict(rec.spec), "spec")
            executor = req.executor or self.default_executor
            if not executor:
                raise FailedPrecondition(
                    "executor: none given and the service has no default executor configured"
                )
            # a spec requiring attestation: only an executor whose DCAP quote verifies and satisfies it
            policy = spec_policy((rec.spec.get("params") or {}).get("attestation"))
            if policy is not None:
                self.attestation.require(
                    policy,
                    to_checksum_address(executor),
                    bytes(req.executor_attestation_quote),
                    req.executor_attestation_collateral_json,
                )
            chain_sig = required_chain_signature(req, ctx)
            # The owner's public key (a recipient of every sealed checkpoint) from the owner's own
            # signature on this request; kept with the session when the activation settles.
            owner_key = owner_public_key(req.auth, req, chain_id=self.relay.callers.auth_chain_id)
            payload = {"executor": to_checksum_address(executor), "owner_public_key": owner_key.hex()}
            # The account's allowlist is the spec's (params.allowlist, and the proved-anchoring entry of a
            # zk_batch_prover session), as the owner signed it.
            allowlist = allowlist_of(rec.spec.get("params") or {}, rec.spec.get("decorators") or [])
            policies = encode_policies(policies_of(rec.spec.get("params") or {}))  # (and its policies)

            async def prepare() -> PreparedTx:
                nonce = await core.chain.owner_nonce(rec.owner)
                return await core.chain.prepare_activate(
                    int(rec.session_id),
                    rec.workflow_hash,
                    executor,
                    allowlist,
                    policies,
                    nonce=nonce,
                    deadline=int(req.auth.deadline),
                    signature=chain_sig,
                )

            return await self.relay.run(ops.ACTIVATE, caller, key, rec.session_id, payload, prepare)

        return await self.relay.idempotent(req, ctx, ops.ACTIVATE.response, body)

    async def update_budget(self, req: pb.UpdateBudgetRequest, ctx: CallContext) -> pb.UpdateBudgetResponse:
        core = self.core

        async def body(caller: Caller, key: str) -> pb.UpdateBudgetResponse:
            rec = await core.load_owned(req.session_id, caller)
            if caller.owner is None:
                raise PermissionDenied("budget updates need the owner's signature")
            core.check_version(req, rec)
            core.next_clock(rec, Action.UPDATE_BUDGET)
            chain_sig = required_chain_signature(req, ctx)
            amount = int(req.add_amount)
            payload = {"amount": str(amount)}

            async def prepare() -> PreparedTx:
                nonce = await core.chain.owner_nonce(rec.owner)
                return await core.chain.prepare_update_budget(
                    int(rec.session_id),
                    amount,
                    nonce=nonce,
                    deadline=int(req.auth.deadline),
                    signature=chain_sig,
                    permit=rules.permit_tuple(req.budget_permit, req.budget_permit_deadline),
                )

            return await self.relay.run(ops.UPDATE_BUDGET, caller, key, rec.session_id, payload, prepare)

        return await self.relay.idempotent(req, ctx, ops.UPDATE_BUDGET.response, body)

    async def _oracle_transition(self, req: Any, ctx: CallContext, op: ChainOp[R]) -> R:
        """pause / resume / terminate: the owner or a service asks; the relayer holds the oracle role."""
        core = self.core

        async def body(caller: Caller, key: str) -> R:
            rec = await core.load_owned(req.session_id, caller)
            core.check_version(req, rec)
            core.next_clock(rec, op.action)
            who = caller.owner or f"service {caller.service}"
            payload: dict[str, Any] = {"reason": (req.reason or f"{op.name} requested")[:256], "by": who}
            final: FinalAnchor | None = None
            if op.action is Action.TERMINATE:
                final = await self.finals.covering(rec, wait=False)
                payload["final"] = final.to_json()

            async def prepare() -> PreparedTx:
                return await core.chain.prepare_oracle(op.name, int(rec.session_id), final)

            return await self.relay.run(op, caller, key, rec.session_id, payload, prepare)

        return await self.relay.idempotent(req, ctx, op.response, body, service_allowed=True)

    async def reassign(
        self, req: pb.ReassignExecutorRequest, ctx: CallContext
    ) -> pb.ReassignExecutorResponse:
        """The recovery oracle moves a session to another bonded executor (services only)."""
        core = self.core

        async def body(caller: Caller, key: str) -> pb.ReassignExecutorResponse:
            if caller.owner is not None:
                raise PermissionDenied(
                    "ReassignExecutor is reserved to the recovery oracle (a service identity)"
                )
            rec = await core.load_owned(req.session_id, caller)
            core.check_version(req, rec)
            core.next_clock(rec, Action.REASSIGN)
            executor = to_checksum_address(req.executor)
            if rec.executor and executor == to_checksum_address(rec.executor):
                raise FailedPrecondition(
                    f"executor: session {rec.session_id} is already assigned to {executor}"
                )
            payload = {
                "executor": executor,
                "from": rec.executor,
                "reason": req.reason[:256],
                "by": f"service {caller.service}",
            }

            async def prepare() -> PreparedTx:
                return await core.chain.prepare_reassign(int(rec.session_id), executor)

            return await self.relay.run(ops.REASSIGN, caller, key, rec.session_id, payload, prepare)

        return await self.relay.idempotent(req, ctx, ops.REASSIGN.response, body, service_allowed=True)

    async def pause(self, req: pb.PauseSessionRequest, ctx: CallContext) -> pb.PauseSessionResponse:
        return await self._oracle_transition(req, ctx, ops.PAUSE)

    async def resume(self, req: pb.ResumeSessionRequest, ctx: CallContext) -> pb.ResumeSessionResponse:
        return await self._oracle_transition(req, ctx, ops.RESUME)

    async def terminate(
        self, req: pb.TerminateSessionRequest, ctx: CallContext
    ) -> pb.TerminateSessionResponse:
        return await self._oracle_transition(req, ctx, ops.TERMINATE)

    async def complete(self, req: pb.CompleteSessionRequest, ctx: CallContext) -> pb.CompleteSessionResponse:
        core = self.core

        async def body(caller: Caller, key: str) -> pb.CompleteSessionResponse:
            rec = await core.load_owned(req.session_id, caller)
            if caller.owner is None:
                raise PermissionDenied("completion needs the owner's signature")
            core.check_version(req, rec)
            core.next_clock(rec, Action.COMPLETE)
            chain_sig = required_chain_signature(req, ctx)
            # the final checkpoint first: it may have to wait for the executor, and nothing is archived then
            final = await self.finals.covering(rec, wait=True)
            archived = await self.archive.put(rec)
            payload: dict[str, Any] = {"log_cid": archived.cid, "log_arweave_tx": archived.arweave_tx}
            final = final.with_log(archived.cid, archived.arweave_tx)
            payload["final"] = final.to_json()

            async def prepare() -> PreparedTx:
                nonce = await core.chain.owner_nonce(rec.owner)
                return await core.chain.prepare_complete(
                    int(rec.session_id),
                    final,
                    nonce=nonce,
                    deadline=int(req.auth.deadline),
                    signature=chain_sig,
                )

            return await self.relay.run(ops.COMPLETE, caller, key, rec.session_id, payload, prepare)

        return await self.relay.idempotent(req, ctx, ops.COMPLETE.response, body)
