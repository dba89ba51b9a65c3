"""`agentgpt verify` on the local stack as real processes (2 anvil chains, the IPFS node, arlocal, the four
services), reading only the chains, IPFS and Arweave: a completed session verifies end to end (history,
final anchor, archived log, its Arweave copy), with and without the owner's key; and each kind of tampering
— an edited entry, a checkpoint re-signed by another key, a rewritten `prev`, anchors that disagree across
chains, an archived log altered on its way from Arweave — makes it fail with the reason.

The forged checkpoints are written as the assigned executor would (its key is the local stack's dev key),
stored on the stack's IPFS node and anchored on chain from the executor's account, so only the verifier
stands between them and being believed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account
from eth_utils.crypto import keccak
from multiformats import CID
from web3 import Web3
from web3.exceptions import ContractCustomError

from agentgpt.checkpoint_format import Domain, checkpoint_document, entry_digest, sign
from agentgpt.contracts import load_artifact
from agentgpt.ipfs import KuboStore, decode, encode
from agentgpt.tasklog import ExecutorKey, LogEntry, TaskLog
from agentgpt.zk.batch import parse_block, witnesses, zk_block
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from apps.localnet.stack import EXECUTOR_KEY, LocalStack
from tests.support import eventually
from tests.support.stack import cli, local_stack, session_ok

pytestmark = [pytest.mark.e2e, pytest.mark.chain, pytest.mark.ipfs, pytest.mark.timeout(600)]

SPEC = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
checkpoint_interval: 2
"""


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with local_stack(tmp_path_factory.mktemp("verify")) as s:
        yield s


class Chain:
    def __init__(self, stack: LocalStack, name: str, contract: str) -> None:
        network = json.loads(Path(stack.state()["network"]).read_text())
        info = next(c for c in network["chains"] if c["name"] == name)
        self.w3 = Web3(Web3.HTTPProvider(info["rpc_url"], request_kwargs={"timeout": 10}))
        self.chain_id = int(info["chain_id"])
        self.contract = self.w3.eth.contract(
            address=info["contracts"][contract], abi=load_artifact(contract).abi
        )

    def send(self, fn: Any, key: str = EXECUTOR_KEY) -> None:
        acct = Account.from_key(key)
        tx = fn.build_transaction(
            {"from": acct.address, "nonce": self.w3.eth.get_transaction_count(acct.address, "pending")}
        )
        signed = acct.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        assert receipt["status"] == 1


async def verify(stack: LocalStack, sid: str, *args: str) -> tuple[int, dict[str, Any]]:
    proc = await cli(stack, "verify", sid, "--json", *args)
    assert proc.returncode in (0, 1), (proc.stdout, proc.stderr)
    return proc.returncode, json.loads(proc.stdout)


async def new_session(stack: LocalStack, tmp_path: Path, tasks: int = 2, spec_text: str = SPEC) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    sid = (await session_ok(stack, "create", str(spec), "--budget", "50")).split()[1]
    await session_ok(stack, "activate", sid)
    for i in range(tasks):
        await session_ok(stack, "submit", sid, "publish_report", "--args", json.dumps({"title": f"r{i}"}))
    home = Chain(stack, "arbitrum", "SessionFactory")
    registry = Chain(stack, "polygon", "AnchorRegistry").contract

    async def anchored() -> None:  # on both chains: the executor's account is idle from here on
        assert home.contract.functions.latestCheckpoint(int(sid)).call()[0] == tasks
        assert registry.functions.streamOf(home.chain_id, int(sid)).call()[2] == tasks

    await eventually(anchored, timeout=90)
    return sid


async def test_a_completed_session_verifies_from_the_chains_ipfs_and_arweave(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path, tasks=3)
    await session_ok(stack, "complete", sid)
    code, report = await verify(stack, sid)
    assert code == 0, report
    assert report["checkpoint"]["seq"] == 3  # the final checkpoint covers every task
    seqs = [h["seq"] for h in report["history"]]  # newest first, back to the first checkpoint
    assert seqs[0] == 3 and seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert {c["check"]: c["ok"] for c in report["closing"]} == {
        "final anchor": True,
        "event log": True,
        "arweave": True,
    }
    # sealed by default: without a key the headers verify and the bodies are named as needing it
    assert report["needs_key"] and not any(h["body_checked"] for h in report["history"])
    code, keyed = await verify(stack, sid, "--key-file", stack.state()["owner_key_file"])
    assert code == 0 and all(h["body_checked"] for h in keyed["history"]) and not keyed["needs_key"]
    # a wrong key: the bodies do not open, and verify says so
    wrong = tmp_path / "wrong.key"
    wrong.write_text(DEV_PRIVATE_KEYS[9] + "\n")
    code, bad = await verify(stack, sid, "--key-file", str(wrong))
    assert code == 1 and bad["rejected"], bad
    human = await cli(stack, "verify", sid)
    assert human.returncode == 0 and "ok final anchor" in human.stdout and "ok arweave" in human.stdout


class Forger:
    """Writes checkpoints after a session's last one as its executor would, optionally tampered."""

    def __init__(self, stack: LocalStack, sid: str) -> None:
        self.stack, self.sid = stack, sid
        self.home = Chain(stack, "arbitrum", "SessionFactory")
        self.other = Chain(stack, "polygon", "AnchorRegistry")
        self.domain = Domain(self.home.chain_id, self.home.contract.address)
        self.key = ExecutorKey(EXECUTOR_KEY)

    async def last(self) -> tuple[str, dict[str, Any]]:
        logs = self.home.contract.events.CheckpointAnchored().get_logs(
            from_block=0, argument_filters={"sessionId": int(self.sid)}
        )
        newest = max(logs, key=lambda e: e["args"]["seq"])
        cid = str(CID.decode(bytes(newest["args"]["cid"])).encode("base32"))
        async with KuboStore(self.stack.state()["ipfs_api"]) as store:
            return cid, decode(await store.get(cid))

    async def write(self, key: ExecutorKey | None = None, **tamper: Any) -> tuple[int, str, bytes]:
        """A next checkpoint (one more task) signed by `key`, `tamper` applied to the finished document."""
        prev_cid, prev = await self.last()
        key = key or self.key
        seq = int(prev["seq"]) + 1
        log = TaskLog(
            self.sid,
            key,
            bytes(prev["log_head"]),
            int(prev["seq"]),
            sign_entry=lambda s, h: sign(key, entry_digest(self.domain, self.sid, s, h)),
        )
        log.append(seq, "publish_report", "succeeded", {"outputs": [{"forged": True}]}, context_epoch=1)
        doc = checkpoint_document(
            domain=self.domain,
            session_id=self.sid,
            seq=seq,
            epoch=int(prev["epoch"]),
            prev_cid=prev_cid,
            prev_seq=int(prev["seq"]),
            prev_root=bytes(prev["state_root"]),
            log_start=bytes(prev["log_head"]),
            entries=list(log.pending),
            results=dict(log.results),
            key=key,
            context=[],
            budget={"budget": "0", "spent": "0"},
            memory={},
            chains=["arbitrum", "polygon"],
        )
        for field, change in tamper.items():
            doc[field] = change(doc) if callable(change) else change
        async with KuboStore(self.stack.state()["ipfs_api"]) as store:
            cid = await store.put(encode(doc), "dag-cbor")
        return seq, cid, bytes(doc["state_root"])

    def anchor(self, seq: int, cid: str, root: bytes, *, home: bool = True, other: bool = True) -> None:
        raw = bytes(CID.decode(cid))
        if home:
            self.home.send(self.home.contract.functions.anchorCheckpoint(int(self.sid), seq, raw, root))
        if other:
            self.other.send(
                self.other.contract.functions.anchorCheckpoint(
                    self.home.chain_id, int(self.sid), seq, raw, root
                )
            )


async def test_a_zk_batch_prover_session_anchors_proved_checkpoints_that_verify_rechecks(
    stack: LocalStack, tmp_path: Path
) -> None:
    sid = await new_session(stack, tmp_path, tasks=4, spec_text=SPEC + "decorators: [zk_batch_prover]\n")
    forger = Forger(stack, sid)
    root, spent = forger.home.contract.functions.batchProofOf(int(sid)).call()
    proved = forger.home.contract.events.BatchesProved().get_logs(
        from_block=0, argument_filters={"sessionId": int(sid)}
    )
    assert root != 0 and spent > 0 and proved and proved[-1]["args"]["seq"] == 4  # checked on chain
    _, last = await forger.last()
    batches, _ = parse_block(last["zk"])
    assert batches[-1][0].new_root == root and batches[-1][0].spent_after == spent
    code, report = await verify(stack, sid, "--key-file", stack.state()["owner_key_file"])
    assert code == 0 and report["checkpoint"]["seq"] == 4, report  # proofs and records rechecked
    # a next checkpoint whose zk block carries an earlier proof for its own (true) statement, anchored
    # where nothing checks proofs (the second chain's AnchorRegistry): verify refuses it
    old_proof = batches[-1][1]

    def zk(doc: dict[str, Any]) -> dict[str, Any]:
        entry = LogEntry.from_cbor_obj(doc["body"]["entries"][0])
        (w,) = witnesses(root, spent, [entry.hash], [0])
        return zk_block([(w.statement, old_proof)], [0])

    seq, cid, state_root = await forger.write(zk=zk)
    forger.anchor(seq, cid, state_root, home=False)
    code, report = await verify(stack, sid)
    assert code == 1 and "Groth16 proof does not verify" in report["rejected"][0]["reason"], report
    assert report["checkpoint"]["seq"] == 4
    # the home chain refuses a checkpoint without its proofs outright
    with pytest.raises(ContractCustomError) as refused:
        forger.home.send(
            forger.home.contract.functions.anchorCheckpoint(int(sid), seq, bytes(CID.decode(cid)), state_root)
        )
    assert str(refused.value.data).startswith("0x" + keccak(text="ProofRequired(uint256)")[:4].hex())


def _edit_entry(doc: dict[str, Any]) -> dict[str, Any]:
    body = dict(doc["body"])
    entry = dict(body["entries"][0])
    entry["kind"] = "rebalance"  # another task than the one signed
    body["entries"] = [entry]
    return body


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("edited entry", "hash does not match its content"),
        ("re-signed by another key", "anchoring it"),  # signed by one key, anchored by the executor
        ("rewritten prev", "as its previous checkpoint"),
        ("forged anchor on one chain", "disagree across chains"),
    ],
)
async def test_tampering_makes_verify_fail_with_the_reason(
    stack: LocalStack, tmp_path: Path, case: str, reason: str
) -> None:
    sid = await new_session(stack, tmp_path)
    code, before = await verify(stack, sid)
    assert code == 0, before
    forger, good = Forger(stack, sid), 2
    if case == "edited entry":
        seq, cid, root = await forger.write(body=_edit_entry)
        forger.anchor(seq, cid, root)
    elif case == "re-signed by another key":
        seq, cid, root = await forger.write(key=ExecutorKey(DEV_PRIVATE_KEYS[9]))
        forger.anchor(seq, cid, root)  # anchored by the assigned executor, signed by someone else
    elif case == "rewritten prev":
        seq, cid, root = await forger.write()
        forger.anchor(seq, cid, root)  # a good checkpoint 3, then a 4 that names checkpoint 2 as its prev
        good = 3
        two = forger.home.contract.events.CheckpointAnchored().get_logs(
            from_block=0, argument_filters={"sessionId": int(sid), "seq": 2}
        )[0]
        seq, cid, root = await forger.write(prev=CID.decode(bytes(two["args"]["cid"])))
        forger.anchor(seq, cid, root)
    else:  # two checkpoints 3 that differ (in a field no signature covers): one on each chain
        seq, cid, root = await forger.write()
        other_seq, other_cid, other_root = await forger.write(
            body=lambda d: {**d["body"], "chains": ["polygon"]}
        )
        assert other_cid != cid and other_seq == seq
        forger.anchor(seq, cid, root, other=False)
        forger.anchor(other_seq, other_cid, other_root, home=False)
    code, report = await verify(stack, sid)
    assert code == 1, report
    assert report["rejected"] and reason in report["rejected"][0]["reason"], report["rejected"]
    assert report["checkpoint"]["seq"] == good  # the last good checkpoint still verifies


async def test_a_log_altered_on_its_way_from_arweave_fails_verify(stack: LocalStack, tmp_path: Path) -> None:
    sid = await new_session(stack, tmp_path)
    await session_ok(stack, "complete", sid)
    gateway = stack.state()["arweave_gateway"]

    async def altered(request: web.Request) -> web.StreamResponse:
        async with aiohttp.ClientSession() as http:
            async with http.request(
                request.method, gateway + request.path_qs, data=await request.read()
            ) as up:
                body = await up.read()
                if request.path.endswith("/data") or request.path.count("/") == 1:
                    body = body.replace(b"session", b"sessiom", 1) if body else body
                return web.Response(body=body, status=up.status, content_type=up.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", altered)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        code, report = await verify(stack, sid, "--arweave-gateway", f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
    assert code == 1, report
    arweave = next(c for c in report["closing"] if c["check"] == "arweave")
    assert arweave["ok"] is False and (
        "does not verify" in arweave["detail"] or "other bytes" in arweave["detail"]
    )
    code, honest = await verify(stack, sid)
    assert code == 0, honest
