"""The archived event log (version 2) is integers only and rechecks on its own: its `at_us` carries exactly
the time each event's hash commits to, so the hash chain recomputes from the document alone."""

from __future__ import annotations

import json
import random

from agentgpt.canonical import canonical_json
from services.session.control.archive import ARCHIVE_VERSION, archive_document, at_us
from services.session.model import ZERO_HASH, EventRecord, SessionRecord, event_hash

SESSION = "7"


def chained(times: list[float]) -> list[EventRecord]:
    """A log whose events were written at `times` (as SessionDB writes them: seconds rounded to 6 places)."""
    evs: list[EventRecord] = []
    head = ZERO_HASH
    for cursor, t in enumerate(times, start=1):
        at = round(t, 6)
        data_json = canonical_json({"seq": cursor, "note": "é"})
        head = event_hash(
            head,
            session_id=SESSION,
            cursor=cursor,
            type="task_succeeded",
            state=2,
            data_json=data_json,
            at=at,
        )
        evs.append(EventRecord(SESSION, cursor, "task_succeeded", 2, data_json, at, head))
    return evs


def record() -> SessionRecord:
    fields = {name: None for name in SessionRecord.__dataclass_fields__}
    fields.update(session_id=SESSION, owner="0x" + "ab" * 20, home_chain_id=31337)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def recheck(doc: dict[str, object]) -> bool:
    """The hash chain of an archived document, recomputed from nothing but the document."""
    head = ZERO_HASH
    events = doc["events"]
    assert isinstance(events, list)
    for e in events:
        head = event_hash(
            head,
            session_id=str(doc["session_id"]),
            cursor=e["cursor"],
            type=e["type"],
            state=e["state"],
            data_json=canonical_json(e["data"]),
            at=e["at_us"] / 1_000_000,
        )
        if "0x" + head.hex() != e["hash"]:
            return False
    return "0x" + head.hex() == doc["head"]


def test_microseconds_carry_every_hashed_time_exactly() -> None:
    rng = random.Random(20261202)
    for _ in range(100_000):
        at = round(rng.uniform(1.6e9, 4.1e9), 6)
        assert at_us(at) / 1_000_000 == at
        assert round(at_us(at) / 1_000_000, 6) == at  # what event_hash hashes


def test_document_is_integers_only_and_rechecks_from_itself() -> None:
    rng = random.Random(7)
    times = sorted(rng.uniform(1.8e9, 1.9e9) for _ in range(300))
    evs = chained(times)
    doc = archive_document(record(), evs)
    assert doc["archive_version"] == ARCHIVE_VERSION == 2
    text = canonical_json(doc)
    parsed = json.loads(text, parse_float=lambda s: (_ for _ in ()).throw(AssertionError(f"float {s}")))
    assert all(isinstance(e["at_us"], int) and "at" not in e for e in parsed["events"])
    assert [e["at_us"] for e in parsed["events"]] == [round(e.at * 1_000_000) for e in evs]
    assert recheck(parsed)
    # a time off by one microsecond breaks the chain: the hashes commit to microseconds
    parsed["events"][150]["at_us"] += 1
    assert not recheck(parsed)


def test_milliseconds_would_not_recheck() -> None:
    # Why the archive does not round to milliseconds: the hashes commit to the microsecond.
    evs = chained([1_800_000_000.123456, 1_800_000_001.654321])
    doc = json.loads(canonical_json(archive_document(record(), evs)))
    for e in doc["events"]:
        e["at_us"] = e["at_us"] // 1000 * 1000
    assert not recheck(doc)
