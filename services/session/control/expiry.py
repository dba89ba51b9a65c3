"""Lifecycle timers: sessions whose deadline passed are expired in SessionDB, and each expiry is then
mirrored on chain (SessionFactory.expire), retried with backoff until the chain confirms. Deadlines and
pending on-chain expiries live in SessionDB, so nothing is lost across restarts."""

from __future__ import annotations

import logging
from typing import Any

from agentgpt.errors import Aborted, FailedPrecondition
from agentgpt.lifecycle import Action, SessionState
from services.session import rules
from services.session.chain import ChainRejected
from services.session.control.core import Core
from services.session.model import NewEvent
from services.session.store import Change

log = logging.getLogger("agentgpt.session")


class Expiry:
    def __init__(self, core: Core, *, retry_base: float = 1.0, retry_cap: float = 60.0) -> None:
        self.core = core
        self.retry_base = retry_base
        self.retry_cap = retry_cap

    async def fire_due(self) -> int:
        """Expire every session whose lifecycle deadline has passed (durable: deadlines live in SessionDB).

        The same commit records that the expiry is still to be mirrored on chain (`chain_expiry_due`), so
        `settle_chain_expiries` retries it until the chain confirms, across outages and restarts."""
        core = self.core
        fired = 0
        for rec in await core.db.due(core.now()):
            try:
                clock = core.next_clock(rec, Action.EXPIRE)
            except FailedPrecondition:
                continue
            reason = clock.terminal_reason.value if clock.terminal_reason else "expired"
            try:
                await core.commit(
                    Change(
                        rec.session_id,
                        rec.version,
                        {
                            **core.clock_values(clock, reason),
                            "lease_expires_at": None,
                            "chain_expiry_due": core.clock(),
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
        core = self.core
        settled = 0
        for rec in await core.db.chain_expiries_due(core.clock()):
            outcome = await self._expire_on_chain(rec.session_id)
            if outcome is None:
                attempts = rec.chain_expiry_attempts + 1
                delay = rules.retry_delay(attempts, base=self.retry_base, cap=self.retry_cap)
                await core.db.postpone_chain_expiry(
                    rec.session_id, attempts=attempts, due=core.clock() + delay
                )
                continue
            try:
                await core.commit(
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
        chain = self.core.chain
        try:
            async with chain.lock:
                tx = await chain.prepare_oracle("expire", int(session_id))
                receipt = await chain.send(tx, self.core.receipt_timeout)
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
