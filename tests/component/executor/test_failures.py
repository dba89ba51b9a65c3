"""How the engine meets failures: a task that fails the same way every time is recorded FAILED once and
the session goes on; a dependency that is down is retried with capped backoff and never re-runs or
re-charges committed work; a runner that cannot go on is counted and does not spin."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc

from agentgpt.errors import RpcError
from agentgpt.session.v1 import session_pb2 as ss
from services.executor.app import ExecutorParts
from services.executor.ports import SessionPort
from services.executor.retry import backoff, failure_kind, printable
from tests.component.executor.fake_session import FakeSessionServer
from tests.component.executor.helpers import poison_outputs, running_engine
from tests.support import eventually


def sample(p: ExecutorParts, name: str, **labels: str) -> float:
    return float(p.engine.deps.metrics.registry.get_sample_value(name, labels) or 0.0)


def test_failures_are_told_apart() -> None:
    unavailable = RpcError(
        "agentgpt.session.v1.SessionService", "ReportTask", grpc.StatusCode.UNAVAILABLE, ""
    )
    refused = RpcError(
        "agentgpt.session.v1.SessionService", "ReportTask", grpc.StatusCode.INVALID_ARGUMENT, ""
    )
    assert failure_kind(unavailable) == "service_unavailable"
    assert failure_kind(ConnectionRefusedError()) == "timeout"
    assert failure_kind(TimeoutError()) == "timeout"
    for deterministic in (
        refused,
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "x"),
        KeyError("k"),
        ValueError(),
    ):
        assert failure_kind(deterministic) is None
    assert [backoff(n, 0.5, 30.0) for n in (1, 2, 3, 7, 8, 100)] == [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]
    assert printable("bad \ud800 char").encode() == b"bad \\ud800 char"


async def test_a_poison_task_is_failed_once_and_later_tasks_run(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    svc.add_session("301", spec=ss.SessionSpec(type="t"))
    svc.submit("301", [("count", {"poison": True}), ("count", {"x": "fine"})])
    async with running_engine(fake_session.address, tmp_path, prepare=poison_outputs) as p:
        await eventually(lambda: len(svc.done("301")) == 2, what="both tasks done")
        fs = svc.sessions["301"]
        assert fs.tasks[1].status == ss.TASK_STATUS_FAILED and "UnicodeEncodeError" in fs.tasks[1].error
        assert fs.tasks[1].error.encode("utf-8")  # the reason itself is valid text
        assert fs.tasks[2].status == ss.TASK_STATUS_SUCCEEDED
        assert [s for (_, _, seq, s) in fs.reports if seq == 1].count(ss.TASK_STATUS_FAILED) == 1
        # a task that ran pays its fee once, the failed one included
        assert int(fs.session.budget_spent) == 2 * 10**15
        assert sample(p, "agentgpt_executor_runner_failures_total", stage="running") == 0
        assert fs.session.lease_epoch == 1  # never released into a claim-retry loop


async def test_args_the_session_service_refuses_are_refused_by_the_executor_too(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    # A record from before the session service checked args (or written around it): refused before
    # anything runs, nothing charged, and the session goes on.
    svc = fake_session.service
    svc.add_session("306", spec=ss.SessionSpec(type="t"))
    svc.submit("306", [("count", {"title": "\ud800"}), ("count", {}), ("count", {})])
    svc.sessions["306"].tasks[2].input.args_json = '{"a": NaN}'
    async with running_engine(fake_session.address, tmp_path) as p:
        await eventually(lambda: len(svc.done("306")) == 3, what="all tasks done")
        fs = svc.sessions["306"]
        assert [fs.tasks[s].status for s in (1, 2, 3)] == [
            ss.TASK_STATUS_REFUSED,
            ss.TASK_STATUS_REFUSED,
            ss.TASK_STATUS_SUCCEEDED,
        ]
        assert "surrogate" in fs.tasks[1].error and "NaN" in fs.tasks[2].error
        assert int(fs.session.budget_spent) == 10**15  # only the task that ran
        assert sample(p, "agentgpt_executor_runner_failures_total", stage="running") == 0


class FlakyReports:
    """A session port whose ReportTask is UNAVAILABLE for the first `failures` final reports."""

    def __init__(self, inner: SessionPort, failures: int, *, after_commit: bool = False) -> None:
        self.inner = inner
        self.failures = failures
        self.after_commit = after_commit  # fail after the service committed (the answer is lost)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def report(self, lease: ss.Lease, task: ss.Task) -> None:
        final = task.status in (ss.TASK_STATUS_SUCCEEDED, ss.TASK_STATUS_FAILED)
        if final and self.failures > 0:
            self.failures -= 1
            if self.after_commit:
                await self.inner.report(lease, task)
            raise RpcError(
                "agentgpt.session.v1.SessionService", "ReportTask", grpc.StatusCode.UNAVAILABLE, "down"
            )
        await self.inner.report(lease, task)


async def test_a_dependency_outage_is_retried_with_backoff_not_failed(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    svc.add_session("302", spec=ss.SessionSpec(type="t"))
    svc.submit("302", [("count", {}), ("count", {})])
    async with running_engine(
        fake_session.address,
        tmp_path,
        wrap=lambda port: FlakyReports(port, 3),
        retry_base=0.05,
        retry_max=0.2,
    ) as p:
        await eventually(lambda: len(svc.done("302")) == 2, what="both tasks done")
        fs = svc.sessions["302"]
        assert [fs.tasks[s].status for s in (1, 2)] == [ss.TASK_STATUS_SUCCEEDED] * 2
        assert sample(p, "agentgpt_executor_task_retries_total", reason="service_unavailable") == 3
        assert int(fs.session.budget_spent) == 2 * 10**15  # charged once each
        # each failed attempt was reported (RUNNING, "retrying: ...") for inspect to show
        assert [s for (_, _, seq, s) in fs.reports if seq == 1].count(ss.TASK_STATUS_RUNNING) == 3


async def test_a_lost_acknowledgement_is_adopted_not_rerun(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    svc.add_session("303", spec=ss.SessionSpec(type="t"))
    svc.submit("303", [("count", {}), ("count", {})])
    async with running_engine(
        fake_session.address,
        tmp_path,
        wrap=lambda port: FlakyReports(port, 1, after_commit=True),
        retry_base=0.05,
    ):
        await eventually(lambda: len(svc.done("303")) == 2, what="both tasks done")
        fs = svc.sessions["303"]
        finals = [(seq, s) for (_, _, seq, s) in fs.reports if s == ss.TASK_STATUS_SUCCEEDED]
        assert finals == [(1, ss.TASK_STATUS_SUCCEEDED), (2, ss.TASK_STATUS_SUCCEEDED)]  # task 1 not rerun
        assert fs.refused_reports == 0
        assert int(fs.session.budget_spent) == 2 * 10**15


async def test_a_dependency_that_stays_down_fails_the_task_after_its_attempts(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    svc.add_session("304", spec=ss.SessionSpec(type="t"))
    svc.submit("304", [("count", {}), ("count", {})])
    async with running_engine(
        fake_session.address,
        tmp_path,
        wrap=lambda port: FlakyReports(port, 3),
        retry_base=0.01,
        retry_max=0.05,
        task_attempts=3,
    ):
        await eventually(lambda: len(svc.done("304")) == 2, what="both tasks done")
        fs = svc.sessions["304"]
        # three attempts failed on the session service; the third gave up and recorded FAILED
        assert fs.tasks[1].status == ss.TASK_STATUS_FAILED and "gave up after 3 attempts" in fs.tasks[1].error
        assert fs.tasks[2].status == ss.TASK_STATUS_SUCCEEDED


async def test_a_runner_that_cannot_start_is_counted_and_does_not_spin(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    # a payment rail this executor does not have: the session cannot be set up, whatever the task
    svc.add_session("305", spec=ss.SessionSpec(type="t", params_json='{"payment_rail": "barter"}'))
    svc.submit("305", [("count", {})])
    async with running_engine(fake_session.address, tmp_path, retry_base=0.1) as p:
        await eventually(
            lambda: sample(p, "agentgpt_executor_runner_failures_total", stage="setup") >= 1, what="counted"
        )
        await asyncio.sleep(1.5)
        # held ~0.8 s after each failure before the lease is let go: a handful of claims, not hundreds
        assert svc.sessions["305"].session.lease_epoch <= 4
        assert svc.sessions["305"].tasks[1].status == ss.TASK_STATUS_QUEUED
        assert svc.sessions["305"].session.budget_spent == "0"
