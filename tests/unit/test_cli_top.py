"""`agentgpt top`'s frame: rendered from data (no network), tasks/s between frames, AGPT amounts."""

from __future__ import annotations

from typing import Any

from apps.cli.top import LIVE_STATES, _exact_agpt, _rate, _tasks_done, render

EXECUTOR_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
AT = 1_700_000_000.0


def frame(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "at": AT,
        "session_addr": "127.0.0.1:50051",
        "states": list(LIVE_STATES),
        "limit": 50,
        "executors": [
            {
                "name": "executor-1",
                "pid": 4242,
                "grpc": "127.0.0.1:50052",
                "answering": True,
                "address": EXECUTOR_1,
                "capacity": 8,
                "draining": False,
                "started_at": AT - 100,
                "sessions": [{"session_id": "7", "epoch": 2, "last_task_seq": 3}],
                "tasks_done": 3,
                "tasks_per_s": 0.5,
                "error": "",
            },
            {
                "name": "executor-2",
                "pid": None,
                "grpc": "127.0.0.1:50055",
                "answering": False,
                "address": "",
                "capacity": 0,
                "draining": False,
                "started_at": None,
                "sessions": [],
                "tasks_done": None,
                "tasks_per_s": None,
                "error": "UNAVAILABLE",
            },
        ],
        "sessions": [
            {
                "session_id": "7",
                "state": "ACTIVE",
                "type": "treasury_management",
                "executor": EXECUTOR_1,
                "executor_name": "executor-1",
                "held_by": "executor-1",
                "lease_epoch": 2,
                "tasks_done": 3,
                "tasks_queued": 1,
                "budget": str(50 * 10**18),
                "budget_spent": str(3_200_000_000_000_000),
                "budget_left": str(50 * 10**18 - 3_200_000_000_000_000),
                "alerts_critical": 0,
                "alerts_warning": 1,
            }
        ],
    }
    return {**base, **changes}


def line_of(text: str, start: str) -> list[str]:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(start + " ")]
    return line.split()


def test_a_frame_shows_every_executor_and_session() -> None:
    text = render(frame(), interval=2)
    assert (
        text.splitlines()[0]
        == "agentgpt top  2023-11-14 22:13:20 UTC  every 2 s  session service 127.0.0.1:50051"
    )
    assert "executors: 2 (1 answering)   live sessions: 1 (1 ACTIVE)" in text
    assert line_of(text, "executor-1") == [
        "executor-1",
        "4242",
        "127.0.0.1:50052",
        EXECUTOR_1,
        "1/8",
        "3",
        "0.50",
        "7",
    ]
    assert line_of(text, "executor-2") == [
        "executor-2",
        "-",
        "127.0.0.1:50055",
        "-",
        "not",
        "answering",
        "(UNAVAILABLE)",
    ]
    # budget in AGPT with decimals (the dashboard's 4), alerts critical/warning
    assert line_of(text, "7") == [
        "7",
        "ACTIVE",
        "executor-1",
        "2",
        "3",
        "1",
        "0.0032",
        "49.9968",
        "0/1",
        "treasury_management",
    ]


def test_a_session_without_a_lease_or_held_elsewhere_says_so() -> None:
    f = frame()
    f["sessions"][0]["held_by"] = ""
    assert line_of(render(f), "7")[2:5] == ["executor-1", "(no", "lease)"]
    f["sessions"][0]["held_by"] = "executor-2"  # a recovery moved it; the chain's record follows
    assert line_of(render(f), "7")[2:5] == ["executor-1", "->", "executor-2"]


def test_an_empty_fleet_and_a_failing_service_are_said_in_words() -> None:
    text = render(frame(executors=[], sessions=[], error="UNAVAILABLE: cannot reach the session service"))
    assert "! UNAVAILABLE: cannot reach the session service" in text
    assert "(no executors known: pass --executor-addr HOST:PORT)" in text
    assert "(no live sessions; --all shows ended ones too)" in text


def test_lines_are_cut_to_the_terminal_width() -> None:
    assert max(len(line) for line in render(frame(), width=40).splitlines()) == 40


def test_tasks_per_second_between_frames_else_since_the_start() -> None:
    row = {"tasks_done": 10, "started_at": AT - 100}
    assert _rate(row, AT, None) == 0.1  # the first frame: the average since the process started
    assert _rate(row, AT, {"tasks_done": 6, "started_at": AT - 100, "at": AT - 2}) == 2.0
    # the executor restarted since the last frame: its counter began again
    assert _rate(row, AT, {"tasks_done": 60, "started_at": AT - 500, "at": AT - 2}) == 0.1
    assert _rate({"tasks_done": None, "started_at": AT - 100}, AT, None) is None


def test_tasks_done_is_every_outcome_from_the_executors_metrics() -> None:
    text = (
        "# TYPE agentgpt_executor_tasks counter\n"
        'agentgpt_executor_tasks_total{status="succeeded"} 5.0\n'
        'agentgpt_executor_tasks_total{status="failed"} 1.0\n'
        'agentgpt_executor_tasks_created{status="failed"} 1.7e9\n'
    )
    assert _tasks_done(text) == 6


def test_exact_agpt_amounts_for_json() -> None:
    assert _exact_agpt(50 * 10**18) == "50"
    assert _exact_agpt(3_200_000_000_000_000) == "0.0032"
    assert _exact_agpt(1) == "0.000000000000000001"
    assert _exact_agpt(0) == "0"
