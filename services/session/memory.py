"""An in-memory SessionChain for domain and component tests (and a service run without a chain).

It keeps the contract's lifecycle states and counts mints, so tests can prove that retries and crash
reconciliation never mint twice. `fail_next` injects a failure into the next prepare or send;
`drop_sends` makes send() "crash" after broadcasting (the transaction lands, the caller never hears).
The integration tests use the real contracts on anvil instead.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentgpt.errors import FailedPrecondition, PermissionDenied, Unavailable
from services.session.chain import ChainRejected, OnChainSession, Permit, PreparedTx, Receipt
from services.session.control.final import FinalAnchor

DRAFT, ACTIVE, PAUSED, COMPLETED, TERMINATED = 1, 2, 3, 4, 5
_ORACLE = {
    "pause": (ACTIVE, PAUSED),
    "resume": (PAUSED, ACTIVE),
    "terminate": (None, TERMINATED),
    "expire": (None, TERMINATED),
}


class SimulatedCrash(Exception):
    """Raised by send() when drop_sends is set: the transaction landed but the caller died."""


@dataclass
class _Pending:
    action: str
    args: tuple[object, ...]
    owner: str = ""


@dataclass
class InMemorySessionChain:
    chain_id: int = 31337
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    states: dict[int, int] = field(default_factory=dict)
    owners: dict[int, str] = field(default_factory=dict)
    owner_nonces: dict[str, int] = field(default_factory=dict)
    mints: int = 0
    fail_next: Exception | None = None
    drop_sends: bool = False
    down: bool = False
    _pending: dict[bytes, _Pending] = field(default_factory=dict)
    _receipts: dict[bytes, Receipt] = field(default_factory=dict)
    _counter: int = 0
    calls: list[str] = field(default_factory=list)
    epochs: dict[int, int] = field(default_factory=dict)  # session -> executor assignment epoch
    finals: dict[int, FinalAnchor] = field(default_factory=dict)  # session -> its final anchor, as sent
    token_uris: dict[int, str] = field(default_factory=dict)  # session -> its NFT's metadata URI
    _token_txs: set[bytes] = field(default_factory=set)

    async def ping(self) -> None:
        if self.down:
            raise Unavailable("in-memory chain is down")

    async def owner_nonce(self, owner: str) -> int:
        await self.ping()
        return self.owner_nonces.get(owner.lower(), 0)

    async def state_of(self, session_id: int) -> int:
        return self.states.get(session_id, 0)

    def _inject(self) -> None:
        if self.down:
            raise Unavailable("in-memory chain is down")
        exc, self.fail_next = self.fail_next, None
        if exc is not None:
            raise exc

    def _prep(self, action: str, *args: object, owner: str = "") -> PreparedTx:
        self._inject()
        self._counter += 1
        h = hashlib.sha3_256(f"{action}:{args}:{self._counter}".encode()).digest()
        self._pending[h] = _Pending(action, args, owner)
        return PreparedTx(h, b"raw:" + h)

    def _require_state(self, sid: int, *allowed: int) -> None:
        st = self.states.get(sid, 0)
        if st == 0:
            raise ChainRejected(f"SessionFactory refused: SessionNotFound({sid})", "SessionNotFound")
        if allowed and st not in allowed:
            raise ChainRejected(f"SessionFactory refused: InvalidState({sid}, {st})", "InvalidState")

    def _check_sig(self, signature: bytes, owner: str, nonce: int) -> None:
        if len(signature) != 65 or signature == b"\x00" * 65:
            raise PermissionDenied("SessionFactory refused: InvalidSignature")
        if nonce != self.owner_nonces.get(owner.lower(), 0):
            raise PermissionDenied("SessionFactory refused: InvalidAccountNonce")

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
        self._check_sig(signature, owner, nonce)
        return self._prep("create", owner, budget, owner=owner)

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
        self._require_state(session_id, DRAFT)
        self._check_sig(signature, self.owners[session_id], nonce)
        return self._prep("activate", session_id, owner=self.owners[session_id])

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
        self._require_state(session_id, ACTIVE)
        self._check_sig(signature, self.owners[session_id], nonce)
        return self._prep("update_budget", session_id, owner=self.owners[session_id])

    async def prepare_complete(
        self, session_id: int, final: FinalAnchor, *, nonce: int, deadline: int, signature: bytes
    ) -> PreparedTx:
        self.finals[session_id] = final
        self._require_state(session_id, ACTIVE)
        self._check_sig(signature, self.owners[session_id], nonce)
        return self._prep("complete", session_id, owner=self.owners[session_id])

    async def prepare_oracle(
        self, action: str, session_id: int, final: FinalAnchor | None = None
    ) -> PreparedTx:
        if final is not None:
            self.finals[session_id] = final
        before, _ = _ORACLE[action]
        if before is None:
            self._require_state(session_id, DRAFT, ACTIVE, PAUSED)
        else:
            self._require_state(session_id, before)
        return self._prep(action, session_id)

    async def last_anchored_seq(self, session_id: int) -> int:
        return 0  # this chain keeps no anchors

    async def on_chain(self, session_id: int) -> OnChainSession | None:
        raise FailedPrecondition("the in-memory chain keeps no session records to restore from")

    async def prepare_reassign(self, session_id: int, executor: str) -> PreparedTx:
        self._require_state(session_id, ACTIVE, PAUSED)
        return self._prep("reassign", session_id, executor)

    async def token_uri(self, session_id: int) -> str:
        self._require_state(session_id, DRAFT, ACTIVE, PAUSED)  # (a burned token has none)
        return self.token_uris.get(session_id, "")

    async def prepare_set_token_uri(self, session_id: int, uri: str) -> PreparedTx:
        """Applied at once, outside `calls` and the injected failures (those are for the lifecycle)."""
        self._require_state(session_id, DRAFT, ACTIVE, PAUSED)
        self.token_uris[session_id] = uri
        h = hashlib.sha3_256(f"set_token_uri:{session_id}:{uri}".encode()).digest()
        self._receipts[h] = Receipt(h, True, len(self._receipts) + 1, 21000)
        self._token_txs.add(h)
        return PreparedTx(h, b"raw:" + h)

    def _execute(self, tx_hash: bytes) -> Receipt:
        if tx_hash in self._receipts:
            return self._receipts[tx_hash]
        p = self._pending.pop(tx_hash, None)
        if p is None:
            raise FailedPrecondition("unknown transaction")
        self.calls.append(p.action)
        sid: int | None = None
        epoch: int | None = None
        if p.action in ("activate", "reassign"):
            target = int(p.args[0])  # type: ignore[call-overload]
            epoch = self.epochs[target] = self.epochs.get(target, 0) + 1
        if p.owner:
            self.owner_nonces[p.owner.lower()] = self.owner_nonces.get(p.owner.lower(), 0) + 1
        if p.action == "create":
            self.mints += 1
            sid = self.mints
            self.states[sid] = DRAFT
            self.owners[sid] = p.owner
        elif p.action == "activate":
            self.states[int(p.args[0])] = ACTIVE  # type: ignore[call-overload]
        elif p.action == "complete":
            self.states[int(p.args[0])] = COMPLETED  # type: ignore[call-overload]
        elif p.action in _ORACLE:
            self.states[int(p.args[0])] = _ORACLE[p.action][1]  # type: ignore[call-overload]
        r = Receipt(tx_hash, True, len(self._receipts) + 1, 21000, sid, epoch)
        self._receipts[tx_hash] = r
        return r

    async def send(self, tx: PreparedTx, timeout: float) -> Receipt:
        if tx.tx_hash in self._token_txs:  # (applied when prepared)
            return self._receipts[tx.tx_hash]
        self._inject()
        r = self._execute(tx.tx_hash)
        if self.drop_sends:
            raise SimulatedCrash("crashed after broadcast")
        return r

    async def receipt(self, tx_hash: bytes) -> Receipt | None:
        await self.ping()
        return self._receipts.get(tx_hash)
