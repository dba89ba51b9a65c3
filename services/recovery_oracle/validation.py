"""Request validation for the recovery oracle: one validator per RPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.runtime import validation as v

PREFIX = "/agentgpt.recovery.v1.RecoveryService/"


def get_verified_state(req: pb.GetVerifiedStateRequest) -> None:
    v.session_id(req.session_id)


def recover(req: pb.RecoverSessionRequest) -> None:
    v.session_id(req.session_id)
    v.text(req.reason, "reason", max_len=256)


def claim(req: pb.SubmitClaimRequest) -> None:
    v.idempotency_key(req.idempotency_key)
    v.session_id(req.session_id)
    v.enum_value(req.kind, "kind", pb.ClaimKind)
    v.address(req.executor, "executor")
    v.text(req.evidence, "evidence", max_len=1024)
    if req.challenger:
        v.address(req.challenger, "challenger")


def list_recoveries(req: pb.ListRecoveriesRequest) -> None:
    if req.session_id:
        v.session_id(req.session_id)
    if req.recovery_id:
        v.text(req.recovery_id, "recovery_id", max_len=64, identifier=True)
    v.page(req.page)


VALIDATORS: dict[str, Callable[[Any], None]] = {
    PREFIX + "GetVerifiedState": get_verified_state,
    PREFIX + "RecoverSession": recover,
    PREFIX + "SubmitClaim": claim,
    PREFIX + "ListRecoveries": list_recoveries,
}
