"""Keeps what the chains say in line with SessionDB, for every live session.

Two controllers, each converging on a desired state and safe to repeat. A full pass runs every
AGENTGPT_CHAIN_SYNC_INTERVAL seconds; an activation or executor change kicks the grants of that one
session at once (a kick never runs a pass over every live session: with a thousand sessions activated in
a burst, that made activation quadratic). A full pass remembers the grants it saw on chain and asks again
only where the executor changed, and about all of them every REVERIFY_PASSES passes:

- **Anchor writers.** A session anchors its checkpoints on every chain of its spec. On its home chain the
  SessionFactory lets the assigned executor anchor; on every other chain the AnchorRegistry must be told
  who may write. For each ACTIVE or PAUSED session whose registry writer on a secondary chain is not its
  assigned executor, the service grants it (AnchorRegistry.grantWriter, sent with the relayer key,
  which holds ORACLE_ROLE there). So activation, and any later executor change, leads to a grant by the
  system, never by the owner or a demo script.
- **Budget audit.** The escrow on chain says how much was charged (`spent`) through which task
  (`chargedSeq`); SessionDB records each task's cost. For an ACTIVE session the two must agree: the sum of
  recorded costs through `chargedSeq` equals `spent`. A difference (a charge paid twice, or one paid for
  nothing SessionDB knows) is a mismatch: counted in `agentgpt_session_budget_mismatches`, written once as
  a `budget_mismatch` event, and shown as a critical alert by InspectSession. Charges not yet settled
  (tasks after `chargedSeq`) are not a mismatch: executors settle in batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from prometheus_client import CollectorRegistry, Counter, Gauge

from agentgpt.chain.sender import KeySender
from agentgpt.errors import Aborted
from agentgpt.lifecycle import SessionState
from agentgpt.network import ChainInfo, Network
from services.session.model import NewEvent, SessionRecord
from services.session.store import Change, SessionDB

log = logging.getLogger("agentgpt.session.chain_sync")

ZERO_ADDRESS = "0x" + "00" * 20
REVERIFY_PASSES = 20  # full passes between asking the chain again about every writer grant


@dataclass(frozen=True)
class BudgetMismatch:
    """The escrow and SessionDB disagree about what a session was charged through task `through_seq`."""

    session_id: str
    chain_spent: int
    recorded_spent: int
    through_seq: int

    @property
    def message(self) -> str:
        return (
            f"budget mismatch: the escrow on chain charged {self.chain_spent} AGPT base units through task "
            f"{self.through_seq}, SessionDB records {self.recorded_spent} for those tasks"
        )


class ChainSyncMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.grants = Counter(
            "agentgpt_session_writer_grants",
            "AnchorRegistry writer grants sent for sessions' secondary chains, by chain and result",
            ["chain", "result"],
            registry=registry,
        )
        self.audits = Counter(
            "agentgpt_session_budget_audits",
            "Budget audits of ACTIVE sessions (escrow on chain vs SessionDB), by result (ok, mismatch, failed)",
            ["result"],
            registry=registry,
        )
        self.mismatches = Gauge(
            "agentgpt_session_budget_mismatches",
            "ACTIVE sessions whose escrow on chain disagrees with SessionDB about what was charged",
            registry=registry,
        )


BUDGET_OF = keccak(text="budgetOf(uint256)")[:4]


async def budget_of(chain: KeySender, session_id: int) -> tuple[int, int, int]:
    """SessionFactory.budgetOf(session): (budget, spent, chargedSeq), as a bare eth_call (an audit pass
    reads it for every ACTIVE session; web3's contract-function machinery cost more than the call)."""
    raw = await chain.w3.eth.call(
        {
            "to": to_checksum_address(chain.info.contracts["SessionFactory"]),
            "data": BUDGET_OF + session_id.to_bytes(32, "big"),
        }
    )
    budget, spent, through = decode(["uint256", "uint256", "uint64"], bytes(raw))
    return int(budget), int(spent), int(through)


class ChainSync:
    def __init__(
        self,
        db: SessionDB,
        network: Network,
        home: ChainInfo,
        relayer_key: str,
        registry: CollectorRegistry,
        *,
        interval: float = 30.0,
        receipt_timeout: float = 60.0,
        rpc_timeout: float = 10.0,
        notify: Callable[[str], None] = lambda session_id: None,
    ) -> None:
        self.db = db
        self.home = home
        self.interval = interval
        self.receipt_timeout = receipt_timeout
        self.notify = notify
        self.chains = {c.name: KeySender(c, relayer_key, timeout=rpc_timeout) for c in network.chains}
        self.metrics = ChainSyncMetrics(registry)
        for c in network.chains:  # every series exists from the start (at 0), so rate() and alerts see it
            if c.chain_id != home.chain_id:
                for result in ("ok", "failed"):
                    self.metrics.grants.labels(c.name, result)
        for result in ("ok", "mismatch", "failed"):
            self.metrics.audits.labels(result)
        self.mismatches: dict[str, BudgetMismatch] = {}
        self.metrics.mismatches.set_function(lambda: len(self.mismatches))
        self._kick = asyncio.Event()
        self._kicked: set[str] = set()
        # (session, chain name) -> the executor seen as that stream's writer on chain: a full pass asks
        # the chain again only for sessions whose executor changed, and every REVERIFY_PASSES passes
        self._granted: dict[tuple[str, str], str] = {}
        self._passes = 0

    def kick(self, session_id: str | None = None) -> None:
        """Grant the anchor writer role for this session now (after an activation or an executor change)
        rather than at the next pass; without a session, run a full pass now."""
        self._kicked.add(session_id or "")
        self._kick.set()

    async def run(self) -> None:
        next_full = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self._kick.clear()
            kicked, self._kicked = self._kicked, set()
            try:
                if loop.time() >= next_full or "" in kicked:
                    next_full = loop.time() + self.interval
                    await self.sync_once()
                else:
                    await self.grant_now(kicked)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chain sync pass failed; trying again in %.0f s", self.interval)
            try:
                await asyncio.wait_for(self._kick.wait(), max(0.0, next_full - loop.time()))
            except TimeoutError:
                pass

    async def grant_now(self, session_ids: set[str]) -> None:
        """The writer grants of these sessions only (what a kick asks: one activation must not cost a pass
        over every live session)."""
        for session_id in sorted(session_ids):
            rec = await self.db.get(session_id)
            if rec is not None and rec.lifecycle_state in (SessionState.ACTIVE, SessionState.PAUSED):
                await self._grant_writers(rec)

    async def sync_once(self) -> None:
        """A full pass: every live session's writer grants (asking the chain again only where the
        executor changed, or every REVERIFY_PASSES passes), then every ACTIVE session's budget audit."""
        live = await self._live_sessions()
        self._passes += 1
        if self._passes % REVERIFY_PASSES == 0:
            self._granted.clear()
        else:
            ids = {r.session_id for r in live}
            self._granted = {k: v for k, v in self._granted.items() if k[0] in ids}
        for rec in live:
            await self._grant_writers(rec)
        current: dict[str, BudgetMismatch] = {}
        for rec in live:
            if rec.lifecycle_state is SessionState.ACTIVE:
                found = await self._audit_budget(rec)
                if found is not None:
                    current[rec.session_id] = found
        self.mismatches = current

    async def _live_sessions(self) -> list[SessionRecord]:
        out: list[SessionRecord] = []
        token = ""
        while True:
            page, token = await self.db.list_sessions(
                owner=None,
                states=[int(SessionState.ACTIVE), int(SessionState.PAUSED)],
                type=None,
                page_token=token,
                limit=500,
            )
            out.extend(page)
            if not token:
                return out

    # ------------------------------------------------------------------ anchor writers
    async def _grant_writers(self, rec: SessionRecord) -> None:
        if not rec.executor:
            return
        for name in rec.spec.get("chains", []):
            chain = self._chain(str(name))
            if chain is None or chain.info.chain_id == self.home.chain_id:
                continue
            seen = (rec.session_id, chain.info.name)
            if self._granted.get(seen) == rec.executor.lower():
                continue
            try:
                registry = chain.contract("AnchorRegistry")
                writer, *_ = await registry.functions.streamOf(self.home.chain_id, int(rec.session_id)).call()
                if str(writer).lower() == rec.executor.lower():
                    self._granted[seen] = rec.executor.lower()
                    continue
                tx = await chain.transact(
                    registry.functions.grantWriter(
                        self.home.chain_id, int(rec.session_id), to_checksum_address(rec.executor)
                    ),
                    self.receipt_timeout,
                )
            except Exception as exc:
                self.metrics.grants.labels(chain.info.name, "failed").inc()
                log.warning(
                    "session %s: granting %s the anchor writer role on %s failed (retried): %s",
                    rec.session_id,
                    rec.executor,
                    chain.info.name,
                    str(exc)[:300],
                )
                continue
            self.metrics.grants.labels(chain.info.name, "ok").inc()
            self._granted[seen] = rec.executor.lower()
            log.info(
                "session %s: %s may anchor on %s (tx 0x%s)",
                rec.session_id,
                rec.executor,
                chain.info.name,
                tx.hex(),
            )
            await self._record(
                rec.session_id,
                NewEvent(
                    "anchor_writer_granted",
                    {"chain": chain.info.name, "writer": rec.executor, "tx": "0x" + tx.hex()},
                ),
            )

    def _chain(self, name: str) -> KeySender | None:
        if name in self.chains:
            return self.chains[name]
        return next((c for c in self.chains.values() if str(c.info.chain_id) == name), None)

    # ------------------------------------------------------------------ budget audit
    async def _audit_budget(self, rec: SessionRecord) -> BudgetMismatch | None:
        home = self.chains.get(self.home.name)
        if home is None:
            return None
        try:
            _, chain_spent, through = await budget_of(home, int(rec.session_id))
            recorded = await self.db.task_costs_through(rec.session_id, int(through))
        except Exception as exc:
            self.metrics.audits.labels("failed").inc()
            log.warning("session %s: budget audit failed (retried): %s", rec.session_id, str(exc)[:300])
            return self.mismatches.get(rec.session_id)
        if int(chain_spent) == recorded:
            self.metrics.audits.labels("ok").inc()
            return None
        self.metrics.audits.labels("mismatch").inc()
        found = BudgetMismatch(rec.session_id, int(chain_spent), recorded, int(through))
        if self.mismatches.get(rec.session_id) != found:
            log.error("session %s: %s", rec.session_id, found.message)
            await self._record(
                rec.session_id,
                NewEvent(
                    "budget_mismatch",
                    {
                        "chain_spent": str(found.chain_spent),
                        "recorded_spent": str(recorded),
                        "through_seq": through,
                    },
                ),
            )
        return found

    async def _record(self, session_id: str, event: NewEvent) -> None:
        for _ in range(5):
            try:
                rec = await self.db.require(session_id)
                await self.db.commit(Change(session_id, rec.version, {}, [event]))
            except Aborted:
                continue  # a task report landed in between
            except Exception as exc:  # the chain is the truth either way; the event is for people
                log.warning("session %s: recording %s failed: %s", session_id, event.type, exc)
                return
            self.notify(session_id)
            return

    async def close(self) -> None:
        for chain in self.chains.values():
            await chain.close()
