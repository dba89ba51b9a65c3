"""A session owner's side of the API: every mutating request signed, so the owner needs no ETH.

    owner = SessionOwner(owner_key, network.home, client)
    session = await owner.create(spec_yaml, budget=100 * 10**18)      # DRAFT, NFT minted
    await owner.activate(session.session_id, executor="0x...")         # ACTIVE
    await owner.submit(session.session_id, [("analyze_market", {})])
    await owner.complete(session.session_id)                           # COMPLETED, NFT burned
    await owner.close()

Also edit_params / attach_decorators (DRAFT), update_budget, pause / resume, terminate.

Each request carries the owner's request signature (`agentgpt.auth`); the actions the session service
relays on chain also carry the owner's EIP-712 signature over SessionFactory's typed data, and creation
an ERC-2612 permit for the budget (`agentgpt.chain.eip712`). The nonces those need are read from the
home chain. Used by the `agentgpt session create|activate|submit|pause|resume|complete` commands and
by the demo.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from eth_account import Account
from eth_utils.address import to_checksum_address
from google.protobuf.message import Message

from agentgpt import auth
from agentgpt.chain import eip712
from agentgpt.chain.rpc import connect
from agentgpt.clients import SessionClient
from agentgpt.contracts import load_artifact
from agentgpt.network import ChainInfo
from agentgpt.policies import policies_of, policy_hash
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.spec import allowlist_of, parse_yaml

M = TypeVar("M", bound=Message)

#: How long the owner's signatures stay valid (seconds).
SIGNATURE_LIFETIME = 600


def new_idempotency_key(action: str) -> str:
    return f"{action}-{secrets.token_hex(8)}"


class SessionOwner:
    """Signs and sends one owner's requests to the session service (see the module docstring)."""

    def __init__(self, key: str, home: ChainInfo, client: SessionClient) -> None:
        self.key = key
        self.address: str = Account.from_key(key).address
        self.home = home
        self.client = client
        self.factory = to_checksum_address(home.contracts["SessionFactory"])
        self.token = to_checksum_address(home.contracts["AGPT"])
        self._w3 = connect(home.rpc_url)

    async def close(self) -> None:
        await self._w3.provider.disconnect()

    # ------------------------------------------------------------------ signing
    def signed(self, request: M, deadline: int | None = None) -> M:
        """`request` with the owner's request signature (a fresh nonce; valid until `deadline`)."""
        deadline = deadline or int(time.time()) + SIGNATURE_LIFETIME
        return cast(
            M,
            auth.signed(
                request, self.key, nonce=time.time_ns(), deadline=deadline, chain_id=self.home.chain_id
            ),
        )

    def read(self, request: M) -> M:
        """`request` with the owner's read signature (reads use nonce 0)."""
        deadline = int(time.time()) + SIGNATURE_LIFETIME
        return cast(
            M, auth.signed(request, self.key, nonce=0, deadline=deadline, chain_id=self.home.chain_id)
        )

    async def _nonce(self, contract: str, address: str) -> int:
        c = self._w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(contract).abi)
        return int(await c.functions.nonces(self.address).call())

    async def _permit(self, value: int, deadline: int) -> bytes:
        """The owner's ERC-2612 permit letting the factory pull `value` AGPT (65 bytes: r, s, v)."""
        permit = eip712.sign_permit(
            self.key,
            chain_id=self.home.chain_id,
            token=self.token,
            owner=self.address,
            spender=self.factory,
            value=value,
            nonce=await self._nonce("AGPT", self.token),
            deadline=deadline,
        )
        return permit.r + permit.s + bytes([permit.v])

    async def _relayed(self, request: M, deadline: int, sign: Callable[..., bytes], **typed: Any) -> M:
        """`request` signed by the owner, plus the owner's SessionFactory EIP-712 signature over the
        on-chain action (`sign` from `agentgpt.chain.eip712`, with the action's `typed` fields), which
        the session service relays so the owner needs no ETH."""
        chain_sig = sign(
            self.key,
            chain_id=self.home.chain_id,
            factory=self.factory,
            nonce=await self._nonce("SessionFactory", self.factory),
            deadline=deadline,
            **typed,
        )
        signed = self.signed(request, deadline)
        signed.chain_signature = chain_sig  # type: ignore[attr-defined]
        return signed

    # ------------------------------------------------------------------ actions
    async def create(self, spec_yaml: str, budget: int, *, idempotency_key: str = "") -> ss.Session:
        """Mint the session (DRAFT). The budget moves from the owner's AGPT by permit: no ETH needed."""
        deadline = int(time.time()) + SIGNATURE_LIFETIME
        req = ss.CreateSessionRequest(
            idempotency_key=idempotency_key or new_idempotency_key("create"),
            spec_yaml=spec_yaml,
            initial_budget=str(budget),
            budget_permit=await self._permit(budget, deadline),
            budget_permit_deadline=deadline,
        )
        req = await self._relayed(
            req,
            deadline,
            eip712.sign_create_session,
            owner=self.address,
            workflow_hash=parse_yaml(spec_yaml).workflow_hash(),
            initial_budget=budget,
        )
        return (await self.client.create_session(req)).session

    async def activate(
        self,
        session_id: str,
        executor: str,
        *,
        idempotency_key: str = "",
        attestation_quote: bytes = b"",
        attestation_collateral_json: str = "",
    ) -> ss.Session:
        """Commit the workflow, the executor and the spec's allowlist on chain; the session becomes ACTIVE.
        A spec requiring attestation needs the executor's quote and collateral (its GetExecutorStatus)."""
        session = await self.get(session_id)
        executor = to_checksum_address(executor)
        req = ss.ActivateSessionRequest(
            idempotency_key=idempotency_key or new_idempotency_key("activate"),
            session_id=session_id,
            executor=executor,
            executor_attestation_quote=attestation_quote,
            executor_attestation_collateral_json=attestation_collateral_json,
        )
        params = json.loads(session.spec.params_json or "{}")
        req = await self._relayed(
            req,
            int(time.time()) + SIGNATURE_LIFETIME,
            eip712.sign_activate,
            session_id=int(session_id),
            workflow_hash=bytes(session.workflow_hash),
            executor=executor,
            allowlist=allowlist_of(params, list(session.spec.decorators)),
            policy_hash=policy_hash(policies_of(params)),
        )
        return (await self.client.activate_session(req)).session

    async def edit_params(
        self, session_id: str, params: dict[str, Any], *, idempotency_key: str = ""
    ) -> ss.Session:
        """Replace a DRAFT session's params."""
        req = ss.EditParamsRequest(
            idempotency_key=idempotency_key or new_idempotency_key("params"),
            session_id=session_id,
            params_json=json.dumps(params),
        )
        return (await self.client.edit_params(self.signed(req))).session

    async def attach_decorators(
        self, session_id: str, decorators: Sequence[str], *, idempotency_key: str = ""
    ) -> ss.Session:
        """Append compliance decorators to a DRAFT session."""
        req = ss.AttachDecoratorsRequest(
            idempotency_key=idempotency_key or new_idempotency_key("decorators"),
            session_id=session_id,
            decorators=list(decorators),
        )
        return (await self.client.attach_decorators(self.signed(req))).session

    async def update_budget(
        self, session_id: str, add_amount: int, *, idempotency_key: str = ""
    ) -> ss.Session:
        """Add `add_amount` AGPT base units to an ACTIVE session's budget (moved by permit)."""
        deadline = int(time.time()) + SIGNATURE_LIFETIME
        req = ss.UpdateBudgetRequest(
            idempotency_key=idempotency_key or new_idempotency_key("budget"),
            session_id=session_id,
            add_amount=str(add_amount),
            budget_permit=await self._permit(add_amount, deadline),
            budget_permit_deadline=deadline,
        )
        req = await self._relayed(
            req, deadline, eip712.sign_update_budget, session_id=int(session_id), amount=add_amount
        )
        return (await self.client.update_budget(req)).session

    async def terminate(self, session_id: str, reason: str, *, idempotency_key: str = "") -> ss.Session:
        """End a session for good (any non-final state)."""
        req = ss.TerminateSessionRequest(
            idempotency_key=idempotency_key or new_idempotency_key("terminate"),
            session_id=session_id,
            reason=reason,
        )
        return (await self.client.terminate_session(self.signed(req))).session

    async def submit(
        self, session_id: str, tasks: Sequence[tuple[str, dict[str, Any]]], *, idempotency_key: str = ""
    ) -> ss.SubmitTasksResponse:
        req = ss.SubmitTasksRequest(
            idempotency_key=idempotency_key or new_idempotency_key("tasks"),
            session_id=session_id,
            tasks=[ss.TaskInput(kind=kind, args_json=json.dumps(args)) for kind, args in tasks],
        )
        return await self.client.submit_tasks(self.signed(req))

    async def pause(self, session_id: str, reason: str, *, idempotency_key: str = "") -> ss.Session:
        req = ss.PauseSessionRequest(
            idempotency_key=idempotency_key or new_idempotency_key("pause"),
            session_id=session_id,
            reason=reason,
        )
        return (await self.client.pause_session(self.signed(req))).session

    async def resume(self, session_id: str, reason: str, *, idempotency_key: str = "") -> ss.Session:
        req = ss.ResumeSessionRequest(
            idempotency_key=idempotency_key or new_idempotency_key("resume"),
            session_id=session_id,
            reason=reason,
        )
        return (await self.client.resume_session(self.signed(req))).session

    async def complete(self, session_id: str, *, idempotency_key: str = "") -> ss.CompleteSessionResponse:
        """Archive the session's event log to IPFS and burn its NFT; the session becomes COMPLETED."""
        req = ss.CompleteSessionRequest(
            idempotency_key=idempotency_key or new_idempotency_key("complete"), session_id=session_id
        )
        req = await self._relayed(
            req, int(time.time()) + SIGNATURE_LIFETIME, eip712.sign_complete, session_id=int(session_id)
        )
        return await self.client.complete_session(req)

    async def get(self, session_id: str) -> ss.Session:
        resp = await self.client.unary("GetSession", self.read(ss.GetSessionRequest(session_id=session_id)))
        return cast(ss.Session, resp.session)

    async def inspect(self, session_id: str, detail: str = "summary") -> ss.InspectSessionResponse:
        return await self.client.inspect(
            self.read(ss.InspectSessionRequest(session_id=session_id, detail=detail))
        )
