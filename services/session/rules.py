"""Pure rules of the session service (no I/O, no clock of their own): lifecycle transitions as SessionDB
values, lease fencing, permit decoding, and the retry schedule of chain follow-ups. SessionControl applies
them; the unit tests pin them down."""

from __future__ import annotations

from typing import Any

from agentgpt.errors import FailedPrecondition
from agentgpt.lifecycle import Action, Durations, LifecycleError, SessionClock, apply
from services.session.model import SessionRecord

Permit = tuple[int, int, bytes, bytes]  # SessionFactory.Permit: (deadline, v, r, s)


def next_clock(
    rec: SessionRecord, action: Action, now: int, durations: Durations, *, settled: bool = False
) -> SessionClock:
    """The lifecycle of `rec` after `action` at `now`; FAILED_PRECONDITION when the state forbids it.

    `settled` is for an action the chain already performed: its deadline was checked on chain, so a few
    seconds of clock skew between this host and the chain must not refuse recording it (the action is
    taken to have happened just before the deadline at the latest)."""
    if settled and rec.deadline is not None:
        now = min(now, rec.deadline - 1)
    try:
        return apply(rec.clock, action, now, durations)
    except LifecycleError as exc:
        raise FailedPrecondition(f"session {rec.session_id}: {exc}") from None


def clock_values(clock: SessionClock, reason: str, durations: Durations) -> dict[str, Any]:
    """The sessions-table columns that hold a lifecycle clock (the deadline is what the timers scan)."""
    return {
        "state": int(clock.state),
        "state_reason": reason[:512],
        "entered_at": clock.entered_at,
        "active_used": clock.active_used,
        "deadline": clock.deadline(durations),
        "terminal_reason": clock.terminal_reason.value if clock.terminal_reason else None,
    }


def check_lease(rec: SessionRecord, executor_id: str, epoch: int) -> None:
    """Fencing: only the holder of the session's *current* lease epoch may act for it. A lower epoch is a
    stale executor (its lease was taken over); a higher one was never granted."""
    if epoch != rec.lease_epoch:
        raise FailedPrecondition(
            f"epoch: stale lease epoch {epoch}; the current epoch of session {rec.session_id} is {rec.lease_epoch}"
        )
    if executor_id != rec.lease_executor:
        raise FailedPrecondition(f"executor_id: the lease at epoch {epoch} is held by {rec.lease_executor!r}")


def permit_tuple(permit: bytes, deadline: int) -> Permit | None:
    """An owner's 65-byte ERC-2612 signature (r || s || v) as SessionFactory's Permit struct; v is
    normalised to 27/28 (wallets also produce 0/1)."""
    if not permit:
        return None
    v = permit[64]
    return (int(deadline), v if v >= 27 else v + 27, permit[:32], permit[32:64])


def retry_delay(attempts: int, *, base: float, cap: float) -> float:
    """Seconds before the next attempt of a chain follow-up that failed `attempts` times: exponential from
    `base`, at most `cap` (an outage is not hammered, and a recovered chain is caught up within `cap`)."""
    if attempts <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(attempts - 1, 32)))


def checkpoint_anchors(
    latest: dict[str, Any], cid: str, state_root_hex: str, anchors: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Merge the anchors of a re-recorded checkpoint (same seq) into the latest one.

    Returns the `checkpoint_anchored` event data (seq and the merged anchors, one per chain, the newest
    block kept), or None when nothing is new. The checkpoint itself must be the same: another CID or
    state root under the same seq is refused (a fork of the session's history)."""
    if cid != latest["cid"] or state_root_hex != latest["state_root"]:
        raise FailedPrecondition(
            f"checkpoint.seq: checkpoint {latest['seq']} was recorded as {latest['cid']} with another "
            "state root; a checkpoint's seq, CID and state root never change"
        )
    merged = {a["chain_id"]: a for a in latest.get("anchors", [])}
    for a in anchors:
        old = merged.get(a["chain_id"])
        if old is None or a["number"] > old["number"]:
            merged[a["chain_id"]] = a
    result = [merged[c] for c in sorted(merged)]
    if result == sorted(latest.get("anchors", []), key=lambda a: a["chain_id"]):
        return None
    return {"seq": latest["seq"], "anchors": result}
