"""Recovery of a session whose spec requires attested executors, against a real session service: the
oracle's pool verifies each executor's real DCAP quote (the SGX sample, at its pinned time) and the
recovery chooses only an executor whose recorded attestation satisfies the spec; with none, the session
stays paused and the choose step says why."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest_asyncio

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.executor.v1 import executor_pb2 as ex
from agentgpt.recovery.v1 import recovery_pb2 as pb
from services.recovery_oracle.app import attestation_verifier
from services.recovery_oracle.config import RecoveryConfig
from services.recovery_oracle.executors import ExecutorPool, Member
from services.recovery_oracle.store import RecoveryStore
from tests.component.recovery.test_protocol import OLD, FakeExecutor, finished, recoverer
from tests.component.session.conftest import MakeService
from tests.component.session.harness import SPEC_YAML, Harness, Owner
from tests.unit.test_attestation import DCAP, SAMPLE_TIME, SGX_MRENCLAVE

UNATTESTED = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
ATTESTED = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
QUOTE = (DCAP / "sgx_quote").read_bytes()
COLLATERAL = (DCAP / "sgx_quote_collateral.json").read_text()
TDX_QUOTE = (DCAP / "tdx_quote").read_bytes()
TDX_COLLATERAL = (DCAP / "tdx_quote_collateral.json").read_text()
TDX_MRTD = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"


@pytest_asyncio.fixture
async def service(make_service: MakeService) -> Harness:
    """A session service verifying activations' quotes at the sample's pinned time (the sample's report
    data binds none of this project's keys)."""
    return await make_service(attestation_time=SAMPLE_TIME, attestation_require_binding=False)


def spec(measurement: str, tcb: str = "ConfigurationAndSWHardeningNeeded") -> str:
    return SPEC_YAML + f"attestation:\n  require: true\n  measurements: ['{measurement}']\n  tcb: [{tcb}]\n"


@dataclasses.dataclass
class StatusExecutor(FakeExecutor):
    status: ex.GetExecutorStatusResponse = dataclasses.field(default_factory=ex.GetExecutorStatusResponse)

    def __post_init__(self) -> None:
        super().__init__()

    async def get_status(self, **_: Any) -> ex.GetExecutorStatusResponse:
        return self.status


def executor(address: str, capacity: int, quote: bytes = b"") -> StatusExecutor:
    status = ex.GetExecutorStatusResponse(
        executor_id=f"executor-{address[2:6]}",
        address=address,
        capacity=capacity,
        attestation_quote=quote,
        attestation_collateral_json=COLLATERAL if quote else "",
    )
    return StatusExecutor(status=status)


async def pool_of(*executors: StatusExecutor) -> ExecutorPool:
    # The sample quote's report data binds none of this project's keys: binding is tested in the unit tests.
    config = RecoveryConfig(attestation_time=SAMPLE_TIME, attestation_require_binding=False)
    pool = ExecutorPool((), verifier=attestation_verifier(config))
    pool.members = [Member(f"127.0.0.1:{i + 1}", e) for i, e in enumerate(executors)]  # type: ignore[arg-type]
    await pool.probe_all()
    return pool


async def test_recovery_picks_the_attested_executor_over_a_freer_unattested_one(
    service: Harness, owner: Owner, tmp_path: Path
) -> None:
    s = await service.create(owner, spec_yaml=spec("0x" + SGX_MRENCLAVE))
    await service.activate(owner, s, OLD, quote=QUOTE, collateral=COLLATERAL)
    unattested = executor(UNATTESTED, capacity=16)
    attested = executor(ATTESTED, capacity=2, quote=QUOTE)
    pool = await pool_of(unattested, attested)
    recorded = pool.members[1].attestation
    assert recorded is not None and recorded.measurement == SGX_MRENCLAVE
    assert recorded.tcb_status == "ConfigurationAndSWHardeningNeeded" and recorded.verified_at == SAMPLE_TIME
    assert pool.members[0].attestation is None and "not attested" in pool.members[0].attestation_error
    # without a requirement the freer executor is the choice; with the spec's, only the attested one
    chosen = await pool.choose(set())
    assert chosen is not None and chosen.address == UNATTESTED
    store = await RecoveryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    r, client = await recoverer(service, store, pool, "oracle-a")
    try:
        await r.start(s.session_id, "executor stopped answering")
        done = await finished(store, s.session_id)
        assert done.status == pb.RECOVERY_STATUS_RESUMED, done
        assert done.new_executor == ATTESTED
        assert attested.assigned == [s.session_id] and unattested.assigned == []
        assert (await client.get_session(s.session_id)).executor == ATTESTED
    finally:
        await r.stop()
        await client.close()
        await store.close()


async def test_no_eligible_executor_keeps_the_session_paused_with_the_reason(
    service: Harness, owner: Owner, tmp_path: Path
) -> None:
    # only the TDX sample's MRTD: the failed executor was activated with it (the session service verifies
    # the activation's quote too); no live executor has it
    s = await service.create(owner, spec_yaml=spec(TDX_MRTD, "UpToDate, ConfigurationAndSWHardeningNeeded"))
    await service.activate(owner, s, OLD, quote=TDX_QUOTE, collateral=TDX_COLLATERAL)
    tampered = bytearray(QUOTE)
    tampered[48 + 64] ^= 1
    unattested = executor(UNATTESTED, capacity=16)
    wrong = executor(ATTESTED, capacity=4, quote=QUOTE)
    broken = executor("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc", capacity=4, quote=bytes(tampered))
    pool = await pool_of(unattested, wrong, broken)
    assert pool.members[2].attestation is None
    assert "refused by DCAP verification" in pool.members[2].attestation_error
    store = await RecoveryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    r, client = await recoverer(service, store, pool, "oracle-a")
    try:
        await r.start(s.session_id, "executor stopped answering")
        step = None
        for _ in range(200):
            rows, _ = await store.list(session_id=s.session_id)
            steps = {st.name: st for st in rows[0].steps}
            if "choose" in steps and steps["choose"].attempts >= 3:
                step = steps["choose"]
                break
            await asyncio.sleep(0.05)
        assert step is not None and not step.HasField("finished_at"), rows
        assert "attested as the session's spec requires" in step.detail
        assert "is not one of the 1 allowed" in step.detail  # the sample's MRENCLAVE
        assert "not attested" in step.detail and "refused by DCAP verification" in step.detail
        session = await client.get_session(s.session_id)
        assert session.state == cpb.SESSION_STATE_PAUSED and session.executor == OLD
        assert unattested.assigned == wrong.assigned == broken.assigned == []
        assert "reassign" not in service.control.chain.calls  # type: ignore[attr-defined]
    finally:
        await r.stop()
        await client.close()
        await store.close()
