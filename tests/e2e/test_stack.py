"""The whole stack as real processes: anvil, an IPFS node, the contracts, the four services."""

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
from apps.localnet.stack import SERVICE_NAMES, LocalStack, StackOptions
from tests.support import eventually, metric_value, reflected_services, scrape

pytestmark = pytest.mark.e2e

EXECUTOR_GRACE = 3.0


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    s = LocalStack(
        StackOptions(
            workdir=tmp_path_factory.mktemp("stack"),
            base_port=0,
            # A long drain window on the executor so the test can watch NOT_SERVING before it exits.
            extra_env={
                "executor": {"AGENTGPT_DRAIN_DELAY": "1.5", "AGENTGPT_SHUTDOWN_GRACE": str(EXECUTOR_GRACE)}
            },
        )
    )
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def test_all_four_services_serving_with_reflection(stack: LocalStack) -> None:
    assert set(stack.services) == set(SERVICE_NAMES)
    for name, proc in stack.services.items():
        assert proc.alive(), name
        assert await check_health(proc.grpc) == "SERVING", name
        assert await check_health(proc.grpc, SERVICE_NAMES[name]) == "SERVING", name
        listed = await reflected_services(proc.grpc)
        assert {SERVICE_NAMES[name], "grpc.health.v1.Health"} <= listed, (name, listed)


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


async def test_status_command_reports_every_service(stack: LocalStack) -> None:
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "apps.cli.main", "status", "--workdir", str(stack.workdir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads(out.stdout)
    assert {r["service"]: r["status"] for r in rows} == {n: "SERVING" for n in SERVICE_NAMES}


async def test_sigterm_reports_not_serving_then_exits_within_grace(stack: LocalStack) -> None:
    proc = stack.services["executor"]
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
        assert "all four services SERVING" in out, out
        state = json.loads((tmp_path / "stack.json").read_text())
        pids = [info["pid"] for info in state["services"].values()]
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0, rest
        assert "anvil stopped" in rest
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert not (tmp_path / "stack.json").exists()
    finally:
        if up.poll() is None:
            up.kill()


async def test_contracts_deployed_and_executor_bonded_on_every_chain(stack: LocalStack) -> None:
    from eth_account import Account

    from agentgpt.contracts import load_artifact
    from apps.localnet.stack import EXECUTOR_KEY

    assert stack.network is not None and len(stack.network.chains) == 2
    executor = Account.from_key(EXECUTOR_KEY).address
    for chain in stack.network.chains:
        w3 = connect(chain.rpc_url)
        registry = w3.eth.contract(
            address=chain.contracts["ExecutorRegistry"], abi=load_artifact("ExecutorRegistry").abi
        )
        assert await w3.eth.chain_id == chain.chain_id
        assert await registry.functions.isBonded(executor).call()
        assert len(await w3.eth.get_code(chain.contracts["SessionFactory"])) > 0
        await w3.provider.disconnect()
