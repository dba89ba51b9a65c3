"""The session lifecycle (docs/design.md §4) as a pure state machine.

This module is the single Python statement of the lifecycle rules. The session service drives it,
the SessionFactory contract mirrors it on chain, and the contract tests check the two agree.
It knows nothing about storage, gRPC or chains; time is passed in explicitly (seconds since the epoch).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class SessionState(enum.IntEnum):
    """Numbering matches `agentgpt.common.v1.SessionState` and `SessionFactory.SessionState` (NONE = 0 there)."""

    DRAFT = 1
    ACTIVE = 2
    PAUSED = 3
    COMPLETED = 4
    TERMINATED = 5

    @property
    def is_final(self) -> bool:
        return self in (SessionState.COMPLETED, SessionState.TERMINATED)


class Action(enum.StrEnum):
    """Everything that can be asked of a session. The seed's allowed_actions are a subset."""

    EDIT_PARAMS = "edit_params"
    ATTACH_DECORATORS = "attach_decorators"
    ACTIVATE = "activate"
    EXECUTE_TASKS = "execute_tasks"
    UPDATE_BUDGET = "update_budget"
    PAUSE = "pause"
    RESUME = "resume"
    COMPLETE = "complete"
    TERMINATE = "terminate"  # operator or owner cancels (DRAFT, ACTIVE or PAUSED)
    EXPIRE = "expire"  # a timer ran out: anyone may ask once the deadline has passed
    REASSIGN = "reassign_executor"  # the recovery oracle moves the session to another executor


class TerminalReason(enum.StrEnum):
    COMPLETED = "completed"
    DRAFT_EXPIRED = "draft_expired"  # DRAFT longer than its limit (1 h)
    ACTIVE_TIMED_OUT = "active_timed_out"  # ACTIVE longer than its limit (72 h, paused time excluded)
    PAUSED_TOO_LONG = "paused_too_long"  # PAUSED longer than its limit (24 h)
    CANCELLED = "cancelled"


# The seed's allowed_actions per state, plus the transitions docs/design.md §4 adds.
ALLOWED_ACTIONS: dict[SessionState, frozenset[Action]] = {
    SessionState.DRAFT: frozenset(
        {Action.EDIT_PARAMS, Action.ATTACH_DECORATORS, Action.ACTIVATE, Action.TERMINATE, Action.EXPIRE}
    ),
    SessionState.ACTIVE: frozenset(
        {
            Action.EXECUTE_TASKS,
            Action.UPDATE_BUDGET,
            Action.PAUSE,
            Action.REASSIGN,
            Action.COMPLETE,
            Action.TERMINATE,
            Action.EXPIRE,
        }
    ),
    SessionState.PAUSED: frozenset({Action.RESUME, Action.REASSIGN, Action.TERMINATE, Action.EXPIRE}),
    SessionState.COMPLETED: frozenset(),
    SessionState.TERMINATED: frozenset(),
}

_TARGET: dict[Action, SessionState] = {
    Action.ACTIVATE: SessionState.ACTIVE,
    Action.PAUSE: SessionState.PAUSED,
    Action.RESUME: SessionState.ACTIVE,
    Action.COMPLETE: SessionState.COMPLETED,
    Action.TERMINATE: SessionState.TERMINATED,
    Action.EXPIRE: SessionState.TERMINATED,
}


class LifecycleError(Exception):
    """An action that the session's current state does not allow."""

    def __init__(self, state: SessionState, action: Action, detail: str = "") -> None:
        allowed = ", ".join(sorted(a.value for a in ALLOWED_ACTIONS[state])) or "none (final state)"
        msg = f"action '{action.value}' is not allowed in state {state.name} (allowed: {allowed})"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.state = state
        self.action = action


@dataclass(frozen=True)
class Durations:
    """Lifecycle limits in seconds. Production values from the seed; tests shorten them."""

    draft: int = 3600
    active: int = 72 * 3600
    paused: int = 24 * 3600


@dataclass(frozen=True)
class SessionClock:
    """What the timers need to know about a session; immutable, replaced on every transition.

    `active_used` is the ACTIVE time consumed before `entered_at` (the 72 h clock stops while PAUSED).
    """

    state: SessionState
    entered_at: int
    active_used: int = 0
    terminal_reason: TerminalReason | None = None

    def deadline(self, durations: Durations) -> int | None:
        """When the current state's timer fires, or None for final states."""
        if self.state is SessionState.DRAFT:
            return self.entered_at + durations.draft
        if self.state is SessionState.ACTIVE:
            return self.entered_at + durations.active - self.active_used
        if self.state is SessionState.PAUSED:
            return self.entered_at + durations.paused
        return None

    def expiry_reason(self) -> TerminalReason:
        return {
            SessionState.DRAFT: TerminalReason.DRAFT_EXPIRED,
            SessionState.ACTIVE: TerminalReason.ACTIVE_TIMED_OUT,
            SessionState.PAUSED: TerminalReason.PAUSED_TOO_LONG,
        }[self.state]


def check_allowed(state: SessionState, action: Action) -> None:
    if action not in ALLOWED_ACTIONS[state]:
        raise LifecycleError(state, action)


def apply(clock: SessionClock, action: Action, now: int, durations: Durations) -> SessionClock:
    """The clock after `action` at time `now`; raises LifecycleError when it is not allowed.

    Actions that do not change state (edit_params, execute_tasks, ...) return the clock unchanged.
    EXPIRE is only allowed once the current deadline has passed; every other action is refused
    once it has (the session must be expired first), so timers win races against late requests.
    """
    check_allowed(clock.state, action)
    deadline = clock.deadline(durations)
    overdue = deadline is not None and now >= deadline
    if action is Action.EXPIRE:
        if not overdue:
            raise LifecycleError(clock.state, action, f"deadline {deadline} has not passed (now {now})")
        return SessionClock(SessionState.TERMINATED, now, _active_used(clock, now), clock.expiry_reason())
    if overdue:
        raise LifecycleError(clock.state, action, f"the {clock.state.name} deadline {deadline} has passed")
    target = _TARGET.get(action)
    if target is None:
        return clock
    reason = {
        SessionState.COMPLETED: TerminalReason.COMPLETED,
        SessionState.TERMINATED: TerminalReason.CANCELLED,
    }.get(target)
    return replace(
        clock, state=target, entered_at=now, active_used=_active_used(clock, now), terminal_reason=reason
    )


def _active_used(clock: SessionClock, now: int) -> int:
    if clock.state is SessionState.ACTIVE:
        return clock.active_used + (now - clock.entered_at)
    return clock.active_used
