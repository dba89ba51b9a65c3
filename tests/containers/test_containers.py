"""The stack as containers (tests.containers.cluster): a session runs end to end across them, driven from
the host by the owner's CLI through the published ports and checked on chain; then `docker kill` of the
executor container holding a session is a node failure, and the recovery oracle moves the session to the
other executor container with nothing lost, checked on chain (tests/e2e/test_recovery.py is the same with
processes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from agentgpt.clients import RecoveryClient, SessionClient
from agentgpt.contracts import load_artifact
from agentgpt.recovery.v1 import recovery_pb2 as rc
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.stack import EXECUTOR_KEYS
from tests.containers.cluster import EXECUTORS, Cluster
from tests.support import eventually

pytestmark = [pytest.mark.containers, pytest.mark.chaos, pytest.mark.timeout(900)]

SPEC = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
checkpoint_interval: 3
"""
ADDRESS = {name: Account.from_key(EXECUTOR_KEYS[i]).address for i, name in enumerate(EXECUTORS)}


def _cli_env(cluster: Cluster) -> dict[str, str]:
    env = dict(os.environ)
    tls_dir = cluster.workdir / "tls"
    if (tls_dir / "operator.pem").is_file():  # the services speak mTLS: the CLI shows the host's certificate
        env |= {
            "AGENTGPT_TLS_CA_FILE": str(tls_dir / "ca.pem"),
            "AGENTGPT_TLS_CERT_FILE": str(tls_dir / "operator.pem"),
            "AGENTGPT_TLS_KEY_FILE": str(tls_dir / "operator.key"),
        }
    return env


async def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`agentgpt ARGS` on the host against the containers (their published ports, in stack.json)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "apps.cli.main", *args, "--workdir", str(cluster.workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_cli_env(cluster),
    )


async def session_ok(cluster: Cluster, *args: str) -> str:
    proc = await cli(cluster, "session", *args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


async def new_session(cluster: Cluster, tmp_path: Path) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    sid = (await session_ok(cluster, "create", str(spec), "--budget", "50")).split()[1]
    await session_ok(cluster, "activate", sid)
    return sid


async def submit(cluster: Cluster, sid: str, count: int, start: int = 0) -> None:
    """Tasks submitted as the owner would; a refusal while a recovery holds the session PAUSED is retried."""
    for i in range(start, start + count):
        args = ("session", "submit", sid, "publish_report", "--args", json.dumps({"title": f"report {i}"}))
        deadline = time.monotonic() + 60
        while True:
            proc = await cli(cluster, *args)
            if proc.returncode == 0:
                break
            assert "not allowed in state PAUSED" in proc.stderr and time.monotonic() < deadline, (
                args,
                proc.stdout,
                proc.stderr,
            )
            await asyncio.sleep(0.2)


def factory(cluster: Cluster) -> Any:
    assert cluster.host_network is not None
    home = cluster.host_network.chains[0]
    w3 = Web3(Web3.HTTPProvider(home.rpc_url, request_kwargs={"timeout": 10}))
    return w3.eth.contract(address=home.contracts["SessionFactory"], abi=load_artifact("SessionFactory").abi)


def session_client(cluster: Cluster) -> SessionClient:
    return SessionClient(cluster.grpc("session"), identity="e2e")


async def tasks_of(cluster: Cluster, sid: str) -> list[ss.Task]:
    async with session_client(cluster) as client:
        return list((await client.list_tasks(ss.ListTasksRequest(session_id=sid, page_size=1000))).tasks)


async def all_succeeded(cluster: Cluster, sid: str, count: int) -> None:
    tasks = await tasks_of(cluster, sid)
    assert len(tasks) == count and all(t.status == ss.TASK_STATUS_SUCCEEDED for t in tasks), [
        (t.seq, ss.TaskStatus.Name(t.status), t.error) for t in tasks
    ]


async def events_of(cluster: Cluster, sid: str) -> list[ss.SessionEvent]:
    async with session_client(cluster) as client:
        req = ss.WatchSessionRequest(session_id=sid, history_only=True)
        return [r.event async for r in client.stream("WatchSession", req, timeout=30)]


async def check_exactly_once(cluster: Cluster, sid: str, count: int) -> None:
    """Every task SUCCEEDED once in the log, and the chain charged each seq once."""
    await eventually(lambda: all_succeeded(cluster, sid, count), timeout=90)
    succeeded = [
        json.loads(e.data_json)["seq"] for e in await events_of(cluster, sid) if e.type == "task_succeeded"
    ]
    assert sorted(succeeded) == list(range(1, count + 1)), succeeded
    f = factory(cluster)

    async def charged_through_all() -> None:
        assert f.functions.budgetOf(int(sid)).call()[2] == count

    await eventually(charged_through_all, timeout=60)
    charges = f.events.BudgetCharged().get_logs(from_block=0, argument_filters={"sessionId": int(sid)})
    ranges = sorted((int(c["args"]["fromSeq"]), int(c["args"]["throughSeq"])) for c in charges)
    assert [s for lo, hi in ranges for s in range(lo + 1, hi + 1)] == list(range(1, count + 1)), ranges


def anchors(cluster: Cluster, sid: str) -> list[Any]:
    """The session's CheckpointAnchored events on the home chain, in order."""
    return list(
        factory(cluster)
        .events.CheckpointAnchored()
        .get_logs(from_block=0, argument_filters={"sessionId": int(sid)})
    )


async def verify(cluster: Cluster, sid: str) -> dict[str, Any]:
    """`agentgpt verify` from the host: the history rechecked from the chains and IPFS alone, every body
    opened with the owner's key. The suite runs no Arweave gateway, so of a completed session's closing
    checks only the Arweave copy may (and must) be missing; every other one must hold."""
    checked = await cli(cluster, "verify", sid, "--json", "--key-file", str(cluster.workdir / "owner.key"))
    assert checked.stdout, checked.stderr
    report: dict[str, Any] = json.loads(checked.stdout)
    shown = "agentgpt verify: " + json.dumps(report, indent=1)[-6000:] + checked.stderr
    assert not report["rejected"] and not report["failure"], shown
    assert report["history"] and all(h["body_checked"] for h in report["history"]), shown
    failed = [c for c in report.get("closing") or () if c["ok"] is False]  # None: not yet (live)
    if failed:
        assert [c["check"] for c in failed] == ["arweave"], shown
        assert "no Arweave copy" in failed[0]["detail"], shown
    else:
        assert checked.returncode == 0 and report["verified"], shown
    return report


async def test_a_session_end_to_end_across_the_containers(cluster: Cluster, tmp_path: Path) -> None:
    sid = await new_session(cluster, tmp_path)
    await submit(cluster, sid, 3)
    await check_exactly_once(cluster, sid, 3)
    f = factory(cluster)
    holder = await cluster.holder_of(sid)
    assert holder in EXECUTORS
    assert f.functions.getSession(int(sid)).call()[5] == ADDRESS[holder]  # its executor of record

    async def anchored() -> None:
        assert f.functions.latestCheckpoint(int(sid)).call()[0] == 3

    await eventually(anchored, timeout=60)
    assert anchors(cluster, sid), "no CheckpointAnchored event on the home chain"
    await session_ok(cluster, "complete", sid)

    async def finalized() -> None:
        logs = f.events.SessionFinalized().get_logs(from_block=0, argument_filters={"sessionId": int(sid)})
        assert logs, "no SessionFinalized on chain"
        assert int(logs[-1]["args"]["seq"]) == 3, dict(logs[-1]["args"])  # the final anchor closes at seq 3

    await eventually(finalized, timeout=90)
    report = await verify(cluster, sid)
    assert report["checkpoint"]["seq"] == 3, report
    closing = {c["check"]: c for c in report["closing"]}
    assert closing["final anchor"]["ok"] and closing["event log"]["ok"], report  # the closed history


async def test_docker_kill_of_the_executor_container_recovers_on_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    sid = await new_session(cluster, tmp_path)
    await submit(cluster, sid, 4)
    victim = await cluster.holder_of(sid)
    assert victim in EXECUTORS, f"no executor container runs session {sid}"
    f = factory(cluster)
    before = f.functions.getSession(int(sid)).call()
    assert before[5] == ADDRESS[victim]
    cluster.kill(victim)  # docker kill: SIGKILL to the container, a node failure
    assert not cluster.running(victim)
    await submit(cluster, sid, 6, start=4)  # acknowledged while the node is down: none may be lost
    await check_exactly_once(cluster, sid, 10)
    (survivor,) = [n for n in EXECUTORS if n != victim]
    assert await cluster.holder_of(sid) == survivor
    after = f.functions.getSession(int(sid)).call()
    assert after[5] == ADDRESS[survivor] and after[7] >= 2, after  # reassigned on chain, epoch bumped
    assigned = f.events.ExecutorAssigned().get_logs(from_block=0, argument_filters={"sessionId": int(sid)})
    assert any(
        int(e["args"]["epoch"]) == 2 and e["args"]["executor"] == ADDRESS[survivor] for e in assigned
    ), [dict(e["args"]) for e in assigned]
    async with RecoveryClient(cluster.grpc("recovery-oracle")) as client:
        (recovery, *_) = (await client.list_recoveries(rc.ListRecoveriesRequest(session_id=sid))).recoveries
    assert recovery.status == rc.RECOVERY_STATUS_RESUMED and not recovery.handoff
    assert recovery.failed_executor == ADDRESS[victim] and recovery.new_executor == ADDRESS[survivor]

    async def anchored_by_the_survivor() -> None:
        assert f.functions.latestCheckpoint(int(sid)).call()[0] == 10

    await eventually(anchored_by_the_survivor, timeout=90)
    types = [e.type for e in await events_of(cluster, sid)]
    assert {"paused", "executor_reassigned", "resumed"} <= set(types)
    report = await verify(cluster, sid)
    assert report["checkpoint"]["seq"] == 10 and report["verified"], report
    # the anchors after the reassignment are the survivor's (epoch 2), any before it the victim's
    assert all(
        h["signer"] == (ADDRESS[survivor] if h["epoch"] >= 2 else ADDRESS[victim]) for h in report["history"]
    ), report
    assert any(h["epoch"] >= 2 for h in report["history"]), report
