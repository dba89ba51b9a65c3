"""The recovery oracle's checkpoint verification on real checkpoint documents in a content store: a
good checkpoint verifies; a tampered, re-signed, mis-anchored or missing one is rejected with the
reason and the newest checkpoint that does verify is returned instead."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from agentgpt.clients import IndexerClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import NotFound, RpcError, Unavailable
from agentgpt.indexer.v1 import indexer_pb2 as ix
from agentgpt.ipfs import CheckpointReader, CheckpointWriter, EmbeddedStore, generate_key
from agentgpt.tasklog import ZERO_HASH, ExecutorKey, TaskLog, checkpoint_document
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.recovery_oracle.verify import CheckpointVerifier

EXECUTOR = ExecutorKey(DEV_PRIVATE_KEYS[1])
OTHER = ExecutorKey(DEV_PRIVATE_KEYS[3])
SID = "7"


class Indexer:
    """What the verifier asks the indexer: the latest anchor per chain and the assigned executor."""

    def __init__(self) -> None:
        self.anchors: list[ix.AnchorOnChain] = []
        self.executor = EXECUTOR.address
        self.down = False

    def anchor(self, chain_id: int, cp: cpb.Checkpoint) -> None:
        self.anchors = [a for a in self.anchors if a.chain_id != chain_id]
        self.anchors.append(ix.AnchorOnChain(chain_id=chain_id, checkpoint=cp))

    async def get_latest_anchor(self, session_id: str) -> ix.GetLatestAnchorResponse:
        if self.down:
            raise RpcError("indexer", "GetLatestAnchor", grpc.StatusCode.UNAVAILABLE, "connection refused")
        if not self.anchors:
            raise RpcError("indexer", "GetLatestAnchor", grpc.StatusCode.NOT_FOUND, "no anchors")
        return ix.GetLatestAnchorResponse(per_chain=self.anchors)

    async def get_on_chain_session(self, session_id: str) -> ix.GetOnChainSessionResponse:
        return ix.GetOnChainSessionResponse(session_id=session_id, executor=self.executor)


class Checkpoints:
    """Writes checkpoints the way the executor does: a signed task log, then the document."""

    def __init__(self, writer: CheckpointWriter, key: ExecutorKey = EXECUTOR) -> None:
        self.writer, self.log = writer, TaskLog(SID, key)
        self.prev_cid, self.prev_root = "", ZERO_HASH

    async def make(self, tasks: int, **tamper: Any) -> cpb.Checkpoint:
        start = self.log.seq
        for i in range(start + 1, start + tasks + 1):
            self.log.append(i, "analyze_market", "succeeded", {"i": i}, context_epoch=1)
        entries = self.log.take_pending()
        if "entries" in tamper:
            entries = tamper.pop("entries")(entries)
        doc = checkpoint_document(
            session_id=SID,
            seq=self.log.seq,
            state_root=self.log.head,
            prev_cid=self.prev_cid,
            prev_root=self.prev_root,
            entries=entries,
            key=self.log.key,
            context=[{"epoch": 1}],
            budget={"spent": 0},
            memory={},
            chains=["arbitrum", "polygon"],
        )
        doc.update(tamper)
        cid, _ = await self.writer.write(doc)
        self.prev_cid, self.prev_root = cid, self.log.head
        return cpb.Checkpoint(session_id=SID, seq=self.log.seq, cid=cid, state_root=self.log.head)


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "ipfs")


async def test_an_anchored_checkpoint_verifies_on_every_chain(store: EmbeddedStore) -> None:
    indexer, key = Indexer(), generate_key()
    cps = Checkpoints(CheckpointWriter(store, key=key))
    await cps.make(3)
    second = await cps.make(4)
    indexer.anchor(31337, second)
    indexer.anchor(31338, second)
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store, key=key))
    resp = await verifier.verified_state(SID)
    v = resp.verification
    assert v.verified and v.cid_matches_content and v.state_root_matches and v.signatures_valid
    assert list(v.anchored_on) == [31337, 31338] and not v.failure
    assert (resp.checkpoint.seq, resp.checkpoint.cid) == (7, second.cid) and not resp.rejected


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (
            {"entries": lambda es: [es[0], replace(es[1], result_hash=b"\x01" * 32), *es[2:]]},
            "hash does not match",
        ),
        ({"entries": lambda es: es[1:]}, "does not link"),
        ({"executor": OTHER.address}, "is not the key of executor"),
        ({"state_root": b"\x02" * 32}, "anchor says"),
    ],
)
async def test_a_bad_newest_checkpoint_falls_back_to_the_last_good_one(
    store: EmbeddedStore, tamper: dict[str, Any], reason: str
) -> None:
    indexer = Indexer()
    cps = Checkpoints(CheckpointWriter(store))
    good = await cps.make(3)
    bad = await cps.make(3, **tamper)
    indexer.anchor(31337, bad)  # the home chain has the newest (bad) one, the other the older good one
    indexer.anchor(31338, good)
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store))
    resp = await verifier.verified_state(SID)
    assert resp.verification.verified and resp.checkpoint.cid == good.cid
    assert list(resp.verification.anchored_on) == [31338]
    assert [c.cid for c in resp.rejected] == [bad.cid]
    check = await verifier.check(bad, EXECUTOR.address)
    assert not check.verified and check.cid_matches_content and reason in check.failure


async def test_rejections_say_why(store: EmbeddedStore) -> None:
    indexer = Indexer()
    signed_by_other = Checkpoints(CheckpointWriter(store), key=OTHER)
    cp = await signed_by_other.make(2)
    indexer.anchor(31337, cp)
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store))
    resp = await verifier.verified_state(SID)
    assert not resp.verification.verified and not resp.HasField("checkpoint")
    assert f"signed by {OTHER.address}, not the assigned executor" in resp.verification.failure
    # an anchored CID whose content is nowhere: data loss, rejected (not an outage)
    missing = cpb.Checkpoint(
        session_id=SID,
        seq=9,
        cid="bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        state_root=b"\x03" * 32,
    )
    indexer.anchor(31338, missing)
    resp = await verifier.verified_state(SID)
    assert [c.seq for c in resp.rejected] == [9, 2] and "not retrievable" in resp.verification.failure
    # a document that is not a task log at all
    cid, _ = await CheckpointWriter(store).write({"session_id": SID, "seq": 11, "state_root": b"\x04" * 32})
    indexer.anchor(31338, cpb.Checkpoint(session_id=SID, seq=11, cid=cid, state_root=b"\x04" * 32))
    check = await verifier.check(indexer.anchors[-1].checkpoint, EXECUTOR.address)
    assert check.cid_matches_content and not check.verified and "task log" in check.failure


async def test_no_anchor_is_not_found_and_an_outage_is_unavailable(store: EmbeddedStore) -> None:
    indexer = Indexer()
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store))
    with pytest.raises(NotFound, match="no anchored checkpoint"):
        await verifier.verified_state(SID)
    indexer.down = True
    with pytest.raises(Unavailable, match="connection refused"):
        await verifier.verified_state(SID)
