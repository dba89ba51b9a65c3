"""Checkpoint data keys in the session service over real gRPC (SQLite and PostgreSQL, in-memory chain):
one key per executor epoch, kept wrapped in SessionDB, delivered with the lease only to the executor of
record, a new epoch's key after a reassignment that the removed executor never gets, and the recovery
oracle's GetSessionKeys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from grpc import aio

from agentgpt import auth
from agentgpt.clients import SessionClient
from agentgpt.errors import FailedPrecondition
from agentgpt.ipfs import CheckpointReader, CheckpointWriter, EmbeddedStore, decode, encode
from agentgpt.ipfs.errors import DecryptionError
from agentgpt.sealing import Keyring, Sealing, SessionKey, body_aad, open_body, public_key_of, unwrap_key
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.tasklog import ExecutorKey
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.recovery_oracle.app import session_key_source
from services.session.store.tables import session_keys

from .conftest import MakeService
from .harness import SERVICE_MD, Harness, Owner, new_key

A = ExecutorKey(DEV_PRIVATE_KEYS[2])
B = ExecutorKey(DEV_PRIVATE_KEYS[3])
A_SECRET = bytes.fromhex(DEV_PRIVATE_KEYS[2].removeprefix("0x"))
B_SECRET = bytes.fromhex(DEV_PRIVATE_KEYS[3].removeprefix("0x"))
ORACLE_MD = ((auth.SERVICE_HEADER, "recovery_oracle"),)
RELAYER = DEV_PRIVATE_KEYS[0]


async def expect_status(coro: object, code: grpc.StatusCode, fragment: str = "") -> str:
    with pytest.raises(aio.AioRpcError) as info:
        await coro  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    assert fragment in (info.value.details() or ""), info.value.details()
    return info.value.details() or ""


async def claim(
    service: Harness,
    who: ExecutorKey,
    *,
    address: str = "",
    executor_id: str = "",
    public_key: bytes | None = None,
    session_id: str = "",
) -> pb.ClaimLeaseResponse:
    return await service.stub.ClaimLease(  # type: ignore[no-any-return]
        pb.ClaimLeaseRequest(
            executor_id=executor_id or who.address[:10],
            session_id=session_id,
            ttl_seconds=30,
            executor_address=address,
            executor_public_key=who.public_key if public_key is None else public_key,
        ),
        metadata=SERVICE_MD,
    )


def opened(resp: pb.ClaimLeaseResponse | pb.GetSessionKeysResponse, secret: bytes) -> list[SessionKey]:
    keys = resp.session_keys if isinstance(resp, pb.ClaimLeaseResponse) else resp.keys
    return [SessionKey(k.epoch, unwrap_key(k.wrapped, secret)) for k in keys]


async def active(service: Harness, owner: Owner, executor: str = A.address) -> pb.Session:
    s = await service.create(owner)
    await service.activate(owner, s, executor)
    return s


async def reassign(service: Harness, session_id: str, executor: str) -> pb.ReassignExecutorResponse:
    req = pb.ReassignExecutorRequest(
        idempotency_key=new_key(), session_id=session_id, executor=executor, reason="node_failure: test"
    )
    return await service.stub.ReassignExecutor(req, metadata=ORACLE_MD)  # type: ignore[no-any-return]


async def test_the_executor_of_record_gets_the_key_with_its_lease(service: Harness, owner: Owner) -> None:
    s = await active(service, owner)
    got = await claim(service, A, address=A.address)
    assert got.lease.session_id == s.session_id
    assert [(k.epoch, k.executor) for k in got.session_keys] == [(1, A.address)]
    # the owner's public key was recovered from the owner's signature on ActivateSession
    assert got.owner_public_key == public_key_of(bytes.fromhex(owner.private_key.removeprefix("0x")))
    (key,) = opened(got, A_SECRET)
    # what the executor seals with it, the owner opens with the owner's private key alone
    sealing = Sealing(key, (bytes(got.owner_public_key), A.public_key))
    aad = body_aad(s.session_id, 3, b"\x07" * 32)
    body = sealing.seal(encode({"memory": {"x": 1}}), aad)
    owner_ring = Keyring(private_key=owner.private_key)
    assert decode(open_body(body, aad, owner_ring)) == {"memory": {"x": 1}}
    # not wrapped to anyone else
    with pytest.raises(DecryptionError):
        unwrap_key(got.session_keys[0].wrapped, B_SECRET)


async def test_keys_are_never_stored_in_clear(service: Harness, owner: Owner) -> None:
    s = await active(service, owner)
    (key,) = opened(await claim(service, A, address=A.address), A_SECRET)
    async with service.control.db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(session_keys))).all()
    assert len(rows) == 1 and rows[0].session_id == s.session_id and rows[0].epoch == 1
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in rows[0])
    assert key.key not in stored and key.key.hex().encode() not in stored
    assert rows[0].custodian == service.control.core.custody.address  # type: ignore[union-attr]


async def test_other_callers_get_the_lease_but_no_keys(service: Harness, owner: Owner) -> None:
    await active(service, owner)
    # a key whose address is not the one named: refused at the door
    await expect_status(
        claim(service, B, address=A.address), grpc.StatusCode.INVALID_ARGUMENT, "executor_public_key"
    )
    await expect_status(
        claim(service, A, address=A.address, public_key=b"\x01" * 64),
        grpc.StatusCode.INVALID_ARGUMENT,
        "executor_public_key",
    )
    # an executor that is not of record may lease off chain, but gets no keys
    got = await claim(service, B)
    assert got.HasField("lease") and not got.session_keys and not got.owner_public_key
    # nor does a claim without a public key
    await service.stub.ReleaseLease(
        pb.ReleaseLeaseRequest(
            session_id=got.lease.session_id, executor_id=got.lease.executor_id, epoch=got.lease.epoch
        ),
        metadata=SERVICE_MD,
    )
    plain = await claim(service, A, address=A.address, public_key=b"")
    assert plain.HasField("lease") and not plain.session_keys


async def test_a_reassignment_makes_a_new_epoch_key_the_old_executor_never_gets(
    service: Harness, owner: Owner
) -> None:
    s = await active(service, owner)
    (a_key,) = opened(await claim(service, A, address=A.address, executor_id="ex-a"), A_SECRET)
    moved = await reassign(service, s.session_id, B.address)
    assert moved.chain_epoch == 2
    got = await claim(service, B, address=B.address, executor_id="ex-b")
    assert [(k.epoch, k.executor) for k in got.session_keys] == [(1, A.address), (2, B.address)]
    old, new = opened(got, B_SECRET)
    assert old == a_key  # the predecessor's checkpoints open for the new executor
    assert new.key != a_key.key
    # the removed executor: its claim naming its address finds nothing to lease, and the session named
    # is refused; without the address it may lease (off chain), but gets no keys
    assert not (await claim(service, A, address=A.address, executor_id="ex-a")).HasField("lease")
    await expect_status(
        claim(service, A, address=A.address, executor_id="ex-a", session_id=s.session_id),
        grpc.StatusCode.FAILED_PRECONDITION,
        f"assigned to executor {B.address}",
    )
    await service.stub.ReleaseLease(
        pb.ReleaseLeaseRequest(session_id=s.session_id, executor_id="ex-b", epoch=got.lease.epoch),
        metadata=SERVICE_MD,
    )
    stale = await claim(service, A, executor_id="ex-a")
    assert stale.HasField("lease") and not stale.session_keys
    # and what B seals at epoch 2 does not open with anything A holds
    aad = body_aad(s.session_id, 9, b"\x01" * 32)
    body = Sealing(new, (bytes(got.owner_public_key), B.public_key)).seal(b"after the removal", aad)
    with pytest.raises(Exception, match="epoch-2 data key") as info:
        open_body(body, aad, Keyring(private_key=A_SECRET, keys=[(s.session_id, a_key)]))
    assert A.address in str(info.value)
    assert open_body(body, aad, Keyring(private_key=owner.private_key)) == b"after the removal"
    # a second reassignment, back to A: a third key, and A gets all three again as executor of record
    await reassign(service, s.session_id, A.address)
    back = await claim(service, A, address=A.address, executor_id="ex-a2")
    assert [k.epoch for k in back.session_keys] == [1, 2, 3]
    assert opened(back, A_SECRET)[1] == new


async def test_get_session_keys_is_the_oracles_alone(service: Harness, owner: Owner) -> None:
    s = await active(service, owner)
    await reassign(service, s.session_id, B.address)
    oracle = ExecutorKey("0x" + "42" * 32)
    resp = await service.stub.GetSessionKeys(
        pb.GetSessionKeysRequest(session_id=s.session_id, public_key=oracle.public_key), metadata=ORACLE_MD
    )
    assert [(k.epoch, k.executor) for k in resp.keys] == [(1, A.address), (2, B.address)]
    assert len(opened(resp, bytes.fromhex("42" * 32))) == 2
    assert resp.owner_public_key == public_key_of(bytes.fromhex(owner.private_key.removeprefix("0x")))
    await expect_status(
        service.stub.GetSessionKeys(
            pb.GetSessionKeysRequest(session_id=s.session_id, public_key=B.public_key), metadata=SERVICE_MD
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "recovery oracle",
    )
    await expect_status(
        service.stub.GetSessionKeys(
            pb.GetSessionKeysRequest(session_id=s.session_id, public_key=B.public_key)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await expect_status(
        service.stub.GetSessionKeys(
            pb.GetSessionKeysRequest(session_id=s.session_id, public_key=b"\x00" * 64), metadata=ORACLE_MD
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "public_key",
    )
    # a DRAFT session has no keys yet
    draft = await service.create(owner)
    none = await service.stub.GetSessionKeys(
        pb.GetSessionKeysRequest(session_id=draft.session_id, public_key=oracle.public_key),
        metadata=ORACLE_MD,
    )
    assert not none.keys and not none.owner_public_key


async def test_keys_survive_a_restart_under_the_relayer_key_only(
    make_service: MakeService, owner: Owner
) -> None:
    first = await make_service(db_name="keys.db", relayer_key=RELAYER)
    assert first.control.core.custody.address == ExecutorKey(RELAYER).address  # type: ignore[union-attr]
    s = await active(first, owner)
    (before,) = opened(await claim(first, A, address=A.address, executor_id="ex-a"), A_SECRET)
    await first.service.stop()
    again = await make_service(db_name="keys.db", relayer_key=RELAYER)
    resp = await again.stub.GetSessionKeys(
        pb.GetSessionKeysRequest(session_id=s.session_id, public_key=A.public_key), metadata=ORACLE_MD
    )
    assert opened(resp, A_SECRET) == [before]
    other = await make_service(db_name="keys.db", relayer_key=DEV_PRIVATE_KEYS[5])
    await expect_status(
        other.stub.GetSessionKeys(
            pb.GetSessionKeysRequest(session_id=s.session_id, public_key=A.public_key), metadata=ORACLE_MD
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "relayer key",
    )


async def test_the_oracles_reader_opens_sealed_checkpoints_with_the_keys_it_asks_for(
    service: Harness, owner: Owner, tmp_path: Path
) -> None:
    """services.recovery_oracle.app's key source against the real session service: a body the executor of
    record sealed opens for the oracle's verifier, the previous executor's epoch included."""
    s = await active(service, owner)
    store = EmbeddedStore(tmp_path / "ipfs")
    (a_key,) = opened(await claim(service, A, address=A.address, executor_id="ex-a"), A_SECRET)
    owner_pub = public_key_of(bytes.fromhex(owner.private_key.removeprefix("0x")))

    def doc(seq: int) -> dict[str, Any]:
        return {
            "version": 2,
            "session_id": s.session_id,
            "seq": seq,
            "state_root": bytes([seq]) * 32,
            "body": {"n": seq},
        }

    first, _ = await CheckpointWriter(store).write(doc(1), sealing=Sealing(a_key, (owner_pub, A.public_key)))
    await reassign(service, s.session_id, B.address)
    b_keys = opened(await claim(service, B, address=B.address, executor_id="ex-b"), B_SECRET)
    second, _ = await CheckpointWriter(store).write(
        doc(2), sealing=Sealing(b_keys[-1], (owner_pub, B.public_key))
    )
    async with SessionClient(service.service.address, identity="recovery_oracle") as client:
        reader = CheckpointReader(
            store,
            keyring=(ring := Keyring(private_key="0x" + "42" * 32)),
            key_source=session_key_source(client, ring),
        )
        assert (await reader.read(second))["body"] == {"n": 2}
        assert (await reader.read(first))["body"] == {"n": 1}
    # an executor's identity is refused the keys: the reader says why
    async with SessionClient(service.service.address, identity="executor-1") as client:
        ring = Keyring(private_key="0x" + "43" * 32)
        reader = CheckpointReader(store, keyring=ring, key_source=session_key_source(client, ring))
        with pytest.raises(FailedPrecondition, match="refused the checkpoint keys"):
            await reader.read(second)
