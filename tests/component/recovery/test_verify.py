"""The recovery oracle's checkpoint verification on real checkpoint documents in a content store: a
good checkpoint verifies; a tampered, re-signed, mis-anchored or missing one is rejected with the
reason and the newest checkpoint that does verify is returned instead."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from agentgpt.clients import IndexerClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import NotFound, Unavailable
from agentgpt.ipfs import CheckpointReader, CheckpointWriter, EmbeddedStore, generate_key
from agentgpt.tasklog import ExecutorKey
from agentgpt.verify import ChainRecord, CheckpointVerifier
from apps.localnet.anvil import DEV_PRIVATE_KEYS

from .fakes import EXECUTOR, HOME, OTHER, OTHER_CHAIN, SID, Checkpoints, Indexer


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
    bad.session_id = SID
    check = await verifier.check(bad, await verifier.record(SID))
    assert not check.verified and check.cid_matches_content and reason in check.failure


async def test_rejections_say_why(store: EmbeddedStore) -> None:
    indexer = Indexer()
    signed_by_other = Checkpoints(CheckpointWriter(store), key=OTHER)
    cp = await signed_by_other.make(2)
    indexer.anchor(31337, cp)
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store))
    resp = await verifier.verified_state(SID)
    assert not resp.verification.verified and not resp.HasField("checkpoint")
    assert f"signed by {OTHER.address}, but chain 31337 shows {EXECUTOR.address}" in resp.verification.failure
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
    resp = await verifier.verified_state(SID)
    assert [c.seq for c in resp.rejected] == [11, 9, 2] and "seq 11: checkpoint" in resp.verification.failure
    assert "task log" in resp.verification.failure


async def test_no_anchor_is_not_found_and_an_outage_is_unavailable(store: EmbeddedStore) -> None:
    indexer = Indexer()
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store))
    assert isinstance(await verifier.record(SID), ChainRecord)
    with pytest.raises(NotFound, match="no anchored checkpoint"):
        await verifier.verified_state(SID)
    indexer.down = True
    with pytest.raises(Unavailable, match="connection refused"):
        await verifier.verified_state(SID)


async def test_the_whole_history_is_checked_back_to_the_first_checkpoint(store: EmbeddedStore) -> None:
    indexer = Indexer()
    cps = Checkpoints(CheckpointWriter(store))
    first = await cps.make(2)
    await cps.make(2)  # never anchored (a newer one overtook it in the anchor queue): read from IPFS
    third = await cps.make(2)
    indexer.anchor(HOME, first)
    indexer.anchor(HOME, third)
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store))
    resp = await verifier.verified_state(SID)
    assert resp.verification.verified and resp.checkpoint.seq == 6

    # a checkpoint whose prev_cid is rewritten to an older checkpoint, or emptied, does not verify
    for tamper, reason in (
        ({"prev_cid": first.cid}, f"but seq 6 was anchored as {third.cid}"),
        ({"prev_cid": ""}, "its history is cut"),
    ):
        bad = await _continue(cps, 2, tamper)
        indexer.anchor(HOME, bad)
        resp = await verifier.verified_state(SID)
        assert resp.checkpoint.seq == 6 and resp.rejected[0].seq == 8, tamper
        bad.session_id = SID
        check = await verifier.check(bad, await verifier.record(SID))
        assert check.cid_matches_content and check.state_root_matches and reason in check.failure, tamper
        indexer.events = [e for e in indexer.events if '"seq": "8"' not in e.args_json]


async def _continue(cps: Checkpoints, tasks: int, tamper: dict[str, Any]) -> cpb.Checkpoint:
    """One more checkpoint after `cps`'s last, with `tamper` applied, without advancing `cps`."""
    saved = (cps.log.head, cps.log.seq, cps.prev_cid, cps.prev_root)
    cp = await cps.make(tasks, **tamper)
    cps.log.head, cps.log.seq, cps.prev_cid, cps.prev_root = saved
    return cp


async def test_signers_are_checked_per_epoch_across_an_executor_change(store: EmbeddedStore) -> None:
    indexer = Indexer()
    cps = Checkpoints(CheckpointWriter(store))
    old = await cps.make(3)  # executor 1 at epoch 1
    indexer.anchor(HOME, old)
    indexer.assign(OTHER.address, epoch=2)  # reassigned: the new executor continues the same log
    cps.log.key = OTHER
    new = await cps.make(3)
    indexer.anchor(HOME, new, writer=OTHER.address, epoch=2)
    indexer.anchor(OTHER_CHAIN, new, writer=OTHER.address, epoch=1)  # the registry's own epoch
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store))
    resp = await verifier.verified_state(SID)
    assert resp.verification.verified and resp.checkpoint.seq == 6  # both signers, each in its epoch
    assert list(resp.verification.anchored_on) == [HOME, OTHER_CHAIN]

    # the fenced executor signs a later checkpoint and gets it anchored somewhere: a foreign signer
    cps.log.key = EXECUTOR
    foreign = await cps.make(1)
    indexer.anchor(OTHER_CHAIN, foreign)
    resp = await verifier.verified_state(SID)
    assert resp.checkpoint.seq == 6 and [c.seq for c in resp.rejected] == [7]
    foreign.session_id = SID
    check = await verifier.check(foreign, await verifier.record(SID))
    assert "written by an executor fenced out before" in check.failure
    # signed by a key that was never assigned at all
    cps.log.key = ExecutorKey(DEV_PRIVATE_KEYS[5])
    stranger = await _continue(cps, 1, {})
    indexer.anchor(OTHER_CHAIN, stranger, writer=cps.log.key.address)
    stranger.session_id = SID
    check = await verifier.check(stranger, await verifier.record(SID))
    assert "who was not the assigned executor when it was written" in check.failure


async def test_anchors_that_disagree_and_a_missing_record_are_failures(store: EmbeddedStore) -> None:
    indexer = Indexer()
    cps = Checkpoints(CheckpointWriter(store))
    good = await cps.make(2)
    indexer.anchor(HOME, good)
    other = await Checkpoints(CheckpointWriter(store)).make(4)
    indexer.anchor(HOME, other)
    indexer.anchor(OTHER_CHAIN, replace_cid(other, good.cid))
    verifier = CheckpointVerifier(cast(IndexerClient, indexer), CheckpointReader(store))
    resp = await verifier.verified_state(SID)
    assert resp.checkpoint.seq == 2 and [c.seq for c in resp.rejected] == [4]
    check = await verifier.check(resp.rejected[0], await verifier.record(SID))
    assert not check.verified and "disagree across chains" in check.failure

    indexer.events = [e for e in indexer.events if e.name != "ExecutorAssigned"]
    resp = await verifier.verified_state(SID)
    assert not resp.verification.verified
    assert "has no record of the executors assigned" in resp.verification.failure


def replace_cid(cp: cpb.Checkpoint, cid: str) -> cpb.Checkpoint:
    out = cpb.Checkpoint()
    out.CopyFrom(cp)
    out.cid = cid
    return out
