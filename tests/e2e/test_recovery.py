"""Kill an executor and lose nothing: the recovery protocol end to end, every service a real process, the
two anvil chains and the IPFS node real, checked on the chain.

The stack runs two executors with a 2 s lease. Each case finds the executor holding a session, hurts it
(SIGKILL, SIGSTOP past its lease then SIGCONT, SIGTERM), and checks that the session goes on on the other
executor with no operator action: every task SUCCEEDED exactly once (one task_succeeded event per seq),
the budget charged once per task on chain (the BudgetCharged ranges tile the task sequence), the home
chain assigns the session to the new executor at a higher epoch, and ListRecoveries shows the recovery
and its steps. The hurt executor is brought back afterwards, so each case starts with two.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentgpt.recovery.v1 import recovery_pb2 as rc
from apps.localnet.stack import LocalStack
from tests.support import eventually
from tests.support.recovery import (
    all_succeeded,
    bring_back,
    check_exactly_once,
    events_of,
    factory,
    holder,
    new_session,
    recoveries,
    submit,
    two_executor_stack,
)
from tests.support.stack import cli

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.chain,
    pytest.mark.ipfs,
    pytest.mark.chaos,
    pytest.mark.timeout(600),
]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with two_executor_stack(tmp_path_factory.mktemp("recovery")) as s:
        yield s


async def test_sigkill_the_executor_mid_session_resumes_on_the_other(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 4)
    victim = await holder(stack, sid)
    address_before = factory(stack).functions.getSession(int(sid)).call()[5]
    stack.services[victim].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    killed_at = time.monotonic()
    await submit(stack, sid, 6, start=4)  # acknowledged while the executor is dead: none may be lost
    await check_exactly_once(stack, sid, 10)
    took = time.monotonic() - killed_at
    survivor = await holder(stack, sid)
    assert survivor != victim
    onchain = factory(stack).functions.getSession(int(sid)).call()
    assert onchain[5] != address_before and onchain[7] >= 2  # reassigned on chain, epoch bumped
    (recovery, *_) = await recoveries(stack, sid)
    assert recovery.status == rc.RECOVERY_STATUS_RESUMED and not recovery.handoff
    assert recovery.failed_executor == address_before and recovery.new_executor == onchain[5]
    assert [s.name for s in recovery.steps] == [
        "pause",
        "choose",
        "reassign",
        "verify",
        "resume",
        "rehydrate",
    ]
    types = [e.type for e in await events_of(stack, sid)]
    assert {"paused", "executor_reassigned", "resumed"} <= set(types)
    # anyone can recheck it from the chains and IPFS alone, across the change of executor

    async def anchored_through_the_end() -> None:
        assert factory(stack).functions.latestCheckpoint(int(sid)).call()[0] == 10

    await eventually(anchored_through_the_end, timeout=60)
    checked = await cli(stack, "verify", sid, "--json")
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
    report = json.loads(checked.stdout)
    assert report["verified"] and report["checkpoint"]["seq"] == 10 and not report["rejected"]
    print(f"SIGKILL -> all 10 tasks done on {survivor} in {took:.1f} s")
    await bring_back(stack, victim)


async def test_sigstop_past_the_lease_then_sigcont_is_fenced(stack: LocalStack, tmp_path: Path) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 3)
    await eventually(lambda: all_succeeded(stack, sid, 3), timeout=60)
    victim = await holder(stack, sid)
    proc = stack.services[victim]
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:

        async def moved() -> None:
            (r, *_) = await recoveries(stack, sid)
            assert r.status == rc.RECOVERY_STATUS_RESUMED

        await eventually(moved, timeout=60)
        await submit(stack, sid, 3, start=3)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    # the woken executor's lease and chain assignment are gone: it stops instead of writing
    await check_exactly_once(stack, sid, 6)

    async def held_elsewhere() -> None:  # (the woken executor lists it until its next renewal is refused)
        assert await holder(stack, sid) != victim

    await eventually(held_elsewhere, timeout=30)

    def fenced_in_log() -> None:
        text = proc.log_path.read_text(errors="replace")
        assert f"session {sid}" in text and ("fenced" in text or "stale" in text), text[-2000:]

    await eventually(fenced_in_log, timeout=30)


async def test_sigterm_hands_the_session_off_without_a_pause(stack: LocalStack, tmp_path: Path) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 2)
    await eventually(lambda: all_succeeded(stack, sid, 2), timeout=60)
    victim = await holder(stack, sid)
    paused_before = [e.type for e in await events_of(stack, sid)].count("paused")
    stack.services[victim].terminate()
    await submit(stack, sid, 3, start=2)
    await check_exactly_once(stack, sid, 5)
    (recovery, *_) = await recoveries(stack, sid)
    assert recovery.status == rc.RECOVERY_STATUS_RESUMED and recovery.handoff
    assert [s.name for s in recovery.steps] == ["choose", "reassign", "verify", "rehydrate"]
    assert [e.type for e in await events_of(stack, sid)].count("paused") == paused_before  # never paused
    assert stack.services[victim].wait(30) == 0  # it exited cleanly after handing off
    await bring_back(stack, victim)
