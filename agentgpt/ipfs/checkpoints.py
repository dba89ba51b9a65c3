"""Checkpoint documents to and from a ContentStore.

A checkpoint is a generic str-keyed document (task log entries, context epoch, budget, ...) with three
required keys that tie it to its on-chain anchor ``anchorCheckpoint(sessionId, seq, cid, stateRoot)``:

* ``session_id``: decimal string of the uint256 token id (dag-cbor integers stop at 64 bits);
* ``seq``: number of tasks covered, an int >= 0;
* ``state_root``: 32 bytes, head of the executor-signed hash-chained task log.

Writing: canonical dag-cbor; with a key, sealed in an AES-256-GCM envelope whose associated data binds
session_id and seq (so a valid envelope of another session or seq does not open). Plain documents are
stored as one dag-cbor block (inspectable with ``ipfs dag get``) when they fit Kubo's 1 MiB block limit,
else as a raw UnixFS file; envelopes are always raw. Reading reverses this and checks, in order: bytes
vs CID (the store), envelope authenticity, canonical encoding, required keys, and the caller's expected
session/seq/state root (from the anchor). Any failure is a ContentIntegrityError (gRPC DATA_LOSS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from agentgpt.errors import FailedPrecondition, InvalidArgument
from agentgpt.ipfs.cid import MAX_BLOCK_SIZE, normalize
from agentgpt.ipfs.codec import decode, encode, is_sealed, open_, seal
from agentgpt.ipfs.errors import ContentIntegrityError, DocumentFormatError
from agentgpt.ipfs.store import ContentStore

REQUIRED_KEYS = ("session_id", "seq", "state_root")
AAD_PREFIX = b"agentgpt/checkpoint/v1\x00"


class StoredCheckpoint(NamedTuple):
    """Where a checkpoint went: its CID (what gets anchored) and the stored size in bytes."""

    cid: str
    size: int


def checkpoint_key(text: str) -> bytes | None:
    """AGENTGPT_CHECKPOINT_KEY (64 hex characters) as an AES-256 key; None when empty (plaintext)."""
    from agentgpt.runtime.config import ConfigError

    if not text:
        return None
    try:
        key = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError("AGENTGPT_CHECKPOINT_KEY must be 64 hex characters (AES-256)")
    return key


def checkpoint_aad(session_id: str, seq: int) -> bytes:
    """Associated data of an encrypted checkpoint: binds the envelope to its session and seq."""
    return AAD_PREFIX + session_id.encode() + b"\x00" + str(seq).encode()


def _problems(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in REQUIRED_KEYS:
        if key not in doc:
            out.append((key, "is required"))
    sid = doc.get("session_id")
    if "session_id" in doc and not (isinstance(sid, str) and sid.isdecimal() and sid.isascii()):
        out.append(("session_id", f"must be a decimal string (uint256 token id), got {sid!r}"))
    seq = doc.get("seq")
    if "seq" in doc and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        out.append(("seq", f"must be an int >= 0, got {seq!r}"))
    root = doc.get("state_root")
    if "state_root" in doc and not (isinstance(root, bytes) and len(root) == 32):
        out.append(("state_root", f"must be 32 bytes, got {type(root).__name__} of length {_len(root)}"))
    return out


def _len(value: Any) -> int | str:
    try:
        return len(value)
    except TypeError:
        return "n/a"


def validate_checkpoint(doc: Mapping[str, Any]) -> None:
    """Raise InvalidArgument (naming the first bad field) unless `doc` has the required keys."""
    if not isinstance(doc, Mapping):
        raise InvalidArgument("checkpoint", f"must be a mapping, not {type(doc).__name__}")
    problems = _problems(doc)
    if problems:
        raise InvalidArgument(f"checkpoint.{problems[0][0]}", problems[0][1])


class CheckpointWriter:
    """Encode, optionally encrypt, and store checkpoint documents."""

    def __init__(self, store: ContentStore, *, key: bytes | None = None) -> None:
        self.store = store
        self.key = key

    async def write(self, doc: Mapping[str, Any]) -> StoredCheckpoint:
        validate_checkpoint(doc)
        data = encode(doc)
        if self.key is not None:
            data = seal(data, self.key, checkpoint_aad(doc["session_id"], doc["seq"]))
            cid = await self.store.put(data, "raw")
        else:
            cid = await self.store.put(data, "dag-cbor" if len(data) <= MAX_BLOCK_SIZE else "raw")
        return StoredCheckpoint(cid, len(data))


class CheckpointReader:
    """Fetch and verify checkpoint documents; pass what the anchor says to have it checked too."""

    def __init__(self, store: ContentStore, *, key: bytes | None = None) -> None:
        self.store = store
        self.key = key

    async def read(
        self,
        cid: str,
        *,
        session_id: str | None = None,
        seq: int | None = None,
        state_root: bytes | None = None,
    ) -> dict[str, Any]:
        """The document stored under `cid`, verified end to end.

        `session_id` and `seq` are required for encrypted checkpoints (they are the envelope's
        associated data); when given they, and `state_root`, must equal the document's own values.
        """
        cid = normalize(cid)
        data = await self.store.get(cid)  # bytes verified against the CID by the store
        if is_sealed(data):
            if self.key is None:
                raise FailedPrecondition(f"checkpoint {cid} is encrypted and this reader has no key")
            if session_id is None or seq is None:
                raise InvalidArgument(
                    "session_id", f"checkpoint {cid} is encrypted: session_id and seq are needed to open it"
                )
            try:
                data = open_(data, self.key, checkpoint_aad(session_id, seq))
            except ContentIntegrityError as exc:
                raise type(exc)(f"checkpoint {cid}: {exc.message}") from None
        try:
            doc = decode(data)
        except DocumentFormatError as exc:
            raise DocumentFormatError(f"checkpoint {cid}: {exc.message}") from None
        problems = _problems(doc)
        if problems:
            field, problem = problems[0]
            raise DocumentFormatError(f"checkpoint {cid}: {field} {problem}")
        expected = {"session_id": session_id, "seq": seq, "state_root": state_root}
        for key, want in expected.items():
            if want is not None and doc[key] != want:
                shown = doc[key].hex() if isinstance(doc[key], bytes) else doc[key]
                wanted = want.hex() if isinstance(want, bytes) else want
                raise ContentIntegrityError(
                    f"checkpoint {cid} has {key}={shown!s}, but its anchor says {wanted!s}"
                )
        return doc


__all__ = [
    "REQUIRED_KEYS",
    "CheckpointReader",
    "CheckpointWriter",
    "StoredCheckpoint",
    "checkpoint_aad",
    "checkpoint_key",
    "validate_checkpoint",
]
