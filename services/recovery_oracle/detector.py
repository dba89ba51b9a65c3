"""Detection: which sessions need recovering, found without polling every session.

- **Leases.** Every `interval` seconds one indexed query on the session service (ListSessions with
  `lease_lapsed_before` = now - grace) returns the ACTIVE sessions whose lease lapsed; each without an
  open recovery gets one. A session lease lapses one TTL after its executor's last renewal at most.
- **Executors.** The ExecutorPool probes every executor; one that stops answering is reported here at
  once (`executor_dead`), and every ACTIVE session assigned to it (ListSessions by executor) is recovered
  without waiting for its lease to lapse.
- **Patience with live holders.** A lapsed lease whose executor still answers and says it runs the
  session (the session service was unreachable for a while, say) is given `patience` seconds to be
  renewed before it is recovered: the executor renews it as soon as it can, and moving the session would
  only churn.
- **Orphans.** Open recoveries whose holder (another oracle replica, or this one before a restart)
  stopped writing are taken over at the step they were in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agentgpt.clients import SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.runtime.tasks import cancelling
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.timestamps import to_timestamp
from services.recovery_oracle.executors import ExecutorPool
from services.recovery_oracle.metrics import RecoveryMetrics
from services.recovery_oracle.protocol import Recoverer
from services.recovery_oracle.store import RecoveryStore

log = logging.getLogger("agentgpt.recovery.detector")

PAGE = 500


class Detector:
    def __init__(
        self,
        session: SessionClient,
        recoverer: Recoverer,
        store: RecoveryStore,
        pool: ExecutorPool,
        metrics: RecoveryMetrics,
        *,
        interval: float = 0.5,
        grace: float = 1.0,
        patience: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.recoverer = recoverer
        self.store = store
        self.pool = pool
        self.metrics = metrics
        self.interval = interval
        self.grace = grace
        self.patience = patience
        self.clock = clock
        self._held_since: dict[str, float] = {}  # lapsed, but its executor says it runs it: since when

    async def _sessions(self, req: ss.ListSessionsRequest) -> list[ss.Session]:
        out: list[ss.Session] = []
        token = ""
        while True:
            req.page.CopyFrom(cpb.PageRequest(page_size=PAGE, page_token=token))
            resp = await self.session.list_sessions(req)
            out.extend(resp.sessions)
            token = resp.page.next_page_token
            if not token:
                return out

    async def pass_once(self) -> int:
        """One detection pass; the number of recoveries it started."""
        await self.recoverer.resume_orphans()
        lapsed = await self._sessions(
            ss.ListSessionsRequest(lease_lapsed_before=to_timestamp(self.clock() - self.grace))
        )
        self.metrics.without_lease.set(len(lapsed))
        self.metrics.executors_live.set(len(self.pool.live()))
        started = 0
        now = self.clock()
        lapsed_ids = {s.session_id for s in lapsed}
        self._held_since = {k: v for k, v in self._held_since.items() if k in lapsed_ids}
        if lapsed:
            busy = await self.store.open_sessions()
            for s in lapsed:
                if s.session_id in busy or self.recoverer.running(s.session_id):
                    continue
                if self._still_held(s, now):
                    continue
                await self.recoverer.start(
                    s.session_id,
                    f"lease lapsed (executor {s.executor or 'none'}, lease epoch {s.lease_epoch})",
                    failed_executor=s.executor,
                )
                started += 1
        self.metrics.open.set(await self.store.count_open())
        return started

    def _still_held(self, s: ss.Session, now: float) -> bool:
        """True while the session's executor answers, says it runs the session, and has not had
        `patience` seconds yet to renew the lapsed lease."""
        m = self.pool.by_address(s.executor) if s.executor else None
        if m is None or m.dead or m.status is None or m.status.draining:
            return False
        if not any(r.session_id == s.session_id for r in m.status.sessions):
            return False
        since = self._held_since.setdefault(s.session_id, now)
        if now - since < self.patience:
            return True
        log.warning(
            "session %s: executor %s says it runs it, but its lease stayed lapsed for %.0f s; recovering",
            s.session_id,
            s.executor,
            now - since,
        )
        return False

    async def executor_dead(self, address: str) -> None:
        """Recover every ACTIVE session assigned to an executor that stopped answering."""
        if not address:
            return
        held = await self._sessions(
            ss.ListSessionsRequest(states=[cpb.SESSION_STATE_ACTIVE], executor=address)
        )
        busy = await self.store.open_sessions()
        for s in held:
            if s.session_id in busy or self.recoverer.running(s.session_id):
                continue
            await self.recoverer.start(
                s.session_id, f"executor {address} stopped answering", failed_executor=address
            )

    async def run(self) -> None:
        """Background job: a detection pass every `interval` seconds (a failed pass is logged, not fatal)."""
        while True:
            try:
                await self.pass_once()
            except Exception as exc:
                if cancelling():
                    raise asyncio.CancelledError from None
                log.warning("detection pass failed: %s", exc)
            await asyncio.sleep(self.interval)
