"""Canonical dag-cbor for checkpoint documents, and AES-256-GCM envelopes.

Determinism is the point: the same document must always give the same bytes, hence the same CID, on any
machine, so a checkpoint CID anchored on chain can be recomputed by anyone. dag-cbor (sorted map keys,
minimal integers, definite lengths) gives that; the decoder rejects any non-canonical input.

Floats are refused: dag-cbor always writes them as 64-bit, but a JavaScript node (js-ipfs ``dag/put``)
decodes 1.0 as the integer 1 and writes it back as an integer, so the node's CID would differ from ours.
Store decimals as strings or scaled integers. Tuples are refused too (they would come back as lists).

Envelope format (version 1; the legacy deployment-wide AGENTGPT_CHECKPOINT_KEY of version-1 checkpoint
documents: version-2 documents keep a plaintext header and seal only their body, per session, with
agentgpt.sealing), all binary::

    b"AGCE" | 0x01 | nonce (12 random bytes) | AES-256-GCM(ciphertext || 16-byte tag)

The 5-byte header is part of the associated data, so a forged version byte fails authentication just
like tampered ciphertext. Callers add their own associated data (e.g. session id and seq) so a valid
envelope cannot be replayed in another context.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dag_cbor
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dag_cbor.encoding.err import CBORError
from multiformats import CID

from agentgpt.errors import InvalidArgument
from agentgpt.ipfs.errors import DecryptionError, DocumentFormatError

MAGIC = b"AGCE"
VERSION = 1
HEADER = MAGIC + bytes([VERSION])
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32

_INT_MIN = -(2**64)
_INT_MAX = 2**64 - 1


def _check(value: Any, path: str) -> None:
    """Reject what dag-cbor cannot round-trip exactly, naming where it is (``document.tasks[3].gas``)."""
    if value is None or isinstance(value, bool | str | bytes | CID):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidArgument(path, f"integer {value} is outside dag-cbor's 64-bit range")
        return
    if isinstance(value, float):
        raise InvalidArgument(path, "floats are not allowed in checkpoint documents; use a string or an int")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(path, f"map key {key!r} is not a string")
            _check(item, f"{path}.{key}")
        return
    raise InvalidArgument(
        path, f"type {type(value).__name__} cannot be stored (use dict, list, str, int, bytes, bool, None)"
    )


def encode(doc: Mapping[str, Any]) -> bytes:
    """Canonical dag-cbor bytes of `doc` (a str-keyed mapping). Invalid content: InvalidArgument."""
    if not isinstance(doc, Mapping):
        raise InvalidArgument("document", f"must be a mapping, not {type(doc).__name__}")
    _check(doc, "document")
    try:
        return bytes(dag_cbor.encode(dict(doc)))
    except CBORError as exc:  # pragma: no cover - _check covers the known cases
        raise InvalidArgument("document", str(exc)) from None


def decode(data: bytes) -> dict[str, Any]:
    """The document in canonical dag-cbor `data`; anything else (non-canonical, truncated, not a map) is
    DocumentFormatError, because stored bytes that fail here are corrupt or forged."""
    try:
        doc = dag_cbor.decode(data)
    except (CBORError, ValueError, TypeError, LookupError) as exc:  # LookupError: a link's unknown multicodec
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DocumentFormatError(f"not a canonical dag-cbor document: {first_line}") from None
    if not isinstance(doc, dict):
        raise DocumentFormatError(f"not a document: top-level dag-cbor value is a {type(doc).__name__}")
    return doc


# ---------------------------------------------------------------- encryption
def generate_key() -> bytes:
    """A fresh random AES-256 key."""
    return AESGCM.generate_key(bit_length=256)


def _aesgcm(key: bytes) -> AESGCM:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise InvalidArgument("key", f"must be {KEY_SIZE} bytes (AES-256), got {len(key) if key else 0}")
    return AESGCM(bytes(key))


def is_sealed(data: bytes) -> bool:
    """True if `data` starts like an envelope (cheap sniff: dag-cbor maps never start with b"AGCE")."""
    return data[: len(MAGIC)] == MAGIC


def seal(plaintext: bytes, key: bytes, aad: bytes = b"") -> bytes:
    """Encrypt and authenticate `plaintext` under `key`, binding `aad`; a fresh random nonce every call."""
    nonce = os.urandom(NONCE_SIZE)
    return HEADER + nonce + _aesgcm(key).encrypt(nonce, plaintext, HEADER + aad)


def open_(envelope: bytes, key: bytes, aad: bytes = b"") -> bytes:
    """Decrypt an envelope made by `seal` with the same key and aad.

    Not an envelope / unknown version: DocumentFormatError. Wrong key, wrong aad or any flipped bit:
    DecryptionError (both ContentIntegrityError).
    """
    aead = _aesgcm(key)
    if len(envelope) < len(HEADER) + NONCE_SIZE + TAG_SIZE or not is_sealed(envelope):
        raise DocumentFormatError("not an encrypted checkpoint envelope (bad magic or too short)")
    if envelope[len(MAGIC)] != VERSION:
        raise DocumentFormatError(
            f"envelope version {envelope[len(MAGIC)]} is not supported (this build reads version {VERSION})"
        )
    nonce = envelope[len(HEADER) : len(HEADER) + NONCE_SIZE]
    try:
        return aead.decrypt(nonce, envelope[len(HEADER) + NONCE_SIZE :], HEADER + aad)
    except InvalidTag:
        raise DecryptionError(
            "checkpoint envelope failed authentication: wrong key, wrong session/seq, or tampered bytes"
        ) from None
