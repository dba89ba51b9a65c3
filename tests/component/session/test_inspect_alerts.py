"""InspectSession names what needs attention: failed, refused and retrying tasks, a lapsed lease, budget
use; each alert is counted in alerts_critical / alerts_warning and listed with its reason."""

from __future__ import annotations

from agentgpt.session.v1 import session_pb2 as pb

from .harness import SERVICE_MD, Harness, Owner, new_key

EXECUTOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


async def test_inspect_lists_the_alerts_it_counts(service: Harness, owner: Owner) -> None:
    s = await service.create(owner, budget="100")
    await service.activate(owner, s, EXECUTOR)
    kinds = [pb.TaskInput(kind="publish_report") for _ in range(4)]
    submit = owner.sign(
        pb.SubmitTasksRequest(idempotency_key=new_key(), session_id=s.session_id, tasks=kinds)
    )
    await service.stub.SubmitTasks(submit)
    lease = (
        await service.stub.ClaimLease(
            pb.ClaimLeaseRequest(executor_id="ex-a", ttl_seconds=30), metadata=SERVICE_MD
        )
    ).lease

    async def report(task: pb.Task) -> None:
        req = pb.ReportTaskRequest(session_id=s.session_id, executor_id="ex-a", epoch=lease.epoch, task=task)
        await service.stub.ReportTask(req, metadata=SERVICE_MD)

    quiet = await service.stub.InspectSession(
        pb.InspectSessionRequest(session_id=s.session_id), metadata=SERVICE_MD
    )
    assert not quiet.alerts and (quiet.alerts_critical, quiet.alerts_warning) == (0, 0)

    await report(
        pb.Task(seq=1, status=pb.TASK_STATUS_FAILED, error="executor: UnicodeEncodeError: ...", cost="10")
    )
    await report(pb.Task(seq=2, status=pb.TASK_STATUS_REFUSED, error="ofac_filter: sanctioned address"))
    await report(pb.Task(seq=3, status=pb.TASK_STATUS_SUCCEEDED, result_json="{}", cost="85"))
    await report(
        pb.Task(
            seq=4, status=pb.TASK_STATUS_RUNNING, error="retrying: attempt 2 failed (chain_unavailable): down"
        )
    )
    insp = await service.stub.InspectSession(
        pb.InspectSessionRequest(session_id=s.session_id), metadata=SERVICE_MD
    )
    assert [(a.severity, a.code, a.task_seq) for a in insp.alerts] == [
        ("critical", "task_failed", 1),
        ("warning", "budget_low", 0),
        ("warning", "task_refused", 2),
        ("warning", "task_retrying", 4),
    ]
    assert "UnicodeEncodeError" in insp.alerts[0].message and "spent 95 of 100" in insp.alerts[1].message
    assert (insp.alerts_critical, insp.alerts_warning) == (1, 3)
