"""bench/memory.py's own logic: reading /proc, the per-session arithmetic, its figures, the seeded copies."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import memory  # noqa: E402  (bench/memory.py)

from services.session.model import ZERO_HASH, EventRecord, event_hash, verify_chain  # noqa: E402

STATUS = """Name:\tpython
State:\tS (sleeping)
VmPeak:\t  812345 kB
VmRSS:\t  104672 kB
RssAnon:\t   61234 kB
Threads:\t9
"""
ROLLUP = """55df5b862000-7ffdc6271000 ---p 00000000 00:00 0                          [rollup]
Rss:              104672 kB
Pss:               70001 kB
Shared_Clean:      40000 kB
Shared_Dirty:          0 kB
Private_Clean:      1500 kB
Private_Dirty:     63172 kB
Swap:                  0 kB
"""


def test_kb_fields_are_read_and_other_lines_skipped() -> None:
    fields = memory.parse_kb_fields(STATUS)
    assert fields["VmRSS"] == 104672 and fields["RssAnon"] == 61234
    assert "Threads" not in fields and "State" not in fields


def test_uss_is_the_private_pages() -> None:
    assert memory.uss_kb(ROLLUP) == 1500 + 63172
    assert memory.uss_kb(STATUS) is None


def test_a_sample_reads_status_and_smaps_rollup_and_falls_back_to_rss(tmp_path: Path) -> None:
    pid = tmp_path / "42"
    pid.mkdir()
    (pid / "status").write_text(STATUS)
    without = memory.read_sample(42, tmp_path)
    assert without == memory.Sample(104672, None) and without.kb == 104672
    assert memory.metric_name(without) == "RSS"
    (pid / "smaps_rollup").write_text(ROLLUP)
    with_uss = memory.read_sample(42, tmp_path)
    assert with_uss == memory.Sample(104672, 64672) and with_uss.kb == 64672
    assert memory.metric_name(with_uss) == "USS"


def test_this_process_can_be_read() -> None:
    got = memory.read_sample(os.getpid())
    assert got.rss_kb > 1000
    assert got.uss_kb is None or 0 < got.uss_kb <= got.rss_kb


def test_the_median_of_readings_is_taken_field_by_field() -> None:
    got = memory.median_sample([memory.Sample(100, 50), memory.Sample(300, 70), memory.Sample(200, 60)])
    assert got == memory.Sample(200, 60)
    # one reading without USS: the median has none either
    assert memory.median_sample([memory.Sample(100, 50), memory.Sample(200, None)]).uss_kb is None


def test_per_session_cost_growth_and_marginal_cost() -> None:
    assert memory.per_session_kb(70_000, 71_000, 100) == 10.0
    with pytest.raises(ValueError):
        memory.per_session_kb(1, 2, 0)
    assert memory.growth(10.0, 12.0) == pytest.approx(1.2)
    assert math.isnan(memory.growth(0.0, 12.0)) and math.isnan(memory.growth(-1.0, 12.0))
    # under the noise floor, costs compare as equal; above it, as they are
    assert memory.growth(1.5, 3.3, floor_kb=5.0) == 1.0
    assert memory.growth(-0.2, 10.0, floor_kb=5.0) == pytest.approx(2.0)
    assert memory.growth(10.0, 12.0, floor_kb=5.0) == pytest.approx(1.2)
    # 100 sessions cost 1,500 KB (500 of them one-time), 10,000 cost 100,500 KB: 10 KB per extra session
    assert memory.marginal_kb((100, 1_500.0), (10_000, 100_500.0)) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        memory.marginal_kb((100, 1.0), (100, 2.0))


def test_session_counts_are_parsed_sorted_and_checked() -> None:
    assert memory.parse_sessions("100,1000,10000") == [100, 1000, 10000]
    assert memory.parse_sessions("1e4, 100,100, 10_000") == [100, 10000]
    for bad in ("", "0", "100,-5"):
        with pytest.raises(ValueError):
            memory.parse_sessions(bad)


def test_figures_of_runs() -> None:
    runs = [
        memory.Run(10_000, memory.Sample(110_000, 70_000), memory.Sample(230_000, 190_000), 60.0),
        memory.Run(100, memory.Sample(110_000, 70_000), memory.Sample(111_500, 71_500), 2.0),
    ]
    assert runs[1].per_session_kb == 15.0 and runs[0].per_session_kb == 12.0
    figs = memory.figures_for("executor", runs)
    at_100 = figs["executor KB/session at 100"]
    assert at_100.value == 15.0 and at_100.goal == memory.GOAL_KB and at_100.better == "lower"
    assert at_100.ratio is None  # the goal bounds the value itself
    assert "USS" in at_100.note
    whole = figs["executor memory at 10,000 vs idle"]
    assert whole.value == pytest.approx(190_000 / 1024) and whole.ratio == pytest.approx(190 / 70)
    g = figs["executor growth 100 -> 10,000"]
    assert g.ratio == pytest.approx(12.0 / 15.0) and g.goal == memory.GROWTH_GOAL
    tiny = memory.figures_for(
        "session",
        [
            memory.Run(100, memory.Sample(1, 100_000), memory.Sample(1, 100_150), 1.0),
            memory.Run(1000, memory.Sample(1, 100_000), memory.Sample(1, 103_300), 1.0),
        ],
    )["session growth 100 -> 1,000"]
    assert tiny.ratio == 1.0 and "unfloored: 2.20" in tiny.note
    m = figs["executor marginal KB/session 100 -> 10,000"]
    assert m.value == pytest.approx((120_000 - 1_500) / 9_900)
    # one N: no growth to speak of
    assert set(memory.figures_for("session", runs[:1])) == {
        "session KB/session at 10,000",
        "session memory at 10,000 vs idle",
    }
    table = memory.report_table({"executor": runs})
    lines = table.splitlines()
    assert len(lines) == 4 and "100" in lines[2] and "10,000" in lines[3]  # smallest first


def test_a_seeded_copy_is_the_template_under_another_id_with_its_event_chain_redone() -> None:
    sid = "7"
    evs, head = [], ZERO_HASH
    for cursor, (type_, state, data) in enumerate(
        [("created", 1, '{"budget":"5"}'), ("activated", 2, "{}"), ("tasks_submitted", 2, '{"tasks":[]}')],
        start=1,
    ):
        head = event_hash(
            head, session_id=sid, cursor=cursor, type=type_, state=state, data_json=data, at=1.5 + cursor
        )
        evs.append(
            {
                "session_id": sid,
                "cursor": cursor,
                "type": type_,
                "state": state,
                "data_json": data,
                "at": 1.5 + cursor,
                "hash": head,
            }
        )
    template = {"pk": 1, "session_id": sid, "state": 2, "event_head": head, "budget": "5"}
    tasks = [{"session_id": sid, "seq": 1, "kind": "load_note"}]
    keys = [{"session_id": sid, "epoch": 1, "wrapped": b"k"}]
    session, tasks_out, events_out, keys_out = memory.clone_rows(template, tasks, evs, keys, "1000000001")
    assert "pk" not in session and session["session_id"] == "1000000001" and session["budget"] == "5"
    assert [t["session_id"] for t in tasks_out] == ["1000000001"] and tasks_out[0]["kind"] == "load_note"
    assert keys_out == [{"session_id": "1000000001", "epoch": 1, "wrapped": b"k"}]
    records = [EventRecord(**e) for e in events_out]
    assert verify_chain(records) and session["event_head"] == records[-1].hash != head
    assert verify_chain([EventRecord(**e) for e in evs])  # (the template's own rows are left as they were)
