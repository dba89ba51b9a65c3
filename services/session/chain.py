"""The session service's view of the home chain: relay owner-signed SessionFactory calls and the
oracle-role transitions, one signed transaction at a time.

Every transaction is *prepared* first (simulated, gas-estimated, signed with the relayer key: its hash is
known before it is sent), so the caller can record the intent durably, then *sent* (idempotently: an
"already known" transaction is just waited for). After a crash, `receipt(tx_hash)` tells whether the
recorded transaction landed, and `send` rebroadcasts the very same bytes if it did not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
)
from web3.logs import DISCARD

from agentgpt.chain.eip712 import NO_PERMIT
from agentgpt.chain.rpc import connect
from agentgpt.contracts import load_artifact
from agentgpt.errors import FailedPrecondition, PermissionDenied, Unavailable

log = logging.getLogger("agentgpt.session.chain")

Permit = tuple[int, int, bytes, bytes]  # SessionFactory.Permit: (deadline, v, r, s)

# Reverts that mean "the owner's signature is not good", answered PERMISSION_DENIED.
_AUTH_ERRORS = {"InvalidSignature", "SignatureExpired", "NotSessionOwner", "InvalidAccountNonce"}


@dataclass(frozen=True)
class PreparedTx:
    tx_hash: bytes
    raw: bytes


@dataclass(frozen=True)
class Receipt:
    tx_hash: bytes
    ok: bool
    block_number: int
    gas_used: int
    session_id: int | None = None  # from SessionCreated, for mints
    assigned_epoch: int | None = None  # from ExecutorAssigned, for activations and reassignments


@dataclass(frozen=True)
class AnchoredCheckpoint:
    seq: int
    cid: str  # base32 CIDv1
    state_root: bytes
    block_number: int
    block_hash: bytes


@dataclass(frozen=True)
class OnChainSession:
    """What the home chain records of a session (SessionFactory.getSession and its events)."""

    owner: str
    state: int
    entered_at: int
    active_used: int
    executor: str
    epoch: int
    budget: int  # still in escrow
    spent: int
    charged_seq: int
    workflow_hash: bytes
    mint_tx_hash: bytes
    latest: AnchoredCheckpoint | None  # its newest anchored checkpoint


if TYPE_CHECKING:
    from services.session.control.final import FinalAnchor


class ChainRejected(FailedPrecondition):
    """The contract refused the call (simulation or mined revert); `error` is the custom error name."""

    def __init__(self, message: str, error: str = "") -> None:
        super().__init__(message)
        self.error = error


class SessionChain(Protocol):
    """What the session service needs from the home chain."""

    chain_id: int
    lock: asyncio.Lock  # held from prepare to receipt: one relayer nonce in flight at a time

    async def ping(self) -> None: ...
    async def owner_nonce(self, owner: str) -> int: ...
    async def prepare_create(
        self,
        owner: str,
        workflow_hash: bytes,
        budget: int,
        *,
        nonce: int,
        deadline: int,
        signature: bytes,
        permit: Permit | None,
    ) -> PreparedTx: ...
    async def prepare_activate(
        self,
        session_id: int,
        workflow_hash: bytes,
        executor: str,
        allowlist: Sequence[tuple[str, bytes]],
        policies: bytes,
        *,
        nonce: int,
        deadline: int,
        signature: bytes,
    ) -> PreparedTx: ...
    async def prepare_update_budget(
        self,
        session_id: int,
        amount: int,
        *,
        nonce: int,
        deadline: int,
        signature: bytes,
        permit: Permit | None,
    ) -> PreparedTx: ...
    async def prepare_complete(
        self, session_id: int, final: FinalAnchor, *, nonce: int, deadline: int, signature: bytes
    ) -> PreparedTx: ...
    async def prepare_oracle(
        self, action: str, session_id: int, final: FinalAnchor | None = None
    ) -> PreparedTx: ...
    async def last_anchored_seq(self, session_id: int) -> int: ...
    async def prepare_reassign(self, session_id: int, executor: str) -> PreparedTx: ...
    async def token_uri(self, session_id: int) -> str: ...
    async def prepare_set_token_uri(self, session_id: int, uri: str) -> PreparedTx: ...
    async def send(self, tx: PreparedTx, timeout: float) -> Receipt: ...
    async def receipt(self, tx_hash: bytes) -> Receipt | None: ...
    async def state_of(self, session_id: int) -> int: ...
    async def on_chain(self, session_id: int) -> OnChainSession | None: ...


ORACLE_ACTIONS = ("pause", "resume", "terminate", "expire")


def _error_names(abi: Sequence[dict[str, Any]]) -> dict[str, str]:
    def typ(p: dict[str, Any]) -> str:
        if p["type"].startswith("tuple"):
            return "(" + ",".join(typ(c) for c in p["components"]) + ")" + str(p["type"])[5:]
        return str(p["type"])

    out = {}
    for item in abi:
        if item.get("type") == "error":
            sig = f"{item['name']}({','.join(typ(i) for i in item['inputs'])})"
            out["0x" + keccak(text=sig)[:4].hex()] = item["name"]
    return out


class Web3SessionChain:
    """SessionChain on a real JSON-RPC endpoint with the deployed SessionFactory."""

    def __init__(
        self,
        rpc_url: str,
        chain_id: int,
        factory: str,
        relayer_key: str,
        *,
        timeout: float = 30.0,
        deploy_block: int = 0,
    ) -> None:
        self.w3 = connect(rpc_url, timeout=timeout)
        self.deploy_block = deploy_block  # event scans start here
        self.chain_id = chain_id
        art = load_artifact("SessionFactory")
        self.factory = self.w3.eth.contract(address=to_checksum_address(factory), abi=art.abi)
        self.account: LocalAccount = Account.from_key(relayer_key)
        self.lock = asyncio.Lock()
        self._errors = _error_names(art.abi)
        for name in ("AGPT", "ExecutorRegistry"):
            self._errors.update(_error_names(load_artifact(name).abi))

    async def close(self) -> None:
        await self.w3.provider.disconnect()

    async def ping(self) -> None:
        actual = await self._rpc(self.w3.eth.chain_id)
        if actual != self.chain_id:
            raise Unavailable(f"home chain RPC answers chain id {actual}, expected {self.chain_id}")

    async def _rpc(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (ContractCustomError, ContractLogicError):
            raise
        except (TimeoutError, OSError, Web3Exception) as exc:
            raise Unavailable(
                f"home chain {self.chain_id} unreachable: {type(exc).__name__}: {exc}"[:400]
            ) from None

    async def owner_nonce(self, owner: str) -> int:
        return int(await self._rpc(self.factory.functions.nonces(to_checksum_address(owner)).call()))

    async def state_of(self, session_id: int) -> int:
        return int(await self._rpc(self.factory.functions.stateOf(session_id).call()))

    async def on_chain(self, session_id: int) -> OnChainSession | None:
        """The session as the home chain records it; None when the factory never minted it."""
        from multiformats import CID

        s = await self._rpc(self.factory.functions.getSession(session_id).call())
        keys = (
            "owner state reason enteredAt activeUsed executor lastSeq epoch proved budget spent chargedSeq "
            "workflowHash checkpointHash"
        ).split()
        d = dict(zip(keys, s, strict=True))
        if int(d["owner"], 16) == 0:
            return None
        since = {"from_block": self.deploy_block, "argument_filters": {"sessionId": session_id}}
        created = await self._rpc(self.factory.events.SessionCreated().get_logs(**since))
        anchored = await self._rpc(self.factory.events.CheckpointAnchored().get_logs(**since))
        latest = None
        if anchored:
            a = max(anchored, key=lambda e: int(e["args"]["seq"]))
            latest = AnchoredCheckpoint(
                int(a["args"]["seq"]),
                str(CID.decode(bytes(a["args"]["cid"])).encode("base32")),
                bytes(a["args"]["stateRoot"]),
                int(a["blockNumber"]),
                bytes(a["blockHash"]),
            )
        return OnChainSession(
            owner=to_checksum_address(d["owner"]),
            state=int(d["state"]),
            entered_at=int(d["enteredAt"]),
            active_used=int(d["activeUsed"]),
            executor=to_checksum_address(d["executor"]),
            epoch=int(d["epoch"]),
            budget=int(d["budget"]),
            spent=int(d["spent"]),
            charged_seq=int(d["chargedSeq"]),
            workflow_hash=bytes(d["workflowHash"]),
            mint_tx_hash=bytes(created[0]["transactionHash"]) if created else b"",
            latest=latest,
        )

    def _rejected(self, what: str, exc: Exception) -> Exception:
        data = getattr(exc, "data", None)
        data = data if isinstance(data, str) else ""
        name = self._errors.get(data[:10], "")
        msg = f"SessionFactory refused {what}: {name or exc}"
        if name in _AUTH_ERRORS:
            return PermissionDenied(f"{msg} (check the owner's chain signature and its nonce)")
        return ChainRejected(msg, name)

    async def _prepare(self, what: str, fn: Any) -> PreparedTx:
        sender = self.account.address
        try:
            # Simulate against the pending block (its timestamp is "now"; on an idle automining node the
            # latest block can be old, which would misjudge deadlines): surfaces the contract's custom error
            # before anything is signed.
            await fn.call({"from": sender}, block_identifier="pending")
            nonce = await self.w3.eth.get_transaction_count(sender, "pending")
            gas = await self.w3.eth.estimate_gas(
                {"from": sender, "to": self.factory.address, "data": fn._encode_transaction_data()}, "pending"
            )
            tx = await fn.build_transaction(
                {"from": sender, "nonce": nonce, "chainId": self.chain_id, "gas": gas + gas // 5}
            )
        except (ContractCustomError, ContractLogicError) as exc:
            raise self._rejected(what, exc) from None
        except (TimeoutError, OSError, Web3Exception) as exc:
            raise Unavailable(
                f"home chain {self.chain_id} unreachable: {type(exc).__name__}: {exc}"[:400]
            ) from None
        signed = self.account.sign_transaction(tx)
        return PreparedTx(bytes(signed.hash), bytes(signed.raw_transaction))

    async def prepare_create(
        self,
        owner: str,
        workflow_hash: bytes,
        budget: int,
        *,
        nonce: int,
        deadline: int,
        signature: bytes,
        permit: Permit | None,
    ) -> PreparedTx:
        fn = self.factory.functions.createSessionBySig(
            to_checksum_address(owner), workflow_hash, budget, nonce, deadline, signature, permit or NO_PERMIT
        )
        return await self._prepare("createSessionBySig", fn)

    async def prepare_activate(
        self,
        session_id: int,
        workflow_hash: bytes,
        executor: str,
        allowlist: Sequence[tuple[str, bytes]],
        policies: bytes,
        *,
        nonce: int,
        deadline: int,
        signature: bytes,
    ) -> PreparedTx:
        calls = [(to_checksum_address(target), selector) for target, selector in allowlist]
        fn = self.factory.functions.activateBySig(
            session_id,
            workflow_hash,
            to_checksum_address(executor),
            calls,
            policies,
            nonce,
            deadline,
            signature,
        )
        return await self._prepare("activateBySig", fn)

    async def prepare_update_budget(
        self,
        session_id: int,
        amount: int,
        *,
        nonce: int,
        deadline: int,
        signature: bytes,
        permit: Permit | None,
    ) -> PreparedTx:
        fn = self.factory.functions.updateBudgetBySig(
            session_id, amount, nonce, deadline, signature, permit or NO_PERMIT
        )
        return await self._prepare("updateBudgetBySig", fn)

    async def prepare_complete(
        self, session_id: int, final: FinalAnchor, *, nonce: int, deadline: int, signature: bytes
    ) -> PreparedTx:
        fn = self.factory.functions.completeBySig(session_id, final.to_abi(), nonce, deadline, signature)
        return await self._prepare("completeBySig", fn)

    async def prepare_oracle(
        self, action: str, session_id: int, final: FinalAnchor | None = None
    ) -> PreparedTx:
        """pause / resume / expire; terminate takes the final anchor (required)."""
        if action not in ORACLE_ACTIONS:
            raise ValueError(f"unknown oracle action {action!r}")
        if action == "terminate":
            if final is None:
                raise ValueError("terminate needs the final anchor")
            return await self._prepare(action, self.factory.functions.terminate(session_id, final.to_abi()))
        return await self._prepare(action, getattr(self.factory.functions, action)(session_id))

    async def last_anchored_seq(self, session_id: int) -> int:
        """The seq of the session's newest anchored checkpoint on the home chain (0: none)."""
        seq, _ = await self._rpc(self.factory.functions.latestCheckpoint(session_id).call())
        return int(seq)

    async def prepare_reassign(self, session_id: int, executor: str) -> PreparedTx:
        fn = self.factory.functions.reassignExecutor(session_id, to_checksum_address(executor))
        return await self._prepare("reassignExecutor", fn)

    async def token_uri(self, session_id: int) -> str:
        """The session NFT's metadata URI ("" before the first is set)."""
        return str(await self._rpc(self.factory.functions.tokenURI(session_id).call()))

    async def prepare_set_token_uri(self, session_id: int, uri: str) -> PreparedTx:
        return await self._prepare("setTokenURI", self.factory.functions.setTokenURI(session_id, uri))

    async def send(self, tx: PreparedTx, timeout: float) -> Receipt:
        try:
            await self.w3.eth.send_raw_transaction(tx.raw)
        except (TimeoutError, OSError) as exc:
            raise Unavailable(f"home chain {self.chain_id} unreachable: {exc}") from None
        except Web3Exception as exc:
            # "already known" / "nonce too low": it may have been sent before a crash; the receipt decides.
            log.info("broadcast of %s answered %s; looking for its receipt", tx.tx_hash.hex(), exc)
        try:
            raw = await self.w3.eth.wait_for_transaction_receipt(
                HexBytes(tx.tx_hash), timeout=timeout, poll_latency=0.1
            )
        except TimeExhausted:
            raise Unavailable(
                f"transaction 0x{tx.tx_hash.hex()} not mined within {timeout:.0f} s; retry to keep waiting"
            ) from None
        except (TimeoutError, OSError, Web3Exception) as exc:
            raise Unavailable(f"home chain {self.chain_id} unreachable: {exc}") from None
        return self._receipt(raw)

    async def receipt(self, tx_hash: bytes) -> Receipt | None:
        try:
            raw = await self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None
        except (TimeoutError, OSError, Web3Exception) as exc:
            raise Unavailable(f"home chain {self.chain_id} unreachable: {exc}") from None
        return self._receipt(raw)

    def _receipt(self, raw: Any) -> Receipt:
        session_id = epoch = None
        if raw["status"] == 1:
            created = self.factory.events.SessionCreated().process_receipt(raw, errors=DISCARD)
            if created:
                session_id = int(created[0]["args"]["sessionId"])
            assigned = self.factory.events.ExecutorAssigned().process_receipt(raw, errors=DISCARD)
            if assigned:
                epoch = int(assigned[-1]["args"]["epoch"])
        return Receipt(
            tx_hash=bytes(raw["transactionHash"]),
            ok=raw["status"] == 1,
            block_number=int(raw["blockNumber"]),
            gas_used=int(raw["gasUsed"]),
            session_id=session_id,
            assigned_epoch=epoch,
        )
