"""Kill the other processes in turn — the recovery oracle mid-recovery, the session service, the indexer, the
IPFS node — restart each, and check that the system converges with nothing acknowledged lost: every task
submitted SUCCEEDED exactly once and was charged once on chain. The stack is the real one (processes,
two anvil chains, the IPFS node), with two executors and a 2 s lease.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentgpt.clients import SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.recovery.v1 import recovery_pb2 as rc
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.stack import LocalStack
from tests.support import eventually
from tests.support.recovery import (
    LEASE_TTL,
    bring_back,
    check_exactly_once,
    factory,
    holder,
    new_session,
    recoveries,
    submit,
    tasks_of,
    two_executor_stack,
)
from tests.support.stack import session_cli, session_ok

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.chain,
    pytest.mark.ipfs,
    pytest.mark.chaos,
    pytest.mark.timeout(600),
]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with two_executor_stack(tmp_path_factory.mktemp("chaos")) as s:
        yield s


async def restart(stack: LocalStack, name: str) -> None:
    proc = stack.services[name]
    proc.wait(10)
    proc.start()
    await asyncio.to_thread(proc.wait_ready, 60)


def kill(stack: LocalStack, name: str) -> None:
    proc = stack.services[name].proc
    assert proc is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def test_the_oracle_killed_mid_recovery_finishes_it_after_a_restart(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 2)
    victim = await holder(stack, sid)
    other = next(n for n in stack.services if n.startswith("executor-") and n != victim)
    # both executors down: the recovery pauses the session, then waits for an executor to choose
    os.kill(stack.services[other].pid or 0, signal.SIGSTOP)
    try:
        kill(stack, victim)

        async def waiting_to_choose() -> rc.Recovery:
            (r, *_) = await recoveries(stack, sid)
            assert r.status == rc.RECOVERY_STATUS_REASSIGNING and [s.name for s in r.steps][:2] == [
                "pause",
                "choose",
            ]
            return r

        open_one = await eventually(waiting_to_choose, timeout=60)
        kill(stack, "recovery_oracle")  # mid-recovery
    finally:
        os.kill(stack.services[other].pid or 0, signal.SIGCONT)
    await restart(stack, "recovery_oracle")

    async def resumed() -> rc.Recovery:
        (r, *_) = await recoveries(stack, sid)
        assert r.recovery_id == open_one.recovery_id and r.status == rc.RECOVERY_STATUS_RESUMED, r
        return r

    done = await eventually(resumed, timeout=90)
    pauses = [s for s in done.steps if s.name == "pause"]
    assert len(pauses) == 1 and pauses[0].attempts == 1  # the pause done before the crash was not redone
    await submit(stack, sid, 2, start=2)  # (a PAUSED session takes no tasks: submitted once it resumed)
    await check_exactly_once(stack, sid, 4)
    await bring_back(stack, victim)


async def test_the_session_service_killed_and_restarted_loses_nothing_acknowledged(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 3)
    kill(stack, "session")
    await asyncio.sleep(LEASE_TTL)  # leases lapse meanwhile; reports and renewals fail and are retried
    await restart(stack, "session")
    await submit(stack, sid, 3, start=3)
    await check_exactly_once(stack, sid, 6)
    for name in [n for n in stack.services if n.startswith("executor-")]:
        await bring_back(stack, name)  # (none should have died; bring_back is a no-op then)
        assert stack.services[name].alive()


async def test_the_indexer_down_makes_a_recovery_wait_then_complete(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 4)  # checkpoint_interval 3: one checkpoint anchored
    await check_exactly_once(stack, sid, 4)
    kill(stack, "indexer")
    victim = await holder(stack, sid)
    kill(stack, victim)

    async def waiting_to_verify() -> None:
        (r, *_) = await recoveries(stack, sid)
        verify = [s for s in r.steps if s.name == "verify"]
        assert verify and not verify[0].HasField("finished_at") and verify[0].attempts >= 2, r

    await eventually(waiting_to_verify, timeout=60)
    await restart(stack, "indexer")

    async def resumed() -> rc.Recovery:
        (r, *_) = await recoveries(stack, sid)
        assert r.status == rc.RECOVERY_STATUS_RESUMED, r
        return r

    done = await eventually(resumed, timeout=90)
    assert done.HasField("checkpoint") and done.checkpoint.seq >= 3  # the anchored checkpoint verified
    await submit(stack, sid, 2, start=4)
    await check_exactly_once(stack, sid, 6)
    await bring_back(stack, victim)


async def test_the_ipfs_node_killed_and_restarted_loses_no_checkpoint(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 2)
    node = stack.ipfs
    assert node is not None and node.pid is not None
    os.kill(node.pid, signal.SIGKILL)
    await submit(stack, sid, 4, start=2)  # reports and checkpoints go on failing and retrying
    await asyncio.sleep(1.0)
    await asyncio.to_thread(node.stop)
    await asyncio.to_thread(node.start)  # same repo, same port
    await check_exactly_once(stack, sid, 6)

    async def checkpointed_through_the_end() -> None:
        seq, _ = factory(stack).functions.latestCheckpoint(int(sid)).call()
        assert seq == 6

    await eventually(checkpointed_through_the_end, timeout=90)


async def test_the_home_chain_unreachable_for_30_s_makes_the_recovery_wait_then_complete(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 2)
    await check_exactly_once(stack, sid, 2)
    anvil = stack.anvils[0]  # the home chain
    assert anvil.pid is not None
    victim = await holder(stack, sid)
    os.kill(anvil.pid, signal.SIGSTOP)  # its RPC stops answering (connections hang, then time out)
    try:
        kill(stack, victim)

        async def waiting_for_the_chain() -> rc.Recovery:
            (r, *_) = await recoveries(stack, sid)
            assert r.status != rc.RECOVERY_STATUS_RESUMED and r.steps, r
            return r

        await eventually(waiting_for_the_chain, timeout=30)
        await asyncio.sleep(30)
        (r, *_) = await recoveries(stack, sid)
        assert r.status not in (rc.RECOVERY_STATUS_RESUMED, rc.RECOVERY_STATUS_FAILED), r  # still waiting
    finally:
        os.kill(anvil.pid, signal.SIGCONT)

    async def resumed() -> None:
        (r, *_) = await recoveries(stack, sid)
        assert r.status == rc.RECOVERY_STATUS_RESUMED, r

    await eventually(resumed, timeout=120)
    await submit(stack, sid, 2, start=2)
    await check_exactly_once(stack, sid, 4)
    await bring_back(stack, victim)


async def test_sessiondb_deleted_restore_brings_the_session_back_at_its_last_anchor(
    stack: LocalStack, tmp_path: Path
) -> None:
    """Last in this module: it deletes SessionDB under every session of the stack."""
    sid = await new_session(stack, tmp_path)
    await submit(stack, sid, 4)
    await check_exactly_once(stack, sid, 4)
    f = factory(stack)

    async def anchored(seq: int) -> None:
        assert f.functions.latestCheckpoint(int(sid)).call()[0] == seq

    await eventually(lambda: anchored(4), timeout=90)  # the idle checkpoint covers task 4
    kill(stack, "session")
    for path in stack.workdir.glob("sessions.db*"):
        path.unlink()
    await restart(stack, "session")

    async def executors_let_go() -> None:  # the lost sessions' runners have stopped (NOT_FOUND) everywhere
        assert await stack.holder_of(sid) is None

    # Restore once the executors have dropped what SessionDB lost, so the executor of record is free to
    # claim the restored session at once. (Otherwise the oracle may see the restored session unleased and
    # move it to an executor that cannot open its sealed checkpoint: restore brings back no data keys and
    # no owner public key; see the closing note.)
    await eventually(executors_let_go, timeout=60)
    await asyncio.sleep(LEASE_TTL)
    out = await session_ok(stack, "restore", sid)
    assert f"session {sid} restored from chain + IPFS" in out and "at checkpoint 4" in out
    async with SessionClient(stack.services["session"].grpc, identity="e2e") as client:
        s = await client.get_session(sid)
        assert s.state == cpb.SESSION_STATE_ACTIVE and s.latest_checkpoint.seq == 4
        assert s.executor == f.functions.getSession(int(sid)).call()[5]
    # it runs on: the next tasks are 5 and 6, charged once each after the restored watermark
    await submit(stack, sid, 2, start=4)

    async def ran_on() -> None:
        tasks = await tasks_of(stack, sid)
        assert [(t.seq, t.status) for t in tasks] == [
            (5, ss.TASK_STATUS_SUCCEEDED),
            (6, ss.TASK_STATUS_SUCCEEDED),
        ]
        assert f.functions.budgetOf(int(sid)).call()[2] == 6

    await eventually(ran_on, timeout=90)
    await eventually(lambda: anchored(6), timeout=90)  # and its checkpoints chain on from the restored one
    again = await session_cli(stack, "restore", sid)
    assert again.returncode != 0 and "is in SessionDB" in again.stderr
