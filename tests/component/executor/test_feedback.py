"""The engine gives its planner the chain's fee feedback: with the base fee over the spec's ceiling a
non-urgent on-chain task is deferred (reported RUNNING with the reason) and runs once fees come down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentgpt.session.v1 import session_pb2 as ss
from services.executor import runner
from services.executor.app import ExecutorParts
from tests.component.executor.fake_session import FakeSessionServer, FakeSessionService
from tests.component.executor.helpers import running_engine
from tests.support import eventually

GWEI = 10**9


class Fees:
    def __init__(self, base: int) -> None:
        self.base = base
        self.reads: list[str] = []

    async def fee_history(self, chain: str, blocks: int, percentile: float) -> tuple[list[int], list[int]]:
        self.reads.append(chain)
        return [self.base] * (blocks + 1), [GWEI] * blocks


async def test_a_task_waits_for_fees_under_the_ceiling_then_runs(
    fake_session: FakeSessionServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "FEE_FEEDBACK_TTL", 0.0)  # read the fees for every plan
    svc = fake_session.service
    params = {"fee_ceiling_gwei": 20, "fee_retry_after": 0.05}
    svc.add_session("301", spec=ss.SessionSpec(type="t", chains=["home"], params_json=json.dumps(params)))
    svc.submit("301", [("transfer", {"chain": "home", "to": "0x" + "ab" * 20, "value": 1})])
    fees = Fees(50 * GWEI)

    def prepare(p: ExecutorParts) -> None:
        p.engine.deps.fee_source = fees

    async with running_engine(fake_session.address, tmp_path, prepare=prepare):

        def deferred() -> bool:
            task = svc.sessions["301"].tasks.get(1)
            return task is not None and "over the fee ceiling of 20.000 gwei" in task.error

        await eventually(deferred, what="the transfer deferred for fees")
        assert task_status(svc) == ss.TASK_STATUS_RUNNING and fees.reads[0] == "home"
        fees.base = 10 * GWEI
        await eventually(lambda: task_status(svc) != ss.TASK_STATUS_RUNNING, what="the transfer planned")
    assert "fee ceiling" not in svc.sessions["301"].tasks[1].error  # it ran (on no chain: its own outcome)


def task_status(svc: FakeSessionService) -> int:
    return int(svc.sessions["301"].tasks[1].status)
