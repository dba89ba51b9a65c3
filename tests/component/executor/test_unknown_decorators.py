"""A session naming a decorator the executor cannot provide: its tasks are refused with the reason, never
run unchecked (and the runner does not crash on it); a swap_context to supported decorators mends it."""

from __future__ import annotations

from pathlib import Path

from agentgpt.session.v1 import session_pb2 as ss
from tests.component.executor.fake_session import FakeSessionServer
from tests.component.executor.helpers import running_engine
from tests.support import eventually


async def test_unknown_decorator_refuses_tasks_instead_of_skipping(
    fake_session: FakeSessionServer, tmp_path: Path
) -> None:
    svc = fake_session.service
    # the session service refuses these names; a spec that got past it (an older service, a plug-in
    # missing on this executor) must still not run unchecked
    spec = ss.SessionSpec(type="t", decorators=["ofac_filter", "ofac_fliter", "kyc_tier9"])
    svc.add_session("201", spec=spec)
    svc.submit(
        "201",
        [
            ("count", {"i": 1}),
            ("swap_context", {"decorators": ["ofac_filter"], "reason": "drop the unknown ones"}),
            ("count", {"i": 2}),
        ],
    )
    async with running_engine(fake_session.address, tmp_path):
        await eventually(lambda: len(svc.done("201")) == 3, what="3 tasks done")
    t = svc.sessions["201"].tasks
    assert t[1].status == ss.TASK_STATUS_REFUSED
    assert "unknown decorator 'ofac_fliter' (did you mean 'ofac_filter'?)" in t[1].error
    assert [t[2].status, t[3].status] == [ss.TASK_STATUS_SUCCEEDED, ss.TASK_STATUS_SUCCEEDED]
