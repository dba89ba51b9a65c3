"""agentgpt.auth: what the owner signature covers, and that the chain_signature field did not change it."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from agentgpt import auth
from agentgpt.session.v1 import session_pb2 as pb
from apps.localnet.anvil import DEV_PRIVATE_KEYS

KEY = DEV_PRIVATE_KEYS[1]


def _request() -> pb.CompleteSessionRequest:
    return pb.CompleteSessionRequest(idempotency_key="k-1", session_id="42", expected_version=3)


def test_hash_excludes_auth_and_chain_signature_only() -> None:
    bare = _request()
    with_extras = auth.signed(_request(), KEY, nonce=1, deadline=2, chain_id=31337)
    with_extras.chain_signature = b"\x05" * 65  # type: ignore[attr-defined]
    assert auth.request_hash(with_extras) == auth.request_hash(bare)
    changed = _request()
    changed.expected_version = 4
    assert auth.request_hash(changed) != auth.request_hash(bare)


def test_signatures_made_before_the_field_existed_still_verify() -> None:
    # What a client built before chain_signature was a field computed: keccak of the request serialized
    # without `auth` (an unset field is not serialized, so that is the request's bytes as they were).
    bare = _request()
    legacy_hash = keccak(bare.SerializeToString(deterministic=True))
    assert auth.request_hash(bare) == legacy_hash
    sig = auth.sign_request(KEY, bare, nonce=9, deadline=10**10, chain_id=31337)
    # ... and the service now sees the same request with the chain signature moved into the field
    sent = _request()
    sent.auth.CopyFrom(sig)
    sent.chain_signature = b"\x01" * 65
    assert auth.recover_signer(sig, sent, chain_id=31337) == sig.signer


def test_signature_covers_every_other_field_and_the_domain() -> None:
    req = auth.signed(_request(), KEY, nonce=1, deadline=10**10, chain_id=31337)
    assert auth.recover_signer(req.auth, req, chain_id=31337) == req.auth.signer  # type: ignore[attr-defined]
    req.session_id = "43"  # type: ignore[attr-defined]
    assert auth.recover_signer(req.auth, req, chain_id=31337) != req.auth.signer  # type: ignore[attr-defined]
    req.session_id = "42"  # type: ignore[attr-defined]
    assert auth.recover_signer(req.auth, req, chain_id=1) != req.auth.signer  # type: ignore[attr-defined]


def test_read_requests_are_signable_in_their_auth_field() -> None:
    req = auth.signed(pb.GetSessionRequest(session_id="7"), KEY, nonce=0, deadline=10**10, chain_id=5)
    assert auth.action_of(req) == "get_session"
    assert auth.recover_signer(req.auth, req, chain_id=5) == req.auth.signer  # type: ignore[attr-defined]
    # the deprecated metadata form carries the very same signature
    ((header, raw),) = auth.read_metadata(
        KEY, pb.GetSessionRequest(session_id="7"), deadline=10**10, chain_id=5
    )
    assert header == auth.READ_AUTH_HEADER
    from agentgpt.common.v1 import common_pb2

    assert common_pb2.OwnerSignature.FromString(raw).signature == req.auth.signature  # type: ignore[attr-defined]


def test_direct_encoding_is_the_generic_eip712_encoding() -> None:
    # signable_request encodes the one AgentGPTRequest struct directly; eth_account's generic encoder
    # must make the very same message of typed_request, for any strings and uint256 values
    from eth_account.messages import encode_typed_data

    cases = [
        ("get_session", "7", keccak(b"a"), 0, 1, 31337),
        ("submit_tasks", "", b"\x00" * 32, 2**64 - 1, 2**63, 1),
        ("complete_session", "ünïcødé ⛓", b"\xff" * 32, 2**256 - 1, 0, 2**256 - 1),
    ]
    for action, sid, h, nonce, deadline, chain_id in cases:
        fields = {"action": action, "session_id": sid, "req_hash": h, "nonce": nonce, "deadline": deadline}
        generic = encode_typed_data(full_message=auth.typed_request(**fields, chain_id=chain_id))
        assert auth.signable_request(**fields, chain_id=chain_id) == generic


def test_remembered_recoveries_still_judge_each_request() -> None:
    req = auth.signed(pb.GetSessionRequest(session_id="7"), KEY, nonce=0, deadline=10**10, chain_id=5)
    for _ in range(3):  # the second and third answers are remembered: still the signer
        assert auth.recover_signer(req.auth, req, chain_id=5) == req.auth.signer  # type: ignore[attr-defined]
    # the same signature over another request (or in another domain) is not the signer's
    other = pb.GetSessionRequest(session_id="8")
    other.auth.CopyFrom(req.auth)  # type: ignore[attr-defined]
    assert auth.recover_signer(other.auth, other, chain_id=5) != req.auth.signer  # type: ignore[attr-defined]
    assert auth.recover_signer(req.auth, req, chain_id=6) != req.auth.signer  # type: ignore[attr-defined]
    # a junk signature raises every time (failures are not remembered as answers)
    req.auth.signature = b"\x00" * 65  # type: ignore[attr-defined]
    for _ in range(2):
        with pytest.raises(ValueError, match="cannot be recovered"):
            auth.recover_signer(req.auth, req, chain_id=5)  # type: ignore[attr-defined]


def test_a_junk_signature_is_a_value_error_and_a_good_one_recovers_its_signer() -> None:
    from eth_account import Account

    signed = auth.signed(_request(), KEY, nonce=1, deadline=2, chain_id=31337)
    assert auth.recover_signer(signed.auth, signed, chain_id=31337) == Account.from_key(KEY).address  # type: ignore[attr-defined]
    junk = auth.sign_request(KEY, _request(), nonce=1, deadline=2, chain_id=31337)
    junk.signature = b"\x01" * 10
    try:
        auth.recover_signer(junk, _request(), chain_id=31337)
    except ValueError as exc:
        assert str(exc).startswith("signature cannot be recovered")
    else:
        raise AssertionError("a 10-byte signature recovered")


def test_addresses_compare_in_any_spelling_and_junk_matches_nothing() -> None:
    address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert auth.same_address(address, address.lower())
    assert not auth.same_address(address, "0x" + "00" * 20)
    assert not auth.same_address(address, "not an address")


def test_certificate_names_map_to_identity_kinds() -> None:
    assert auth.identity_kind("executor-3") == auth.EXECUTOR
    assert auth.identity_kind("recovery_oracle") == auth.ORACLE
    assert auth.identity_kind("operator") == auth.OPERATOR
    assert auth.identity_kind("cli") == auth.CLIENT
    assert auth.is_service_identity("session") and auth.is_service_identity("operator")
    assert not auth.is_service_identity("cli") and not auth.is_service_identity(None)
    assert not auth.is_service_identity("")


def test_the_rpc_allowlist_names_who_may_call() -> None:
    claim = "/agentgpt.session.v1.SessionService/ClaimLease"
    assert auth.caller_refusal(claim, "executor-1") is None
    assert (
        auth.caller_refusal("/agentgpt.session.v1.SessionService/CreateSession", "cli") is None
    )  # not listed
    refusal = auth.caller_refusal(claim, "cli")
    assert refusal == "ClaimLease may not be called by 'cli': it is reserved to executor-N"
    restore = auth.caller_refusal("/agentgpt.session.v1.SessionService/RestoreSession", "indexer")
    assert restore is not None and restore.endswith("reserved to operator, recovery-oracle")


def test_read_metadata_carries_a_read_signature() -> None:
    ((name, value),) = auth.read_metadata(KEY, pb.GetSessionRequest(session_id="7"), deadline=9, chain_id=1)
    from agentgpt.common.v1 import common_pb2

    sig = common_pb2.OwnerSignature.FromString(value)
    assert name == auth.READ_AUTH_HEADER and sig.nonce == 0 and sig.deadline == 9


def test_the_direct_encoding_refuses_what_the_struct_cannot_hold() -> None:
    good = {"action": "get_session", "session_id": "7", "nonce": 0, "deadline": 1, "chain_id": 1}
    with pytest.raises(ValueError, match="requestHash must be 32 bytes, got 31"):
        auth.signable_request(**good, req_hash=b"\x00" * 31)  # type: ignore[arg-type]
    for field in ("nonce", "deadline", "chain_id"):
        for bad in (-1, 2**256):
            with pytest.raises(ValueError, match="must be uint256 values"):
                auth.signable_request(**{**good, field: bad}, req_hash=b"\x00" * 32)  # type: ignore[arg-type]
