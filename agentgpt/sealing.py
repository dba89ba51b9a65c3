"""Per-session checkpoint sealing: one AES-256-GCM data key per (session, executor epoch), wrapped with
ECIES on secp256k1 to the session's owner and to its executor of record (the Ethereum keys they already
have), so the owner can read the whole history with their private key alone and an executor removed from
a session cannot read what is written after its removal.

Who holds which key (docs/design.md §7):

* the session service generates a data key when a session activates and again whenever the home chain
  assigns it another executor (the key's ``epoch`` is the chain's assignment epoch, ExecutorAssigned),
  keeps each one in SessionDB wrapped to its own relayer key, and hands them out wrapped to the caller's
  public key: to the executor of record with its lease (every epoch's key, so a new executor reads its
  predecessors' checkpoints), and to the recovery oracle (GetSessionKeys);
* the executor seals each checkpoint body with the current epoch's key and wraps that key, inside the
  checkpoint, to the owner and to itself (``Sealing``);
* a reader opens a body with the data key for its (session, epoch), or with a private key whose address
  is one of the body's recipients (``Keyring``).

Sealed body (a dag-cbor map; it replaces the plaintext ``body`` map of a v2 checkpoint document)::

    {"alg": "AES-256-GCM", "wrap": "ECIES-secp256k1", "key_epoch": <int >= 0>,
     "recipients": [{"address": "0x<EIP-55 checksummed address>", "wrapped": <129 bytes>}, ...],
     "nonce": <12 random bytes>, "ciphertext": <AES-256-GCM(key, nonce, plaintext, aad) || 16-byte tag>}

``plaintext`` is the canonical dag-cbor encoding of the plaintext body map. The AES-GCM associated data
is exactly the ``aad`` the caller passes; for a v2 checkpoint (``body_aad``)::

    b"agentgpt/checkpoint-body/v2\\x00" || session_id (ASCII decimal) || b"\\x00" || seq (ASCII decimal)
        || b"\\x00" || state_root (32 bytes)

so a body moved to another session, seq or state root does not open. Recipients are unique by address,
in the order given; ``address`` is keccak256(x || y)[12:] of the recipient's 64-byte public key.

Wrapped key (eciespy 0.4.7's default format, used with an explicit configuration so a change of the
library's global default cannot change it): 129 bytes::

    ephemeral public key (65 bytes: 0x04 || x || y) || nonce (16 bytes) || tag (16 bytes)
        || AES-256-GCM ciphertext of the 32-byte data key (32 bytes, no associated data)

with the AES key = HKDF-SHA256(IKM = ephemeral public key (65 bytes, uncompressed) || shared point
(65 bytes, uncompressed: 0x04 || x || y of the ephemeral secret times the recipient public key), salt = empty
(i.e. 32 zero bytes), info = empty, length 32). Public keys are 64 bytes x || y without the 0x04 prefix
(as ``agentgpt.tasklog.ExecutorKey.public_key``); private keys 32 bytes.

Errors: no key for a body is FailedPrecondition naming the key needed; a key that does not open it (a
wrong key, a forged wrapped key, tampered ciphertext, another aad) is a ContentIntegrityError — gRPC
DATA_LOSS, never retried.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ecies import decrypt as ecies_decrypt
from ecies import encrypt as ecies_encrypt
from ecies.config import Config as EciesConfig
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from agentgpt.errors import FailedPrecondition, InvalidArgument
from agentgpt.ipfs.errors import DecryptionError, DocumentFormatError

ALG = "AES-256-GCM"
WRAP = "ECIES-secp256k1"
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
PUBLIC_KEY_SIZE = 64
WRAPPED_SIZE = 65 + 16 + 16 + KEY_SIZE  # ephemeral key, nonce, tag, the wrapped data key
BODY_AAD_PREFIX = b"agentgpt/checkpoint-body/v2\x00"
SEALED_KEYS = frozenset({"alg", "wrap", "key_epoch", "recipients", "nonce", "ciphertext"})
_MAX_EPOCH = 2**64 - 1

# eciespy's format, pinned here rather than read from its mutable module-level ECIES_CONFIG.
_ECIES = EciesConfig(
    elliptic_curve="secp256k1",
    is_ephemeral_key_compressed=False,
    is_hkdf_key_compressed=False,
    symmetric_algorithm="aes-256-gcm",
    symmetric_nonce_length=16,
)


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class SessionKey:
    """One data key of a session: the AES-256 key of executor epoch `epoch` (the home chain's
    assignment epoch). Its repr never shows the key."""

    epoch: int
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.epoch, int)
            or isinstance(self.epoch, bool)
            or not 0 <= self.epoch <= _MAX_EPOCH
        ):
            raise InvalidArgument("epoch", f"must be an integer in 0..2^64-1, got {self.epoch!r}")
        if not isinstance(self.key, bytes) or len(self.key) != KEY_SIZE:
            raise InvalidArgument("key", f"a data key is {KEY_SIZE} bytes (AES-256)")


def new_session_key(epoch: int) -> SessionKey:
    """A fresh random data key for `epoch`."""
    return SessionKey(epoch, AESGCM.generate_key(bit_length=256))


def private_key_bytes(value: str | bytes) -> bytes:
    """A secp256k1 private key as 32 bytes, from bytes or hex (0x optional); InvalidArgument otherwise."""
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.strip().removeprefix("0x"))
        except ValueError:
            raise InvalidArgument("private_key", "is not hex") from None
    if len(value) != KEY_SIZE:
        raise InvalidArgument("private_key", f"a secp256k1 private key is 32 bytes, got {len(value)}")
    try:
        coincurve.PrivateKey(value)
    except ValueError:
        raise InvalidArgument("private_key", "is not a valid secp256k1 private key (0 < key < n)") from None
    return value


def public_key_of(private_key: bytes) -> bytes:
    """The 64-byte public key (x || y) of a 32-byte private key."""
    return bytes(coincurve.PrivateKey(private_key_bytes(private_key)).public_key.format(compressed=False)[1:])


def address_of(public_key: bytes) -> str:
    """The checksummed Ethereum address of a 64-byte public key."""
    return to_checksum_address(keccak(_public_key(public_key))[12:])


def _public_key(public_key: bytes) -> bytes:
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        got = len(public_key) if isinstance(public_key, bytes) else type(public_key).__name__
        raise InvalidArgument("public_key", f"must be the 64-byte secp256k1 public key x || y, got {got}")
    try:
        coincurve.PublicKey(b"\x04" + public_key)
    except ValueError:
        raise InvalidArgument("public_key", "is not a point on secp256k1") from None
    return public_key


def wrap_key(key: bytes, public_key: bytes) -> bytes:
    """`key` (32 bytes) encrypted to the holder of `public_key` (64 bytes): 129 bytes, see the module doc."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise InvalidArgument("key", f"a data key is {KEY_SIZE} bytes (AES-256)")
    return bytes(ecies_encrypt(_public_key(public_key), key, config=_ECIES))


def unwrap_key(wrapped: bytes, private_key: bytes) -> bytes:
    """The data key `wrapped` holds, opened with `private_key`. A wrapped key made for another key, or
    altered, is a DecryptionError (a ContentIntegrityError)."""
    secret = private_key_bytes(private_key)
    if not isinstance(wrapped, bytes) or len(wrapped) != WRAPPED_SIZE:
        raise DecryptionError(
            f"a wrapped data key is {WRAPPED_SIZE} bytes (ECIES-secp256k1), got "
            f"{len(wrapped) if isinstance(wrapped, bytes) else type(wrapped).__name__}"
        )
    try:
        key = ecies_decrypt(secret, wrapped, config=_ECIES)
    except (ValueError, TypeError):
        # pycryptodome: "MAC check failed"; coincurve: an ephemeral key that is not on the curve
        raise DecryptionError(
            f"the wrapped data key does not open with the key of {address_of(public_key_of(secret))}: "
            "it was wrapped to another key, or altered"
        ) from None
    if len(key) != KEY_SIZE:
        raise DecryptionError(f"the wrapped data key opened to {len(key)} bytes, not {KEY_SIZE}")
    return bytes(key)


# ---------------------------------------------------------------- bodies


def body_aad(session_id: str, seq: int, state_root: bytes) -> bytes:
    """The associated data of a v2 checkpoint's sealed body (see the module doc)."""
    if not isinstance(state_root, bytes) or len(state_root) != 32:
        raise InvalidArgument("state_root", "must be 32 bytes")
    return BODY_AAD_PREFIX + session_id.encode() + b"\x00" + str(int(seq)).encode() + b"\x00" + state_root


def is_sealed_body(value: Any) -> bool:
    """True for a sealed body map (it has a ciphertext); a plaintext body never has that key."""
    return isinstance(value, Mapping) and "ciphertext" in value


def seal_body(
    plaintext: bytes,
    key: SessionKey,
    recipients: Sequence[bytes],  # 64-byte public keys
    aad: bytes,
) -> dict[str, Any]:
    """The sealed body of `plaintext` under `key`, the key wrapped to every recipient (at least one)."""
    if not isinstance(plaintext, bytes):
        raise InvalidArgument("plaintext", "must be bytes (the body's dag-cbor encoding)")
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for public_key in recipients:
        address = address_of(public_key)
        if address in seen:
            continue
        seen.add(address)
        entries.append({"address": address, "wrapped": wrap_key(key.key, public_key)})
    if not entries:
        raise InvalidArgument("recipients", "a sealed body needs at least one recipient (the owner)")
    nonce = os.urandom(NONCE_SIZE)
    return {
        "alg": ALG,
        "wrap": WRAP,
        "key_epoch": key.epoch,
        "recipients": entries,
        "nonce": nonce,
        "ciphertext": AESGCM(key.key).encrypt(nonce, plaintext, aad),
    }


@dataclass(frozen=True)
class _Parsed:
    epoch: int
    recipients: tuple[tuple[str, bytes], ...]  # (checksummed address, wrapped key)
    nonce: bytes
    ciphertext: bytes


def _parse(sealed: Mapping[str, Any]) -> _Parsed:
    def bad(problem: str) -> DocumentFormatError:
        return DocumentFormatError(f"not a sealed checkpoint body: {problem}")

    if not isinstance(sealed, Mapping):
        raise bad(f"a {type(sealed).__name__}, not a map")
    unknown = sorted(set(sealed) - SEALED_KEYS)
    missing = sorted(SEALED_KEYS - set(sealed))
    if missing or unknown:
        raise bad(f"missing {', '.join(missing) or 'nothing'}; unknown {', '.join(unknown) or 'nothing'}")
    if sealed["alg"] != ALG or sealed["wrap"] != WRAP:
        raise bad(f"sealed with {sealed['alg']!r}/{sealed['wrap']!r}; this build reads {ALG}/{WRAP}")
    epoch = sealed["key_epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= _MAX_EPOCH:
        raise bad(f"key_epoch must be an integer >= 0, got {epoch!r}")
    nonce, ciphertext = sealed["nonce"], sealed["ciphertext"]
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
        raise bad(f"nonce must be {NONCE_SIZE} bytes")
    if not isinstance(ciphertext, bytes) or len(ciphertext) < TAG_SIZE:
        raise bad(f"ciphertext must be bytes of at least {TAG_SIZE} (the tag)")
    raw = sealed["recipients"]
    if not isinstance(raw, list):
        raise bad("recipients must be a list")
    recipients: list[tuple[str, bytes]] = []
    for i, r in enumerate(raw):
        if not isinstance(r, Mapping) or set(r) != {"address", "wrapped"}:
            raise bad(f"recipients[{i}] must be a map of address and wrapped")
        address, wrapped = r["address"], r["wrapped"]
        if not isinstance(address, str) or not isinstance(wrapped, bytes):
            raise bad(f"recipients[{i}]: address must be text and wrapped bytes")
        try:
            recipients.append((to_checksum_address(address), wrapped))
        except ValueError:
            raise bad(f"recipients[{i}].address {address!r} is not an address") from None
    return _Parsed(epoch, tuple(recipients), nonce, ciphertext)


def sealed_epoch(sealed: Mapping[str, Any]) -> int:
    """The key epoch of a sealed body (DocumentFormatError when it is not one)."""
    return _parse(sealed).epoch


def sealed_recipients(sealed: Mapping[str, Any]) -> list[str]:
    """The addresses a sealed body's key is wrapped to, in order."""
    return [a for a, _ in _parse(sealed).recipients]


def open_body(
    sealed: Mapping[str, Any], aad: bytes, keyring: Keyring, *, session_id: str | None = None
) -> bytes:
    """The plaintext of a sealed body. The keyring's data key for (session_id, key_epoch) opens it when
    it holds one (`session_id` defaults to the one `aad` names); else its private key, through its own
    recipient entry. Neither: FailedPrecondition saying which key is needed. A key that does not open
    it (wrong key, forged wrapped key, tampered ciphertext or nonce, another aad): DecryptionError."""
    parsed = _parse(sealed)
    sid = session_id if session_id is not None else _aad_session(aad)
    data_key = keyring.data_key(sid, parsed.epoch, parsed.recipients)
    try:
        return AESGCM(data_key).decrypt(parsed.nonce, parsed.ciphertext, aad)
    except InvalidTag:
        raise DecryptionError(
            f"the sealed body of session {sid or '?'} (key epoch {parsed.epoch}) failed authentication: a "
            "wrong key, a forged wrapped key, or a body altered or moved from another session, seq or state root"
        ) from None


def _aad_session(aad: bytes) -> str:
    if aad.startswith(BODY_AAD_PREFIX):
        return aad[len(BODY_AAD_PREFIX) :].split(b"\x00", 1)[0].decode("ascii", "replace")
    return ""


@dataclass(frozen=True)
class Sealing:
    """How one session's checkpoints are sealed by its executor: the current epoch's data key, and the
    public keys (owner first, then the executor itself) it is wrapped to inside each checkpoint."""

    key: SessionKey
    recipients: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.recipients:
            raise InvalidArgument("recipients", "a sealing needs at least one recipient (the owner)")
        for public_key in self.recipients:
            _public_key(public_key)

    def seal(self, plaintext: bytes, aad: bytes) -> dict[str, Any]:
        return seal_body(plaintext, self.key, self.recipients, aad)


class Keyring:
    """What a reader opens sealed bodies with: data keys by (session id, epoch), and/or one private key
    (which opens any body that names its address among the recipients)."""

    def __init__(
        self,
        *,
        private_key: bytes | str | None = None,
        keys: Iterable[tuple[str, SessionKey]] = (),
    ) -> None:
        self._private = private_key_bytes(private_key) if private_key is not None else None
        self.public_key = public_key_of(self._private) if self._private is not None else None
        self.address = address_of(self.public_key) if self.public_key is not None else None
        self._keys: dict[tuple[str, int], SessionKey] = {}
        for session_id, key in keys:
            self.add(session_id, key)

    def __repr__(self) -> str:
        return f"Keyring(address={self.address!r}, data_keys={len(self._keys)})"

    def add(self, session_id: str, key: SessionKey) -> None:
        self._keys[(session_id, key.epoch)] = key

    def add_all(self, session_id: str, keys: Iterable[SessionKey]) -> None:
        for key in keys:
            self.add(session_id, key)

    def get(self, session_id: str, epoch: int) -> SessionKey | None:
        return self._keys.get((session_id, epoch))

    def epochs(self, session_id: str) -> list[int]:
        return sorted(e for s, e in self._keys if s == session_id)

    def forget(self, session_id: str) -> None:
        """Drop a session's data keys (its lease ended)."""
        for k in [k for k in self._keys if k[0] == session_id]:
            del self._keys[k]

    def unwrap(self, wrapped: bytes) -> bytes:
        """A data key wrapped to this keyring's private key (FailedPrecondition when it has none)."""
        if self._private is None:
            raise FailedPrecondition("this keyring holds no private key to unwrap data keys with")
        return unwrap_key(wrapped, self._private)

    def data_key(self, session_id: str, epoch: int, recipients: Sequence[tuple[str, bytes]] = ()) -> bytes:
        """The data key of (session_id, epoch): held, or unwrapped from this keyring's recipient entry."""
        held = self.get(session_id, epoch)
        if held is not None:
            return held.key
        if self.address is not None:
            for address, wrapped in recipients:
                if address == self.address:
                    return self.unwrap(wrapped)
        to = ", ".join(a for a, _ in recipients) or "nobody"
        mine = f"; the key given ({self.address}) is not one of them" if self.address is not None else ""
        raise FailedPrecondition(
            f"the checkpoint body of session {session_id or '?'} is sealed with its epoch-{epoch} data key, "
            f"wrapped to {to}{mine}: open it with one of those private keys (the owner's: "
            "--owner-key-file), or as the session's executor of record or the recovery oracle, which get "
            "the session's keys from the session service"
        )


__all__ = [
    "ALG",
    "BODY_AAD_PREFIX",
    "WRAP",
    "WRAPPED_SIZE",
    "Keyring",
    "Sealing",
    "SessionKey",
    "address_of",
    "body_aad",
    "is_sealed_body",
    "new_session_key",
    "open_body",
    "private_key_bytes",
    "public_key_of",
    "seal_body",
    "sealed_epoch",
    "sealed_recipients",
    "unwrap_key",
    "wrap_key",
]
