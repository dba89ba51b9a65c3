"""A session driven from the terminal by its owner, against the local stack as real processes:
`agentgpt session create -> activate -> submit -> pause -> resume -> complete`."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentgpt.clients import SessionClient
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.stack import LocalStack
from tests.support import eventually
from tests.support.stack import local_stack, session_cli, session_ok

pytestmark = [pytest.mark.e2e, pytest.mark.chain, pytest.mark.ipfs, pytest.mark.timeout(300)]

SPEC = """\
type: treasury_management
params:
  chains: [arbitrum]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
checkpoint_interval: 1
"""


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with local_stack(tmp_path_factory.mktemp("owner-cli")) as s:
        yield s


async def test_owner_drives_a_session_through_its_lifecycle_from_the_cli(
    stack: LocalStack, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    key_file = Path(stack.state()["owner_key_file"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    created = await session_ok(stack, "create", str(spec), "--budget", "50")
    assert "created (DRAFT), NFT minted" in created
    sid = created.split()[1]
    assert f"session {sid} ACTIVE, executor {stack.state()['executor_address']}" in await session_ok(
        stack, "activate", sid
    )
    assert "task publish_report queued as seq 1" in await session_ok(
        stack, "submit", sid, "publish_report", "--args", '{"title": "from the terminal"}'
    )

    async with SessionClient(stack.services["session"].grpc, identity="test") as client:

        async def task_done() -> None:
            page = await client.list_tasks(ss.ListTasksRequest(session_id=sid))
            assert [t.status for t in page.tasks] == [ss.TASK_STATUS_SUCCEEDED]

        await eventually(task_done, timeout=60)
        assert "PAUSED: paused by the owner" in await session_ok(
            stack, "pause", sid, "--reason", "paused by the owner"
        )
        assert "ACTIVE: resumed by the owner from the CLI" in await session_ok(stack, "resume", sid)
        completed = await session_ok(stack, "complete", sid)
        assert f"session {sid} COMPLETED: event log archived at " in completed and "NFT burned" in completed
        final = await client.get_session(sid)
    assert final.budget == str(50 * 10**18) and final.budget_spent != "0"
    listed = await session_ok(stack, "list")
    assert f"{sid:<8} COMPLETED" in listed

    # Refusals say why on stderr, with distinct exit codes: 2 for the command line, 1 for the service's answer.
    bad_args = await session_cli(stack, "submit", sid, "publish_report", "--args", "[1]")
    assert bad_args.returncode == 2 and "--args: must be a JSON object" in bad_args.stderr
    bad_budget = await session_cli(stack, "create", str(spec), "--budget", "-3")
    assert bad_budget.returncode == 2 and "--budget '-3'" in bad_budget.stderr
    too_late = await session_cli(stack, "pause", sid)
    assert too_late.returncode == 1 and "FAILED_PRECONDITION" in too_late.stderr


async def test_owner_edits_a_draft_tops_up_the_budget_and_terminates(
    stack: LocalStack, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    sid = (await session_ok(stack, "create", str(spec), "--budget", "10")).split()[1]
    params = tmp_path / "params.json"
    params.write_text(
        '{"chains": ["arbitrum"], "models": {"risk": "gpt-4-enterprise-finance", "execution": "web3-agent-v4"},'
        ' "max_base_fee_gwei": 50}'
    )
    assert "params replaced" in await session_ok(stack, "edit-params", sid, f"@{params}")
    assert "decorators: ofac_filter" in await session_ok(stack, "attach", sid, "ofac_filter")
    await session_ok(stack, "activate", sid)
    assert f"budget now {35 * 10**18} AGPT base units" in await session_ok(
        stack, "add-budget", sid, "--amount", "25"
    )
    # DRAFT-only actions are refused once ACTIVE, with the service's reason
    late = await session_cli(stack, "attach", sid, "kyc_tier4")
    assert late.returncode == 1 and "FAILED_PRECONDITION" in late.stderr
    assert "TERMINATED: no longer needed" in await session_ok(
        stack, "terminate", sid, "--reason", "no longer needed"
    )
    async with SessionClient(stack.services["session"].grpc, identity="test") as client:
        final = await client.get_session(sid)
    assert final.budget == str(35 * 10**18)
    assert list(final.spec.decorators) == ["ofac_filter"]
    assert json.loads(final.spec.params_json)["max_base_fee_gwei"] == 50


async def test_without_an_owner_key_the_command_says_how_to_give_one(
    stack: LocalStack, tmp_path: Path
) -> None:
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "apps.cli.main",
            "session",
            "pause",
            "1",
            "--session-addr",
            stack.services["session"].grpc,
            "--workdir",
            str(tmp_path / "no-stack-here"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "no owner key: pass --owner-key-file FILE or set AGENTGPT_OWNER_KEY" in proc.stderr
