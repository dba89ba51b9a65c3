"""services.session.rules: lifecycle transitions as stored values (the timers' due times), lease fencing,
permit decoding, and the retry schedule of on-chain follow-ups."""

from __future__ import annotations

import pytest

from agentgpt.errors import FailedPrecondition
from agentgpt.lifecycle import Action, Durations, SessionState
from services.session import rules

from .records import session_record

D = Durations(draft=3600, active=72 * 3600, paused=24 * 3600)
T0 = 1_700_000_000


def test_draft_deadline_is_one_hour_after_creation() -> None:
    rec = session_record(entered_at=T0, deadline=T0 + 3600)
    assert rules.clock_values(rec.clock, "created", D)["deadline"] == T0 + 3600


def test_active_clock_stops_while_paused() -> None:
    rec = session_record()
    active = rules.next_clock(rec, Action.ACTIVATE, T0 + 100, D)
    v = rules.clock_values(active, "activated", D)
    assert v["state"] == int(SessionState.ACTIVE) and v["deadline"] == T0 + 100 + 72 * 3600
    rec = session_record(state=2, entered_at=T0 + 100, deadline=v["deadline"])
    paused = rules.next_clock(rec, Action.PAUSE, T0 + 700, D)  # 600 s of ACTIVE time used
    pv = rules.clock_values(paused, "paused", D)
    assert (pv["active_used"], pv["deadline"]) == (600, T0 + 700 + 24 * 3600)  # the paused limit
    rec = session_record(state=3, entered_at=T0 + 700, active_used=600, deadline=pv["deadline"])
    resumed = rules.next_clock(rec, Action.RESUME, T0 + 5000, D)  # 4300 s paused: not counted
    assert rules.clock_values(resumed, "resumed", D)["deadline"] == T0 + 5000 + 72 * 3600 - 600


def test_expire_only_after_the_deadline_and_final_values_have_no_deadline() -> None:
    rec = session_record(entered_at=T0, deadline=T0 + 3600)
    with pytest.raises(FailedPrecondition, match="has not passed"):
        rules.next_clock(rec, Action.EXPIRE, T0 + 3599, D)
    done = rules.next_clock(rec, Action.EXPIRE, T0 + 3600, D)
    v = rules.clock_values(done, "draft_expired", D)
    assert v["state"] == int(SessionState.TERMINATED) and v["deadline"] is None
    assert v["terminal_reason"] == "draft_expired"


def test_late_request_refused_but_chain_settled_action_recorded() -> None:
    rec = session_record(entered_at=T0, deadline=T0 + 3600)
    with pytest.raises(FailedPrecondition, match="deadline"):
        rules.next_clock(rec, Action.ACTIVATE, T0 + 3605, D)
    # the chain already activated it before its own deadline; our clock is a few seconds ahead
    settled = rules.next_clock(rec, Action.ACTIVATE, T0 + 3605, D, settled=True)
    assert settled.state is SessionState.ACTIVE and settled.entered_at == T0 + 3599


def test_reason_is_bounded() -> None:
    rec = session_record()
    assert len(rules.clock_values(rec.clock, "x" * 2000, D)["state_reason"]) == 512


def test_lease_fencing_epoch_rules() -> None:
    rec = session_record(state=2, lease_executor="ex-b", lease_epoch=2)
    rules.check_lease(rec, "ex-b", 2)  # the current holder at the current epoch
    with pytest.raises(FailedPrecondition, match="stale lease epoch 1; the current epoch of session 7 is 2"):
        rules.check_lease(rec, "ex-a", 1)  # the previous holder is fenced out
    with pytest.raises(FailedPrecondition, match="epoch"):
        rules.check_lease(rec, "ex-b", 3)  # an epoch never granted
    with pytest.raises(FailedPrecondition, match="held by 'ex-b'"):
        rules.check_lease(rec, "ex-a", 2)  # the right epoch is not enough


def test_permit_signature_split_and_v_normalised() -> None:
    r, s = b"\x01" * 32, b"\x02" * 32
    assert rules.permit_tuple(b"", 5) is None
    assert rules.permit_tuple(r + s + b"\x00", 5) == (5, 27, r, s)
    assert rules.permit_tuple(r + s + b"\x01", 5) == (5, 28, r, s)
    assert rules.permit_tuple(r + s + b"\x1c", 9) == (9, 28, r, s)


def test_retry_delay_backs_off_exponentially_to_a_cap() -> None:
    delays = [rules.retry_delay(n, base=0.5, cap=60) for n in range(0, 12)]
    assert delays[:5] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 60 and delays == sorted(delays)
    assert rules.retry_delay(10**6, base=1, cap=30) == 30  # no overflow after a long outage


def _anchor(chain: int, number: int) -> dict[str, object]:
    return {"chain_id": chain, "number": number, "hash": f"{number:064x}"}


def test_checkpoint_anchors_merge_newest_per_chain_and_detect_retries() -> None:
    latest = {"seq": 3, "cid": "bafy", "state_root": "ab" * 32, "anchors": [_anchor(1, 10)]}
    event = rules.checkpoint_anchors(latest, "bafy", "ab" * 32, [_anchor(2, 7), _anchor(1, 9)])
    assert event == {"seq": 3, "anchors": [_anchor(1, 10), _anchor(2, 7)]}
    assert rules.checkpoint_anchors({**latest, "anchors": event["anchors"]}, "bafy", "ab" * 32, []) is None
    with pytest.raises(FailedPrecondition, match="never change"):
        rules.checkpoint_anchors(latest, "bafyOTHER", "ab" * 32, [])
