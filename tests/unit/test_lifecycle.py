from __future__ import annotations

import pytest

from agentgpt.lifecycle import (
    Action,
    Durations,
    LifecycleError,
    SessionClock,
    SessionState,
    TerminalReason,
    apply,
)

D = Durations(draft=100, active=1000, paused=50)


def test_happy_path_draft_active_paused_active_completed() -> None:
    c = SessionClock(SessionState.DRAFT, entered_at=0)
    c = apply(c, Action.EDIT_PARAMS, 10, D)
    c = apply(c, Action.ACTIVATE, 20, D)
    assert c.state is SessionState.ACTIVE and c.deadline(D) == 1020
    c = apply(c, Action.PAUSE, 120, D)
    assert c.state is SessionState.PAUSED and c.active_used == 100
    c = apply(c, Action.RESUME, 160, D)
    # The 72 h (here 1000 s) active clock stopped while paused: 900 s remain from 160.
    assert c.deadline(D) == 160 + 900
    c = apply(c, Action.COMPLETE, 200, D)
    assert c.state is SessionState.COMPLETED and c.terminal_reason is TerminalReason.COMPLETED
    assert c.deadline(D) is None


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (SessionState.DRAFT, Action.EXECUTE_TASKS),
        (SessionState.DRAFT, Action.UPDATE_BUDGET),
        (SessionState.ACTIVE, Action.EDIT_PARAMS),
        (SessionState.ACTIVE, Action.ATTACH_DECORATORS),
        (SessionState.PAUSED, Action.EXECUTE_TASKS),
        (SessionState.COMPLETED, Action.RESUME),
        (SessionState.TERMINATED, Action.ACTIVATE),
    ],
)
def test_seed_allowed_actions_are_enforced(state: SessionState, action: Action) -> None:
    with pytest.raises(LifecycleError, match=f"'{action.value}' is not allowed in state {state.name}"):
        apply(SessionClock(state, 0), action, 1, D)


@pytest.mark.parametrize(
    ("state", "limit", "reason"),
    [
        (SessionState.DRAFT, 100, TerminalReason.DRAFT_EXPIRED),
        (SessionState.ACTIVE, 1000, TerminalReason.ACTIVE_TIMED_OUT),
        (SessionState.PAUSED, 50, TerminalReason.PAUSED_TOO_LONG),
    ],
)
def test_timers_expire_only_after_their_deadline(
    state: SessionState, limit: int, reason: TerminalReason
) -> None:
    c = SessionClock(state, entered_at=0)
    with pytest.raises(LifecycleError, match="has not passed"):
        apply(c, Action.EXPIRE, limit - 1, D)
    done = apply(c, Action.EXPIRE, limit, D)
    assert done.state is SessionState.TERMINATED and done.terminal_reason is reason


def test_late_requests_lose_against_the_timer() -> None:
    with pytest.raises(LifecycleError, match="deadline 100 has passed"):
        apply(SessionClock(SessionState.DRAFT, 0), Action.ACTIVATE, 100, D)
