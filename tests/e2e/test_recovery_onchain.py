"""SIGKILL an executor between a transaction's broadcast and its receipt: the session goes on elsewhere and
no on-chain effect happens twice.

The chains mine a block every second here (not at once), so a transaction waits in the mempool after
it is broadcast. Each task is a `call` from the session's on-chain account: AGPT.approve(spender, seq),
which leaves one Approval event per task with the task's seq as its value. Mining is stopped once the
tasks are queued, so the first task's transaction, once broadcast, stays in the mempool: the executor
holding the session is killed while that task is RUNNING with its transaction recorded (the intent is
written before the broadcast), so the kill falls between broadcast and receipt whatever the machine's
load; then mining resumes. The new executor finds the
recorded transaction on chain (or rebroadcasts the same signed bytes): every seq has exactly one Approval,
the account's executed(seq, 0) marker is set once, and every task SUCCEEDED once.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_abi import encode
from web3 import Web3
from web3.exceptions import TransactionNotFound

from agentgpt.contracts import load_artifact
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.stack import LocalStack
from tests.support import eventually
from tests.support.recovery import check_exactly_once, holder, recoveries, tasks_of, two_executor_stack
from tests.support.stack import session_ok

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.chain,
    pytest.mark.ipfs,
    pytest.mark.chaos,
    pytest.mark.timeout(600),
]

SPENDER = "0x000000000000000000000000000000000000dEaD"
APPROVE = "0x095ea7b3"  # approve(address,uint256)
TASKS = 6


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with two_executor_stack(tmp_path_factory.mktemp("recovery-onchain"), block_time=1.0) as s:
        yield s


def home(stack: LocalStack) -> tuple[Web3, dict[str, str]]:
    network = json.loads(Path(stack.state()["network"]).read_text())
    chain = network["chains"][0]
    return Web3(Web3.HTTPProvider(chain["rpc_url"], request_kwargs={"timeout": 10})), chain["contracts"]


async def test_sigkill_between_broadcast_and_receipt_does_no_effect_twice(
    stack: LocalStack, tmp_path: Path
) -> None:
    w3, contracts = home(stack)
    agpt = contracts["AGPT"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "type: treasury_management\n"
        "params:\n"
        "  chains: [arbitrum]\n"
        "  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}\n"
        f"  allowlist: [{{target: '{agpt}', selector: '{APPROVE}'}}]\n"
        "checkpoint_interval: 2\n"
    )
    sid = (await session_ok(stack, "create", str(spec), "--budget", "50")).split()[1]
    await session_ok(stack, "activate", sid)
    home_node = stack.anvils[0]
    await asyncio.to_thread(home_node.mine_every, 0)  # nothing lands until the kill
    for seq in range(1, TASKS + 1):
        data = APPROVE + encode(["address", "uint256"], [SPENDER, seq]).hex()
        args = {"chain": "arbitrum", "target": agpt, "value": 0, "data": data}
        await session_ok(stack, "submit", sid, "call", "--args", json.dumps(args))

    async def a_transaction_in_flight() -> ss.Task:
        running = [t for t in await tasks_of(stack, sid) if t.status == ss.TASK_STATUS_RUNNING and t.intents]
        assert running, "no task with a recorded transaction yet"
        return running[0]

    in_flight = await eventually(a_transaction_in_flight, timeout=90, interval=0.02)
    victim = await holder(stack, sid)
    stack.services[victim].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    await asyncio.to_thread(home_node.mine_every, 1)
    tx_hash = bytes(in_flight.intents[0].tx_hash)

    await check_exactly_once(stack, sid, TASKS)
    factory = w3.eth.contract(address=contracts["SessionFactory"], abi=load_artifact("SessionFactory").abi)
    account = factory.functions.accountOf(int(sid)).call()
    token = w3.eth.contract(address=agpt, abi=load_artifact("AGPT").abi)
    approvals = token.events.Approval().get_logs(from_block=0, argument_filters={"owner": account})
    values = sorted(int(a["args"]["value"]) for a in approvals)
    assert values == list(range(1, TASKS + 1)), values  # one approve per task: none twice, none lost
    marker = w3.eth.contract(address=account, abi=load_artifact("SessionAccount").abi)
    assert all(marker.functions.executed(seq, 0).call() for seq in range(1, TASKS + 1))
    # The transaction in flight at the kill stays in the task's record. Either it was mined in time and is
    # the task's effect; or it was mined after the reassignment fenced its executor out, reverted (did
    # nothing), and the new executor ran the step once with its own transaction; or the kill came after
    # it was journaled but before it was broadcast, so it never existed on chain and the new executor's
    # transaction is the effect. One effect either way.
    done = {t.seq: t for t in await tasks_of(stack, sid)}
    recorded = [bytes(i.tx_hash) for i in done[in_flight.seq].intents]
    assert tx_hash in recorded

    def status(h: bytes) -> int | None:
        try:
            return int(w3.eth.get_transaction_receipt(h)["status"])
        except TransactionNotFound:
            return None  # journaled, never broadcast

    statuses = [status(h) for h in dict.fromkeys(recorded)]
    assert statuses in ([1], [0, 1], [None, 1]), statuses
    (recovery, *_) = await recoveries(stack, sid)
    assert recovery.failed_executor and recovery.new_executor != recovery.failed_executor
