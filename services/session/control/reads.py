"""Reads: get, list, list tasks, inspect (with its alerts) and watch. Each answers domain records; the
servicer turns them into API messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from eth_utils.address import to_checksum_address

from agentgpt import auth as owner_auth
from agentgpt.errors import PermissionDenied
from agentgpt.lifecycle import SessionState
from agentgpt.runtime.validation import INT64_MAX
from agentgpt.session.v1 import session_pb2 as pb
from services.session.control.callers import CallContext, Callers, require_owner_or_service
from services.session.control.core import Core
from services.session.control.work import FINAL_TASK
from services.session.model import Alert, EventRecord, Inspection, SessionRecord, TaskRecord

DEFAULT_PAGE_SIZE = 50
DEFAULT_TASK_PAGE = 100
MAX_ALERTS = 20  # per InspectSession answer
RECENT = 20  # tasks and events in a "full" InspectSession answer
# the task statuses InspectSession raises alerts for (RUNNING: when its error says it is retrying)
FLAGGED = (pb.TASK_STATUS_FAILED, pb.TASK_STATUS_REFUSED, pb.TASK_STATUS_RUNNING)
WATCH_POLL_S = 1.0  # a watcher re-reads this often when woken by no local commit (writers elsewhere)


def outcome_score(counts: dict[int, int]) -> float:
    """The dashboard's Model Score: the share of the session's finished tasks that SUCCEEDED (a plan a
    guard, a decorator or the budget refused, or that failed on chain, counts against the model), 0..1;
    0 before any task finished. Outcomes, not the planner's own confidence: a planner that reports 0.95
    for every plan scores what its plans did."""
    succeeded = counts.get(pb.TASK_STATUS_SUCCEEDED, 0)
    finished = succeeded + counts.get(pb.TASK_STATUS_FAILED, 0) + counts.get(pb.TASK_STATUS_REFUSED, 0)
    return succeeded / finished if finished else 0.0


class Reads:
    def __init__(self, core: Core, callers: Callers) -> None:
        self.core = core
        self.callers = callers

    async def get(self, req: pb.GetSessionRequest, ctx: CallContext) -> SessionRecord:
        caller = self.callers.read_caller(req, ctx)
        return await self.core.load_owned(req.session_id, caller)

    async def list_sessions(
        self, req: pb.ListSessionsRequest, ctx: CallContext
    ) -> tuple[list[SessionRecord], str]:
        """A page of sessions, newest first, and the next page's token ("" after the last)."""
        caller = self.callers.read_caller(req, ctx)
        if not caller.service:
            if not req.owner or not owner_auth.same_address(req.owner, caller.owner or ""):
                raise PermissionDenied(
                    "owner: owners may only list their own sessions (set owner to your address)"
                )
        lapsed: float | None = None
        if req.HasField("lease_lapsed_before"):
            if not caller.service:
                raise PermissionDenied("lease_lapsed_before: the lease query is reserved to services")
            lapsed = req.lease_lapsed_before.seconds + req.lease_lapsed_before.nanos / 1e9
        size = req.page.page_size or DEFAULT_PAGE_SIZE
        return await self.core.db.list_sessions(
            owner=req.owner or None,
            states=[int(SessionState.ACTIVE)] if lapsed is not None else list(req.states),
            type=req.type or None,
            page_token=req.page.page_token,
            limit=size,
            lease_lapsed_before=lapsed,
            executor=to_checksum_address(req.executor) if req.executor else None,
        )

    async def list_tasks(self, req: pb.ListTasksRequest, ctx: CallContext) -> tuple[list[TaskRecord], int]:
        """A page of the session's tasks in seq order, and the seq to continue after (0 after the last)."""
        caller = self.callers.read_caller(req, ctx)
        rec = await self.core.load_owned(req.session_id, caller)
        size = req.page_size or DEFAULT_TASK_PAGE
        rows = await self.core.db.tasks_after(
            rec.session_id, int(req.after_seq), statuses=list(req.statuses), limit=size + 1
        )
        more = len(rows) > size
        rows = rows[:size]
        return rows, (rows[-1].seq if more else 0)

    async def inspect(self, req: pb.InspectSessionRequest, ctx: CallContext) -> Inspection:
        caller = self.callers.read_caller(req, ctx)
        full = req.detail == "full"
        # one read of everything shown; nothing of it is answered unless the caller may see the session
        seen = await self.core.db.overview(
            req.session_id, recent=RECENT if full else 0, flagged=FLAGGED, flagged_limit=MAX_ALERTS
        )
        rec, counts = seen.session, seen.counts
        require_owner_or_service(caller, rec)
        done = sum(counts.get(s, 0) for s in FINAL_TASK)
        total = rec.next_task_seq - 1
        failed, refused = counts.get(pb.TASK_STATUS_FAILED, 0), counts.get(pb.TASK_STATUS_REFUSED, 0)
        lease_lost = (
            rec.lifecycle_state is SessionState.ACTIVE
            and rec.lease_epoch > 0
            and (rec.lease_expires_at is None or rec.lease_expires_at < self.core.clock())
        )
        alerts = self.alerts(rec, seen.flagged, lease_lost)
        return Inspection(
            session=rec,
            tasks_done=done,
            tasks_total=total,
            gas_used=seen.gas_used,
            completion=(done / total) if total else 0.0,
            # critical: failed tasks, a lapsed executor lease, budget overrun, escrow/SessionDB mismatch
            alerts_critical=failed
            + sum(1 for a in alerts if a.severity == "critical" and a.code != "task_failed"),
            # warning: refused tasks, tasks retrying on a failing dependency, budget 90 % used
            alerts_warning=refused
            + sum(1 for a in alerts if a.severity == "warning" and a.code != "task_refused"),
            model_score=outcome_score(counts),
            decorators=list(rec.spec["decorators"]),
            alerts=alerts[:MAX_ALERTS],
            recent_tasks=seen.recent_tasks,
            recent_events=seen.recent_events,
        )

    def alerts(self, rec: SessionRecord, flagged: list[TaskRecord], lease_lost: bool) -> list[Alert]:
        """The session's alerts, critical ones first: a budget mismatch found by the chain audit, a lapsed
        lease, the budget, and the failed, refused and retrying tasks (`flagged`: up to MAX_ALERTS of
        the session's tasks in the FLAGGED statuses)."""
        critical: list[Alert] = []
        warning: list[Alert] = []
        budget, spent = int(rec.budget), int(rec.budget_spent)
        sync = self.core.chain_sync
        mismatch = sync.mismatches.get(rec.session_id) if sync is not None else None
        if mismatch is not None:
            critical.append(Alert("critical", "budget_mismatch", mismatch.message))
        if lease_lost:
            critical.append(
                Alert(
                    "critical", "lease_lost", "the session is ACTIVE but no executor holds a live lease on it"
                )
            )
        if spent > budget:
            critical.append(Alert("critical", "budget_overrun", f"spent {spent} of a budget of {budget}"))
        elif budget > 0 and spent * 10 >= budget * 9:
            warning.append(Alert("warning", "budget_low", f"spent {spent} of {budget} (90 % or more)"))
        for t in flagged:
            if t.status == pb.TASK_STATUS_FAILED:
                critical.append(
                    Alert("critical", "task_failed", f"task {t.seq} failed: {t.error[:300]}", t.seq)
                )
            elif t.status == pb.TASK_STATUS_REFUSED:
                warning.append(
                    Alert("warning", "task_refused", f"task {t.seq} refused: {t.error[:300]}", t.seq)
                )
            elif t.error.startswith("retrying:"):
                warning.append(Alert("warning", "task_retrying", f"task {t.seq} {t.error[:300]}", t.seq))
        return critical + warning

    async def watch(self, req: pb.WatchSessionRequest, ctx: CallContext) -> AsyncIterator[EventRecord]:
        """The session's events from `from_cursor` on, then as they are committed, until the session is
        final and every event was sent (or at once with `history_only`)."""
        caller = self.callers.read_caller(req, ctx)
        db = self.core.db
        await self.core.load_owned(req.session_id, caller)
        cursor = min(req.from_cursor, INT64_MAX)
        while True:
            wake = self.core.bus.waiter(req.session_id)  # taken before reading: no event can slip in between
            batch = await db.events_after(req.session_id, cursor)
            for e in batch:
                yield e
                cursor = e.cursor
            if batch:
                continue
            if req.history_only:
                return
            rec = await db.require(req.session_id)
            if SessionState(rec.state).is_final and rec.event_cursor <= cursor:
                return
            try:
                # Wakes on commits made by this process; the timeout covers writers in other replicas.
                await asyncio.wait_for(wake.wait(), timeout=WATCH_POLL_S)
            except TimeoutError:
                pass
