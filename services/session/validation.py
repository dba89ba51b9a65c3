"""Request validation for the session service: one validator per RPC, run by the
ValidationInterceptor before any servicer code. Each error names the offending field."""

from __future__ import annotations

import time
from typing import Any

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.errors import InvalidArgument
from agentgpt.runtime import validation as v
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.spec import build_spec, parse_yaml

PREFIX = "/agentgpt.session.v1.SessionService/"
MAX_TASK_PAGE = 1000
MAX_SIGNATURE_AHEAD = 3600  # an owner signature may be valid for at most 1 h


def owner_signature(auth: common.OwnerSignature, field: str = "auth", *, required: bool = True) -> None:
    if not required and not auth.signer and not auth.signature:
        return
    v.address(auth.signer, f"{field}.signer")
    if len(auth.signature) != 65:
        raise InvalidArgument(
            f"{field}.signature", f"must be a 65-byte EIP-712 signature, got {len(auth.signature)} bytes"
        )
    if auth.deadline <= 0:
        raise InvalidArgument(f"{field}.deadline", "is required (unix seconds)")
    if auth.deadline > time.time() + MAX_SIGNATURE_AHEAD:
        raise InvalidArgument(f"{field}.deadline", f"may be at most {MAX_SIGNATURE_AHEAD} s in the future")


def chain_signature(value: bytes, field: str = "chain_signature") -> None:
    """The owner's SessionFactory signature: optional here (an in-memory chain needs none; the service
    demands it when it relays), but when present exactly 65 bytes (r, s, v)."""
    if value and len(value) != 65:
        raise InvalidArgument(
            field, f"must be empty or a 65-byte EIP-712 signature (r, s, v), got {len(value)} bytes"
        )


def read_auth(req: Any) -> None:
    """Reads may omit `auth` (service identities); when present it is checked like any owner signature."""
    if req.HasField("auth"):
        owner_signature(req.auth, required=False)


def spec_message(spec: pb.SessionSpec) -> None:
    params = v.json_object(spec.params_json, "spec.params_json")
    build_spec(
        type=spec.type,
        chains=list(spec.chains),
        models=dict(spec.models),
        decorators=list(spec.decorators),
        params=params,
        checkpoint_interval=spec.checkpoint_interval,
    )


def create(req: pb.CreateSessionRequest) -> None:
    v.idempotency_key(req.idempotency_key)
    has_yaml, has_spec = bool(req.spec_yaml), req.HasField("spec")
    if has_yaml == has_spec:
        raise InvalidArgument("spec_yaml", "exactly one of spec_yaml or spec is required")
    if has_yaml:
        parse_yaml(req.spec_yaml)
    else:
        spec_message(req.spec)
    v.uint256(req.initial_budget, "initial_budget", positive=True)
    owner_signature(req.auth)
    chain_signature(req.chain_signature)
    if req.budget_permit:
        v.bytes_len(req.budget_permit, "budget_permit", 65)
        if req.budget_permit_deadline <= 0:
            raise InvalidArgument("budget_permit_deadline", "is required with budget_permit")


def mutating(*, reason: bool = False, auth_required: bool = True) -> Any:
    """Validator for the lifecycle RPCs sharing idempotency_key, session_id, auth (and reason)."""

    def check(req: Any) -> None:
        v.idempotency_key(req.idempotency_key)
        v.session_id(req.session_id)
        if reason:
            v.text(req.reason, "reason", max_len=256)
        owner_signature(req.auth, required=auth_required)

    return check


def edit_params(req: pb.EditParamsRequest) -> None:
    mutating()(req)
    v.json_object(req.params_json, "params_json", required=True)


def attach(req: pb.AttachDecoratorsRequest) -> None:
    mutating()(req)
    if not 1 <= len(req.decorators) <= 32:
        raise InvalidArgument("decorators", "must list 1 to 32 decorator names")
    for i, d in enumerate(req.decorators):
        v.name(d, f"decorators[{i}]")


def activate(req: pb.ActivateSessionRequest) -> None:
    mutating()(req)
    v.address(req.executor, "executor", required=False)
    chain_signature(req.chain_signature)


def update_budget(req: pb.UpdateBudgetRequest) -> None:
    mutating()(req)
    v.uint256(req.add_amount, "add_amount", positive=True)
    if req.budget_permit:
        v.bytes_len(req.budget_permit, "budget_permit", 65)
    chain_signature(req.chain_signature)


def complete(req: pb.CompleteSessionRequest) -> None:
    mutating()(req)
    chain_signature(req.chain_signature)


def get_session(req: pb.GetSessionRequest) -> None:
    v.session_id(req.session_id)
    read_auth(req)


def watch(req: pb.WatchSessionRequest) -> None:
    v.session_id(req.session_id)
    read_auth(req)


def list_sessions(req: pb.ListSessionsRequest) -> None:
    v.address(req.owner, "owner", required=False)
    for i, s in enumerate(req.states):
        v.enum_value(s, f"states[{i}]", common.SessionState)
    if req.type:
        v.name(req.type, "type")
    v.page(req.page)
    read_auth(req)


def submit_tasks(req: pb.SubmitTasksRequest) -> None:
    v.idempotency_key(req.idempotency_key)
    v.session_id(req.session_id)
    if not 1 <= len(req.tasks) <= 1000:
        raise InvalidArgument("tasks", f"must hold 1 to 1000 tasks, got {len(req.tasks)}")
    for i, t in enumerate(req.tasks):
        v.name(t.kind, f"tasks[{i}].kind")
        v.json_object(t.args_json, f"tasks[{i}].args_json")
    owner_signature(req.auth)


def executor_id(value: str, field: str = "executor_id") -> None:
    v.text(value, field, max_len=128)


def claim(req: pb.ClaimLeaseRequest) -> None:
    executor_id(req.executor_id)
    if req.session_id:
        v.session_id(req.session_id)
    v.in_range(req.ttl_seconds, "ttl_seconds", 1, 300)
    v.address(req.executor_address, "executor_address", required=False)


def leased(req: Any) -> None:
    v.session_id(req.session_id)
    executor_id(req.executor_id)
    if req.epoch == 0:
        raise InvalidArgument("epoch", "is required (the lease's fencing epoch)")


def renew(req: pb.RenewLeaseRequest) -> None:
    leased(req)
    v.in_range(req.ttl_seconds, "ttl_seconds", 1, 300)


def report(req: pb.ReportTaskRequest) -> None:
    leased(req)
    if not req.HasField("task"):
        raise InvalidArgument("task", "is required")
    t = req.task
    if t.session_id and t.session_id != req.session_id:
        raise InvalidArgument("task.session_id", "must equal session_id")
    if t.seq == 0:
        raise InvalidArgument("task.seq", "is required (1-based task sequence number)")
    v.enum_value(t.status, "task.status", pb.TaskStatus)
    v.json_object(t.result_json, "task.result_json")
    if t.cost:
        v.uint256(t.cost, "task.cost")
    v.bytes_len(t.log_hash, "task.log_hash", 32, required=False)
    for i, intent in enumerate(t.intents):
        v.bytes_len(intent.tx_hash, f"task.intents[{i}].tx_hash", 32)


def record_checkpoint(req: pb.RecordCheckpointRequest) -> None:
    leased(req)
    if not req.HasField("checkpoint"):
        raise InvalidArgument("checkpoint", "is required")
    cp = req.checkpoint
    if cp.session_id != req.session_id:
        raise InvalidArgument("checkpoint.session_id", "must equal session_id")
    if cp.seq == 0:
        raise InvalidArgument("checkpoint.seq", "is required (> 0)")
    v.text(cp.cid, "checkpoint.cid", max_len=128)
    v.bytes_len(cp.state_root, "checkpoint.state_root", 32)


def inspect(req: pb.InspectSessionRequest) -> None:
    v.session_id(req.session_id)
    if req.detail not in ("", "summary", "full"):
        raise InvalidArgument("detail", f"must be 'summary' or 'full', got {req.detail[:40]!r}")
    read_auth(req)


def list_tasks(req: pb.ListTasksRequest) -> None:
    v.session_id(req.session_id)
    v.int64(req.after_seq, "after_seq")
    for i, s in enumerate(req.statuses):
        v.enum_value(s, f"statuses[{i}]", pb.TaskStatus)
    v.in_range(req.page_size, "page_size", 1, MAX_TASK_PAGE)
    read_auth(req)


VALIDATORS = {
    PREFIX + "CreateSession": create,
    PREFIX + "GetSession": get_session,
    PREFIX + "ListSessions": list_sessions,
    PREFIX + "EditParams": edit_params,
    PREFIX + "AttachDecorators": attach,
    PREFIX + "ActivateSession": activate,
    PREFIX + "UpdateBudget": update_budget,
    PREFIX + "PauseSession": mutating(reason=True, auth_required=False),
    PREFIX + "ResumeSession": mutating(auth_required=False),
    PREFIX + "CompleteSession": complete,
    PREFIX + "TerminateSession": mutating(reason=True, auth_required=False),
    PREFIX + "SubmitTasks": submit_tasks,
    PREFIX + "ClaimLease": claim,
    PREFIX + "RenewLease": renew,
    PREFIX + "ReleaseLease": leased,
    PREFIX + "ReportTask": report,
    PREFIX + "RecordCheckpoint": record_checkpoint,
    PREFIX + "WatchSession": watch,
    PREFIX + "InspectSession": inspect,
    PREFIX + "ListTasks": list_tasks,
}
