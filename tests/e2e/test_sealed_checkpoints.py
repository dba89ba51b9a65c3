"""Per-session checkpoint keys on the real local stack (two executors, 2 s leases, two anvil chains, the
IPFS node, every service a process): every checkpoint body is sealed; the owner exports the whole history
with their private key alone (`agentgpt session export`, chains + IPFS only); after the executor holding
the session is killed and the session reassigned, the removed executor's key cannot open what the new
executor wrote, while the new executor and the recovery oracle read the predecessor's checkpoints."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentgpt.errors import FailedPrecondition
from agentgpt.ipfs import CheckpointReader, KuboStore
from agentgpt.ipfs.errors import DecryptionError
from agentgpt.sealing import Keyring, SessionKey, body_aad, open_body, sealed_recipients, unwrap_key
from agentgpt.tasklog import ExecutorKey
from apps.localnet.stack import OWNER_KEY, LocalStack
from tests.support import eventually
from tests.support.recovery import (
    check_exactly_once,
    factory,
    holder,
    new_session,
    recoveries,
    submit,
    two_executor_stack,
)
from tests.support.stack import session_cli

pytestmark = [pytest.mark.e2e, pytest.mark.chain, pytest.mark.ipfs, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with two_executor_stack(tmp_path_factory.mktemp("sealed")) as s:
        yield s


async def anchored_through(stack: LocalStack, sid: str, seq: int) -> None:
    async def done() -> None:
        assert factory(stack).functions.latestCheckpoint(int(sid)).call()[0] >= seq

    await eventually(done, timeout=60, what=f"checkpoint {seq} anchored")


async def export(stack: LocalStack, sid: str, out: Path, *more: str) -> dict[str, object]:
    proc = await session_cli(stack, "export", sid, "--out", str(out), *more)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "checkpoint(s) exported" in proc.stderr  # progress on stderr
    return json.loads(out.read_text())  # type: ignore[no-any-return]


async def test_owner_exports_everything_and_a_removed_executor_reads_nothing_after_its_removal(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path)  # checkpoint every 3 tasks
    await submit(stack, sid, 3)
    await anchored_through(stack, sid, 3)
    victim = await holder(stack, sid)
    victim_key = ExecutorKey(stack.executor_keys[victim])
    assert factory(stack).functions.getSession(int(sid)).call()[5] == victim_key.address

    stack.services[victim].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    await submit(stack, sid, 3, start=3)
    await check_exactly_once(stack, sid, 6)
    await anchored_through(stack, sid, 6)
    survivor = await holder(stack, sid)
    survivor_key = ExecutorKey(stack.executor_keys[survivor])
    assert survivor != victim

    # The owner's export: every checkpoint, decrypted, in seq order, from the chains and IPFS alone.
    doc = await export(stack, sid, tmp_path / "export.json")
    checkpoints = doc["checkpoints"]
    assert isinstance(checkpoints, list)
    seqs = [c["seq"] for c in checkpoints]
    assert seqs == sorted(seqs) and 3 in seqs and 6 in seqs
    assert all(c["sealed"] for c in checkpoints)
    exported = [e["seq"] for c in checkpoints for e in c["entries"]]
    assert exported == list(range(1, 7))  # every task's entry, once, decrypted
    by_seq = {c["seq"]: c for c in checkpoints}
    assert by_seq[3]["executor"] == victim_key.address and by_seq[6]["executor"] == survivor_key.address
    assert by_seq[6]["key_epoch"] > by_seq[3]["key_epoch"]  # a new data key after the reassignment
    assert {seq for c in checkpoints for seq in c["results"]} == {str(i) for i in range(1, 7)}
    assert "publish_report" in json.dumps(by_seq[6]["memory"])
    assert [a["executor"] for a in doc["assignments"]] == [victim_key.address, survivor_key.address]  # type: ignore[index]

    # The removed executor: it opens its own checkpoint, never the one written after its removal.
    ipfs = stack.state()["ipfs_api"]
    async with KuboStore(ipfs) as store:
        raw = CheckpointReader(store)
        mine = await raw.read(by_seq[3]["cid"])
        after = await raw.read(by_seq[6]["cid"])
        assert victim_key.address in sealed_recipients(mine["body"])
        assert victim_key.address not in sealed_recipients(after["body"])
        assert sealed_recipients(after["body"]) == [ExecutorKey(OWNER_KEY).address, survivor_key.address]
        victim_ring = Keyring(private_key=stack.executor_keys[victim])
        assert (await CheckpointReader(store, keyring=victim_ring).read(by_seq[3]["cid"]))["body"]["entries"]
        with pytest.raises(FailedPrecondition, match="is not one of them"):
            await CheckpointReader(store, keyring=victim_ring).read(by_seq[6]["cid"])
        # even its old data key, forced onto the new body, does not open it
        (entry,) = [r for r in mine["body"]["recipients"] if r["address"] == victim_key.address]
        old_key = unwrap_key(entry["wrapped"], bytes.fromhex(stack.executor_keys[victim].removeprefix("0x")))
        forced = Keyring(keys=[(sid, SessionKey(after["body"]["key_epoch"], old_key))])
        with pytest.raises(DecryptionError):
            open_body(after["body"], body_aad(sid, 6, after["state_root"]), forced, session_id=sid)

    # Another key than the owner's: a clear refusal naming who the bodies are wrapped to.
    stranger = tmp_path / "stranger.key"
    stranger.write_text("0x" + "5a" * 32 + "\n")
    proc = await session_cli(stack, "export", sid, "--owner-key-file", str(stranger))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert (
        ExecutorKey("0x" + "5a" * 32).address in proc.stderr and ExecutorKey(OWNER_KEY).address in proc.stderr
    )

    # The recovery oracle verified the victim's sealed checkpoint before the takeover: it asked the
    # session service for the session's keys (GetSessionKeys) and rechecked the body's task log.
    (recovery, *_) = await recoveries(stack, sid)
    assert recovery.checkpoint.seq >= 3 and not recovery.rejected, recovery
