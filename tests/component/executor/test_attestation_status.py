"""An attested executor as a real gRPC service: it reads its DCAP quote and collateral from the
AGENTGPT_ATTESTATION_*_FILE settings and reports them in GetExecutorStatus; the recovery oracle's pool,
probing it over gRPC, verifies the quote (the real SGX sample, at its pinned time) and records it."""

from __future__ import annotations

from pathlib import Path

from agentgpt.ipfs import EmbeddedStore
from agentgpt.runtime.config import ServerConfig, load
from agentgpt.runtime.server import RunningService
from services.executor.app import build
from services.executor.config import ExecutorConfig
from services.recovery_oracle.app import attestation_verifier
from services.recovery_oracle.config import RecoveryConfig
from services.recovery_oracle.executors import ExecutorPool
from tests.component.executor.fake_session import FakeSessionServer
from tests.component.executor.helpers import KEY
from tests.unit.test_attestation import DCAP, SAMPLE_TIME, SGX_MRENCLAVE


async def test_the_oracle_records_a_real_executors_attestation(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    config = load(
        ExecutorConfig,
        env={
            "AGENTGPT_ATTESTATION_QUOTE_FILE": str(DCAP / "sgx_quote"),
            "AGENTGPT_ATTESTATION_COLLATERAL_FILE": str(DCAP / "sgx_quote_collateral.json"),
        },
        executor_key=KEY,
        claim_sessions=False,
        ipfs_embedded_dir=str(tmp_path),
        session_addr=fake_session.address,
        executor_id="ex-attested",
    )
    service = RunningService(
        await build(config, store=EmbeddedStore(tmp_path)),
        ServerConfig(metrics_port=0, drain_delay=0.0, health_interval=0.2),
    )
    await service.start()
    pinned = RecoveryConfig(attestation_time=SAMPLE_TIME, attestation_require_binding=False)
    pool = ExecutorPool((service.address,), verifier=attestation_verifier(pinned))
    strict = ExecutorPool((service.address,), verifier=attestation_verifier(RecoveryConfig()))
    try:
        await pool.probe_all()
        (m,) = pool.members
        assert m.status is not None and m.status.attestation_quote == (DCAP / "sgx_quote").read_bytes()
        assert m.attestation is not None, m.attestation_error
        assert (m.attestation.kind, m.attestation.measurement) == ("sgx", SGX_MRENCLAVE)
        assert m.attestation.tcb_status == "ConfigurationAndSWHardeningNeeded"
        # at the current time the sample's collateral has expired; and it binds no key of ours
        await strict.probe_all()
        (s,) = strict.members
        assert s.attestation is None and "refused by DCAP verification" in s.attestation_error
        assert "expired" in s.attestation_error.lower()
    finally:
        await pool.close()
        await strict.close()
        await service.stop()
