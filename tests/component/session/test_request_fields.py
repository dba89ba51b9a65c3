"""The owner's read signature and chain signature travel as request fields; the deprecated metadata
headers still work for one release; malformed values are refused naming the field."""

from __future__ import annotations

import grpc

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.session.v1 import session_pb2 as pb

from .harness import SPEC_YAML, Harness, Owner, new_key
from .test_lifecycle import EXECUTOR, expect_status


async def test_chain_signature_field_is_relayed_and_checked(service: Harness, owner: Owner) -> None:
    relayed: list[bytes] = []

    def signer(action: str, session: pb.Session | None, req: object) -> bytes:
        sig = bytes([len(relayed) + 7]) * 65
        relayed.append(sig)
        return sig

    owner.chain_signer = signer
    s = await service.create(owner)  # the field alone (no metadata) carries the chain signature
    assert s.state == common.SESSION_STATE_DRAFT and relayed == [b"\x07" * 65]
    # missing on an on-chain action: refused before anything is sent, naming the field
    req = owner.sign(
        pb.ActivateSessionRequest(idempotency_key=new_key(), session_id=s.session_id, executor=EXECUTOR)
    )
    await expect_status(
        service.stub.ActivateSession(req), grpc.StatusCode.INVALID_ARGUMENT, "chain_signature"
    )
    # the wrong length is a validation error of the field
    bad = owner.sign(pb.CompleteSessionRequest(idempotency_key=new_key(), session_id=s.session_id))
    bad.chain_signature = b"\x01" * 64
    details = await expect_status(
        service.stub.CompleteSession(bad), grpc.StatusCode.INVALID_ARGUMENT, "chain_signature"
    )
    assert "64 bytes" in details
    assert service.control.chain.calls == ["create"]  # type: ignore[attr-defined]


async def test_read_auth_field_authenticates_reads(service: Harness, owner: Owner, stranger: Owner) -> None:
    s = await service.create(owner)
    got = await service.stub.GetSession(owner.read(pb.GetSessionRequest(session_id=s.session_id)))
    assert got.session.owner == owner.address
    insp = await service.stub.InspectSession(
        owner.read(pb.InspectSessionRequest(session_id=s.session_id, detail="full"))
    )
    assert insp.recent_events[0].type == "created"
    await expect_status(
        service.stub.GetSession(stranger.read(pb.GetSessionRequest(session_id=s.session_id))),
        grpc.StatusCode.PERMISSION_DENIED,
        "not the owner",
    )
    # a signature over another session does not authorise this one
    other = owner.read(pb.GetSessionRequest(session_id="999"))
    other.session_id = s.session_id
    await expect_status(service.stub.GetSession(other), grpc.StatusCode.PERMISSION_DENIED, "signed by")
    # malformed read auth is a validation error naming the sub-field
    broken = owner.read(pb.WatchSessionRequest(session_id=s.session_id, history_only=True))
    broken.auth.signature = b"\x01" * 10
    call = service.stub.WatchSession(broken)
    await expect_status(call.read(), grpc.StatusCode.INVALID_ARGUMENT, "auth.signature")


async def test_deprecated_metadata_headers_still_accepted(service: Harness, owner: Owner) -> None:
    """Older clients (apps/demo) send both signatures as metadata; one more release accepts them."""
    create = owner.sign(
        pb.CreateSessionRequest(idempotency_key=new_key(), spec_yaml=SPEC_YAML, initial_budget="10")
    )
    s = (await service.stub.CreateSession(create, metadata=owner.chain_md("create", None, create))).session
    assert s.state == common.SESSION_STATE_DRAFT
    act = owner.sign(
        pb.ActivateSessionRequest(idempotency_key=new_key(), session_id=s.session_id, executor=EXECUTOR)
    )
    done = await service.stub.ActivateSession(act, metadata=owner.chain_md("activate", s, act))
    assert done.session.state == common.SESSION_STATE_ACTIVE
    read = pb.GetSessionRequest(session_id=s.session_id)
    got = await service.stub.GetSession(read, metadata=owner.read_md(read))
    assert got.session.state == common.SESSION_STATE_ACTIVE
    listing = pb.ListSessionsRequest(owner=owner.address)
    listed = await service.stub.ListSessions(listing, metadata=owner.read_md(listing))
    assert [x.session_id for x in listed.sessions] == [s.session_id]
    assert service.control.chain.calls == ["create", "activate"]  # type: ignore[attr-defined]
