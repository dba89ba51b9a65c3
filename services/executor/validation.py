"""Request validation for the executor service: one validator per RPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentgpt.errors import InvalidArgument
from agentgpt.executor.v1 import executor_pb2 as pb
from agentgpt.runtime import validation as v

PREFIX = "/agentgpt.executor.v1.ExecutorService/"


def rehydrate(req: pb.RehydrateSessionRequest) -> None:
    v.session_id(req.session_id)
    if not req.HasField("checkpoint"):
        raise InvalidArgument("checkpoint", "is required (the verified checkpoint to resume from)")
    if req.checkpoint.session_id != req.session_id:
        raise InvalidArgument("checkpoint.session_id", "must equal session_id")
    if not req.checkpoint.cid:
        raise InvalidArgument("checkpoint.cid", "is required")
    v.bytes_len(req.checkpoint.state_root, "checkpoint.state_root", 32)
    if req.checkpoint.seq == 0:
        raise InvalidArgument("checkpoint.seq", "is required (> 0)")


def by_session_id(req: pb.AssignSessionRequest | pb.ReleaseSessionRequest) -> None:
    v.session_id(req.session_id)


VALIDATORS: dict[str, Callable[[Any], None]] = {
    PREFIX + "AssignSession": by_session_id,
    PREFIX + "RehydrateSession": rehydrate,
    PREFIX + "ReleaseSession": by_session_id,
    PREFIX + "GetExecutorStatus": v.no_validation,
}
