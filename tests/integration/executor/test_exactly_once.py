"""Exactly-once under bad data and crashes, checked on the chain: real anvil chains with the contracts, a
real IPFS node, the engine over real gRPC to the stand-in session API (which takes any record as it is
given: here, records the real service's validation would refuse today, as older ones in SessionDB may be).

What the chain must show, read from its BudgetCharged events: every charge covers the tasks after the
previous one up to its `throughSeq` (the ranges tile the task sequence, none twice), the sum charged equals
the task costs SessionDB recorded, and nothing more is charged however long the executor runs on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from agentgpt.session.v1 import session_pb2 as ss
from services.executor.app import ExecutorParts
from tests.component.executor.fake_session import FakeSessionServer
from tests.component.executor.helpers import poison_outputs
from tests.contracts.chain import reaffirm
from tests.integration.executor.conftest import EXECUTOR_KEY, TASK_FEE
from tests.integration.executor.test_onchain_engine import spec
from tests.integration.executor.two_chains import TwoChains
from tests.support import eventually

pytestmark = [pytest.mark.chain, pytest.mark.ipfs]

RECIPIENT = Web3.to_checksum_address("0x" + "7f" * 20)


def charges(chains: TwoChains, sid: int) -> list[dict[str, Any]]:
    """The session's BudgetCharged events, oldest first."""
    c = chains.home
    logs = c.factory.events.BudgetCharged().get_logs(from_block=0, argument_filters={"sessionId": sid})
    return [dict(e["args"]) for e in logs]


def assert_tiled(events: list[dict[str, Any]]) -> None:
    """Each charge starts where the previous one ended: no task is covered twice."""
    last = 0
    for ev in events:
        assert ev["fromSeq"] == last and ev["throughSeq"] > last, events
        last = ev["throughSeq"]


def covering(events: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    return [e for e in events if e["fromSeq"] < seq <= e["throughSeq"]]


def recorded_costs(fake: FakeSessionServer, sid: int) -> int:
    return sum(int(t.cost or 0) for t in fake.service.sessions[str(sid)].tasks.values())


def first_task_committed_unsettled(chains: TwoChains, fake: FakeSessionServer, sid: int) -> None:
    """Two tasks, the first committed with its cost in SessionDB by an executor that never settled it."""
    svc = fake.service
    fs = svc.add_session(str(sid), spec=spec(chains), budget=100 * 10**18)
    svc.submit(str(sid), [("count", {}), ("count", {})])
    committed = fs.tasks[1]
    committed.status, committed.cost, committed.result_json = ss.TASK_STATUS_SUCCEEDED, str(TASK_FEE), "{}"
    fs.session.budget_spent = str(TASK_FEE)


def metric(parts: ExecutorParts, name: str, labels: dict[str, str] | None = None) -> float:
    value = parts.engine.deps.metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


async def test_a_poison_task_fails_once_is_charged_once_and_the_session_goes_on(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts
) -> None:
    # The outside tester's case: text with a lone surrogate crashed the executor in its task log, and
    # every crash-and-retry sent another chargeBudget (0.2 AGPT for one task that never ran). Here the
    # text comes from the task's output (what a remote model may return: the args themselves are now
    # refused by both services), and the same text in an older record's args.
    sid = two_chains.session()
    svc = fake_session.service
    svc.add_session(str(sid), spec=spec(two_chains, checkpoint_interval=1), budget=100 * 10**18)
    poison_outputs(executor)
    svc.submit(
        str(sid),
        [
            ("count", {"poison": True}),
            ("publish_report", {"title": "\ud800"}),
            ("publish_report", {"title": "ok"}),
        ],
    )
    fs = svc.sessions[str(sid)]
    await eventually(lambda: len(svc.done(str(sid))) == 3, timeout=30, what="the tasks done")
    poisoned, refused, after = fs.tasks[1], fs.tasks[2], fs.tasks[3]
    assert poisoned.status == ss.TASK_STATUS_FAILED
    assert "UnicodeEncodeError" in poisoned.error and "\\ud800" in poisoned.error
    assert refused.status == ss.TASK_STATUS_REFUSED and "surrogate" in refused.error
    assert after.status == ss.TASK_STATUS_SUCCEEDED
    assert [r[3] for r in fs.reports if r[2] == 1].count(ss.TASK_STATUS_FAILED) == 1  # recorded once

    await eventually(lambda: len(charges(two_chains, sid)) > 0, timeout=30, what="a charge on chain")
    await asyncio.sleep(3)  # the executor goes on polling: nothing more may be charged
    events = charges(two_chains, sid)
    assert_tiled(events)
    assert events[-1]["throughSeq"] == 3
    assert len(covering(events, 1)) == 1  # the failed task: paid for once
    # the failed task paid its fee once; the refused one nothing
    assert sum(e["amount"] for e in events) == recorded_costs(fake_session, sid) == 2 * TASK_FEE
    assert two_chains.home.session(sid)["spent"] == 2 * TASK_FEE
    assert metric(executor, "agentgpt_executor_tasks_total", {"status": "failed"}) >= 1
    assert metric(executor, "agentgpt_executor_runner_failures_total", {"stage": "running"}) == 0


async def test_a_crash_before_settling_loses_no_charge(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts
) -> None:
    # An executor committed task 1 (its cost is in SessionDB) and was killed before it settled: the
    # next holder pays for it from the record, once, together with its own work.
    sid = two_chains.session()
    svc = fake_session.service
    first_task_committed_unsettled(two_chains, fake_session, sid)
    await eventually(lambda: len(svc.done(str(sid))) == 2, timeout=30, what="task 2 done")
    await eventually(
        lambda: two_chains.home.session(sid)["spent"] == 2 * TASK_FEE, timeout=30, what="both charged"
    )
    events = charges(two_chains, sid)
    assert_tiled(events)
    assert events[-1]["throughSeq"] == 2 and sum(e["amount"] for e in events) == recorded_costs(
        fake_session, sid
    )


async def test_a_charge_already_on_chain_is_not_paid_again(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts
) -> None:
    # The previous holder's charge for task 1 landed, but nobody recorded that it did (its answer was
    # lost): the executor's bookkeeping says task 1 is unsettled. The factory's record wins.
    c = two_chains.home
    sid = two_chains.session()
    c.tx(c.factory.functions.chargeBudget(sid, 1, TASK_FEE, b"\x01" * 32), c.actors.executor)
    svc = fake_session.service
    first_task_committed_unsettled(two_chains, fake_session, sid)
    await eventually(lambda: len(svc.done(str(sid))) == 2, timeout=30, what="task 2 done")
    await eventually(lambda: c.session(sid)["chargedSeq"] == 2, timeout=30, what="task 2 charged")
    await asyncio.sleep(1)
    events = charges(two_chains, sid)
    assert_tiled(events)
    assert [(e["fromSeq"], e["throughSeq"], e["amount"]) for e in events] == [
        (0, 1, TASK_FEE),
        (1, 2, TASK_FEE),
    ]
    assert c.session(sid)["spent"] == recorded_costs(fake_session, sid) == 2 * TASK_FEE


async def test_an_action_is_not_done_twice_even_when_the_record_forgets_it(
    two_chains: TwoChains, fake_session: FakeSessionServer, executor: ExecutorParts
) -> None:
    # Task 1's transfer went through, then its record lost the outcome and the intent (a restored backup,
    # a bug): the task is queued again. The session account refuses the same step a second time.
    c = two_chains.home
    sid = two_chains.session(allowlist=[(RECIPIENT, b"\x00" * 4)], fund_wei=10**18)
    svc = fake_session.service
    svc.add_session(str(sid), spec=spec(two_chains), budget=100 * 10**18)
    fs = svc.sessions[str(sid)]
    svc.submit(str(sid), [("transfer", {"chain": "arbitrum", "to": RECIPIENT, "value": 777})])
    await eventually(lambda: len(svc.done(str(sid))) == 1, timeout=30, what="transfer done")
    assert fs.tasks[1].status == ss.TASK_STATUS_SUCCEEDED
    assert int(c.w3.eth.get_balance(RECIPIENT)) == 777
    account = c.contract("SessionAccount", c.factory.functions.accountOf(sid).call())
    assert account.functions.executed(1, 0).call()

    fs.claimable = False  # not claimed again until the record is rewritten (a claim in between sees it done)
    await executor.engine.release(str(sid))
    fs.tasks[1] = ss.Task(session_id=str(sid), seq=1, status=ss.TASK_STATUS_QUEUED, input=fs.tasks[1].input)
    fs.session.ClearField("latest_checkpoint")
    fs.lease_expires = 0.0
    fs.claimable = True
    await eventually(lambda: len(svc.done(str(sid))) == 1, timeout=30, what="re-run recorded")
    assert fs.tasks[1].status == ss.TASK_STATUS_FAILED and "AlreadyExecuted" in fs.tasks[1].error
    assert int(c.w3.eth.get_balance(RECIPIENT)) == 777  # paid once
    assert Account.from_key(EXECUTOR_KEY).address == c.actors.executor


async def test_anchoring_stops_for_ended_sessions_and_unknown_chains(
    two_chains: TwoChains, executor: ExecutorParts
) -> None:
    c = two_chains.home
    sid = two_chains.session()
    c.tx(c.factory.functions.complete(sid, reaffirm(c.factory, sid)), c.actors.owner)
    queue = executor.engine.deps.anchors
    assert queue is not None
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    before = queue.failures
    queue.submit(str(sid), 1, cid, b"\x01" * 32, ["arbitrum", "polygon", "ethereum"], c.chain_id)

    def dropped(chain: str) -> float:
        return metric(executor, "agentgpt_executor_anchors_total", {"chain": chain, "result": "dropped"})

    await eventually(
        lambda: all(dropped(ch) >= 1 for ch in ("arbitrum", "polygon", "ethereum")),
        timeout=15,
        what="dropped",
    )
    assert queue.pending() == 0 and queue.failures == before  # dropped, not retried
    assert c.factory.functions.latestCheckpoint(sid).call()[0] == 0
