"""The whole stack as real processes: anvil, an IPFS node, the contracts, the four services (the
executor as two processes, executor-1 and executor-2, each with its own bonded key)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agentgpt.chain.rpc import connect
from agentgpt.clients import ExecutorClient, IndexerClient, RecoveryClient, check_health
from agentgpt.errors import RpcError
from apps.localnet.stack import SERVICE_NAMES, LocalStack, StackOptions, service_kind
from tests.support import eventually, metric_value, reflected_services, scrape

pytestmark = pytest.mark.e2e

EXECUTOR_GRACE = 3.0
EVERY_SERVICE = {"session", "indexer", "recovery_oracle", "executor-1", "executor-2"}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    s = LocalStack(
        StackOptions(
            workdir=tmp_path_factory.mktemp("stack"),
            base_port=0,
            # A long drain window on the executors so the test can watch NOT_SERVING before one exits;
            # one executor's own setting, applied after the one for every executor.
            extra_env={
                "executor": {
                    "AGENTGPT_DRAIN_DELAY": "1.5",
                    "AGENTGPT_SHUTDOWN_GRACE": str(EXECUTOR_GRACE),
                    "AGENTGPT_LOG_LEVEL": "INFO",
                },
                "executor-2": {"AGENTGPT_LOG_LEVEL": "DEBUG"},
            },
        )
    )
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def test_all_four_services_serving_with_reflection(stack: LocalStack) -> None:
    assert set(stack.services) == EVERY_SERVICE
    assert {service_kind(name) for name in stack.services} == set(SERVICE_NAMES)
    for name, proc in stack.services.items():
        api = SERVICE_NAMES[service_kind(name)]
        assert proc.alive(), name
        assert await check_health(proc.grpc) == "SERVING", name
        assert await check_health(proc.grpc, api) == "SERVING", name
        listed = await reflected_services(proc.grpc)
        assert {api, "grpc.health.v1.Health"} <= listed, (name, listed)


async def test_each_executor_has_its_own_key_id_port_and_log(stack: LocalStack) -> None:
    from eth_account import Account

    from apps.localnet.stack import EXECUTOR_KEYS

    state = json.loads((stack.workdir / "stack.json").read_text())
    assert set(state["services"]) == EVERY_SERVICE
    executors = state["executors"]
    assert [e["id"] for e in executors] == ["executor-1", "executor-2"]
    assert state["executor_address"] == executors[0]["address"]
    oracle = stack.services["recovery_oracle"]
    assert oracle.env["AGENTGPT_EXECUTOR_ADDRS"] == ",".join(e["grpc"] for e in executors)
    for entry, key in zip(executors, EXECUTOR_KEYS, strict=False):
        proc = stack.services[entry["id"]]
        assert entry == {
            "id": proc.name,
            "address": Account.from_key(key).address,
            "grpc": proc.grpc,
            "pid": proc.pid,
            "log": str(stack.workdir / f"{proc.name}.log"),
        }
        assert state["services"][proc.name]["grpc"] == proc.grpc
        assert (proc.env["AGENTGPT_EXECUTOR_ID"], proc.env["AGENTGPT_EXECUTOR_KEY"]) == (proc.name, key)
        assert proc.env["AGENTGPT_ORACLE_ADDR"] == oracle.grpc
        assert proc.env["AGENTGPT_SESSION_ADDR"] == stack.services["session"].grpc
        assert proc.log_path.exists()
        async with ExecutorClient(proc.grpc) as client:
            status = await client.get_status()
        assert (status.executor_id, status.address) == (proc.name, entry["address"])
    assert len({e["address"] for e in executors}) == len({e["grpc"] for e in executors}) == 2
    # "executor" applies to every executor, "executor-2" to that one, after it
    assert stack.services["executor-1"].env["AGENTGPT_LOG_LEVEL"] == "INFO"
    assert stack.services["executor-2"].env["AGENTGPT_LOG_LEVEL"] == "DEBUG"
    assert stack.services["executor-2"].env["AGENTGPT_DRAIN_DELAY"] == "1.5"


async def test_service_to_service_call_over_grpc_is_counted(stack: LocalStack) -> None:
    indexer = stack.services["indexer"]
    before = metric_value(
        scrape(indexer.metrics_port),
        "grpc_server_handled_total",
        grpc_method="ListEvents",
        grpc_code="OK",
    )
    async with RecoveryClient(stack.services["recovery_oracle"].grpc) as oracle:
        for _ in range(3):
            with pytest.raises(RpcError) as err:
                await oracle.get_verified_state("42")
            assert err.value.code == grpc.StatusCode.NOT_FOUND
    after = metric_value(
        scrape(indexer.metrics_port),
        "grpc_server_handled_total",
        grpc_method="ListEvents",
        grpc_code="OK",
    )
    # The oracle's three calls reached the indexer process over gRPC.
    assert after - before == 3
    oracle_text = scrape(stack.services["recovery_oracle"].metrics_port)
    assert (
        metric_value(
            oracle_text, "grpc_server_handled_total", grpc_method="GetVerifiedState", grpc_code="NotFound"
        )
        >= 3
    )


async def test_indexer_sees_both_chains(stack: LocalStack) -> None:
    async with IndexerClient(stack.services["indexer"].grpc) as indexer:
        status = await indexer.get_chain_status()
    assert {c.chain_id for c in status.chains} == {31337, 31338}
    assert all(c.head_block >= 1 for c in status.chains)  # the deployments mined blocks


async def status(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "apps.cli.main", "status", "--workdir", str(stack.workdir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_status_command_reports_every_service(stack: LocalStack) -> None:
    out = await status(stack, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads(out.stdout)
    assert {r["service"]: r["status"] for r in rows} == {n: "SERVING" for n in EVERY_SERVICE}
    executors = {r["service"]: r["executor"] for r in rows if "executor" in r}
    assert set(executors) == {"executor-1", "executor-2"}
    for name, held in executors.items():
        assert held["answering"] and held["executor_id"] == name and held["sessions"] == [], held

    text = await status(stack)
    assert text.returncode == 0, text.stdout + text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines() if line.strip()}
    for name in ("executor-1", "executor-2"):
        proc = stack.services[name]
        assert f"{proc.grpc}" in text.stdout and str(proc.pid) in lines[name], text.stdout
    assert "SESSIONS HELD" in text.stdout
    assert text.stdout.count("  none") == 2, text.stdout  # neither holds a session yet


async def test_sigterm_reports_not_serving_then_exits_within_grace(stack: LocalStack) -> None:
    proc = stack.services["executor-2"]
    assert await check_health(proc.grpc) == "SERVING"
    started = time.monotonic()
    proc.terminate()

    async def not_serving() -> None:
        assert await check_health(proc.grpc, timeout=0.5) == "NOT_SERVING"

    await eventually(not_serving, timeout=1.5, interval=0.05)
    code = await asyncio.to_thread(proc.wait, 1.5 + EXECUTOR_GRACE + 2.0)
    assert code == 0, f"executor exit code {code}"
    assert time.monotonic() - started < 1.5 + EXECUTOR_GRACE + 2.0
    log = proc.log_path.read_text()
    assert '"msg": "executor shutting down"' in log and '"msg": "executor stopped"' in log
    # The oracle, which depends on nothing the executor serves, is unaffected.
    async with ExecutorClient(proc.grpc) as gone:
        with pytest.raises(RpcError):
            await gone.get_status()
    # The other executor is unaffected; `agentgpt status` says the stopped one is not answering.
    assert await check_health(stack.services["executor-1"].grpc) == "SERVING"
    out = await status(stack)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    row = [
        line for line in out.stdout.splitlines() if line.startswith("executor-2 ") and "not answering" in line
    ]
    assert row and str(proc.pid) in row[0], out.stdout


def test_agentgpt_up_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apps.cli.main",
            "up",
            "--workdir",
            str(tmp_path),
            "--ports",
            "auto",
            "--no-demo",
            "--executors",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        out = "".join(lines)
        assert "all four services SERVING (3 executors)" in out, out
        assert "Arweave gateway (arlocal) at http://127.0.0.1:" in out, out
        state = json.loads((tmp_path / "stack.json").read_text())
        assert state["arweave_gateway"].startswith("http://127.0.0.1:") and state["arweave_wallet"]
        arlocal_pid = int((tmp_path / "arweave" / "arlocal.pid").read_text())
        assert [e["id"] for e in state["executors"]] == ["executor-1", "executor-2", "executor-3"]
        assert {"executor-1", "executor-2", "executor-3"} <= set(state["services"])
        pids = [info["pid"] for info in state["services"].values()]
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0, rest
        assert "anvil stopped" in rest and "Arweave gateway stopped" in rest
        for pid in [*pids, arlocal_pid]:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert not (tmp_path / "stack.json").exists()
    finally:
        if up.poll() is None:
            up.kill()


async def test_contracts_deployed_and_every_executor_bonded_on_every_chain(stack: LocalStack) -> None:
    from eth_account import Account

    from agentgpt.contracts import load_artifact

    assert stack.network is not None and len(stack.network.chains) == 2
    addresses = [Account.from_key(key).address for key in stack.executor_keys.values()]
    assert len(addresses) == 2
    for chain in stack.network.chains:
        w3 = connect(chain.rpc_url)
        registry = w3.eth.contract(
            address=chain.contracts["ExecutorRegistry"], abi=load_artifact("ExecutorRegistry").abi
        )
        assert await w3.eth.chain_id == chain.chain_id
        for executor in addresses:
            assert await registry.functions.isBonded(executor).call(), (chain.name, executor)
        assert len(await w3.eth.get_code(chain.contracts["SessionFactory"])) > 0
        await w3.provider.disconnect()


@pytest.mark.timeout(600)
async def test_demo_archives_to_the_stacks_arweave_gateway(stack: LocalStack) -> None:
    """The demo on the running stack: the completed event (as `agentgpt session watch` prints it) names the
    event log's Arweave transaction next to its CID, and the report's and the filing's are in the
    publish_report result; each reads back verified from the stack's arlocal with the bytes IPFS serves."""
    from agentgpt.arweave import ArweaveClient
    from agentgpt.ipfs import KuboStore
    from apps.demo.treasury import run_demo
    from apps.localnet.stack import DEPLOYER_KEY, EXECUTOR_KEY, KYC_ISSUER_KEY, OWNER_KEY

    cli = [sys.executable, "-m", "apps.cli.main"]
    state = json.loads((stack.workdir / "stack.json").read_text())
    assert state["arweave_gateway"] == stack.arweave_url != ""
    session = stack.services["session"]
    for name in ("session", *stack.executor_keys):
        env = stack.services[name].env
        assert env["AGENTGPT_ARWEAVE_GATEWAY"] == stack.arweave_url and env["AGENTGPT_ARWEAVE_MINE"] == "true"
        assert env["AGENTGPT_ARWEAVE_WALLET_PATH"] == state["arweave_wallet"]
    assert (Path(state["arweave_wallet"]).stat().st_mode & 0o777) == 0o600
    assert "AGENTGPT_ARWEAVE_GATEWAY" not in stack.services["indexer"].env
    inspect = await run_demo(
        state["network"],
        session.grpc,
        owner_key=OWNER_KEY,
        deployer_key=DEPLOYER_KEY,
        executor_key=EXECUTOR_KEY,
        issuer_key=KYC_ISSUER_KEY,
    )
    sid = inspect.session.session_id
    watch = await asyncio.to_thread(
        subprocess.run,
        [*cli, "session", "watch", sid, "--history-only", "--workdir", str(stack.workdir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert watch.returncode == 0, watch.stdout + watch.stderr
    (line,) = [x for x in watch.stdout.splitlines() if x.split()[2:3] == ["completed"]]
    completed = json.loads(line.split(None, 3)[3])
    assert completed["log_arweave_tx"] and completed["log_cid"]
    published = {t.input.kind: t for t in inspect.recent_tasks}["publish_report"]
    report = json.loads(published.result_json)["outputs"][0]
    ids = [completed["log_arweave_tx"], report["arweave_tx"], report["filing"]["arweave_tx"]]
    cids = [completed["log_cid"], report["cid"], report["filing"]["cid"]]
    async with ArweaveClient(stack.arweave_url) as arweave, KuboStore(stack.ipfs.api) as ipfs:
        for kind, tx_id, cid in zip(("event-log", "report", "filing"), ids, cids, strict=True):
            tx = await arweave.read(tx_id)
            assert tx.data == await ipfs.get(cid), kind
            assert (tx.tag("Kind"), tx.tag("Session-Id"), tx.tag("Chain-Id")) == (kind, sid, "31337")
    # and the demo session verifies from the chains, IPFS and Arweave alone, its bodies opened by the owner
    checked = await asyncio.to_thread(
        subprocess.run,
        [
            *cli,
            "verify",
            sid,
            "--json",
            "--key-file",
            state["owner_key_file"],
            "--workdir",
            str(stack.workdir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["verified"] and all(h["body_checked"] for h in report["history"])
    assert {c["check"]: c["ok"] for c in report["closing"]} == {
        "final anchor": True,
        "event log": True,
        "arweave": True,
    }
