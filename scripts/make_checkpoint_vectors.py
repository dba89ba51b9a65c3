#!/usr/bin/env python3
"""Test vectors of the checkpoint format (docs/checkpoint-format.md, "Test vectors"), made with the
product's own encoder (agentgpt.checkpoint_format, agentgpt.tasklog, agentgpt.sealing, agentgpt.ipfs)
from fixed inputs: the anvil dev keys, one fixed EIP-712 domain, fixed task results.

    tests/fixtures/checkpoint-v2/   vectors.json and five documents of session 7, each linking to the one
                                    before: a first checkpoint (3 entries), the next one (2 entries), an
                                    empty one (seq == prev_seq), a sealed one (another executor, epoch 2)
                                    and one over the 1 MiB block limit (stored as a UnixFS file, gzipped here)
    tests/fixtures/checkpoint-v1/   vectors.json, a format-1 document of session 9 and the format-2
                                    checkpoint that follows it (the migration)

Documents with a plaintext body are deterministic (RFC 6979 signatures), so they are rebuilt byte for
byte. Two things are not: a sealed body (random AES-GCM nonce, random ECIES ephemeral keys) and format
1's entry signatures (random ECDSA nonces). They were made once and are committed; every run keeps the
committed bytes as long as they still agree with the encoder (a sealed document: the same header, its
body opens with the fixed data key and with each recipient's private key to exactly the body the encoder
makes; a format-1 document: the same fields and entries apart from the signatures, which verify), and
everything derived from them (CIDs, the links and signatures of the documents after them) follows.

    python scripts/make_checkpoint_vectors.py           # (re)write the vectors
    python scripts/make_checkpoint_vectors.py --check   # exit 1 when the committed vectors are stale
    python scripts/make_checkpoint_vectors.py --fresh   # rewrite, sealing and signing format 1 anew
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dag_cbor
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from multiformats import CID

from agentgpt.checkpoint_format import (
    CHECKPOINT_TYPE,
    DOMAIN_NAME,
    DOMAIN_VERSION,
    EIP712_DOMAIN_TYPE,
    ENTRY_TYPE,
    STATE_ROOT_TAG,
    Domain,
    checkpoint_digest,
    checkpoint_document,
    entry_digest,
    recover,
    sign,
    state_hash,
    verify_document,
)
from agentgpt.errors import ServiceError
from agentgpt.ipfs import CheckpointWriter, EmbeddedStore
from agentgpt.ipfs.cid import MAX_BLOCK_SIZE, compute_cid
from agentgpt.ipfs.codec import decode, encode
from agentgpt.sealing import Keyring, Sealing, SessionKey, body_aad, open_body, sealed_recipients
from agentgpt.spec import SessionSpec
from agentgpt.tasklog import (
    ZERO_HASH,
    ExecutorKey,
    TaskLog,
    TaskLogError,
    checkpoint_document_v1,
    entry_hash,
    result_digest,
    verify_checkpoint_log,
)
from apps.localnet.anvil import DEV_PRIVATE_KEYS

ROOT = Path(__file__).resolve().parent.parent
V2_DIR = ROOT / "tests" / "fixtures" / "checkpoint-v2"
V1_DIR = ROOT / "tests" / "fixtures" / "checkpoint-v1"

SESSION = "7"
V1_SESSION = "9"
# The home chain's SessionFactory as anvil deploys it first (account 0, nonce 0): any fixed address would do.
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
WRONG_DOMAIN = Domain(31338, DOMAIN.verifying_contract)  # the negative test: same factory, another chain
EXECUTOR_A = ExecutorKey(DEV_PRIVATE_KEYS[1])
OWNER = ExecutorKey(DEV_PRIVATE_KEYS[2])  # the demo's owner; only its key pair is used here
EXECUTOR_B = ExecutorKey(DEV_PRIVATE_KEYS[3])  # the executor after the reassignment (epoch 2)
# The data key of (session 7, epoch 2), fixed so a test can open the sealed vector without any private key.
DATA_KEY = SessionKey(2, bytes.fromhex("21059d9ae27a0a26a1744143f858810d0519e19ef32b9580bac41d1f9ebe5b5b"))
SPEC = SessionSpec(
    type="treasury_management",
    chains=("arbitrum", "polygon"),
    models={"execution": "web3-agent-v4", "risk": "gpt-4-enterprise-finance"},
    decorators=("kyc_tier4", "ofac_filter"),
    params={"market": {"pair": "WETH/dUSD"}, "note": "Zürich ✓"},
    checkpoint_interval=3,
)
CHAINS = ("arbitrum", "polygon")
BIG = 2**70 + 12345  # beyond 64 bits: stored as its decimal string


def _context(epoch: int, since: int, models: Mapping[str, str], reason: str = "") -> dict[str, Any]:
    """One context epoch as the executor stores it (services.executor.context.ContextEpoch.to_json)."""
    return {
        "epoch": epoch,
        "models": dict(models),
        "adapters": {},
        "payment_rail": "onchain",
        "decorators": ["kyc_tier4", "ofac_filter"],
        "since_seq": since,
        "reason": reason,
    }


CONTEXT_1 = [_context(1, 1, SPEC.models)]
CONTEXT_2 = [
    *CONTEXT_1,
    _context(2, 4, {**SPEC.models, "risk": "gpt-4o-risk"}, "swap_context: a cheaper risk model"),
]


@dataclass(frozen=True)
class Task:
    seq: int
    kind: str
    status: str
    result: Mapping[str, Any]
    ctx: int
    txs: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Step:
    """One checkpoint of the series: who writes it, which tasks it covers and the state it carries."""

    name: str
    description: str
    key: ExecutorKey
    epoch: int
    tasks: tuple[Task, ...]
    context: Sequence[Mapping[str, Any]]
    budget: Mapping[str, Any]
    memory: Mapping[str, Any]
    sealed: bool = False
    large: bool = False
    extra_memory: Mapping[str, Any] = field(default_factory=dict)


MARKET = {
    "pair": "WETH/dUSD",
    "price": 2000.25,  # a float: the encoder stores it as text
    "reserves": [BIG, 4_000_500 * 10**18],
    "block": 1234,
    "exact": True,
    "note": None,
}
STEPS = (
    Step(
        "a-first",
        "the first checkpoint of session 7: tasks 1-3 (a success with a transaction, a failure), no previous one",
        EXECUTOR_A,
        1,
        (
            Task(1, "analyze_market", "succeeded", {"outputs": [MARKET], "model_score": 0.88}, 1),
            Task(
                2,
                "rebalance",
                "succeeded",
                {
                    "outputs": [{"swapped_wei": 3 * 10**18, "received": 5_999_100 * 10**12}],
                    "gas_used": 161_832,
                },
                1,
                (keccak(b"vector tx 2"),),
            ),
            Task(3, "publish_report", "failed", {"error": "IPFS unavailable — réessayer", "attempts": 2}, 1),
        ),
        CONTEXT_1,
        {"budget": str(100 * 10**18), "spent": str(1_100_000 * 10**9)},
        {"analyze_market": MARKET, "rebalance": {"swapped_wei": 3 * 10**18}},
    ),
    Step(
        "b-second",
        "the next checkpoint: tasks 4-5 (a context swap, a refusal), linking to a-first",
        EXECUTOR_A,
        1,
        (
            Task(4, "swap_context", "context", {"epoch": 2, "models": {"risk": "gpt-4o-risk"}}, 2),
            Task(
                5,
                "rebalance",
                "refused",
                {"reason": "ofac_filter: 0x00000000000000000000000000000000deadbeef"},
                2,
            ),
        ),
        CONTEXT_2,
        {"budget": str(100 * 10**18), "spent": str(1_400_000 * 10**9)},
        {"analyze_market": MARKET, "rebalance": {"swapped_wei": 3 * 10**18}},
    ),
    Step(
        "c-empty",
        "an empty checkpoint: no task since b-second (seq == prev_seq == 5), linking to it",
        EXECUTOR_A,
        1,
        (),
        CONTEXT_2,
        {"budget": str(100 * 10**18), "spent": str(1_400_000 * 10**9)},
        {"analyze_market": MARKET, "rebalance": {"swapped_wei": 3 * 10**18}},
    ),
    Step(
        "d-sealed",
        "after a reassignment to executor B (epoch 2): tasks 6-7, the body sealed with the data key of "
        "epoch 2 wrapped to the owner and executor B; linking to c-empty",
        EXECUTOR_B,
        2,
        (
            Task(
                6, "analyze_market", "succeeded", {"outputs": [{**MARKET, "block": 1300, "price": "2010"}]}, 2
            ),
            Task(
                7,
                "publish_report",
                "succeeded",
                {
                    "outputs": [
                        {"cid": "bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq", "size": 1834}
                    ]
                },
                2,
            ),
        ),
        CONTEXT_2,
        {"budget": str(100 * 10**18), "spent": str(1_700_000 * 10**9)},
        {
            "analyze_market": {**MARKET, "block": 1300, "price": "2010"},
            "rebalance": {"swapped_wei": 3 * 10**18},
        },
        sealed=True,
    ),
    Step(
        "e-large",
        "a checkpoint over the 1 MiB block limit (a large memory): stored as a UnixFS file (dag-pb root, "
        "raw 256 KiB leaves); task 8, linking to d-sealed",
        EXECUTOR_B,
        2,
        (Task(8, "analyze_market", "succeeded", {"outputs": [{**MARKET, "block": 1400}]}, 2),),
        CONTEXT_2,
        {"budget": str(100 * 10**18), "spent": str(1_800_000 * 10**9)},
        {"analyze_market": {**MARKET, "block": 1400}},
        large=True,
        # 1.2 MB of text whose period (1009) does not divide the chunk size, so every chunk differs
        extra_memory={"corpus": ("".join(chr(0x61 + (i * 7) % 26) for i in range(1009)) * 1200)},
    ),
)


# ---------------------------------------------------------------- helpers


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _key_json(key: ExecutorKey, private_key: str) -> dict[str, str]:
    return {"private_key": private_key, "public_key": _hex(key.public_key), "address": key.address}


async def _stored(doc: Mapping[str, Any], sealing: Sealing | None = None) -> tuple[bytes, str]:
    """The bytes and CID the product's CheckpointWriter stores `doc` as."""
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(tmp)
        stored = await CheckpointWriter(store).write(doc, sealing=sealing)
        return await store.get(stored.cid), stored.cid


def _cid_of(data: bytes) -> str:
    return compute_cid(data, "dag-cbor" if len(data) <= MAX_BLOCK_SIZE else "raw")


def _commitment(cid: str, root: bytes) -> bytes:
    """What anchorCheckpoint stores: keccak256(abi.encode(keccak256(cid bytes), stateRoot))."""
    return keccak(abi_encode(["bytes32", "bytes32"], [keccak(bytes(CID.decode(cid))), root]))


def _entries_json(
    doc: Mapping[str, Any], body: Mapping[str, Any], domain: Domain | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    head = bytes(doc.get("log_start", doc.get("prev_root", ZERO_HASH)))
    results = body.get("results", {})
    for e in body["entries"]:
        fields = {k: e[k] for k in ("session", "seq", "kind", "status", "result", "ctx", "txs")}
        item: dict[str, Any] = {
            "seq": e["seq"],
            "body_cbor": _hex(dag_cbor.encode(fields)),
            "prev": _hex(e["prev"]),
            "hash": _hex(entry_hash(head, fields)),
        }
        if str(e["seq"]) in results:
            item["result_digest"] = _hex(result_digest(results[str(e["seq"])]))
        if domain is not None:
            digest = entry_digest(domain, str(doc["session_id"]), e["seq"], e["hash"])
            item["digest"] = _hex(digest)
            item["signer"] = recover(digest, e["sig"])
        out.append(item)
        head = e["hash"]
    return out


def _describe(
    step: Step, file: str, data: bytes, cid: str, doc: Mapping[str, Any], body: Mapping[str, Any]
) -> dict[str, Any]:
    """The expected intermediate values of one v2 vector, each computed by the product."""
    root = bytes(doc["state_root"])
    digest = checkpoint_digest(DOMAIN, str(doc["session_id"]), doc["seq"], root, bytes(doc["prev_root"]))
    prev = doc["prev"]
    out: dict[str, Any] = {
        "name": step.name,
        "description": step.description,
        "file": file,
        "gzip": file.endswith(".gz"),
        "stored_as": "dag-cbor block" if len(data) <= MAX_BLOCK_SIZE else "UnixFS file",
        "size": len(data),
        "cid": cid,
        "cid_bytes": _hex(bytes(CID.decode(cid))),
        "session_id": doc["session_id"],
        "seq": doc["seq"],
        "prev_seq": doc["prev_seq"],
        "epoch": doc["epoch"],
        "prev": str(prev.encode("base32")) if isinstance(prev, CID) else None,
        "executor": doc["executor"],
        "prev_root": _hex(doc["prev_root"]),
        "log_start": _hex(doc["log_start"]),
        "log_head": _hex(doc["log_head"]),
        "entries": _entries_json(doc, body, DOMAIN),
        "state_hash": _hex(state_hash(body)),
        "state_root": _hex(root),
        "checkpoint_digest": _hex(digest),
        "signer": recover(digest, doc["signature"]),
        "wrong_domain_signer": recover(
            checkpoint_digest(
                WRONG_DOMAIN, str(doc["session_id"]), doc["seq"], root, bytes(doc["prev_root"])
            ),
            doc["signature"],
        ),
        "anchor_commitment": _hex(_commitment(cid, root)),
        "sealed": None,
    }
    if step.sealed:
        sealed = decode(data)["body"]
        out["sealed"] = {
            "key_epoch": sealed["key_epoch"],
            "data_key": _hex(DATA_KEY.key),
            "aad": _hex(body_aad(str(doc["session_id"]), doc["seq"], root)),
            "recipients": sealed_recipients(sealed),
            "plaintext_size": len(encode(body)),
            "plaintext_keccak": _hex(keccak(encode(body))),
        }
    return out


# ---------------------------------------------------------------- committed randomness


class Stale(Exception):
    """A committed vector made with randomness no longer agrees with the encoder."""


def _committed(path: Path) -> bytes | None:
    if not path.is_file():
        return None
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _check_sealed(data: bytes, doc: Mapping[str, Any]) -> None:
    """`data` (the committed sealed document) is `doc` with its body sealed: same header, and the body
    opens with the data key and with every recipient's private key to exactly `doc`'s body."""
    try:
        committed = decode(data)
    except ServiceError as exc:
        raise Stale(f"it does not decode: {exc}") from None
    header = {k: v for k, v in committed.items() if k != "body"}
    if header != {k: v for k, v in doc.items() if k != "body"}:
        raise Stale("its header differs from the one the encoder makes")
    sealed = committed["body"]
    aad = body_aad(SESSION, doc["seq"], bytes(doc["state_root"]))
    want = encode(doc["body"])
    try:
        if sealed_recipients(sealed) != [OWNER.address, doc["executor"]]:
            raise Stale("its recipients are not the owner, then the executor")
        keyrings = [
            Keyring(keys=[(SESSION, DATA_KEY)]),
            Keyring(private_key=DEV_PRIVATE_KEYS[2]),
            Keyring(private_key=DEV_PRIVATE_KEYS[3]),
        ]
        for keyring in keyrings:
            if open_body(sealed, aad, keyring) != want:
                raise Stale(f"its body opened with {keyring} is not the body the encoder makes")
    except ServiceError as exc:
        raise Stale(f"its body does not open: {exc}") from None
    verify_document({**committed, "body": doc["body"]}, DOMAIN)


def _without_signatures(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {**doc, "entries": [{k: v for k, v in e.items() if k != "sig"} for e in doc["entries"]]}


def _check_v1(data: bytes, doc: Mapping[str, Any]) -> None:
    """`data` (the committed v1 document) is `doc` but for its entries' (random) signatures, which verify."""
    try:
        committed = decode(data)
    except ServiceError as exc:
        raise Stale(f"it does not decode: {exc}") from None
    if _without_signatures(committed) != _without_signatures(doc):
        raise Stale("its fields or entries differ from the ones the encoder makes")
    try:
        verify_checkpoint_log(committed)
    except TaskLogError as exc:
        raise Stale(f"its task log does not verify: {exc}") from None


# ---------------------------------------------------------------- the vectors


@dataclass
class Series:
    """Where the next checkpoint of a session starts."""

    prev_cid: str = ""
    prev_seq: int = 0
    prev_root: bytes = ZERO_HASH
    log_head: bytes = ZERO_HASH


def _log(session: str, key: ExecutorKey, series: Series, *, v2: bool = True) -> TaskLog:
    if not v2:
        return TaskLog(session, key, series.log_head, series.prev_seq)
    return TaskLog(
        session,
        key,
        series.log_head,
        series.prev_seq,
        sign_entry=lambda seq, h: sign(key, entry_digest(DOMAIN, session, seq, h)),
    )


def _append(log: TaskLog, tasks: Sequence[Task]) -> None:
    for t in tasks:
        log.append(t.seq, t.kind, t.status, t.result, context_epoch=t.ctx, tx_hashes=t.txs)


def _v2_doc(step: Step, session: str, series: Series, spec_cid: str) -> dict[str, Any]:
    log = _log(session, step.key, series)
    _append(log, step.tasks)
    return checkpoint_document(
        domain=DOMAIN,
        session_id=session,
        seq=log.seq,
        epoch=step.epoch,
        prev_cid=series.prev_cid,
        prev_seq=series.prev_seq,
        prev_root=series.prev_root,
        log_start=series.log_head,
        entries=log.pending,
        results=log.results,
        key=step.key,
        context=step.context,
        budget=step.budget,
        memory={**step.memory, **step.extra_memory},
        chains=CHAINS,
        spec_cid=spec_cid,
    )


@dataclass
class Built:
    files: dict[Path, bytes] = field(default_factory=dict)  # path -> content (uncompressed for .gz)
    notes: list[str] = field(default_factory=list)  # randomized vectors made anew, and why


async def build(*, fresh: bool) -> Built:
    """Every fixture file; the committed randomized vectors reused unless `fresh` or stale."""
    out = Built()
    spec_json = SPEC.canonical()
    spec_cid = compute_cid(spec_json, "raw")
    series = Series()
    vectors: list[dict[str, Any]] = []
    for step in STEPS:
        doc = _v2_doc(step, SESSION, series, spec_cid)
        file = step.name + (".cbor.gz" if step.large else ".cbor")
        if step.sealed:
            data = None if fresh else _committed(V2_DIR / file)
            if data is not None:
                try:
                    _check_sealed(data, doc)
                except Stale as exc:
                    out.notes.append(f"{file}: sealed anew: the committed one is stale ({exc})")
                    data = None
            if data is None:
                data, _ = await _stored(doc, Sealing(DATA_KEY, (OWNER.public_key, step.key.public_key)))
            cid = _cid_of(data)
        else:
            data, cid = await _stored(doc)
        if data != encode(decode(data)) or (not step.sealed and decode(data) != doc):
            raise AssertionError(f"{file}: the stored bytes do not round-trip")  # never: a product bug
        verify_document({**decode(data), "body": doc["body"]}, DOMAIN)
        out.files[V2_DIR / file] = data
        vectors.append(_describe(step, file, data, cid, doc, doc["body"]))
        series = Series(cid, doc["seq"], bytes(doc["state_root"]), bytes(doc["log_head"]))
    out.files[V2_DIR / "vectors.json"] = _json(
        {
            "about": "Checkpoint format v2 test vectors (docs/checkpoint-format.md), made by "
            "scripts/make_checkpoint_vectors.py with the product's encoder. Hex is 0x-prefixed; "
            "addresses are EIP-55; every document is one file of canonical dag-cbor (.gz: gzipped).",
            "format": 2,
            "domain": _domain_json(DOMAIN),
            "wrong_domain": _domain_json(WRONG_DOMAIN),
            "types": {
                "Checkpoint": {"type": CHECKPOINT_TYPE.decode(), "type_hash": _hex(keccak(CHECKPOINT_TYPE))},
                "TaskLogEntry": {"type": ENTRY_TYPE.decode(), "type_hash": _hex(keccak(ENTRY_TYPE))},
            },
            "state_root_tag": STATE_ROOT_TAG.decode(),
            "keys": {
                "executor_a": _key_json(EXECUTOR_A, DEV_PRIVATE_KEYS[1]),
                "executor_b": _key_json(EXECUTOR_B, DEV_PRIVATE_KEYS[3]),
                "owner": _key_json(OWNER, DEV_PRIVATE_KEYS[2]),
            },
            "spec": {"json": spec_json.decode(), "cid": spec_cid},
            "data_key": {"session_id": SESSION, "epoch": DATA_KEY.epoch, "key": _hex(DATA_KEY.key)},
            "vectors": vectors,
        }
    )
    await _build_v1(out, fresh=fresh, spec_json=spec_json.decode())
    return out


def _domain_json(domain: Domain) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chain_id": domain.chain_id,
        "verifying_contract": domain.verifying_contract,
        "type": EIP712_DOMAIN_TYPE.decode(),
        "type_hash": _hex(keccak(EIP712_DOMAIN_TYPE)),
        "separator": _hex(domain.separator),
    }


V1_TASKS = (
    Task(1, "analyze_market", "succeeded", {"outputs": [MARKET]}, 1),
    Task(2, "rebalance", "succeeded", {"outputs": [{"swapped_wei": 3 * 10**18}]}, 1, (keccak(b"v1 tx 2"),)),
)
V2_AFTER_V1 = Step(
    "v2-after-v1",
    "the first format-2 checkpoint of session 9, after its format-1 one: tasks 3-4; prev links the v1 "
    "document, prev_root and log_start are both the v1 state root (its log head)",
    EXECUTOR_A,
    1,
    (
        Task(3, "publish_report", "succeeded", {"outputs": [{"cid": "bafkqaaa", "size": 0}]}, 1),
        Task(4, "analyze_market", "succeeded", {"outputs": [{**MARKET, "block": 1500}]}, 1),
    ),
    CONTEXT_1,
    {"budget": str(50 * 10**18), "spent": str(900_000 * 10**9)},
    {"analyze_market": {**MARKET, "block": 1500}, "rebalance": {"swapped_wei": 3 * 10**18}},
)


async def _build_v1(out: Built, *, fresh: bool, spec_json: str) -> None:
    log = _log(V1_SESSION, EXECUTOR_A, Series(), v2=False)
    _append(log, V1_TASKS)
    doc = checkpoint_document_v1(
        session_id=V1_SESSION,
        seq=log.seq,
        state_root=log.head,
        prev_cid="",
        prev_root=ZERO_HASH,
        entries=log.pending,
        key=EXECUTOR_A,
        context=CONTEXT_1,
        budget={"budget": str(50 * 10**18), "spent": str(600_000 * 10**9)},
        memory={"analyze_market": MARKET, "rebalance": {"swapped_wei": 3 * 10**18}},
        chains=CHAINS,
        spec=spec_json,
    )
    data = None if fresh else _committed(V1_DIR / "v1-first.cbor")
    if data is not None:
        try:
            _check_v1(data, doc)
        except Stale as exc:
            out.notes.append(f"v1-first.cbor: signed anew: the committed one is stale ({exc})")
            data = None
    if data is None:
        data, _ = await _stored(doc)
    v1 = decode(data)
    v1_cid = _cid_of(data)
    out.files[V1_DIR / "v1-first.cbor"] = data

    series = Series(v1_cid, v1["seq"], bytes(v1["state_root"]), bytes(v1["state_root"]))
    spec_cid = compute_cid(spec_json.encode(), "raw")
    v2 = _v2_doc(V2_AFTER_V1, V1_SESSION, series, spec_cid)
    v2_data, v2_cid = await _stored(v2)
    out.files[V1_DIR / "v2-after-v1.cbor"] = v2_data
    verify_document(v2, DOMAIN)
    out.files[V1_DIR / "vectors.json"] = _json(
        {
            "about": "A format-1 checkpoint document (written by agentgpt.tasklog.checkpoint_document_v1, "
            "committed so it stays fixed) and the format-2 checkpoint that follows it "
            "(docs/checkpoint-format.md, 'Format 1' and 'Migration'). Hex is 0x-prefixed.",
            "domain": _domain_json(DOMAIN),
            "v1": {
                "file": "v1-first.cbor",
                "size": len(data),
                "cid": v1_cid,
                "cid_bytes": _hex(bytes(CID.decode(v1_cid))),
                "session_id": V1_SESSION,
                "seq": v1["seq"],
                "executor": v1["executor"],
                "prev_root": _hex(v1["prev_root"]),
                "entries": _entries_json(v1, v1, None),
                "state_root": _hex(v1["state_root"]),
                "anchor_commitment": _hex(_commitment(v1_cid, bytes(v1["state_root"]))),
            },
            "v2": _describe(V2_AFTER_V1, "v2-after-v1.cbor", v2_data, v2_cid, v2, v2["body"]),
        }
    )


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------- write / check


def _write(built: Built) -> None:
    for path, content in built.files.items():
        if _committed(path) == content:
            continue  # unchanged (a .gz is not rewritten for another zlib's bytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(content, mtime=0) if path.suffix == ".gz" else content)
        print(f"wrote {path.relative_to(ROOT)}")


def _check(built: Built) -> int:
    stale = [p for p, content in built.files.items() if _committed(p) != content]
    for note in built.notes:
        print(note, file=sys.stderr)
    for path in stale:
        print(f"{path.relative_to(ROOT)}: differs from what the encoder makes now", file=sys.stderr)
    if stale or built.notes:
        print(
            "checkpoint test vectors are stale: if the format change is intended, run "
            "`python scripts/make_checkpoint_vectors.py`, update docs/checkpoint-format.md and commit both",
            file=sys.stderr,
        )
        return 1
    print(f"checkpoint test vectors: {len(built.files)} files up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify the committed vectors; write nothing")
    mode.add_argument("--fresh", action="store_true", help="seal and sign format 1 anew (new random bytes)")
    args = parser.parse_args(argv)
    built = asyncio.run(build(fresh=args.fresh))
    if args.check:
        return _check(built)
    for note in built.notes:
        print(note)
    _write(built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
