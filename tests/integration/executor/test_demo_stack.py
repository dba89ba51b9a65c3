"""`make up`'s demo on the real local stack: anvil x2, IPFS, the four services as processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agentgpt.arweave import ArweaveClient
from agentgpt.clients import RecoveryClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.filing import NAMESPACE, NOT_SUBMITTED
from agentgpt.ipfs import KuboStore
from agentgpt.recovery.v1 import recovery_pb2 as rc
from agentgpt.session.v1 import session_pb2 as ss
from apps.cli.dashboard import render
from apps.demo.treasury import run_demo
from apps.localnet.stack import (
    DEPLOYER_KEY,
    EXECUTOR_KEY,
    KYC_ISSUER_KEY,
    OWNER_KEY,
    LocalStack,
    StackOptions,
)
from tests.support import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.chain, pytest.mark.ipfs, pytest.mark.timeout(600)]


async def test_treasury_demo_end_to_end(tmp_path: Path) -> None:
    stack = LocalStack(StackOptions(workdir=tmp_path / "stack", base_port=0, metrics_base=0))
    lines: list[str] = []
    try:
        await stack.start()
        inspect = await run_demo(
            str(tmp_path / "stack" / "network.json"),
            stack.services["session"].grpc,
            owner_key=OWNER_KEY,
            deployer_key=DEPLOYER_KEY,
            executor_key=EXECUTOR_KEY,
            issuer_key=KYC_ISSUER_KEY,
            progress=lines.append,
        )
        # the recovery oracle verifies the final checkpoint from IPFS against both chains' anchors
        async with RecoveryClient(stack.services["recovery_oracle"].grpc) as oracle:

            async def verified() -> rc.GetVerifiedStateResponse:
                resp = await oracle.get_verified_state(inspect.session.session_id)
                assert resp.verification.verified, resp.verification.failure
                assert list(resp.verification.anchored_on) == [31337, 31338]
                return resp

            state = await eventually(verified, timeout=30)
        # the terminal view of the same session, through the CLI against the running stack
        sid = inspect.session.session_id
        cli = {
            args[0]: await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "apps.cli.main",
                    "session",
                    *args,
                    "--workdir",
                    str(tmp_path / "stack"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            for args in (["list"], ["inspect", sid], ["tasks", sid], ["watch", sid, "--history-only"])
        }
        # publish_report's Form 13F information table, read back from the stack's IPFS node
        published = {t.input.kind: t for t in inspect.recent_tasks}["publish_report"]
        report = json.loads(published.result_json)["outputs"][0]
        filing = report["filing"]
        completed = json.loads({e.type: e for e in inspect.recent_events}["completed"].data_json)
        async with KuboStore(stack.ipfs.api) as store:
            table = await store.get(filing["cid"])
            ipfs_copies = [
                await store.get(cid) for cid in (completed["log_cid"], report["cid"], filing["cid"])
            ]
        # ... and the event log, the report and the table on the stack's Arweave gateway, read back verified
        async with ArweaveClient(stack.arweave_url) as arweave:
            txs = [
                await arweave.read(tx)
                for tx in (completed["log_arweave_tx"], report["arweave_tx"], filing["arweave_tx"])
            ]
    finally:
        await stack.stop()
    assert inspect.session.state == cpb.SESSION_STATE_COMPLETED
    assert state.checkpoint.cid == inspect.session.latest_checkpoint.cid
    assert inspect.tasks_done == inspect.tasks_total == 3
    tasks = {t.input.kind: t for t in inspect.recent_tasks}
    assert tasks["analyze_market"].status == ss.TASK_STATUS_SUCCEEDED
    assert tasks["publish_report"].status == ss.TASK_STATUS_SUCCEEDED
    # the swap went through the session account: the router is on the allowlist activation committed
    rebalance = tasks["rebalance"]
    assert rebalance.status == ss.TASK_STATUS_SUCCEEDED, rebalance.error
    assert rebalance.gas_used > 0 and len(rebalance.intents) >= 1
    assert any("anchored on arbitrum, polygon" in line for line in lines)  # checked on both chains
    assert any("NFT burned" in line for line in lines)
    for name, proc in cli.items():
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
    assert f"{sid:<8} COMPLETED" in cli["list"].stdout
    assert "[COMPLETED]" in cli["inspect"].stdout and "3/3" in cli["inspect"].stdout
    assert [line.split()[1:3] for line in cli["tasks"].stdout.splitlines()[1:]] == [
        ["analyze_market", "SUCCEEDED"],
        ["rebalance", "SUCCEEDED"],
        ["publish_report", "SUCCEEDED"],
    ]
    watched = [line.split()[2] for line in cli["watch"].stdout.splitlines()]
    assert watched[0] == "created" and watched[-1] == "completed" and "checkpointed" in watched
    assert filing["submitted"] is False and filing["usd_per_eth"] is not None
    root = ET.fromstring(table)
    assert root.tag == f"{{{NAMESPACE}}}informationTable" and NOT_SUBMITTED.encode() in table
    values = [int(v.text or "") for v in root.iterfind("t:infoTable/t:value", {"t": NAMESPACE})]
    assert len(values) == 2 and all(v > 0 for v in values)  # ETH and dUSD, both priced
    assert str(sum(values)) == filing["value_usd"]
    assert [tx.data for tx in txs] == ipfs_copies
    assert [(tx.tag("Kind"), tx.tag("Session-Id"), tx.tag("Chain-Id")) for tx in txs] == [
        (kind, sid, "31337") for kind in ("event-log", "report", "filing")
    ]
    assert txs[1].tag("Seq") == txs[2].tag("Seq") == str(published.seq)
    dashboard = render(inspect)
    assert "COMPLETED" in dashboard and "3/3" in dashboard
    assert "KYC_TIER4, OFAC_FILTER, GAS_OPTIMIZER_V3" in dashboard
