"""Checkpoint format v2: the document an executor writes every N tasks, as docs/checkpoint-format.md
specifies it (byte layouts, hash inputs, signatures, test vectors). This module is the one encoder and
checker the services use; the spec is written so that others need none of it.

A v2 document is a canonical dag-cbor map: a plaintext **header** that anyone can check from the chain
and IPFS alone, and a **body** (the task log entries and the state) that may be sealed with the
session's key (agentgpt.sealing). In short:

* ``state_root = keccak256("agentgpt/state-root/v2" || u64be(seq) || log_head || state_hash)``, where
  ``log_head`` is the hash of the newest task-log entry and ``state_hash = keccak256(dag-cbor(state))``
  over ``{"budget", "context", "memory", "results"}``; the anchor on chain commits to it;
* ``prev`` is the previous checkpoint as an IPLD link (dag-cbor tag 42), so pinning the newest
  checkpoint keeps every older one;
* signatures are EIP-712 typed data in the SessionFactory's domain (name "AgentGPT SessionFactory",
  version "1", the home chain id, the factory's address), 65 bytes r || s || v with v in {27, 28}:
  ``Checkpoint(uint256 sessionId,uint64 seq,bytes32 stateRoot,bytes32 prevRoot)`` for the header (the
  factory checks this one on chain for the final anchor) and ``TaskLogEntry(uint256 sessionId,uint64
  seq,bytes32 entryHash)`` for every entry. The domain separates them from transactions and from raw
  digests, and from other deployments;
* integers are integers (no floats anywhere; amounts beyond 64 bits are decimal strings).

Version 1 documents (raw 64-byte signatures over entry hashes, ``state_root`` = log head, ``prev_cid`` a
string) stay readable: ``verify_document`` checks either (see the migration note in the spec).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import dag_cbor
from eth_abi.abi import encode as abi_encode
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from multiformats import CID

from agentgpt.tasklog import (
    CHECKPOINT_VERSION,
    ZERO_HASH,
    ExecutorKey,
    LogEntry,
    TaskLogError,
    VerifiedLog,
    address_of,
    cbor_safe,
    result_digest,
    verify_checkpoint_log,
)
from agentgpt.zk import batch as zk_batch

FORMAT_VERSION = 2
STATE_ROOT_TAG = b"agentgpt/state-root/v2"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DOMAIN_NAME = "AgentGPT SessionFactory"
DOMAIN_VERSION = "1"
EIP712_DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
CHECKPOINT_TYPE = b"Checkpoint(uint256 sessionId,uint64 seq,bytes32 stateRoot,bytes32 prevRoot)"
ENTRY_TYPE = b"TaskLogEntry(uint256 sessionId,uint64 seq,bytes32 entryHash)"
_CHECKPOINT_TYPEHASH = keccak(CHECKPOINT_TYPE)
_ENTRY_TYPEHASH = keccak(ENTRY_TYPE)
HEADER_KEYS = (
    "version",
    "session_id",
    "home_chain_id",
    "factory",
    "seq",
    "prev_seq",
    "epoch",
    "prev",
    "prev_root",
    "log_start",
    "log_head",
    "state_hash",
    "state_root",
    "executor",
    "executor_public_key",
    "signature",
    "spec",
    "body",
)
#: Header keys a writer adds only when the session has what they hold: `zk`, the zk_batch_prover's proofs
#: (agentgpt.zk.batch.zk_block; docs/checkpoint-format.md §3.3).
OPTIONAL_HEADER_KEYS = ("zk",)
STATE_KEYS = ("budget", "context", "memory", "results")
#: A plaintext body's keys (docs/checkpoint-format.md §3.2): the chains, the entries and the state.
BODY_KEYS = ("chains", "entries", *STATE_KEYS)


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain every v2 signature is made in: the home chain's SessionFactory."""

    chain_id: int = 0
    verifying_contract: str = ZERO_ADDRESS

    def __post_init__(self) -> None:  # one spelling of the address, so domains compare equal
        object.__setattr__(self, "verifying_contract", to_checksum_address(self.verifying_contract))

    @cached_property
    def separator(self) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    keccak(EIP712_DOMAIN_TYPE),
                    keccak(DOMAIN_NAME.encode()),
                    keccak(DOMAIN_VERSION.encode()),
                    self.chain_id,
                    to_checksum_address(self.verifying_contract),
                ],
            )
        )

    def digest(self, struct_hash: bytes) -> bytes:
        return keccak(b"\x19\x01" + self.separator + struct_hash)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")  # abi.encode of a uint: every field here is one static 32-byte word


def _b32(value: bytes) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError("a bytes32 field must be 32 bytes")
    return value


def checkpoint_digest(
    domain: Domain, session_id: str, seq: int, state_root: bytes, prev_root: bytes
) -> bytes:
    """What the executor signs for a checkpoint (and what SessionFactory recovers for a final anchor):
    keccak256(0x1901 || domainSeparator || keccak256(abi.encode(CHECKPOINT_TYPEHASH, sessionId, seq,
    stateRoot, prevRoot)))."""
    struct = _CHECKPOINT_TYPEHASH + _word(int(session_id)) + _word(seq) + _b32(state_root) + _b32(prev_root)
    return domain.digest(keccak(struct))


def entry_digest(domain: Domain, session_id: str, seq: int, entry_hash: bytes) -> bytes:
    """What the executor signs for one task-log entry (TaskLogEntry; built as checkpoint_digest)."""
    return domain.digest(keccak(_ENTRY_TYPEHASH + _word(int(session_id)) + _word(seq) + _b32(entry_hash)))


def sign(key: ExecutorKey, digest: bytes) -> bytes:
    """65-byte r || s || v (v = 27 + recovery id), low-s, as Ethereum's ecrecover and OpenZeppelin want."""
    sig = key.signing_key.sign_msg_hash(digest)
    r, s, v = int(sig.r), int(sig.s), int(sig.v)
    if s > SECP256K1_N // 2:  # low-s (EIP-2): the other signature of the same point, recovery id flipped
        s, v = SECP256K1_N - s, v ^ 1
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v])


def recover(digest: bytes, signature: bytes) -> str:
    """The checksummed address that made `signature` over `digest`; TaskLogError if it is malformed."""
    if not isinstance(signature, bytes) or len(signature) != 65 or signature[64] not in (27, 28):
        raise TaskLogError("a v2 signature is 65 bytes r || s || v with v 27 or 28")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    try:
        sig = Signature(vrs=(signature[64] - 27, r, s))
        if s > SECP256K1_N // 2:
            raise BadSignature("high s")
        return to_checksum_address(sig.recover_public_key_from_msg_hash(digest).to_canonical_address())
    except (BadSignature, ValueError) as exc:
        raise TaskLogError(f"the signature does not recover ({exc})") from None


def state_of(
    *,
    memory: Mapping[str, Any],
    context: Sequence[Mapping[str, Any]],
    budget: Mapping[str, Any],
    results: Mapping[int, Mapping[str, Any]],
) -> dict[str, Any]:
    """The state a checkpoint commits to, in its stored form."""
    return {
        "budget": cbor_safe(dict(budget)),
        "context": [cbor_safe(dict(c)) for c in context],
        "memory": cbor_safe(dict(memory)),
        "results": {str(seq): cbor_safe(dict(r)) for seq, r in sorted(results.items())},
    }


def state_hash(state: Mapping[str, Any]) -> bytes:
    return keccak(dag_cbor.encode({k: state[k] for k in STATE_KEYS}))


def state_root(seq: int, log_head: bytes, hashed_state: bytes) -> bytes:
    return keccak(STATE_ROOT_TAG + seq.to_bytes(8, "big") + log_head + hashed_state)


def link(cid: str) -> CID | None:
    """A CID as an IPLD link (dag-cbor tag 42); None for no previous checkpoint."""
    return CID.decode(cid) if cid else None


def checkpoint_document(
    *,
    domain: Domain,
    session_id: str,
    seq: int,
    epoch: int,
    prev_cid: str,
    prev_seq: int,
    prev_root: bytes,
    log_start: bytes,
    entries: Sequence[LogEntry],
    results: Mapping[int, Mapping[str, Any]],
    key: ExecutorKey,
    context: Sequence[Mapping[str, Any]],
    budget: Mapping[str, Any],
    memory: Mapping[str, Any],
    chains: Sequence[str],
    spec_cid: str = "",
    zk: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A v2 checkpoint document with a plaintext body (CheckpointWriter seals the body when it has a key).

    `seq` is the seq of the last task covered; `entries` are the tasks prev_seq+1 .. seq, chained from
    `log_start` (the previous checkpoint's log head); `results` holds each entry's task result (its
    digest is the entry's `result`). `spec_cid` links the session's spec (raw block of its canonical
    JSON, whose keccak256 is the workflowHash on chain); `zk`, the zk_batch_prover's block of proofs."""
    log_head = entries[-1].hash if entries else log_start
    state = state_of(memory=memory, context=context, budget=budget, results=results)
    root = state_root(seq, log_head, state_hash(state))
    body = {
        "chains": list(chains),
        "entries": [e.to_cbor_obj() for e in entries],
        **state,
    }
    doc = {
        "version": FORMAT_VERSION,
        "session_id": session_id,
        "home_chain_id": domain.chain_id,
        "factory": to_checksum_address(domain.verifying_contract),
        "seq": seq,
        "prev_seq": prev_seq,
        "epoch": epoch,
        "prev": link(prev_cid),
        "prev_root": prev_root,
        "log_start": log_start,
        "log_head": log_head,
        "state_hash": state_hash(state),
        "state_root": root,
        "executor": key.address,
        "executor_public_key": key.public_key,
        "signature": sign(key, checkpoint_digest(domain, session_id, seq, root, prev_root)),
        "spec": link(spec_cid),
        "body": body,
    }
    if zk is not None:
        doc["zk"] = dict(zk)
    return doc


def is_sealed_body(body: Any) -> bool:
    return isinstance(body, Mapping) and "ciphertext" in body


def _bytes32(doc: Mapping[str, Any], key: str) -> bytes:
    value = doc.get(key)
    if not isinstance(value, bytes) or len(value) != 32:
        raise TaskLogError(f"header field {key} must be 32 bytes")
    return value


def _int(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise TaskLogError(f"header field {key} must be an integer in 0..2^64-1")
    return value


def _session_id(doc: Mapping[str, Any]) -> str:
    """The header's session id: a uint256 in decimal ASCII digits, no sign, no leading zeros."""
    value = doc.get("session_id")
    if (
        not isinstance(value, str)
        or not (value.isascii() and value.isdigit())
        or len(value) > 78
        or (len(value) > 1 and value.startswith("0"))
        or int(value) >= 2**256
    ):
        raise TaskLogError('header field session_id must be a uint256 in decimal digits (e.g. "7")')
    return value


def verify_v2(doc: Mapping[str, Any], domain: Domain | None = None) -> VerifiedLog:
    """Recheck a v2 document: header signature by its executor in its domain (which must be `domain`
    when given); with a plaintext body also every entry (links from `log_start`, hashes, signatures,
    consecutive seqs prev_seq+1 .. seq, result digests against `results`), `log_head`, `state_hash` and
    `state_root`. A sealed body leaves those unchecked: VerifiedLog.sealed says so. Raises TaskLogError."""
    unknown = sorted(set(doc) - set(HEADER_KEYS) - set(OPTIONAL_HEADER_KEYS))
    if unknown:
        raise TaskLogError(f"unknown header fields {', '.join(unknown)}")
    session_id = _session_id(doc)
    seq, prev_seq, epoch = _int(doc, "seq"), _int(doc, "prev_seq"), _int(doc, "epoch")
    if prev_seq > seq:
        raise TaskLogError(f"prev_seq {prev_seq} is after seq {seq}")
    prev_root, log_start = _bytes32(doc, "prev_root"), _bytes32(doc, "log_start")
    log_head, hashed, root = (
        _bytes32(doc, "log_head"),
        _bytes32(doc, "state_hash"),
        _bytes32(doc, "state_root"),
    )
    prev = doc.get("prev")
    if prev is not None and not isinstance(prev, CID):
        raise TaskLogError("prev must be an IPLD link (dag-cbor tag 42) or null")
    try:
        own = Domain(_int(doc, "home_chain_id"), to_checksum_address(str(doc.get("factory"))))
    except ValueError:
        raise TaskLogError("factory must be the SessionFactory's address") from None
    if domain is not None and own != domain:
        raise TaskLogError(
            f"signed for chain {own.chain_id} factory {own.verifying_contract}, not this session's "
            f"chain {domain.chain_id} factory {domain.verifying_contract}"
        )
    public_key = doc.get("executor_public_key")
    claimed = str(doc.get("executor"))
    if not isinstance(public_key, bytes) or len(public_key) != 64 or address_of(public_key) != claimed:
        raise TaskLogError(f"executor_public_key is not the key of executor {claimed}")
    if root != state_root(seq, log_head, hashed):
        raise TaskLogError("state_root is not derived from seq, log_head and state_hash")
    signer = recover(checkpoint_digest(own, session_id, seq, root, prev_root), doc.get("signature", b""))
    if signer != claimed:
        raise TaskLogError(f"the checkpoint is signed by {signer}, not by its executor {claimed}")
    verified = VerifiedLog(
        head=root,
        executor=claimed,
        entries=seq - prev_seq,
        prev_cid=str(prev.encode("base32")) if isinstance(prev, CID) else "",
        first_seq=prev_seq + 1 if seq > prev_seq else 0,
        version=FORMAT_VERSION,
        prev_seq=prev_seq,
        log_start=log_start,
        log_head=log_head,
        epoch=epoch,
        sealed=is_sealed_body(doc.get("body")),
        batches=_batches(doc, seq - prev_seq),
    )
    if verified.sealed:
        return verified
    body = doc.get("body")
    if not isinstance(body, Mapping):
        raise TaskLogError("body must be a map (or a sealed body)")
    if set(body) != set(BODY_KEYS):
        unknown, missing = sorted(map(str, set(body) - set(BODY_KEYS))), sorted(set(BODY_KEYS) - set(body))
        raise TaskLogError(
            f"the body must hold exactly {', '.join(BODY_KEYS)}: missing {', '.join(missing) or 'nothing'}, "
            f"unknown {', '.join(unknown) or 'nothing'}"
        )
    try:
        entries = [LogEntry.from_cbor_obj(e) for e in body["entries"]]
        state = {k: body[k] for k in STATE_KEYS}
        results = body["results"]
    except (KeyError, TypeError, ValueError) as exc:
        raise TaskLogError(f"body is not a v2 task log and state: {exc}") from None
    if len(entries) != seq - prev_seq:
        raise TaskLogError(
            f"the body has {len(entries)} entries; tasks {prev_seq + 1}..{seq} need {seq - prev_seq}"
        )
    head = log_start
    for i, e in enumerate(entries):
        if e.session_id != session_id:
            raise TaskLogError(f"entry {e.seq} belongs to session {e.session_id}, not {session_id}")
        if e.seq != prev_seq + 1 + i:
            raise TaskLogError(f"entry seqs are not consecutive from {prev_seq + 1} to {seq}")
        if e.prev_hash != head:
            raise TaskLogError(f"entry {e.seq} does not link to the previous head")
        if keccak(head + dag_cbor.encode(e.body())) != e.hash:
            raise TaskLogError(f"entry {e.seq}'s hash does not match its content")
        if recover(entry_digest(own, session_id, e.seq, e.hash), e.signature) != claimed:
            raise TaskLogError(f"entry {e.seq} is not signed by executor {claimed}")
        result = results.get(str(e.seq)) if isinstance(results, Mapping) else None
        if result is None or result_digest(result) != e.result_hash:
            raise TaskLogError(f"entry {e.seq}'s result digest does not match the result the body holds")
        head = e.hash
    if head != log_head:
        raise TaskLogError("log_head is not the last entry's hash")
    if state_hash(state) != hashed:
        raise TaskLogError("state_hash does not match the state the body holds")
    if verified.batches:  # the proofs' records are exactly these entries, with the block's fees
        first = verified.batches[0][0]
        try:
            zk_batch.check_chain(
                verified.batches,
                prev_root=first.prev_root,
                spent_before=first.spent_before,
                tasks=seq - prev_seq,
                entry_hashes=[e.hash for e in entries],
                fees=zk_batch.parse_block(doc["zk"])[1],
            )
        except zk_batch.ZkError as exc:
            raise TaskLogError(f"zk: {exc}") from None
    return verified


def _batches(doc: Mapping[str, Any], tasks: int) -> tuple[Any, ...]:
    """The zk block's (statement, proof) batches, checked to chain among themselves over `tasks` tasks and
    to charge exactly the block's fees ((), without a block). Proofs are checked by agentgpt.verify."""
    if "zk" not in doc:
        return ()
    try:
        batches, fees = zk_batch.parse_block(doc["zk"])
        first, last = batches[0][0], batches[-1][0]
        zk_batch.check_chain(batches, prev_root=first.prev_root, spent_before=first.spent_before, tasks=tasks)
        if len(fees) != tasks or sum(fees) != last.spent_after - first.spent_before:
            raise zk_batch.ZkError("the fees are not one per task, or do not add up to the proved charge")
    except zk_batch.ZkError as exc:
        raise TaskLogError(f"zk: {exc}") from None
    return tuple(batches)


def verify_document(doc: Mapping[str, Any], domain: Domain | None = None) -> VerifiedLog:
    """Recheck a checkpoint document of either version (see verify_v2 and tasklog.verify_checkpoint_log)."""
    version = doc.get("version")
    if version == FORMAT_VERSION:
        return verify_v2(doc, domain)
    if version == CHECKPOINT_VERSION:
        return verify_checkpoint_log(doc)
    raise TaskLogError(f"checkpoint format version {version!r} is not one this reader knows (1 or 2)")


def body_of(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The plaintext fields of a document's state and log, whatever its version ({} when sealed)."""
    if doc.get("version") == FORMAT_VERSION:
        body = doc.get("body")
        return {} if not isinstance(body, Mapping) or is_sealed_body(body) else body
    return doc


__all__ = [
    "FORMAT_VERSION",
    "ZERO_ADDRESS",
    "ZERO_HASH",
    "Domain",
    "body_of",
    "checkpoint_digest",
    "checkpoint_document",
    "entry_digest",
    "is_sealed_body",
    "link",
    "recover",
    "sign",
    "state_hash",
    "state_of",
    "state_root",
    "verify_document",
    "verify_v2",
]
