"""resume_state: a session's resume point computed from its committed task records and checkpoint alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.tasklog import ZERO_HASH
from services.executor.ports import ResumePoint
from services.executor.resume import ContextSwap, resume_state

S, F, R, RUN, Q = (
    ss.TASK_STATUS_SUCCEEDED,
    ss.TASK_STATUS_FAILED,
    ss.TASK_STATUS_REFUSED,
    ss.TASK_STATUS_RUNNING,
    ss.TASK_STATUS_QUEUED,
)
ROOT = b"\x07" * 32


def task(
    seq: int,
    status: int = S,
    kind: str = "count",
    *,
    outputs: list[Any] | None = None,
    args: dict[str, Any] | None = None,
    cost: str = "",
    result: str | None = None,
) -> ss.Task:
    if result is None:
        result = json.dumps({"outputs": outputs if outputs is not None else [{"i": seq}]})
    return ss.Task(
        session_id="1",
        seq=seq,
        status=status,  # type: ignore[arg-type]
        input=ss.TaskInput(kind=kind, args_json=json.dumps(args or {})),
        result_json=result,
        cost=cost,
        log_hash=bytes([seq]) * 32,
    )


def checkpoint(seq: int, cid: str = "bafycheckpoint", root: bytes = ROOT) -> cpb.Checkpoint:
    return cpb.Checkpoint(session_id="1", seq=seq, cid=cid, state_root=root)


def seqs(tasks: tuple[ss.Task, ...]) -> list[int]:
    return [t.seq for t in tasks]


def test_a_fresh_session_starts_at_task_one_from_the_zero_hash() -> None:
    for committed in ([], [task(1, Q), task(2, Q)]):
        state = resume_state(committed, None)
        assert (state.seq, state.head, state.prev_cid) == (0, ZERO_HASH, "")
        assert state.relog == () and state.swaps == () and state.unsettled == ()
        assert dict(state.memory) == {} and state.last_seq == 0


def test_after_a_checkpoint_the_log_starts_from_it_and_memory_keeps_what_came_before() -> None:
    committed = [task(1, kind="a"), task(2, kind="b"), task(3, kind="a", outputs=[{"x": 3}])]
    state = resume_state(committed, checkpoint(3))
    # the log continues from task 3's recorded log hash; the next checkpoint links to this one's root
    assert (state.seq, state.head, state.root, state.prev_cid) == (3, b"\x03" * 32, ROOT, "bafycheckpoint")
    assert state.relog == () and state.last_seq == 3
    assert dict(state.memory) == {"a": {"x": 3}, "b": {"i": 2}}  # the latest per kind, one output unwrapped


def test_tasks_committed_after_the_checkpoint_are_rolled_forward_in_order() -> None:
    committed = [task(s) for s in range(1, 6)]
    state = resume_state(committed, checkpoint(3))
    assert seqs(state.relog) == [4, 5] and state.last_seq == 5
    assert all(a is b for a, b in zip(state.relog, committed[3:], strict=True))  # the records themselves
    assert seqs(resume_state(committed, None).relog) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "committed",
    [
        [task(4), task(5, RUN), task(6)],  # a task not final yet: it runs next
        [task(4), task(5, Q), task(6)],
        [task(4), task(6)],  # a gap: seq 5 is not in the records
    ],
    ids=["running", "queued", "gap"],
)
def test_a_gap_or_a_task_not_final_stops_the_roll_forward(committed: list[ss.Task]) -> None:
    state = resume_state([task(1), task(2), task(3), *committed], checkpoint(3))
    assert seqs(state.relog) == [4] and state.last_seq == 4
    # memory still has every final task's outputs, the one past the gap included
    assert state.memory["count"] == {"i": 6}


def test_the_roll_forward_starts_right_after_the_checkpoint() -> None:
    state = resume_state([task(1), task(2, RUN), task(3), task(4)], checkpoint(2))
    assert seqs(state.relog) == [3, 4]  # what is at or before the checkpoint is covered by it
    assert seqs(resume_state([task(5)], checkpoint(3)).relog) == []  # seq 4 missing


def test_succeeded_context_swaps_are_reapplied_in_seq_order() -> None:
    committed = [
        task(1, kind="swap_context", args={"payment_rail": "ledger"}),
        task(2),
        task(3, R, kind="swap_context", args={"payment_rail": "nope"}),  # refused: changed nothing
        task(4, F, kind="swap_context", args={"models": {}}),
        task(5, kind="swap_context", args={"decorators": ["ofac_filter"], "reason": "r"}),
        task(6, RUN, kind="swap_context", args={"decorators": []}),  # not committed yet
    ]
    state = resume_state(committed, checkpoint(5))
    assert state.swaps == (
        ContextSwap(1, json.dumps({"payment_rail": "ledger"})),
        ContextSwap(5, json.dumps({"decorators": ["ofac_filter"], "reason": "r"})),
    )  # before the checkpoint too: the context is rebuilt from the spec


def test_every_final_task_that_cost_something_is_unsettled_until_the_rail_says_otherwise() -> None:
    committed = [
        task(1, cost="100"),
        task(2, F, cost="30"),
        task(3, R, cost="0"),  # refused before it ran: free
        task(4, R, cost="7"),  # refused after using gas
        task(5, cost=""),
        task(6, RUN, cost="50"),  # not committed
        task(7, cost="5"),  # past the gap left by task 6: committed all the same
    ]
    state = resume_state(committed, checkpoint(2))
    assert state.unsettled == ((1, 100), (2, 30), (4, 7), (7, 5))
    with pytest.raises(ValueError):
        resume_state([task(1, cost="a lot")], None)


def test_memory_takes_the_latest_final_outputs_and_skips_results_without_any() -> None:
    committed = [
        task(1, kind="a", outputs=[{"n": 1}]),
        task(2, kind="a", outputs=[{"n": 2}, {"n": 3}]),  # several outputs: kept as a list
        task(3, kind="b", outputs=[{"n": 4}]),
        task(4, F, kind="b", result='{"error": "boom"}'),  # no outputs: memory unchanged
        task(5, kind="c", result="not json"),
        task(6, RUN, kind="a", outputs=[{"n": 9}]),  # not final
        task(7, R, kind="d", outputs=[]),
    ]
    state = resume_state(committed, None)
    assert dict(state.memory) == {"a": [{"n": 2}, {"n": 3}], "b": {"n": 4}, "d": []}
    with pytest.raises(TypeError):
        state.memory["a"] = None  # type: ignore[index]


def test_a_verified_resume_point_wins_over_an_older_or_equal_checkpoint() -> None:
    committed = [task(s) for s in range(1, 8)]
    point = ResumePoint(5, "bafyverified", b"\x05" * 32)
    state = resume_state(committed, checkpoint(3), point)
    assert (state.seq, state.head, state.prev_cid) == (5, b"\x05" * 32, "bafyverified")
    # a v2 resume point names its log head, which is not its state root
    v2 = resume_state(committed, None, ResumePoint(5, "bafyverified", b"\x09" * 32, log_head=b"\x0a" * 32))
    assert (v2.head, v2.root) == (b"\x0a" * 32, b"\x09" * 32)
    assert seqs(state.relog) == [6, 7]
    equal = resume_state(committed, checkpoint(5), point)
    assert equal.prev_cid == "bafyverified"
    older = resume_state(committed, checkpoint(6), point)
    assert (older.seq, older.prev_cid, seqs(older.relog)) == (6, "bafycheckpoint", [7])


def test_resume_state_reads_its_inputs_only() -> None:
    committed = [task(1), task(2, kind="swap_context", args={"payment_rail": "ledger"}, cost="3")]
    before = [t.SerializeToString() for t in committed]
    cp = checkpoint(1)
    first, second = resume_state(committed, cp), resume_state(committed, cp)
    assert first == second
    assert [t.SerializeToString() for t in committed] == before and cp == checkpoint(1)
