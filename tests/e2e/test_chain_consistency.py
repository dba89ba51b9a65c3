"""What the chains hold agrees with SessionDB, on the local stack as real processes (2 anvil chains, the
IPFS node, the four services): a session created from the CLI anchors on both its chains (the session
service grants the executor the writer role on the secondary one), every task is charged exactly once,
and a charge SessionDB cannot explain is reported as a critical alert and a metric."""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from agentgpt.clients import SessionClient
from agentgpt.contracts import load_artifact
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.stack import EXECUTOR_KEY, LocalStack
from tests.support import eventually
from tests.support.stack import cli, local_stack, session_ok

pytestmark = [pytest.mark.e2e, pytest.mark.chain, pytest.mark.ipfs, pytest.mark.timeout(300)]

SPEC = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
checkpoint_interval: 2
"""


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with local_stack(tmp_path_factory.mktemp("consistency")) as s:
        yield s


def contract(stack: LocalStack, chain: str, name: str) -> Any:
    network = json.loads(Path(stack.state()["network"]).read_text())
    info = next(c for c in network["chains"] if c["name"] == chain)
    w3 = Web3(Web3.HTTPProvider(info["rpc_url"], request_kwargs={"timeout": 10}))
    return w3.eth.contract(address=info["contracts"][name], abi=load_artifact(name).abi), info["chain_id"]


def scrape(stack: LocalStack, service: str, name: str) -> float:
    port = stack.services[service].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} is not exported by {service}"
    return values[0]


async def new_session(stack: LocalStack, tmp_path: Path, tasks: int) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    sid = (await session_ok(stack, "create", str(spec), "--budget", "50")).split()[1]
    await session_ok(stack, "activate", sid)
    for i in range(tasks):
        await session_ok(
            stack, "submit", sid, "publish_report", "--args", json.dumps({"title": f"report {i}"})
        )
    return sid


async def test_a_cli_created_two_chain_session_is_anchored_on_both_and_charged_once(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path, tasks=2)
    factory, home_id = contract(stack, "arbitrum", "SessionFactory")
    registry, _ = contract(stack, "polygon", "AnchorRegistry")
    executor = Account.from_key(EXECUTOR_KEY).address

    async def anchored_on_both() -> None:
        assert factory.functions.latestCheckpoint(int(sid)).call()[0] == 2
        writer, _, last_seq, _ = registry.functions.streamOf(home_id, int(sid)).call()
        assert (writer, last_seq) == (executor, 2)

    await eventually(anchored_on_both, timeout=60)
    # rechecked from the chains' logs and IPFS alone: both anchors agree, the history verifies
    checked = await cli(stack, "verify", sid, "--json")
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
    report = json.loads(checked.stdout)
    assert report["verified"] and report["checkpoint"]["seq"] == 2
    assert sorted(report["checkpoint"]["anchored_on"]) == [31337, 31338]
    human = await cli(stack, "verify", sid)
    assert human.returncode == 0 and "ok seq 2" in human.stdout
    assert human.stdout.rstrip().endswith("\nverified")
    missing = await cli(stack, "verify", "999")
    assert missing.returncode == 1 and "no anchored checkpoint" in missing.stderr
    # granted by the session service, recorded as the session's event
    async with SessionClient(stack.services["session"].grpc, identity="test") as client:
        page = await client.inspect(ss.InspectSessionRequest(session_id=sid, detail="full"))
    granted = [json.loads(e.data_json) for e in page.recent_events if e.type == "anchor_writer_granted"]
    assert [g["chain"] for g in granted] == ["polygon"] and granted[0]["writer"] == executor

    async def charged() -> None:
        assert factory.functions.budgetOf(int(sid)).call()[2] == 2

    await eventually(charged, timeout=60)
    logs = factory.events.BudgetCharged().get_logs(from_block=0, argument_filters={"sessionId": int(sid)})
    ranges = [(e["args"]["fromSeq"], e["args"]["throughSeq"]) for e in logs]
    assert ranges[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    recorded = sum(int(t.cost) for t in page.recent_tasks)
    assert (
        sum(e["args"]["amount"] for e in logs) == recorded == factory.functions.budgetOf(int(sid)).call()[1]
    )


async def test_a_charge_sessiondb_cannot_explain_is_a_critical_alert(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path, tasks=1)
    factory, home_id = contract(stack, "arbitrum", "SessionFactory")

    async def charged() -> None:
        assert factory.functions.budgetOf(int(sid)).call()[2] == 1

    await eventually(charged, timeout=60)
    assert scrape(stack, "session", "agentgpt_session_budget_mismatches") == 0
    # once the executor has nothing left to send (its checkpoint anchored on both chains, the task charged),
    # a charge sent outside its bookkeeping, for a task SessionDB does not have
    registry, _ = contract(stack, "polygon", "AnchorRegistry")

    async def quiet() -> None:
        assert factory.functions.latestCheckpoint(int(sid)).call()[0] == 1
        assert registry.functions.streamOf(home_id, int(sid)).call()[2] == 1

    await eventually(quiet, timeout=60)
    w3 = factory.w3
    executor = Account.from_key(EXECUTOR_KEY)

    async def charged_outside() -> None:
        tx = factory.functions.chargeBudget(int(sid), 99, 12345, b"\x00" * 32).build_transaction(
            {"from": executor.address, "nonce": w3.eth.get_transaction_count(executor.address, "pending")}
        )
        sent = w3.eth.send_raw_transaction(executor.sign_transaction(tx).raw_transaction)
        assert w3.eth.wait_for_transaction_receipt(sent)["status"] == 1

    await eventually(charged_outside, timeout=20)  # retried if the executor's own transaction took the nonce

    async with SessionClient(stack.services["session"].grpc, identity="test") as client:

        async def alerted() -> ss.InspectSessionResponse:
            resp = await client.inspect(ss.InspectSessionRequest(session_id=sid))
            assert [a.code for a in resp.alerts if a.severity == "critical"] == ["budget_mismatch"]
            return resp

        resp = await eventually(alerted, timeout=30)
    assert resp.alerts_critical == 1
    assert "through task 99" in resp.alerts[0].message
    assert scrape(stack, "session", "agentgpt_session_budget_mismatches") == 1
