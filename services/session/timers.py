"""The background loop: settle recorded-but-unsettled chain transactions once at start, then every
`interval` seconds fire due lifecycle timers and mirror fired expiries on chain (retried until the chain
confirms). Deadlines and pending on-chain expiries live in SessionDB, so a restarted service simply picks
up whatever came due while it was down."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge

from agentgpt.lifecycle import SessionState
from services.session.control import SessionControl

log = logging.getLogger("agentgpt.session.timers")


class LifecycleTimers:
    def __init__(self, control: SessionControl, interval: float, registry: CollectorRegistry) -> None:
        self.control = control
        self.interval = interval
        self.sessions = Gauge(
            "agentgpt_sessions", "Sessions in SessionDB by lifecycle state.", ["state"], registry=registry
        )
        self.expired = Counter(
            "agentgpt_session_timers_fired", "Lifecycle timers fired (sessions expired).", registry=registry
        )
        self.chain_expired = Counter(
            "agentgpt_session_chain_expiries_settled",
            "Fired timers mirrored on chain (SessionFactory.expire confirmed or found already final).",
            registry=registry,
        )
        self.reconciled = 0

    async def run(self) -> None:
        self.reconciled = await self.control.reconcile()
        if self.reconciled:
            log.info("reconciled %d pending chain operations", self.reconciled)
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    async def tick(self) -> None:
        fired = await self.control.fire_due()
        if fired:
            self.expired.inc(fired)
        settled = await self.control.settle_chain_expiries()
        if settled:
            self.chain_expired.inc(settled)
        counts = await self.control.db.count_by_state()
        for st in SessionState:
            self.sessions.labels(st.name).set(counts.get(int(st), 0))
