"""The executor-signed, hash-chained task log: the session's verifiable execution proof (docs/design.md §2),
and the checkpoint document that carries it (written by the executor, verified by the recovery oracle).

Each entry commits to the previous one: hash = keccak256(prev_hash || dag-cbor(entry body)). The
executor signs every hash with its secp256k1 key (ECDSA, low-s, 64-byte r||s); the checkpoint carries
the executor's public key, whose keccak gives its Ethereum address, so anyone can recheck the chain
and the signatures from IPFS + the state root anchored on chain. Signing uses OpenSSL through
`cryptography` (~0.25 ms) rather than eth-keys' pure-Python signer (~2.6 ms), so the log never limits
task throughput.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import dag_cbor
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

ZERO_HASH = b"\x00" * 32
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_PREHASHED = ec.ECDSA(utils.Prehashed(hashes.SHA256()))  # SHA256 only fixes the digest length (32)


class TaskLogError(ValueError):
    """The log does not verify (broken chain, bad signature, wrong signer)."""


class ExecutorKey:
    """The executor's secp256k1 key: signs log entries; its address is the on-chain executor."""

    def __init__(self, private_key: str | bytes) -> None:
        raw = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else private_key
        self._key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256K1())
        self.signing_key = PrivateKey(raw)  # recoverable (65-byte) signatures for format v2
        numbers = self._key.public_key().public_numbers()
        self.public_key = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
        self.address = address_of(self.public_key)

    def sign(self, digest: bytes) -> bytes:
        """Format v1's signature: 64 bytes r || s over a raw digest (v2 signs EIP-712 digests with a
        recovery byte: agentgpt.checkpoint_format.sign)."""
        r, s = utils.decode_dss_signature(self._key.sign(digest, _PREHASHED))
        if s > _SECP256K1_N // 2:
            s = _SECP256K1_N - s  # low-s, as Ethereum requires
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def address_of(public_key: bytes) -> str:
    return to_checksum_address(keccak(public_key)[12:])


def verify_signature(public_key: bytes, digest: bytes, signature: bytes) -> bool:
    if len(public_key) != 64 or len(signature) != 64:
        return False
    pub = ec.EllipticCurvePublicNumbers(
        int.from_bytes(public_key[:32], "big"), int.from_bytes(public_key[32:], "big"), ec.SECP256K1()
    ).public_key()
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        pub.verify(der, digest, _PREHASHED)
    except InvalidSignature:
        return False
    return True


def result_digest(result: Mapping[str, Any]) -> bytes:
    """keccak256 of a task result's canonical (dag-cbor) encoding."""
    return keccak(dag_cbor.encode(cbor_safe(result)))


def cbor_safe(value: Any) -> Any:
    # dag-cbor has no tuples or ints beyond 64 bits, and our canonical documents no floats: normalise.
    if isinstance(value, Mapping):
        return {str(k): cbor_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [cbor_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, float):
        return repr(value)  # canonical documents carry no floats (their encodings are not unique)
    return value


@dataclass(frozen=True)
class LogEntry:
    session_id: str
    seq: int
    kind: str
    status: str  # "succeeded" | "failed" | "refused" | "context"
    result_hash: bytes
    context_epoch: int
    tx_hashes: tuple[bytes, ...]
    prev_hash: bytes
    hash: bytes
    signature: bytes

    def body(self) -> dict[str, Any]:
        return {
            "session": self.session_id,
            "seq": self.seq,
            "kind": self.kind,
            "status": self.status,
            "result": self.result_hash,
            "ctx": self.context_epoch,
            "txs": list(self.tx_hashes),
        }

    def to_cbor_obj(self) -> dict[str, Any]:
        return {**self.body(), "prev": self.prev_hash, "hash": self.hash, "sig": self.signature}

    @classmethod
    def from_cbor_obj(cls, obj: Mapping[str, Any]) -> LogEntry:
        """An entry as stored; TypeError/ValueError/KeyError naming the field when one has the wrong type
        (no conversion: `bytes(n)` of a stored integer would allocate n bytes)."""
        if not isinstance(obj, Mapping):
            raise TypeError(f"an entry must be a map, not {type(obj).__name__}")
        txs = obj["txs"]
        if not isinstance(txs, list):
            raise TypeError("entry field txs must be a list of transaction hashes")
        return cls(
            session_id=_typed(obj, "session", str),
            seq=_uint(obj, "seq"),
            kind=_typed(obj, "kind", str),
            status=_typed(obj, "status", str),
            result_hash=_typed(obj, "result", bytes),
            context_epoch=_uint(obj, "ctx"),
            tx_hashes=tuple(_typed({"txs": t}, "txs", bytes) for t in txs),
            prev_hash=_typed(obj, "prev", bytes),
            hash=_typed(obj, "hash", bytes),
            signature=_typed(obj, "sig", bytes),
        )


T = TypeVar("T")


def _typed(obj: Mapping[str, Any], key: str, kind: type[T]) -> T:
    value = obj[key]
    if not isinstance(value, kind):
        raise TypeError(f"field {key} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _uint(obj: Mapping[str, Any], key: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise ValueError(f"field {key} must be an integer in 0..2^64-1, got {str(value)[:40]}")
    return value


def entry_hash(prev_hash: bytes, body: Mapping[str, Any]) -> bytes:
    return keccak(prev_hash + dag_cbor.encode(dict(body)))


EntrySigner = Callable[[int, bytes], bytes]  # (seq, entry hash) -> signature


class TaskLog:
    """The log of one session held by its executor: head, and the entries since the last checkpoint.

    `sign_entry` signs each entry (format v2: EIP-712 in the factory's domain, see
    agentgpt.checkpoint_format.entry_signer); without it entries get format v1's raw signature."""

    def __init__(
        self,
        session_id: str,
        key: ExecutorKey,
        head: bytes = ZERO_HASH,
        seq: int = 0,
        *,
        sign_entry: EntrySigner | None = None,
    ) -> None:
        self.session_id = session_id
        self.key = key
        self.head = head
        self.seq = seq  # seq of the last entry
        self.pending: list[LogEntry] = []  # entries not yet in a checkpoint
        self.results: dict[int, Any] = {}  # seq -> the pending entries' task results (stored form)
        self._sign: EntrySigner = sign_entry or (lambda _seq, digest: self.key.sign(digest))

    def append(
        self,
        seq: int,
        kind: str,
        status: str,
        result: Mapping[str, Any],
        *,
        context_epoch: int,
        tx_hashes: Iterable[bytes] = (),
        expected_hash: bytes | None = None,
    ) -> LogEntry:
        """Append and sign the entry of task `seq`. With `expected_hash` (re-logging a task another
        executor committed, from its SessionDB record), the rebuilt entry must hash to it, or
        TaskLogError: the record does not describe the task that was logged."""
        if seq <= self.seq:
            raise TaskLogError(f"seq {seq} does not follow the log's last seq {self.seq}")
        stored = cbor_safe(dict(result))
        result_hash = keccak(dag_cbor.encode(stored))
        txs = [bytes(t) for t in tx_hashes]
        body: dict[str, Any] = {
            "session": self.session_id,
            "seq": seq,
            "kind": kind,
            "status": status,
            "result": result_hash,
            "ctx": context_epoch,
            "txs": txs,
        }
        h = entry_hash(self.head, body)
        if expected_hash is not None and h != expected_hash:
            raise TaskLogError(f"task {seq}'s record does not rebuild its logged entry")
        entry = LogEntry(
            self.session_id,
            seq,
            kind,
            status,
            result_hash,
            context_epoch,
            tuple(txs),
            self.head,
            h,
            self._sign(seq, h),
        )
        self.head, self.seq = h, seq
        self.pending.append(entry)
        self.results[seq] = stored
        return entry

    def drop_last(self, head: bytes, seq: int) -> None:
        """Take back the newest pending entry (its task was not committed)."""
        entry = self.pending.pop()
        self.results.pop(entry.seq, None)
        self.head, self.seq = head, seq

    def take_pending(self) -> list[LogEntry]:
        out, self.pending = self.pending, []
        self.results = {}
        return out


def verify_chain(entries: Iterable[LogEntry], start: bytes, public_key: bytes) -> bytes:
    """Recheck hashes, links and signatures from `start`; return the head. Raises TaskLogError."""
    head = start
    for e in entries:
        if e.prev_hash != head:
            raise TaskLogError(f"entry {e.seq} does not link to the previous head")
        if entry_hash(head, e.body()) != e.hash:
            raise TaskLogError(f"entry {e.seq}'s hash does not match its content")
        if not verify_signature(public_key, e.hash, e.signature):
            raise TaskLogError(f"entry {e.seq} is not signed by executor {address_of(public_key)}")
        head = e.hash
    return head


CHECKPOINT_VERSION = 1


def checkpoint_document_v1(
    *,
    session_id: str,
    seq: int,
    state_root: bytes,
    prev_cid: str,
    prev_root: bytes,
    entries: Sequence[LogEntry],
    key: ExecutorKey,
    context: Sequence[Mapping[str, Any]],
    budget: Mapping[str, Any],
    memory: Mapping[str, Any],
    chains: Sequence[str],
    spec: str = "",
) -> dict[str, Any]:
    """A format v1 checkpoint document (what executors wrote before v2; kept for fixtures and the
    migration tests — agentgpt.checkpoint_format.checkpoint_document writes v2). `spec`, when given, is the session spec's canonical JSON (keccak256 of its
    UTF-8 bytes is the workflowHash committed on chain): with it a session lost from SessionDB can be
    restored from the chain and IPFS alone."""
    extra = {"spec": spec} if spec else {}
    return {
        **extra,
        "version": CHECKPOINT_VERSION,
        "session_id": session_id,
        "seq": seq,
        "state_root": state_root,
        "prev_cid": prev_cid,
        "prev_root": prev_root,
        "executor": key.address,
        "executor_public_key": key.public_key,
        "entries": [e.to_cbor_obj() for e in entries],
        "context": [cbor_safe(dict(c)) for c in context],
        "budget": cbor_safe(dict(budget)),
        "memory": cbor_safe(dict(memory)),
        "chains": list(chains),
    }


@dataclass(frozen=True)
class VerifiedLog:
    """What a checkpoint's task log proves once rechecked."""

    head: bytes  # the state root it proves (v1: the last entry's hash): must equal the anchored one
    executor: str  # checksummed address of the key that signed every entry
    entries: int
    prev_cid: str
    first_seq: int  # seq of the first entry (the previous checkpoint's seq + 1); 0 when empty
    version: int = CHECKPOINT_VERSION
    prev_seq: int = 0  # the previous checkpoint's seq (where this one's entries begin, after)
    log_start: bytes = ZERO_HASH  # the log head this checkpoint's entries link from
    log_head: bytes = ZERO_HASH  # the newest entry's hash (v1: == head)
    epoch: int = 0  # the executor epoch the document claims (v2; 0 when it says none)
    sealed: bool = False  # v2 with a sealed body: entries and state were not checked (need the key)
    # the zk_batch_prover's (Statement, Proof) batches from the header's `zk` (agentgpt.zk.batch); () = none
    batches: tuple[Any, ...] = ()


def verify_checkpoint_log(doc: Mapping[str, Any]) -> VerifiedLog:
    """Recheck a checkpoint document's task log: entries link from `prev_root`, each hash matches its
    content, each signature is by `executor_public_key`, whose address is `executor`, and entries belong
    to the checkpoint's session in consecutive seqs ending at its seq. Raises TaskLogError."""
    try:
        public_key = _typed(doc, "executor_public_key", bytes)
        claimed = _typed(doc, "executor", str)
        prev_root = _typed(doc, "prev_root", bytes)
        session_id, seq = _typed(doc, "session_id", str), _uint(doc, "seq")
        if not isinstance(doc["entries"], list):
            raise TypeError("entries must be a list")
        entries = [LogEntry.from_cbor_obj(e) for e in doc["entries"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise TaskLogError(
            f"checkpoint document is not a version-{CHECKPOINT_VERSION} task log: {exc}"
        ) from None
    try:
        if len(public_key) != 64 or address_of(public_key) != to_checksum_address(claimed):
            raise ValueError(claimed)
    except ValueError:
        raise TaskLogError(f"executor_public_key is not the key of executor {claimed[:60]}") from None
    for i, e in enumerate(entries):
        if e.session_id != session_id:
            raise TaskLogError(f"entry {e.seq} belongs to session {e.session_id}, not {session_id}")
        if e.seq != seq - len(entries) + 1 + i:
            raise TaskLogError(f"entry seqs are not consecutive up to the checkpoint's seq {seq}")
    head = verify_chain(entries, prev_root, public_key)
    return VerifiedLog(
        head=head,
        executor=address_of(public_key),
        entries=len(entries),
        prev_cid=str(doc.get("prev_cid") or ""),
        first_seq=entries[0].seq if entries else 0,
        prev_seq=seq - len(entries),
        log_start=prev_root,
        log_head=head,
    )
