"""services.session.model: the hash-chained event log, canonical JSON, callers' idempotency namespaces."""

from __future__ import annotations

from dataclasses import replace

from services.session.model import ZERO_HASH, Caller, EventRecord, canonical_json, event_hash, verify_chain


def chain(n: int, session_id: str = "7") -> list[EventRecord]:
    out: list[EventRecord] = []
    prev = ZERO_HASH
    for cursor in range(1, n + 1):
        data_json = canonical_json({"seq": cursor, "note": "é"})
        at = 1_700_000_000 + cursor / 3
        h = event_hash(
            prev,
            session_id=session_id,
            cursor=cursor,
            type="task_succeeded",
            state=2,
            data_json=data_json,
            at=at,
        )
        out.append(EventRecord(session_id, cursor, "task_succeeded", 2, data_json, round(at, 6), h))
        prev = h
    return out


def test_an_unbroken_chain_verifies() -> None:
    evs = chain(5)
    assert verify_chain(evs) and verify_chain([])
    assert len({e.hash for e in evs}) == 5


def test_any_tampering_breaks_the_chain() -> None:
    evs = chain(4)
    assert not verify_chain([*evs[:2], replace(evs[2], data_json='{"seq":99}'), evs[3]])
    assert not verify_chain([*evs[:2], replace(evs[2], type="task_failed"), evs[3]])
    assert not verify_chain([*evs[:2], replace(evs[2], state=3), evs[3]])
    assert not verify_chain([*evs[:2], replace(evs[2], at=evs[2].at + 1), evs[3]])
    assert not verify_chain([evs[1], evs[0], *evs[2:]])  # reordered
    assert not verify_chain([evs[0], *evs[2:]])  # an event dropped
    assert not verify_chain(evs[1:])  # does not start at cursor 1
    assert not verify_chain([replace(e, session_id="8") for e in evs])  # moved to another session


def test_each_hash_commits_to_the_whole_prefix() -> None:
    a, b = chain(3), chain(3)
    assert a[2].hash == b[2].hash
    kwargs = {"session_id": "7", "cursor": 2, "type": "x", "state": 1, "data_json": "{}", "at": 1.0}
    assert event_hash(a[0].hash, **kwargs) != event_hash(ZERO_HASH, **kwargs)  # type: ignore[arg-type]


def test_event_hash_ignores_json_key_order_and_float_noise() -> None:
    kwargs = {"session_id": "7", "cursor": 1, "type": "x", "state": 1}
    h1 = event_hash(ZERO_HASH, data_json='{"a":1,"b":2}', at=1.0000001, **kwargs)  # type: ignore[arg-type]
    h2 = event_hash(ZERO_HASH, data_json='{"b": 2, "a": 1}', at=1.0000004, **kwargs)  # type: ignore[arg-type]
    assert h1 == h2


def test_canonical_json_is_sorted_compact_and_unicode() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == '{"a":[1,{"c":null,"d":"é"}],"b":1}'


def test_idempotency_namespace_of_callers() -> None:
    assert Caller(owner="0xAbC").principal == "0xAbC"
    assert Caller(owner="0xAbC", service="oracle").principal == "0xAbC"  # an owner's keys are the owner's
    assert Caller(service="oracle").principal == "service:oracle"
