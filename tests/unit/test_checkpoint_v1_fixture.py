"""A format-1 checkpoint, committed as bytes (tests/fixtures/checkpoint-v1, made once by
agentgpt.tasklog.checkpoint_document_v1), still reads and verifies with today's reader; and a history that
crosses the migration (a format-2 checkpoint whose previous one is that format-1 document) verifies with
the verifier the recovery oracle and `agentgpt verify` use (docs/checkpoint-format.md, "Migration")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multiformats import CID

from agentgpt.checkpoint_format import Domain, checkpoint_document, entry_digest, sign, verify_document
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.indexer.v1 import indexer_pb2 as ix
from agentgpt.ipfs import CheckpointReader, CheckpointWriter, EmbeddedStore, decode, encode
from agentgpt.tasklog import ZERO_HASH, ExecutorKey, LogEntry, TaskLog, verify_checkpoint_log
from agentgpt.verify import CheckpointVerifier

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "checkpoint-v1"
VECTORS: dict[str, Any] = json.loads((FIXTURES / "vectors.json").read_text())
V1, V2 = VECTORS["v1"], VECTORS["v2"]
DOMAIN = Domain(VECTORS["domain"]["chain_id"], VECTORS["domain"]["verifying_contract"])
HOME = DOMAIN.chain_id
# the executor of both documents: anvil's dev account 1 (apps.localnet.anvil.DEV_PRIVATE_KEYS[1])
EXECUTOR = ExecutorKey("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")


def h(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


class Chain:
    """The home chain's events about the session, as the indexer serves them (one page)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.events: list[ix.ChainEvent] = []

    def _add(self, name: str, args: dict[str, str]) -> None:
        self.events.append(
            ix.ChainEvent(
                cursor=len(self.events) + 1,
                chain_id=HOME,
                name=name,
                session_id=self.session_id,
                args_json=json.dumps(args),
            )
        )

    def assign(self, executor: str, epoch: int) -> None:
        self._add(
            "ExecutorAssigned", {"sessionId": self.session_id, "executor": executor, "epoch": str(epoch)}
        )

    def anchor(self, seq: int, cid: str, state_root: bytes, *, writer: str, epoch: int) -> None:
        self._add(
            "CheckpointAnchored",
            {
                "homeChainId": str(HOME),
                "sessionId": self.session_id,
                "seq": str(seq),
                "writer": writer,
                "epoch": str(epoch),
                "stateRoot": "0x" + state_root.hex(),
                "cid": "0x" + bytes(CID.decode(cid)).hex(),  # the event carries the binary CID
            },
        )

    async def list_events(self, req: ix.ListEventsRequest) -> ix.ListEventsResponse:
        found = [e for e in self.events if e.name in set(req.filter.names)]
        return ix.ListEventsResponse(events=found, page=cpb.PageResponse())


@pytest.fixture
async def store(tmp_path: Path) -> EmbeddedStore:
    """An IPFS store holding both committed documents (each put under the CID the fixture names)."""
    s = EmbeddedStore(tmp_path / "ipfs")
    for v in (V1, V2):
        assert await s.put((FIXTURES / v["file"]).read_bytes(), "dag-cbor") == v["cid"]
    return s


async def test_the_v1_document_still_reads_and_verifies(store: EmbeddedStore) -> None:
    data = (FIXTURES / V1["file"]).read_bytes()
    doc = await CheckpointReader(store).read(
        V1["cid"], session_id=V1["session_id"], seq=V1["seq"], state_root=h(V1["state_root"])
    )
    assert encode(doc) == data  # canonical: today's encoder writes the same bytes
    assert doc["version"] == 1 and isinstance(doc["prev_cid"], str) and "body" not in doc
    assert all(len(e["sig"]) == 64 for e in doc["entries"])  # v1: r || s over the raw entry hash
    got = verify_document(doc)
    assert got == verify_checkpoint_log(doc)
    assert (got.version, got.executor, got.entries, got.first_seq, got.prev_seq) == (
        1,
        EXECUTOR.address,
        2,
        1,
        0,
    )
    assert got.head == got.log_head == h(V1["state_root"]) == h(V1["entries"][-1]["hash"])
    assert (got.log_start, got.prev_cid, got.sealed) == (ZERO_HASH, "", False)
    assert [e.hash for e in map(LogEntry.from_cbor_obj, doc["entries"])] == [
        h(e["hash"]) for e in V1["entries"]
    ]


async def test_the_v2_after_it_links_to_its_state_root_and_log_head(store: EmbeddedStore) -> None:
    doc = await CheckpointReader(store).read(V2["cid"], session_id=V2["session_id"], seq=V2["seq"])
    assert doc["version"] == 2 and doc["prev"] == CID.decode(V1["cid"])
    assert doc["prev_seq"] == V1["seq"]
    assert doc["prev_root"] == doc["log_start"] == h(V1["state_root"])  # v1: the state root is the log head
    got = verify_document(doc, DOMAIN)
    assert (got.prev_cid, got.prev_seq, got.first_seq, got.entries) == (V1["cid"], 2, 3, 2)
    assert got.head == h(V2["state_root"]) and got.log_start == h(V1["state_root"])


@pytest.mark.parametrize("anchored", ["both", "v2 only"])
async def test_the_verifier_walks_a_history_from_v2_back_to_v1(store: EmbeddedStore, anchored: str) -> None:
    chain = Chain(V1["session_id"])
    chain.assign(EXECUTOR.address, 1)
    if anchored == "both":
        chain.anchor(V1["seq"], V1["cid"], h(V1["state_root"]), writer=EXECUTOR.address, epoch=1)
    chain.anchor(V2["seq"], V2["cid"], h(V2["state_root"]), writer=EXECUTOR.address, epoch=1)
    verifier = CheckpointVerifier(chain, CheckpointReader(store), domain=DOMAIN)
    resp = await verifier.verified_state(V1["session_id"])
    v = resp.verification
    assert v.verified, v.failure
    assert v.cid_matches_content and v.state_root_matches and v.signatures_valid
    assert (resp.checkpoint.seq, resp.checkpoint.cid, list(resp.rejected)) == (V2["seq"], V2["cid"], [])


async def _v2_after_v1(store: EmbeddedStore, **changes: Any) -> cpb.Checkpoint:
    """Another format-2 checkpoint after the v1 fixture (tasks prev_seq+1 .. 4), with its inputs changed."""
    v1 = decode((FIXTURES / V1["file"]).read_bytes())
    inputs: dict[str, Any] = {
        "prev_cid": V1["cid"],
        "prev_seq": V1["seq"],
        "prev_root": bytes(v1["state_root"]),
        "log_start": bytes(v1["state_root"]),
    }
    inputs.update(changes)
    sid = V1["session_id"]
    log = TaskLog(
        sid,
        EXECUTOR,
        inputs["log_start"],
        inputs["prev_seq"],
        sign_entry=lambda seq, digest: sign(EXECUTOR, entry_digest(DOMAIN, sid, seq, digest)),
    )
    for seq in range(inputs["prev_seq"] + 1, 5):
        log.append(seq, "analyze_market", "succeeded", {"seq": seq}, context_epoch=1)
    doc = checkpoint_document(
        domain=DOMAIN,
        session_id=sid,
        seq=log.seq,
        epoch=1,
        entries=log.pending,
        results=log.results,
        key=EXECUTOR,
        context=[],
        budget={},
        memory={},
        chains=["arbitrum"],
        **inputs,
    )
    verify_document(doc, DOMAIN)  # each one is consistent in itself: only its link to v1 is wrong
    cid, _ = await CheckpointWriter(store).write(doc)
    return cpb.Checkpoint(session_id=sid, seq=log.seq, cid=cid, state_root=bytes(doc["state_root"]))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"log_start": b"\x05" * 32}, "task log starts from 0x0505"),
        ({"prev_root": b"\x06" * 32}, f"ends at task 2 with {V1['state_root']}, not task 2 with 0x0606"),
        ({"prev_seq": 1}, "has seq=2, but its anchor says 1"),
        ({"prev_cid": ""}, "its history is cut"),
    ],
)
async def test_a_v2_that_does_not_continue_the_v1_is_rejected(
    store: EmbeddedStore, changes: dict[str, Any], reason: str
) -> None:
    cp = await _v2_after_v1(store, **changes)
    chain = Chain(V1["session_id"])
    chain.assign(EXECUTOR.address, 1)
    chain.anchor(cp.seq, cp.cid, bytes(cp.state_root), writer=EXECUTOR.address, epoch=1)
    verifier = CheckpointVerifier(chain, CheckpointReader(store), domain=DOMAIN)
    resp, rejected = await verifier.newest_verified(V1["session_id"])
    assert not resp.verification.verified and [r.checkpoint.cid for r in rejected] == [cp.cid]
    assert reason in rejected[0].reason, rejected[0].reason
