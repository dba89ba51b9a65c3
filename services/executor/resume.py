"""Where a session picks up: its state rebuilt from the committed task records and its last checkpoint.

`resume_state` is a pure function of what the session service recorded (and, on a rehydration, the
checkpoint the recovery oracle verified). A session runner applies its result when it takes a lease;
the recovery protocol applies the same function when it brings a session back elsewhere, so both arrive
at the same memory, context, log position and unsettled charges from the same records.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.tasklog import ZERO_HASH
from services.executor.ports import ResumePoint
from services.executor.records import DONE, SUCCEEDED


@dataclass(frozen=True)
class ContextSwap:
    """A committed `swap_context` task, to be applied again (ContextBuilder.swap) at `seq`."""

    seq: int
    args_json: str  # the task's args as recorded (parsed when applied: a bad one is logged, then skipped)


@dataclass(frozen=True)
class ResumeState:
    """A session's state at the point it resumes from (see resume_state)."""

    memory: Mapping[str, Any]  # task kind -> the outputs of its latest final task (read-only)
    swaps: tuple[ContextSwap, ...]  # context swaps to re-apply, in seq order
    seq: int  # the checkpoint's seq: the task log starts after it (0: no checkpoint)
    head: bytes  # the log head at the checkpoint: the next entry links to it
    root: bytes  # the checkpoint's state root: the next checkpoint's prev_root (v1: == head)
    prev_cid: str  # the checkpoint the next one links to ("" when there is none)
    relog: tuple[ss.Task, ...]  # final tasks right after `seq`, gap-free: their log entries are rebuilt
    unsettled: tuple[tuple[int, int], ...]  # (seq, cost) of every final task that cost something

    @property
    def last_seq(self) -> int:
        """The last task accounted for: the next one to run is last_seq + 1."""
        return self.relog[-1].seq if self.relog else self.seq


def remember(memory: dict[str, Any], kind: str, result_json: str) -> None:
    """Put a final task's outputs in the session's memory under its kind (one output: that output)."""
    with contextlib.suppress(ValueError):
        result = json.loads(result_json or "{}")
        if isinstance(result, dict) and "outputs" in result:
            memory[kind] = result["outputs"][0] if len(result["outputs"]) == 1 else result["outputs"]


def resume_state(
    committed: Sequence[ss.Task],
    checkpoint: cpb.Checkpoint | None,
    resume: ResumePoint | None = None,
) -> ResumeState:
    """The state a session resumes from, computed from its records alone.

    Assumes:
    - `committed` is every task of the session as the session service has it (SessionPort.tasks with
      after_seq 0): in ascending seq order, each with its current status, result JSON and cost;
    - `checkpoint` is the session's latest recorded checkpoint (Session.latest_checkpoint), None if it
      has none;
    - `resume`, when given, is a checkpoint verified elsewhere (the recovery oracle's): it is used
      instead of `checkpoint` when its seq is at least as high.

    Guarantees:
    - no I/O, no clock, no randomness; the inputs are not changed; the same records give the same state;
    - memory: for each task kind, the outputs of its last final (succeeded, failed, refused) task whose
      result has "outputs", over every task, those before the checkpoint and after a gap included;
    - swaps: every succeeded swap_context task, in seq order, whatever its position (the context is
      rebuilt from the spec, so every swap applies again);
    - seq, root, prev_cid: the chosen checkpoint (seq 0, ZERO_HASH and "" without one); head: the log
      head at it (the resume point's, else the recorded log hash of task `seq`, else the root);
    - relog: the final tasks with seq = seq + 1, seq + 2, ... up to the first missing seq or non-final
      task (the roll-forward stops there: that task runs next); the log entries are not checked here,
      the caller rebuilds each and checks it against the recorded log hash;
    - unsettled: (seq, cost) of every final task with a cost above 0, in seq order, settled or not: only
      the payment rail knows what it was paid already, so the first settlement asks it and pays the rest.

    Raises ValueError if a final task's cost is not an integer.
    """
    memory: dict[str, Any] = {}
    swaps: list[ContextSwap] = []
    for t in committed:
        if t.status in DONE:
            remember(memory, t.input.kind, t.result_json)
        if t.input.kind == "swap_context" and t.status == SUCCEEDED:
            swaps.append(ContextSwap(t.seq, t.input.args_json))
    unsettled = tuple(
        (t.seq, int(t.cost or 0)) for t in committed if t.status in DONE and int(t.cost or 0) > 0
    )
    seq, root, prev_cid, head = 0, ZERO_HASH, "", b""
    if checkpoint is not None:
        seq, root, prev_cid = checkpoint.seq, bytes(checkpoint.state_root), checkpoint.cid
    if resume is not None and resume.seq >= seq:
        seq, root, prev_cid, head = resume.seq, resume.state_root, resume.cid, resume.log_head
    if not head:
        # v2: the log head is the recorded log hash of the checkpoint's last task; v1 (and a session
        # whose records are gone, whose caller reads it from the document) start from the state root.
        at = [bytes(t.log_hash) for t in committed if t.seq == seq and t.log_hash]
        head = at[0] if seq and at else root
    relog: list[ss.Task] = []
    last = seq
    for t in committed:
        if t.seq <= last:
            continue
        if t.seq != last + 1 or t.status not in DONE:
            break
        relog.append(t)
        last = t.seq
    return ResumeState(
        MappingProxyType(memory), tuple(swaps), seq, head, root, prev_cid, tuple(relog), unsettled
    )
