"""CheckpointWriter / CheckpointReader with per-session sealing (agentgpt.ipfs.checkpoints + agentgpt.sealing)
on the embedded content-addressed store: a version-2 document keeps its header in the clear and has its
body sealed; readers open it with a data key, a recipient's private key, or keys fetched on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentgpt.errors import FailedPrecondition, InvalidArgument
from agentgpt.ipfs import CheckpointReader, CheckpointWriter, EmbeddedStore, decode, encode, generate_key
from agentgpt.ipfs.errors import ContentIntegrityError, DecryptionError
from agentgpt.sealing import Keyring, Sealing, SessionKey, is_sealed_body, new_session_key, public_key_of

OWNER = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
EXECUTOR = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
ROOT = b"\x42" * 32
BODY = {"entries": [], "memory": {"publish_report": {"cid": "bafy"}}, "budget": {"spent": "7"}, "chains": []}


def v2(seq: int = 4, root: bytes = ROOT, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"version": 2, "session_id": "9", "seq": seq, "state_root": root, "epoch": 1, "body": body or BODY}


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "ipfs")


def sealing(key: SessionKey) -> Sealing:
    return Sealing(key, (public_key_of(OWNER), public_key_of(EXECUTOR)))


async def test_a_sealed_body_keeps_its_header_readable(store: EmbeddedStore) -> None:
    key = new_session_key(1)
    cid, _ = await CheckpointWriter(store).write(v2(), sealing=sealing(key))
    stored = decode(await store.get(cid))  # one dag-cbor block: the header in the clear
    assert stored["session_id"] == "9" and stored["seq"] == 4 and stored["state_root"] == ROOT
    assert is_sealed_body(stored["body"]) and stored["body"]["key_epoch"] == 1
    assert b"publish_report" not in await store.get(cid)
    # a reader without keys reads the header and leaves the body sealed
    header_only = await CheckpointReader(store).read(cid, session_id="9", seq=4, state_root=ROOT)
    assert is_sealed_body(header_only["body"])
    for ring in (Keyring(keys=[("9", key)]), Keyring(private_key=OWNER), Keyring(private_key=EXECUTOR)):
        doc = await CheckpointReader(store, keyring=ring).read(cid, session_id="9", seq=4, state_root=ROOT)
        assert doc["body"] == BODY and doc["state_root"] == ROOT


async def test_without_sealing_a_v2_document_is_plaintext(store: EmbeddedStore) -> None:
    cid, _ = await CheckpointWriter(store, key=generate_key()).write(v2())  # the legacy key is v1's only
    assert decode(await store.get(cid))["body"] == BODY


async def test_a_reader_with_keys_but_not_this_one_names_the_key(store: EmbeddedStore) -> None:
    cid, _ = await CheckpointWriter(store).write(v2(), sealing=sealing(new_session_key(2)))
    stranger = Keyring(private_key=bytes.fromhex("11" * 32))
    with pytest.raises(FailedPrecondition, match=f"checkpoint {cid}: .*epoch-2 data key"):
        await CheckpointReader(store, keyring=stranger).read(cid)


async def test_missing_keys_are_fetched_from_the_key_source_once(store: EmbeddedStore) -> None:
    old, new = new_session_key(1), new_session_key(2)
    first, _ = await CheckpointWriter(store).write(v2(seq=2), sealing=sealing(old))
    second, _ = await CheckpointWriter(store).write(v2(seq=4), sealing=sealing(new))
    asked: list[str] = []

    async def source(session_id: str) -> list[SessionKey]:
        asked.append(session_id)
        return [old, new]

    reader = CheckpointReader(store, key_source=source)
    assert (await reader.read(second))["body"] == BODY
    assert (await reader.read(first))["body"] == BODY  # the older epoch's key came with the first fetch
    assert asked == ["9"]


async def test_a_body_moved_to_another_header_does_not_open(store: EmbeddedStore) -> None:
    key = new_session_key(1)
    cid, _ = await CheckpointWriter(store).write(v2(), sealing=sealing(key))
    stored = decode(await store.get(cid))
    # the same sealed body under another state root (a forged header): its bytes are a valid document,
    # stored under their own CID, but the body is bound to the root it was sealed with
    forged = {**stored, "state_root": b"\x43" * 32}
    forged_cid = await store.put(encode(forged), "dag-cbor")
    with pytest.raises(DecryptionError, match=f"checkpoint {forged_cid}"):
        await CheckpointReader(store, keyring=Keyring(keys=[("9", key)])).read(forged_cid)


async def test_a_wrong_data_key_is_data_loss(store: EmbeddedStore) -> None:
    cid, _ = await CheckpointWriter(store).write(v2(), sealing=sealing(new_session_key(1)))
    with pytest.raises(ContentIntegrityError):
        await CheckpointReader(store, keyring=Keyring(keys=[("9", new_session_key(1))])).read(cid)


async def test_only_version_2_documents_are_sealed_per_session(store: EmbeddedStore) -> None:
    v1 = {"version": 1, "session_id": "9", "seq": 1, "state_root": ROOT, "entries": []}
    with pytest.raises(InvalidArgument, match=r"checkpoint\.version"):
        await CheckpointWriter(store).write(v1, sealing=sealing(new_session_key(1)))
    # the legacy envelope still opens with the legacy key
    legacy = generate_key()
    cid, _ = await CheckpointWriter(store, key=legacy).write(v1)
    assert (await CheckpointReader(store, key=legacy).read(cid, session_id="9", seq=1))["entries"] == []
