"""Idempotency fingerprints and request decoding: what makes two requests "the same request"."""

from __future__ import annotations

import pytest

from agentgpt import auth
from agentgpt.errors import InvalidArgument
from agentgpt.session.v1 import session_pb2 as pb
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.session.control import (
    CallContext,
    chain_signature,
    read_signature,
    spec_from_dict,
    spec_to_dict,
)
from services.session.store.sessiondb import decode_page_token, encode_page_token

KEY = DEV_PRIVATE_KEYS[1]


def edit(**over: object) -> pb.EditParamsRequest:
    fields = {"idempotency_key": "k", "session_id": "7", "params_json": '{"a":1}', **over}
    return pb.EditParamsRequest(**fields)  # type: ignore[arg-type]


def test_a_retry_resigned_with_a_new_nonce_is_the_same_request() -> None:
    first = auth.signed(edit(), KEY, nonce=1, deadline=10**10, chain_id=31337)
    retry = auth.signed(edit(), KEY, nonce=2, deadline=10**10 + 5, chain_id=31337)
    assert first.auth != retry.auth  # type: ignore[attr-defined]
    assert auth.request_hash(first) == auth.request_hash(retry)


def test_a_new_chain_signature_does_not_change_the_fingerprint() -> None:
    a = pb.ActivateSessionRequest(idempotency_key="k", session_id="7", chain_signature=b"\x01" * 65)
    b = pb.ActivateSessionRequest(idempotency_key="k", session_id="7", chain_signature=b"\x02" * 65)
    assert auth.request_hash(a) == auth.request_hash(b)


def test_any_other_difference_is_a_different_request() -> None:
    base = auth.request_hash(edit())
    assert auth.request_hash(edit(params_json='{"a":2}')) != base
    assert auth.request_hash(edit(expected_version=3)) != base
    assert auth.request_hash(edit(session_id="8")) != base


def test_fields_win_over_deprecated_headers() -> None:
    header_sig = auth.sign_request(KEY, pb.GetSessionRequest(session_id="7"), nonce=0, deadline=9, chain_id=1)
    ctx = CallContext(read_auth=header_sig, chain_signature=b"\x03" * 65)
    field_req = auth.signed(pb.GetSessionRequest(session_id="7"), KEY, nonce=0, deadline=10, chain_id=1)
    assert read_signature(field_req, ctx) is field_req.auth  # type: ignore[attr-defined]
    assert read_signature(pb.GetSessionRequest(session_id="7"), ctx) is header_sig
    assert read_signature(pb.GetSessionRequest(session_id="7"), CallContext()) is None
    with_field = pb.CompleteSessionRequest(chain_signature=b"\x04" * 65)
    assert chain_signature(with_field, ctx) == b"\x04" * 65
    assert chain_signature(pb.CompleteSessionRequest(), ctx) == b"\x03" * 65
    assert chain_signature(pb.CompleteSessionRequest(), CallContext()) == b""


def test_stored_spec_round_trips_with_the_same_workflow_hash() -> None:
    from agentgpt.spec import parse_yaml

    spec = parse_yaml('type: "treasury_management"\nparams:\n  chains: [arbitrum]\n  risk: 0.2\n')
    again = spec_from_dict(spec_to_dict(spec))
    assert again == spec and again.workflow_hash() == spec.workflow_hash()


def test_page_tokens_round_trip_and_foreign_tokens_are_refused() -> None:
    assert decode_page_token(encode_page_token(42)) == 42
    for bad in ("", "bm9wZQ==", encode_page_token(0), "!!!", encode_page_token(2**63)):
        with pytest.raises(InvalidArgument) as info:
            decode_page_token(bad)
        assert info.value.field == "page.page_token"  # type: ignore[attr-defined]
