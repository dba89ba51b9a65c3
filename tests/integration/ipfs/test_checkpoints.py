"""Checkpoint write/read end to end, on both stores (the real node and the embedded directory store)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentgpt.errors import FailedPrecondition, InvalidArgument
from agentgpt.ipfs import codec
from agentgpt.ipfs.checkpoints import CheckpointReader, CheckpointWriter, checkpoint_aad
from agentgpt.ipfs.cid import MAX_BLOCK_SIZE, codec_of, dag_cbor_cid, file_cid
from agentgpt.ipfs.errors import (
    CidMismatchError,
    ContentIntegrityError,
    ContentNotFound,
    DecryptionError,
    DocumentFormatError,
)
from agentgpt.ipfs.store import ContentStore, EmbeddedStore, KuboStore

KEY = bytes(range(32))
SESSION = str(2**255 + 12345)


def checkpoint(seq: int = 50, **extra: object) -> dict:
    return {
        "session_id": SESSION,
        "seq": seq,
        "state_root": bytes.fromhex("ab" * 32),
        "tasks": [{"i": i, "action": "swap", "tx": os.urandom(32), "ok": True} for i in range(3)],
        "context": {"epoch": 2, "adapter": "planner/v1", "decorators": ["ofac_filter"]},
        "budget": {"spent": 10**18, "limit": 5 * 10**18},
        **extra,
    }


@pytest.fixture(params=["embedded", pytest.param("kubo", marks=pytest.mark.ipfs)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ContentStore]:
    s: ContentStore
    if request.param == "embedded":
        s = EmbeddedStore(tmp_path / "blocks")
    else:
        s = KuboStore(request.getfixturevalue("ipfs_api"), timeout=20.0)
    yield s
    await s.close()


async def test_plain_checkpoint_is_a_dag_cbor_block_named_by_its_canonical_bytes(store: ContentStore) -> None:
    doc = checkpoint()
    cid, size = await CheckpointWriter(store).write(doc)
    assert cid == dag_cbor_cid(codec.encode(doc)) and size == len(codec.encode(doc))
    assert codec_of(cid) == "dag-cbor"
    got = await CheckpointReader(store).read(cid, session_id=SESSION, seq=50, state_root=doc["state_root"])
    assert got == doc
    # same document, other insertion order -> same CID (anyone can recompute the anchor)
    again, _ = await CheckpointWriter(store).write(dict(reversed(list(doc.items()))))
    assert again == cid


async def test_encrypted_checkpoint_round_trip_and_hides_the_content(store: ContentStore) -> None:
    doc = checkpoint(secret="api-key-material")
    cid, size = await CheckpointWriter(store, key=KEY).write(doc)
    assert codec_of(cid) == "raw"
    stored = await store.get(cid)
    assert len(stored) == size and codec.is_sealed(stored) and b"api-key-material" not in stored
    reader = CheckpointReader(store, key=KEY)
    assert await reader.read(cid, session_id=SESSION, seq=50) == doc


async def test_encrypted_checkpoint_needs_key_and_anchor_context(store: ContentStore) -> None:
    cid, _ = await CheckpointWriter(store, key=KEY).write(checkpoint())
    with pytest.raises(FailedPrecondition, match="no key"):
        await CheckpointReader(store).read(cid, session_id=SESSION, seq=50)
    with pytest.raises(InvalidArgument):
        await CheckpointReader(store, key=KEY).read(cid)
    with pytest.raises(DecryptionError):
        await CheckpointReader(store, key=os.urandom(32)).read(cid, session_id=SESSION, seq=50)


async def test_envelope_cannot_be_replayed_as_another_seq_or_session(store: ContentStore) -> None:
    cid, _ = await CheckpointWriter(store, key=KEY).write(checkpoint(seq=50))
    reader = CheckpointReader(store, key=KEY)
    with pytest.raises(DecryptionError, match=cid):
        await reader.read(cid, session_id=SESSION, seq=100)
    with pytest.raises(DecryptionError):
        await reader.read(cid, session_id="1", seq=50)


async def test_reader_checks_the_document_against_the_anchor(store: ContentStore) -> None:
    doc = checkpoint(seq=7)
    cid, _ = await CheckpointWriter(store).write(doc)
    reader = CheckpointReader(store)
    with pytest.raises(ContentIntegrityError, match="seq=7, but its anchor says 8"):
        await reader.read(cid, seq=8)
    with pytest.raises(ContentIntegrityError, match="state_root"):
        await reader.read(cid, state_root=bytes(32))
    with pytest.raises(ContentIntegrityError, match="session_id"):
        await reader.read(cid, session_id="42")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"seq": 1, "state_root": bytes(32)}, "checkpoint.session_id"),
        ({"session_id": "0x12", "seq": 1, "state_root": bytes(32)}, "checkpoint.session_id"),
        ({"session_id": "1", "seq": -1, "state_root": bytes(32)}, "checkpoint.seq"),
        ({"session_id": "1", "seq": True, "state_root": bytes(32)}, "checkpoint.seq"),
        ({"session_id": "1", "seq": 1, "state_root": bytes(31)}, "checkpoint.state_root"),
        ({"session_id": "1", "seq": 1, "state_root": "ab" * 32}, "checkpoint.state_root"),
        ({"session_id": "1", "seq": 1, "state_root": bytes(32), "fee": 0.5}, "document.fee"),
    ],
)
async def test_writer_refuses_invalid_checkpoints_before_storing(
    store: ContentStore, doc: dict, field: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        await CheckpointWriter(store).write(doc)
    assert err.value.field == field


async def test_stored_bytes_that_are_not_a_checkpoint_are_rejected(store: ContentStore) -> None:
    not_a_checkpoint = await store.put(codec.encode({"hello": "world"}), "dag-cbor")
    with pytest.raises(DocumentFormatError, match="session_id is required"):
        await CheckpointReader(store).read(not_a_checkpoint)
    garbage = await store.put(b"\xff\x00garbage", "raw")
    with pytest.raises(DocumentFormatError):
        await CheckpointReader(store).read(garbage)
    # a forged envelope stored under its own (valid) CID still fails authentication
    forged = codec.seal(codec.encode(checkpoint()), os.urandom(32), checkpoint_aad(SESSION, 50))
    forged_cid = await store.put(forged, "raw")
    with pytest.raises(DecryptionError):
        await CheckpointReader(store, key=KEY).read(forged_cid, session_id=SESSION, seq=50)


async def test_checkpoint_over_the_block_limit_is_stored_as_a_file(store: ContentStore) -> None:
    doc = checkpoint(log=[os.urandom(1024) for _ in range(1100)])  # ~1.1 MiB encoded
    cid, size = await CheckpointWriter(store).write(doc)
    assert size > MAX_BLOCK_SIZE
    assert cid == file_cid(codec.encode(doc)) and codec_of(cid) == "dag-pb"
    assert await CheckpointReader(store).read(cid, seq=50) == doc


async def test_missing_checkpoint_is_not_found(store: ContentStore) -> None:
    absent = dag_cbor_cid(codec.encode(checkpoint(nonce=os.urandom(16))))
    with pytest.raises(ContentNotFound):
        await CheckpointReader(store).read(absent)


async def test_embedded_store_detects_a_block_corrupted_on_disk(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    cid, _ = await CheckpointWriter(store).write(checkpoint())
    block_file = tmp_path / "blocks" / cid
    data = bytearray(block_file.read_bytes())
    data[-1] ^= 0x01
    block_file.write_bytes(bytes(data))
    with pytest.raises(CidMismatchError):
        await CheckpointReader(store).read(cid)
    assert await store.has(cid)
    assert "embedded store" in await store.probe()
    with pytest.raises(ContentNotFound):
        await store.pin(dag_cbor_cid(b"\xa0"))
    with pytest.raises(InvalidArgument, match="dag-cbor"):
        await store.put(b"\xff", "dag-cbor")
