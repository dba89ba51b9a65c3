"""agentgpt.sealing: data keys wrapped with ECIES on secp256k1, sealed checkpoint bodies, keyrings.

The wrapped-key format is also re-derived here from the module doc alone (coincurve for the point
multiplication, `cryptography` for HKDF and AES-GCM), so the documented byte layout is the real one."""

from __future__ import annotations

import os
from typing import Any

import coincurve
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agentgpt.errors import FailedPrecondition, InvalidArgument
from agentgpt.ipfs import decode, encode
from agentgpt.ipfs.errors import ContentIntegrityError, DecryptionError, DocumentFormatError
from agentgpt.sealing import (
    BODY_AAD_PREFIX,
    WRAPPED_SIZE,
    Keyring,
    Sealing,
    SessionKey,
    address_of,
    body_aad,
    is_sealed_body,
    new_session_key,
    open_body,
    public_key_of,
    seal_body,
    sealed_epoch,
    sealed_recipients,
    unwrap_key,
    wrap_key,
)
from agentgpt.tasklog import ExecutorKey

OWNER = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
EXECUTOR = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
STRANGER = bytes.fromhex("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6")
ROOT = bytes(range(32))
BODY = {"entries": [], "memory": {"analyze_market": {"price": "1800"}}, "budget": {"spent": "3"}}


def aad(seq: int = 7, session: str = "5", root: bytes = ROOT) -> bytes:
    return body_aad(session, seq, root)


def sealed(key: SessionKey | None = None, seq: int = 7) -> tuple[SessionKey, dict[str, Any]]:
    key = key or new_session_key(2)
    return key, seal_body(encode(BODY), key, [public_key_of(OWNER), public_key_of(EXECUTOR)], aad(seq))


# ---------------------------------------------------------------- wrap / unwrap


def test_wrap_unwrap_round_trip_and_size() -> None:
    key = new_session_key(1).key
    wrapped = wrap_key(key, public_key_of(OWNER))
    assert len(wrapped) == WRAPPED_SIZE == 129
    assert wrapped != wrap_key(key, public_key_of(OWNER))  # a fresh ephemeral key every time
    assert unwrap_key(wrapped, OWNER) == key


def test_public_key_is_the_accounts_key() -> None:
    # the same 64-byte x || y as the task log's ExecutorKey, and the same address as the account
    assert public_key_of(EXECUTOR) == ExecutorKey(EXECUTOR).public_key
    assert address_of(public_key_of(EXECUTOR)) == ExecutorKey(EXECUTOR).address


def test_unwrap_with_another_key_is_an_integrity_error() -> None:
    wrapped = wrap_key(new_session_key(1).key, public_key_of(OWNER))
    with pytest.raises(DecryptionError, match="wrapped to another key, or altered"):
        unwrap_key(wrapped, STRANGER)


@pytest.mark.parametrize("where", [1, 40, 70, 90, 120])  # ephemeral key, its y, nonce, tag, ciphertext
def test_tampered_wrapped_key_is_an_integrity_error(where: int) -> None:
    wrapped = bytearray(wrap_key(new_session_key(1).key, public_key_of(OWNER)))
    wrapped[where] ^= 0x01
    with pytest.raises(ContentIntegrityError):
        unwrap_key(bytes(wrapped), OWNER)


def test_wrapped_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(DecryptionError, match="129 bytes"):
        unwrap_key(b"\x04" * 100, OWNER)


def test_bad_public_keys_are_invalid_arguments() -> None:
    with pytest.raises(InvalidArgument, match="64-byte"):
        wrap_key(bytes(32), b"\x04" + public_key_of(OWNER))
    with pytest.raises(InvalidArgument, match="not a point"):
        wrap_key(bytes(32), bytes(64))
    with pytest.raises(InvalidArgument, match="32 bytes"):
        wrap_key(bytes(16), public_key_of(OWNER))


def test_the_documented_wrapped_key_format() -> None:
    """Unwrap with nothing but the module doc: eph(65) || nonce(16) || tag(16) || ct(32); AES key =
    HKDF-SHA256(eph || shared point, both uncompressed, no salt, no info)."""
    key = new_session_key(3).key
    wrapped = wrap_key(key, public_key_of(OWNER))
    eph, nonce, tag, ct = wrapped[:65], wrapped[65:81], wrapped[81:97], wrapped[97:]
    assert eph[0] == 4
    shared = coincurve.PublicKey(eph).multiply(OWNER).format(compressed=False)
    aes_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"").derive(eph + shared)
    assert AESGCM(aes_key).decrypt(nonce, ct + tag, None) == key


# ---------------------------------------------------------------- sealed bodies


def test_body_aad_layout() -> None:
    assert body_aad("12", 7, ROOT) == b"agentgpt/checkpoint-body/v2\x0012\x007\x00" + ROOT
    assert aad().startswith(BODY_AAD_PREFIX)
    with pytest.raises(InvalidArgument):
        body_aad("12", 7, b"short")


def test_sealed_body_shape_is_dag_cbor_safe() -> None:
    _, body = sealed()
    assert set(body) == {"alg", "wrap", "key_epoch", "recipients", "nonce", "ciphertext"}
    assert body["alg"] == "AES-256-GCM" and body["wrap"] == "ECIES-secp256k1" and body["key_epoch"] == 2
    assert isinstance(body["nonce"], bytes) and len(body["nonce"]) == 12
    assert sealed_recipients(body) == [ExecutorKey(OWNER).address, ExecutorKey(EXECUTOR).address]
    assert sealed_epoch(body) == 2 and is_sealed_body(body) and not is_sealed_body(BODY)
    again = decode(encode({"body": body}))["body"]  # through canonical dag-cbor and back
    assert again == body
    assert decode(open_body(again, aad(), Keyring(private_key=OWNER))) == BODY
    assert encode(BODY) not in encode(body)  # the plaintext is not in the stored bytes


def test_opens_with_the_data_key_or_either_recipients_private_key() -> None:
    key, body = sealed()
    assert decode(open_body(body, aad(), Keyring(keys=[("5", key)]))) == BODY
    assert decode(open_body(body, aad(), Keyring(private_key=OWNER))) == BODY
    assert decode(open_body(body, aad(), Keyring(private_key=EXECUTOR))) == BODY


def test_recipients_are_unique_and_required() -> None:
    key = new_session_key(0)
    body = seal_body(b"x", key, [public_key_of(OWNER), public_key_of(OWNER)], aad())
    assert sealed_recipients(body) == [ExecutorKey(OWNER).address]
    with pytest.raises(InvalidArgument, match="recipient"):
        seal_body(b"x", key, [], aad())
    with pytest.raises(InvalidArgument, match="recipient"):
        Sealing(key, ())


def test_no_key_is_a_failed_precondition_naming_the_key_needed() -> None:
    _, body = sealed()
    with pytest.raises(FailedPrecondition, match="epoch-2 data key") as empty:
        open_body(body, aad(), Keyring())
    assert ExecutorKey(OWNER).address in empty.value.message
    assert "--owner-key-file" in empty.value.message
    with pytest.raises(FailedPrecondition) as stranger:
        open_body(body, aad(), Keyring(private_key=STRANGER))
    assert f"the key given ({ExecutorKey(STRANGER).address}) is not one of them" in stranger.value.message
    # another epoch's data key is not this one's
    with pytest.raises(FailedPrecondition, match="epoch-2"):
        open_body(body, aad(), Keyring(keys=[("5", new_session_key(1))]))
    # nor another session's
    with pytest.raises(FailedPrecondition):
        open_body(body, aad(), Keyring(keys=[("6", new_session_key(2))]))


def test_a_wrong_data_key_is_an_integrity_error() -> None:
    _, body = sealed()
    with pytest.raises(DecryptionError, match="failed authentication"):
        open_body(body, aad(), Keyring(keys=[("5", new_session_key(2))]))


@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
def test_tampered_body_is_an_integrity_error(field: str) -> None:
    key, body = sealed()
    flipped = bytearray(body[field])
    flipped[0] ^= 0x80
    body[field] = bytes(flipped)
    for keyring in (Keyring(keys=[("5", key)]), Keyring(private_key=OWNER)):
        with pytest.raises(DecryptionError):
            open_body(body, aad(), keyring)


@pytest.mark.parametrize(
    "other",
    [aad(seq=8), aad(session="55"), aad(root=bytes(32)), b"agentgpt/checkpoint/v1\x005\x007"],
    ids=["seq", "session", "state_root", "prefix"],
)
def test_aad_mismatch_is_an_integrity_error(other: bytes) -> None:
    key, body = sealed()
    with pytest.raises(DecryptionError):
        open_body(body, other, Keyring(keys=[("5", key), ("55", key)]), session_id="5")


def test_forged_wrapped_key_is_an_integrity_error() -> None:
    _, body = sealed()
    recipients = body["recipients"]
    assert isinstance(recipients, list)
    # the owner's entry replaced by a wrap of another key: unwraps, but the body does not open with it
    recipients[0] = {
        "address": recipients[0]["address"],
        "wrapped": wrap_key(os.urandom(32), public_key_of(OWNER)),
    }
    with pytest.raises(DecryptionError, match="failed authentication"):
        open_body(body, aad(), Keyring(private_key=OWNER))
    # and an entry wrapped to someone else under the owner's address does not unwrap at all
    recipients[0] = {
        "address": recipients[0]["address"],
        "wrapped": wrap_key(os.urandom(32), public_key_of(STRANGER)),
    }
    with pytest.raises(DecryptionError, match="wrapped to another key"):
        open_body(body, aad(), Keyring(private_key=OWNER))


@pytest.mark.parametrize(
    "change",
    [
        {"alg": "AES-128-CBC"},
        {"key_epoch": -1},
        {"nonce": b"short"},
        {"recipients": "everyone"},
        {"recipients": [{"address": "nope", "wrapped": b""}]},
        {"extra": 1},
    ],
)
def test_malformed_sealed_bodies_are_format_errors(change: dict[str, object]) -> None:
    key, body = sealed()
    with pytest.raises(DocumentFormatError):
        open_body({**body, **change}, aad(), Keyring(keys=[("5", key)]))


def test_session_key_hides_its_key_and_checks_it() -> None:
    key = new_session_key(4)
    assert key.key.hex() not in repr(key) and "epoch=4" in repr(key)
    with pytest.raises(InvalidArgument):
        SessionKey(1, b"short")
    with pytest.raises(InvalidArgument):
        SessionKey(-1, bytes(32))


def test_keyring_forgets_a_session() -> None:
    ring = Keyring(keys=[("5", new_session_key(1)), ("5", new_session_key(2)), ("6", new_session_key(1))])
    assert ring.epochs("5") == [1, 2]
    ring.forget("5")
    assert ring.epochs("5") == [] and ring.epochs("6") == [1]
    assert "data_keys=1" in repr(ring)


def test_sealing_seals_to_its_recipients() -> None:
    key = new_session_key(3)
    sealing = Sealing(key, (public_key_of(OWNER), public_key_of(EXECUTOR)))
    body = sealing.seal(encode(BODY), aad())
    assert sealed_epoch(body) == 3
    assert decode(open_body(body, aad(), Keyring(private_key=EXECUTOR))) == BODY
