"""The session service's side of attested executors (docs/attestation.md), against the real service:
ActivateSession verifies the named executor's DCAP quote (the real SGX sample, at its pinned time)
against the spec's attestation block, and ClaimLease leases a session requiring attestation only to its
executor of record."""

from __future__ import annotations

import grpc
import pytest
import pytest_asyncio

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.session.v1 import session_pb2 as pb
from tests.unit.test_attestation import DCAP, SAMPLE_TIME, SGX_MRENCLAVE

from .conftest import MakeService
from .harness import SERVICE_MD, SPEC_YAML, Harness, Owner

ATTESTED = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
UNATTESTED = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
QUOTE = (DCAP / "sgx_quote").read_bytes()
COLLATERAL = (DCAP / "sgx_quote_collateral.json").read_text()
SPEC = SPEC_YAML + (
    f"attestation:\n  measurements: ['0x{SGX_MRENCLAVE}']\n  tcb: [ConfigurationAndSWHardeningNeeded]\n"
)


@pytest_asyncio.fixture
async def service(make_service: MakeService) -> Harness:
    # the sample's report data binds none of this project's keys (binding: test_binding_required below)
    return await make_service(attestation_time=SAMPLE_TIME, attestation_require_binding=False)


async def refused(call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call  # type: ignore[misc]
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.value.details()
    return str(exc.value.details())


async def test_activation_with_an_unattested_executor_is_refused(service: Harness, owner: Owner) -> None:
    s = await service.create(owner, spec_yaml=SPEC)
    why = await refused(service.activate(owner, s, UNATTESTED))
    assert UNATTESTED in why and "requires an attested executor" in why and "not attested" in why
    assert (await service.get(owner, s.session_id)).state == cpb.SESSION_STATE_DRAFT
    assert "activate" not in service.control.chain.calls  # type: ignore[attr-defined]


async def test_activation_with_a_quote_outside_the_spec_is_refused(service: Harness, owner: Owner) -> None:
    strict = await service.create(owner, spec_yaml=SPEC.replace(SGX_MRENCLAVE, "ab" * 32))
    why = await refused(service.activate(owner, strict, ATTESTED, quote=QUOTE, collateral=COLLATERAL))
    assert "is not one of the 1 allowed" in why
    up_to_date = await service.create(
        owner, spec_yaml=SPEC.replace("ConfigurationAndSWHardeningNeeded", "UpToDate")
    )
    why = await refused(service.activate(owner, up_to_date, ATTESTED, quote=QUOTE, collateral=COLLATERAL))
    assert "TCB status ConfigurationAndSWHardeningNeeded is not accepted" in why
    tampered = bytearray(QUOTE)
    tampered[48 + 64] ^= 1
    s = await service.create(owner, spec_yaml=SPEC)
    why = await refused(service.activate(owner, s, ATTESTED, quote=bytes(tampered), collateral=COLLATERAL))
    assert "refused by DCAP verification" in why
    assert (await service.get(owner, s.session_id)).state == cpb.SESSION_STATE_DRAFT


async def test_activation_with_a_satisfying_executor_is_accepted(service: Harness, owner: Owner) -> None:
    s = await service.create(owner, spec_yaml=SPEC)
    resp = await service.activate(owner, s, ATTESTED, quote=QUOTE, collateral=COLLATERAL)
    assert resp.session.state == cpb.SESSION_STATE_ACTIVE and resp.session.executor == ATTESTED
    # a session without the requirement needs no quote
    plain = await service.create(owner)
    assert (await service.activate(owner, plain, UNATTESTED)).session.state == cpb.SESSION_STATE_ACTIVE


async def test_binding_required_by_default(make_service: MakeService, owner: Owner) -> None:
    service = await make_service(attestation_time=SAMPLE_TIME)
    s = await service.create(owner, spec_yaml=SPEC)
    why = await refused(service.activate(owner, s, ATTESTED, quote=QUOTE, collateral=COLLATERAL))
    assert "does not bind its address" in why


async def test_claims_of_an_attested_session(service: Harness, owner: Owner) -> None:
    s = await service.create(owner, spec_yaml=SPEC)
    await service.activate(owner, s, ATTESTED, quote=QUOTE, collateral=COLLATERAL)
    # an executor whose attestation is unknown (no address) is refused the session by name ...
    why = await refused(
        service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-u", session_id=s.session_id), metadata=SERVICE_MD
        )
    )
    assert "requires an attested executor" in why and ATTESTED in why and "ex-u" in why
    # ... another executor (not the attested executor of record) too ...
    why = await refused(
        service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-u", session_id=s.session_id, executor_address=UNATTESTED),
            metadata=SERVICE_MD,
        )
    )
    assert f"assigned to executor {ATTESTED}" in why
    # ... and never gets it as "the next free session", while a session without the requirement it does
    none = await service.stub.ClaimLease(pb.ClaimLeaseRequest(executor_id="ex-u"), metadata=SERVICE_MD)
    assert not none.HasField("lease")
    plain = await service.create(owner)
    await service.activate(owner, plain, UNATTESTED)
    got = await service.stub.ClaimLease(pb.ClaimLeaseRequest(executor_id="ex-u"), metadata=SERVICE_MD)
    assert got.lease.session_id == plain.session_id
    # the attested executor of record claims it
    mine = await service.stub.ClaimLease(
        pb.ClaimLeaseRequest(executor_id="ex-a", session_id=s.session_id, executor_address=ATTESTED),
        metadata=SERVICE_MD,
    )
    assert mine.lease.session_id == s.session_id and mine.lease.executor_id == "ex-a"
