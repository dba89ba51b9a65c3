"""Domain records -> API messages (the shapes stored as idempotent responses and streamed to watchers)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import cast

from agentgpt.canonical import sorted_json
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.timestamps import to_timestamp as timestamp
from services.session.model import Alert, EventRecord, Inspection, SessionRecord, TaskRecord


def spec_to_pb(spec: dict[str, object]) -> pb.SessionSpec:
    return pb.SessionSpec(
        type=str(spec["type"]),
        chains=[str(c) for c in spec["chains"]],  # type: ignore[attr-defined]
        models={str(k): str(v) for k, v in dict(spec["models"]).items()},  # type: ignore[call-overload]
        decorators=[str(d) for d in spec["decorators"]],  # type: ignore[attr-defined]
        params_json=sorted_json(spec["params"]),
        checkpoint_interval=int(spec["checkpoint_interval"]),  # type: ignore[call-overload]
    )


@functools.lru_cache(maxsize=1024)
def _stored_spec_to_pb(spec_json: str) -> pb.SessionSpec:
    """A stored spec (its canonical JSON) as the API message; many calls answer the same few specs, so
    each is converted once (the caller copies it: the cached message is never handed out)."""
    return spec_to_pb(dict(json.loads(spec_json)))


def session_to_pb(rec: SessionRecord) -> pb.Session:
    s = pb.Session(
        session_id=rec.session_id,
        owner=rec.owner,
        state=cast(common.SessionState.ValueType, rec.state),
        state_reason=rec.state_reason,
        workflow_hash=rec.workflow_hash,
        budget=rec.budget,
        budget_spent=rec.budget_spent,
        home_chain_id=rec.home_chain_id,
        mint_tx_hash=rec.mint_tx_hash,
        executor=rec.executor,
        lease_epoch=rec.lease_epoch,
        version=rec.version,
        created_at=timestamp(rec.created_at),
        updated_at=timestamp(rec.updated_at),
        context_epoch=rec.context_epoch,
    )
    s.spec.CopyFrom(_stored_spec_to_pb(rec.spec_json))
    if rec.deadline is not None:
        s.deadline.CopyFrom(timestamp(rec.deadline))
    if rec.checkpoint_json:
        cp = json.loads(rec.checkpoint_json)
        s.latest_checkpoint.CopyFrom(
            common.Checkpoint(
                session_id=rec.session_id,
                seq=int(cp["seq"]),
                cid=cp["cid"],
                state_root=bytes.fromhex(cp["state_root"]),
                anchors=[
                    common.BlockRef(chain_id=a["chain_id"], number=a["number"], hash=bytes.fromhex(a["hash"]))
                    for a in cp.get("anchors", [])
                ],
                created_at=timestamp(float(cp["at"])),
            )
        )
    return s


def event_to_pb(e: EventRecord) -> pb.SessionEvent:
    return pb.SessionEvent(
        cursor=e.cursor,
        session_id=e.session_id,
        type=e.type,
        state=cast(common.SessionState.ValueType, e.state),
        data_json=e.data_json,
        at=timestamp(e.at),
        hash=e.hash,
    )


def task_to_pb(t: TaskRecord) -> pb.Task:
    intents = pb.Task.FromString(t.intents).intents if t.intents else []
    return pb.Task(
        session_id=t.session_id,
        seq=t.seq,
        input=pb.TaskInput(kind=t.kind, args_json=t.args_json),
        status=cast(pb.TaskStatus.ValueType, t.status),
        result_json=t.result_json,
        error=t.error,
        intents=intents,
        gas_used=t.gas_used,
        cost=t.cost,
        log_hash=t.log_hash,
    )


def intents_to_bytes(intents: Iterable[pb.TxIntent]) -> bytes:
    """A task's on-chain intents as its SessionDB column holds them (read back by task_to_pb)."""
    return pb.Task(intents=intents).SerializeToString()


def lease_to_pb(rec: SessionRecord) -> pb.Lease:
    return pb.Lease(
        session_id=rec.session_id,
        executor_id=rec.lease_executor,
        epoch=rec.lease_epoch,
        expires_at=timestamp(rec.lease_expires_at or 0),
    )


def alert_to_pb(a: Alert) -> pb.Alert:
    return pb.Alert(severity=a.severity, code=a.code, message=a.message, task_seq=a.task_seq)


def inspection_to_pb(i: Inspection) -> pb.InspectSessionResponse:
    return pb.InspectSessionResponse(
        session=session_to_pb(i.session),
        tasks_done=i.tasks_done,
        tasks_total=i.tasks_total,
        gas_used=i.gas_used,
        gas_cost_wei=i.session.gas_cost_wei,
        completion=i.completion,
        alerts_critical=i.alerts_critical,
        alerts_warning=i.alerts_warning,
        model_score=i.model_score,
        decorators=i.decorators,
        alerts=[alert_to_pb(a) for a in i.alerts],
        recent_tasks=[task_to_pb(t) for t in i.recent_tasks],
        recent_events=[event_to_pb(e) for e in i.recent_events],
    )
