"""Checkpoint documents to and from a ContentStore.

A checkpoint is a generic str-keyed document (task log entries, context epoch, budget, ...) with three
required keys that tie it to its on-chain anchor ``anchorCheckpoint(sessionId, seq, cid, stateRoot)``:

* ``session_id``: decimal string of the uint256 token id (dag-cbor integers stop at 64 bits);
* ``seq``: the seq of the last task covered (with its predecessors: tasks 1..seq), an int >= 0;
* ``state_root``: 32 bytes, the root the anchor commits to.

Writing: canonical dag-cbor. A version-2 document (``version`` 2 with a ``body`` map: the plaintext
header stays readable by anyone) is sealed by replacing its ``body`` with the sealed map of
agentgpt.sealing when the writer is given the session's `Sealing` (the session's data key for the
current executor epoch, wrapped inside the document to the owner and the executor); its associated data
binds the body to the header's session_id, seq and state_root (``agentgpt.sealing.body_aad``). A
version-1 document is sealed, as before, in the legacy AES-256-GCM envelope under the deployment-wide
``AGENTGPT_CHECKPOINT_KEY`` (associated data: session_id and seq); that key stays only so old
checkpoints keep opening. Documents (sealed bodies included) are stored as one dag-cbor block
(inspectable with ``ipfs dag get``) when they fit Kubo's 1 MiB block limit, else as a raw UnixFS file;
envelopes are always raw.

Reading reverses this and checks, in order: bytes vs CID (the store), envelope authenticity (v1),
canonical encoding, required keys, the caller's expected session/seq/state root (from the anchor), and
a sealed body's authenticity (v2). A sealed body is opened with the reader's `Keyring` — data keys by
(session, epoch), or a private key that is one of the body's recipients — asking its `key_source` (the
session service, for the recovery oracle) for the session's keys once when the keyring lacks the one
needed; the document comes back with its plaintext ``body``. A reader with neither keyring nor key
source leaves sealed bodies as they are (a header-only reader); one that cannot find the key raises
FailedPrecondition naming it. Any integrity failure is a ContentIntegrityError (gRPC DATA_LOSS).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple

# agentgpt.sealing imports this package's errors: bound as a module, its names are looked up at call time
from agentgpt import sealing as seals
from agentgpt.errors import FailedPrecondition, InvalidArgument
from agentgpt.ipfs.cid import MAX_BLOCK_SIZE, normalize
from agentgpt.ipfs.codec import decode, encode, is_sealed, open_, seal
from agentgpt.ipfs.errors import ContentIntegrityError, DocumentFormatError
from agentgpt.ipfs.store import ContentStore

REQUIRED_KEYS = ("session_id", "seq", "state_root")
AAD_PREFIX = b"agentgpt/checkpoint/v1\x00"
BODY_VERSION = 2  # documents from this version on have a plaintext header and a (sealable) body

#: Where a reader gets a session's data keys it does not hold yet (the recovery oracle: GetSessionKeys).
KeySource = Callable[[str], Awaitable[Iterable["seals.SessionKey"]]]


class StoredCheckpoint(NamedTuple):
    """Where a checkpoint went: its CID (what gets anchored) and the stored size in bytes."""

    cid: str
    size: int


def checkpoint_key(text: str) -> bytes | None:
    """AGENTGPT_CHECKPOINT_KEY (64 hex characters) as an AES-256 key; None when empty. The legacy
    deployment-wide key of version-1 envelopes: version-2 bodies are sealed per session instead."""
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


def has_body(doc: Mapping[str, Any]) -> bool:
    """A version-2 document: a plaintext header and a ``body`` (a plaintext map, or a sealed one)."""
    return doc.get("version") == BODY_VERSION and isinstance(doc.get("body"), Mapping)


def checkpoint_aad(session_id: str, seq: int) -> bytes:
    """Associated data of a (version-1) envelope: binds the envelope to its session and seq."""
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
    """Encode, optionally seal, and store checkpoint documents. `key` is the legacy deployment-wide key
    of version-1 envelopes; version-2 bodies are sealed with the session's own `Sealing`."""

    def __init__(self, store: ContentStore, *, key: bytes | None = None) -> None:
        self.store = store
        self.key = key

    async def write(
        self, doc: Mapping[str, Any], *, sealing: seals.Sealing | None = None
    ) -> StoredCheckpoint:
        """Store `doc`; with `sealing` (version-2 documents only), its body sealed to the session's key."""
        validate_checkpoint(doc)
        if has_body(doc):
            if sealing is not None and not seals.is_sealed_body(doc["body"]):
                aad = seals.body_aad(doc["session_id"], doc["seq"], doc["state_root"])
                doc = {**doc, "body": sealing.seal(encode(doc["body"]), aad)}
            data = encode(doc)
            cid = await self.store.put(data, "dag-cbor" if len(data) <= MAX_BLOCK_SIZE else "raw")
            return StoredCheckpoint(cid, len(data))
        if sealing is not None:
            raise InvalidArgument(
                "checkpoint.version",
                f"only version-{BODY_VERSION} documents have a body to seal, this is version {doc.get('version')!r}",
            )
        data = encode(doc)
        if self.key is not None:
            data = seal(data, self.key, checkpoint_aad(doc["session_id"], doc["seq"]))
            cid = await self.store.put(data, "raw")
        else:
            cid = await self.store.put(data, "dag-cbor" if len(data) <= MAX_BLOCK_SIZE else "raw")
        return StoredCheckpoint(cid, len(data))


class CheckpointReader:
    """Fetch and verify checkpoint documents; pass what the anchor says to have it checked too.

    `key` opens legacy version-1 envelopes; `keyring` (and, for keys it lacks, `key_source`) opens
    sealed version-2 bodies. With neither of the last two, sealed bodies are left sealed."""

    def __init__(
        self,
        store: ContentStore,
        *,
        key: bytes | None = None,
        keyring: seals.Keyring | None = None,
        key_source: KeySource | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.keyring = keyring if keyring is not None or key_source is None else seals.Keyring()
        self.key_source = key_source

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
        if has_body(doc) and seals.is_sealed_body(doc["body"]) and self.keyring is not None:
            doc = {**doc, "body": await self.open_sealed(cid, doc)}
        return doc

    async def open_sealed(self, cid: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """The plaintext body of a version-2 document whose body is sealed (see the module doc)."""
        keyring = self.keyring if self.keyring is not None else seals.Keyring()
        sid = str(doc["session_id"])
        aad = seals.body_aad(sid, int(doc["seq"]), bytes(doc["state_root"]))
        try:
            try:
                plaintext = seals.open_body(doc["body"], aad, keyring, session_id=sid)
            except FailedPrecondition:
                if self.key_source is None:
                    raise
                keyring.add_all(sid, await self.key_source(sid))
                plaintext = seals.open_body(doc["body"], aad, keyring, session_id=sid)
        except FailedPrecondition as exc:
            raise FailedPrecondition(f"checkpoint {cid}: {exc.message}") from None
        except ContentIntegrityError as exc:
            raise type(exc)(f"checkpoint {cid}: {exc.message}") from None
        try:
            body = decode(plaintext)
        except DocumentFormatError as exc:
            raise DocumentFormatError(f"checkpoint {cid}: its sealed body: {exc.message}") from None
        return body


__all__ = [
    "BODY_VERSION",
    "REQUIRED_KEYS",
    "CheckpointReader",
    "CheckpointWriter",
    "KeySource",
    "StoredCheckpoint",
    "checkpoint_aad",
    "checkpoint_key",
    "has_body",
    "validate_checkpoint",
]
