"""services.session.validation of the new request fields: each error names the offending field."""

from __future__ import annotations

import time

import pytest

from agentgpt.errors import InvalidArgument
from agentgpt.session.v1 import session_pb2 as pb
from services.session import validation

PREFIX = validation.PREFIX
GOOD_AUTH = {"signer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "signature": b"\x01" * 65}


def field_of(method: str, req: object) -> str:
    with pytest.raises(InvalidArgument) as info:
        validation.VALIDATORS[PREFIX + method](req)
    return str(info.value.field)  # type: ignore[attr-defined]


def test_chain_signature_is_empty_or_65_bytes_on_every_on_chain_action() -> None:
    auth = {**GOOD_AUTH, "deadline": int(time.time()) + 60}
    reqs = {
        "CreateSession": pb.CreateSessionRequest(
            idempotency_key="k", spec_yaml="type: t\nparams: {chains: [a]}\n", initial_budget="1"
        ),
        "ActivateSession": pb.ActivateSessionRequest(idempotency_key="k", session_id="1"),
        "UpdateBudget": pb.UpdateBudgetRequest(idempotency_key="k", session_id="1", add_amount="1"),
        "CompleteSession": pb.CompleteSessionRequest(idempotency_key="k", session_id="1"),
    }
    for method, req in reqs.items():
        req.auth.MergeFrom(pb.CompleteSessionRequest(auth=auth).auth)  # type: ignore[attr-defined]
        validation.VALIDATORS[PREFIX + method](req)  # empty: the service decides whether it needs one
        req.chain_signature = b"\x01" * 65  # type: ignore[attr-defined]
        validation.VALIDATORS[PREFIX + method](req)
        req.chain_signature = b"\x01" * 64  # type: ignore[attr-defined]
        assert field_of(method, req) == "chain_signature", method


def test_read_auth_is_optional_but_checked_when_present() -> None:
    for method, cls in (
        ("GetSession", pb.GetSessionRequest),
        ("ListSessions", pb.ListSessionsRequest),
        ("WatchSession", pb.WatchSessionRequest),
        ("InspectSession", pb.InspectSessionRequest),
    ):
        req = cls(session_id="1") if method != "ListSessions" else cls()
        validation.VALIDATORS[PREFIX + method](req)  # no auth: a service identity may read
        req.auth.signer = GOOD_AUTH["signer"]  # type: ignore[union-attr]
        req.auth.signature = b"\x01" * 64  # type: ignore[union-attr]
        assert field_of(method, req) == "auth.signature", method
        req.auth.signature = b"\x01" * 65  # type: ignore[union-attr]
        assert field_of(method, req) == "auth.deadline", method  # missing deadline
        req.auth.deadline = int(time.time()) + 10 * 3600  # type: ignore[union-attr]
        assert field_of(method, req) == "auth.deadline", method  # too far ahead
        req.auth.deadline = int(time.time()) + 60  # type: ignore[union-attr]
        validation.VALIDATORS[PREFIX + method](req)
