"""The checkpoint format v2 test vectors (tests/fixtures/checkpoint-v2), rechecked by a second
implementation written from docs/checkpoint-format.md alone.

The module imports nothing of the product (agentgpt, services, apps; `test_the_checker_is_independent`
holds it to that): only dag_cbor, multiformats, eth_hash, eth_abi, eth_utils, coincurve and cryptography.
From each document's bytes it recomputes the CID (a dag-cbor block, or the UnixFS tree of a document over
the block limit), checks the canonical encoding, every entry hash, result digest and EIP-712 digest, the
state hash and state root, recovers every signer, opens the sealed body with the committed data key and
with each recipient's private key, and follows the links from each checkpoint to the one before. The
values it gets must be the ones the product's encoder wrote into vectors.json.

The `test_product_*` tests at the end (and only they) import the product: its verify_document and
CheckpointReader must agree with the independent checker on the same vectors.
"""

from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import json
from collections.abc import Mapping
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import coincurve
import dag_cbor
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address
from multiformats import CID

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "checkpoint-v2"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO32 = bytes(32)
HEADER = {
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
}
BODY = {"chains", "entries", "budget", "context", "memory", "results"}
ENTRY = {"session", "seq", "kind", "status", "result", "ctx", "txs", "prev", "hash", "sig"}
ENTRY_BODY = ("session", "seq", "kind", "status", "result", "ctx", "txs")
SEALED = {"alg", "wrap", "key_epoch", "recipients", "nonce", "ciphertext"}
MAX_BLOCK = 1_048_576
CHUNK = 262_144
MAX_LINKS = 174


class Invalid(Exception):
    """The checker refuses a document, naming the rule it breaks."""


# ---------------------------------------------------------------- fixtures


@cache
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "vectors.json").read_text())
    return data


def vector(name: str) -> dict[str, Any]:
    return next(v for v in vectors()["vectors"] if v["name"] == name)


def raw(v: Mapping[str, Any]) -> bytes:
    data = (FIXTURES / v["file"]).read_bytes()
    return gzip.decompress(data) if v["gzip"] else data


def h(text: str | None) -> bytes:
    assert text is not None
    return bytes.fromhex(text.removeprefix("0x"))


NAMES = [v["name"] for v in vectors()["vectors"]]


# ---------------------------------------------------------------- the format, from the spec


def cid_bytes(codec: int, block: bytes) -> bytes:
    """Binary CIDv1: version 1, the codec (one-byte varint here), multihash sha2-256 (0x12, 32 bytes)."""
    return bytes([0x01, codec]) + b"\x12\x20" + hashlib.sha256(block).digest()


def cid_text(binary: bytes) -> str:
    """Multibase base32: "b", then RFC 4648 base32 in lower case without padding."""
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pb_bytes(field: int, value: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(value)) + value


def pb_int(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def unixfs_cid(payload: bytes) -> bytes:
    """The root CID of `payload` as a UnixFS file: raw leaves of 256 KiB, a balanced dag-pb tree of at
    most 174 links per node built level by level (the spec's "Stored on IPFS")."""
    level = [
        (cid_bytes(0x55, payload[i : i + CHUNK]), len(payload[i : i + CHUNK]), len(payload[i : i + CHUNK]))
        for i in range(0, max(len(payload), 1), CHUNK)
    ]
    while len(level) > 1:
        parents = []
        for i in range(0, len(level), MAX_LINKS):
            kids = level[i : i + MAX_LINKS]
            size = sum(k[2] for k in kids)
            data = pb_int(1, 2) + pb_int(3, size) + b"".join(pb_int(4, k[2]) for k in kids)
            links = b"".join(
                pb_bytes(2, pb_bytes(1, k[0]) + pb_bytes(2, b"") + pb_int(3, k[1])) for k in kids
            )
            node = links + pb_bytes(1, data)
            parents.append((cid_bytes(0x70, node), len(node) + sum(k[1] for k in kids), size))
        level = parents
    return level[0][0]


def stored_cid(data: bytes) -> bytes:
    return cid_bytes(0x71, data) if len(data) <= MAX_BLOCK else unixfs_cid(data)


def canonical(data: bytes) -> Any:
    """Decode dag-cbor, refusing anything but its one canonical form."""
    try:
        value = dag_cbor.decode(data)
    except Exception as exc:
        raise Invalid(f"not canonical dag-cbor: {str(exc).splitlines()[0]}") from None
    if dag_cbor.encode(value) != data:
        raise Invalid("not the canonical encoding of what it decodes to")
    return value


def address(public_key: bytes) -> str:
    assert len(public_key) == 64
    return to_checksum_address(keccak(public_key)[12:])


def separator(chain_id: int, contract: str) -> bytes:
    d = vectors()["domain"]
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(d["type"].encode()),
                keccak(d["name"].encode()),
                keccak(d["version"].encode()),
                chain_id,
                contract,
            ],
        )
    )


def typed(domain_separator: bytes, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain_separator + struct_hash)


CHECKPOINT_TYPE = b"Checkpoint(uint256 sessionId,uint64 seq,bytes32 stateRoot,bytes32 prevRoot)"
ENTRY_TYPE = b"TaskLogEntry(uint256 sessionId,uint64 seq,bytes32 entryHash)"


def checkpoint_digest(sep: bytes, session_id: str, seq: int, state_root: bytes, prev_root: bytes) -> bytes:
    struct = keccak(
        abi_encode(
            ["bytes32", "uint256", "uint64", "bytes32", "bytes32"],
            [keccak(CHECKPOINT_TYPE), int(session_id), seq, state_root, prev_root],
        )
    )
    return typed(sep, struct)


def entry_digest(sep: bytes, session_id: str, seq: int, entry_hash: bytes) -> bytes:
    words = keccak(ENTRY_TYPE) + int(session_id).to_bytes(32, "big") + seq.to_bytes(32, "big") + entry_hash
    return typed(sep, keccak(words))  # abi.encode of static types is these four 32-byte words


def recover(digest: bytes, signature: bytes) -> str:
    """The signer of a 65-byte r || s || v signature (v 27 or 28, s in the lower half)."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        raise Invalid("a signature is 65 bytes r || s || v with v 27 or 28")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if not (0 < r < N and 0 < s <= N // 2):
        raise Invalid("r and s must be in range, s in the lower half (low-s)")
    public = coincurve.PublicKey.from_signature_and_message(
        signature[:64] + bytes([signature[64] - 27]), digest, hasher=None
    )
    return address(public.format(compressed=False)[1:])


def state_root(seq: int, log_head: bytes, state_hash: bytes) -> bytes:
    return keccak(b"agentgpt/state-root/v2" + seq.to_bytes(8, "big") + log_head + state_hash)


def body_aad(session_id: str, seq: int, root: bytes) -> bytes:
    return (
        b"agentgpt/checkpoint-body/v2\x00"
        + session_id.encode()
        + b"\x00"
        + str(seq).encode()
        + b"\x00"
        + root
    )


def unwrap(wrapped: bytes, private_key: bytes) -> bytes:
    """ECIES-secp256k1 (the spec's "Key wrapping"): ephemeral key 65 || nonce 16 || tag 16 || key 32."""
    if len(wrapped) != 129:
        raise Invalid("a wrapped key is 129 bytes")
    ephemeral, nonce, tag, ciphertext = wrapped[:65], wrapped[65:81], wrapped[81:97], wrapped[97:]
    shared = coincurve.PublicKey(ephemeral).multiply(private_key).format(compressed=False)
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"").derive(ephemeral + shared)
    return AESGCM(key).decrypt(nonce, ciphertext + tag, None)


def open_sealed(sealed: Mapping[str, Any], aad: bytes, data_key: bytes) -> bytes:
    if set(sealed) != SEALED or sealed["alg"] != "AES-256-GCM" or sealed["wrap"] != "ECIES-secp256k1":
        raise Invalid("not a sealed body")
    if len(sealed["nonce"]) != 12 or len(sealed["ciphertext"]) < 16:
        raise Invalid("a 12-byte nonce, a ciphertext ending in its 16-byte tag")
    return AESGCM(data_key).decrypt(sealed["nonce"], sealed["ciphertext"], aad)


def check_header(doc: Mapping[str, Any], sep: bytes | None = None) -> str:
    """Every header rule; the checkpoint's signer (its executor). `sep`: the domain it must be signed in."""
    if set(doc) != HEADER:
        raise Invalid(f"header fields {sorted(set(doc) ^ HEADER)} missing or unknown")
    if doc["version"] != 2 or not (doc["session_id"].isascii() and doc["session_id"].isdecimal()):
        raise Invalid("version 2, session_id a decimal string")
    for key in ("home_chain_id", "seq", "prev_seq", "epoch"):
        if type(doc[key]) is not int or doc[key] < 0:
            raise Invalid(f"{key} is an integer >= 0")
    if doc["prev_seq"] > doc["seq"]:
        raise Invalid("prev_seq is after seq")
    for key in ("prev_root", "log_start", "log_head", "state_hash", "state_root"):
        if not isinstance(doc[key], bytes) or len(doc[key]) != 32:
            raise Invalid(f"{key} is 32 bytes")
    for key in ("prev", "spec"):
        if doc[key] is not None and not isinstance(doc[key], CID):
            raise Invalid(f"{key} is a link or null")
    if address(doc["executor_public_key"]) != doc["executor"]:
        raise Invalid("executor_public_key is not the executor's")
    if doc["factory"] != to_checksum_address(doc["factory"]):
        raise Invalid("factory is an EIP-55 address")
    if state_root(doc["seq"], doc["log_head"], doc["state_hash"]) != doc["state_root"]:
        raise Invalid("state_root is not derived from seq, log_head and state_hash")
    own = separator(doc["home_chain_id"], doc["factory"])
    digest = checkpoint_digest(sep or own, doc["session_id"], doc["seq"], doc["state_root"], doc["prev_root"])
    signer = recover(digest, doc["signature"])
    if signer != doc["executor"]:
        raise Invalid(f"signed by {signer}, not by its executor {doc['executor']}")
    return signer


def check_body(doc: Mapping[str, Any], body: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every body rule against the header; each entry's recomputed values."""
    if set(body) != BODY:
        raise Invalid(f"body fields {sorted(set(body) ^ BODY)} missing or unknown")
    entries, results = body["entries"], body["results"]
    if len(entries) != doc["seq"] - doc["prev_seq"]:
        raise Invalid("one entry per task prev_seq+1 .. seq")
    sep = separator(doc["home_chain_id"], doc["factory"])
    head, out = doc["log_start"], []
    for i, e in enumerate(entries):
        if set(e) != ENTRY or e["session"] != doc["session_id"] or e["seq"] != doc["prev_seq"] + 1 + i:
            raise Invalid(f"entry {i}: fields, session or seq")
        encoded = dag_cbor.encode({k: e[k] for k in ENTRY_BODY})
        if e["prev"] != head:
            raise Invalid(f"entry {e['seq']} does not link to the previous head")
        if keccak(head + encoded) != e["hash"]:
            raise Invalid(f"entry {e['seq']}: hash mismatch")
        digest = entry_digest(sep, doc["session_id"], e["seq"], e["hash"])
        if recover(digest, e["sig"]) != doc["executor"]:
            raise Invalid(f"entry {e['seq']}: not signed by the executor")
        result = results.get(str(e["seq"]))
        if result is None or keccak(dag_cbor.encode(result)) != e["result"]:
            raise Invalid(f"entry {e['seq']}: result digest mismatch")
        out.append(
            {"body_cbor": "0x" + encoded.hex(), "hash": "0x" + e["hash"].hex(), "digest": "0x" + digest.hex()}
        )
        head = e["hash"]
    if set(results) != {str(e["seq"]) for e in entries}:
        raise Invalid("results holds exactly the results of this body's entries")
    if head != doc["log_head"]:
        raise Invalid("log_head is not the last entry's hash")
    state = {k: body[k] for k in ("budget", "context", "memory", "results")}
    if keccak(dag_cbor.encode(state)) != doc["state_hash"]:
        raise Invalid("state_hash does not match the state")
    return out


def plaintext_body(doc: Mapping[str, Any], v: Mapping[str, Any]) -> Mapping[str, Any]:
    body: Mapping[str, Any] = doc["body"]
    if v["sealed"] is None:
        assert "ciphertext" not in body
        return body
    aad = body_aad(doc["session_id"], doc["seq"], doc["state_root"])
    opened: Mapping[str, Any] = canonical(open_sealed(body, aad, h(vectors()["data_key"]["key"])))
    return opened


# ---------------------------------------------------------------- the vectors


def test_the_domain_and_type_hashes() -> None:
    vs = vectors()
    for d in (vs["domain"], vs["wrong_domain"]):
        assert (
            d["type"] == "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
        )
        assert (d["name"], d["version"]) == ("AgentGPT SessionFactory", "1")
        assert h(d["type_hash"]) == keccak(d["type"].encode())
        assert h(d["separator"]) == separator(d["chain_id"], d["verifying_contract"])
    assert h(vs["types"]["Checkpoint"]["type_hash"]) == keccak(CHECKPOINT_TYPE)
    assert h(vs["types"]["TaskLogEntry"]["type_hash"]) == keccak(ENTRY_TYPE)
    for key in vs["keys"].values():
        public = coincurve.PrivateKey(h(key["private_key"])).public_key.format(compressed=False)[1:]
        assert public == h(key["public_key"]) and address(public) == key["address"]
    assert set(NAMES) >= {"a-first", "b-second", "c-empty", "d-sealed", "e-large"}


@pytest.mark.parametrize("name", NAMES)
def test_every_value_of_a_vector_is_recomputed_from_its_bytes(name: str) -> None:
    v, vs = vector(name), vectors()
    data = raw(v)
    assert len(data) == v["size"]
    # content address: the anchored CID is recomputed from the bytes
    binary = stored_cid(data)
    assert binary == h(v["cid_bytes"]) and cid_text(binary) == v["cid"] == str(
        CID.decode(binary).encode("base32")
    )
    assert (binary[1] == 0x71) == (v["stored_as"] == "dag-cbor block") == (len(data) <= MAX_BLOCK)
    doc = canonical(data)
    # the header alone (what anyone can check without the body key)
    sep = separator(vs["domain"]["chain_id"], vs["domain"]["verifying_contract"])
    assert sep == h(vs["domain"]["separator"])
    assert check_header(doc, sep) == v["signer"] == v["executor"] == doc["executor"]
    assert (
        doc["home_chain_id"] == vs["domain"]["chain_id"]
        and doc["factory"] == vs["domain"]["verifying_contract"]
    )
    for key in ("session_id", "seq", "prev_seq", "epoch"):
        assert doc[key] == v[key], key
    for key in ("prev_root", "log_start", "log_head", "state_hash", "state_root"):
        assert doc[key] == h(v[key]), key
    assert (str(doc["prev"].encode("base32")) if doc["prev"] else None) == v["prev"]
    assert checkpoint_digest(sep, doc["session_id"], doc["seq"], doc["state_root"], doc["prev_root"]) == h(
        v["checkpoint_digest"]
    )
    spec = vs["spec"]["json"].encode()
    assert (
        bytes(doc["spec"]) == cid_bytes(0x55, spec) and cid_text(cid_bytes(0x55, spec)) == vs["spec"]["cid"]
    )
    # the anchor's commitment: keccak256(abi.encode(keccak256(cid), stateRoot))
    assert keccak(keccak(binary) + doc["state_root"]) == h(v["anchor_commitment"])
    # the body (opened with the test data key when sealed): entries, results, state
    body = plaintext_body(doc, v)
    recomputed = check_body(doc, body)
    assert len(recomputed) == len(v["entries"]) == doc["seq"] - doc["prev_seq"]
    for got, want, e in zip(recomputed, v["entries"], body["entries"], strict=True):
        assert got == {k: want[k] for k in ("body_cbor", "hash", "digest")}
        assert e["prev"] == h(want["prev"]) and want["signer"] == doc["executor"]
        assert keccak(dag_cbor.encode(body["results"][str(e["seq"])])) == h(want["result_digest"])
    if not body["entries"]:
        assert doc["log_head"] == doc["log_start"] and doc["seq"] == doc["prev_seq"] and body["results"] == {}


def test_the_series_links_each_checkpoint_to_the_one_before() -> None:
    docs = [canonical(raw(vector(n))) for n in ("a-first", "b-second", "c-empty", "d-sealed", "e-large")]
    first = docs[0]
    assert first["prev"] is None and first["prev_seq"] == 0
    assert first["prev_root"] == first["log_start"] == ZERO32
    for before, doc in pairwise(docs):
        assert bytes(doc["prev"]) == stored_cid(dag_cbor.encode(before))
        assert doc["prev_seq"] == before["seq"]
        assert doc["prev_root"] == before["state_root"] and doc["log_start"] == before["log_head"]
        assert doc["epoch"] >= before["epoch"]
    # executor A wrote a-c at epoch 1, executor B (the reassignment) d-e at epoch 2
    keys = vectors()["keys"]
    assert [(d["executor"], d["epoch"]) for d in docs] == [(keys["executor_a"]["address"], 1)] * 3 + [
        (keys["executor_b"]["address"], 2)
    ] * 2


def test_the_sealed_body_opens_with_the_data_key_and_each_recipients_key() -> None:
    v, vs = vector("d-sealed"), vectors()
    doc = canonical(raw(v))
    sealed = doc["body"]
    assert (
        set(sealed) == SEALED and sealed["key_epoch"] == vs["data_key"]["epoch"] == v["sealed"]["key_epoch"]
    )
    assert [r["address"] for r in sealed["recipients"]] == v["sealed"]["recipients"]
    assert v["sealed"]["recipients"] == [vs["keys"]["owner"]["address"], vs["keys"]["executor_b"]["address"]]
    aad = body_aad(doc["session_id"], doc["seq"], doc["state_root"])
    assert aad == h(v["sealed"]["aad"])
    data_key = h(vs["data_key"]["key"])
    plaintext = open_sealed(sealed, aad, data_key)
    assert len(plaintext) == v["sealed"]["plaintext_size"] and keccak(plaintext) == h(
        v["sealed"]["plaintext_keccak"]
    )
    # the data key is wrapped to each recipient: their private keys alone open the body
    by_address = {k["address"]: h(k["private_key"]) for k in vs["keys"].values()}
    for r in sealed["recipients"]:
        assert set(r) == {"address", "wrapped"}
        assert unwrap(r["wrapped"], by_address[r["address"]]) == data_key
    with pytest.raises(InvalidTag):  # a key wrapped to the owner does not open with executor B's key
        unwrap(sealed["recipients"][0]["wrapped"], by_address[sealed["recipients"][1]["address"]])
    # the associated data binds the body to its session, seq and state root; any flipped bit fails
    for other in (
        body_aad("8", doc["seq"], doc["state_root"]),
        body_aad(doc["session_id"], doc["seq"] + 1, doc["state_root"]),
        body_aad(doc["session_id"], doc["seq"], bytes(32)),
    ):
        with pytest.raises(InvalidTag):
            open_sealed(sealed, other, data_key)
    flipped = {**sealed, "ciphertext": sealed["ciphertext"][:-1] + bytes([sealed["ciphertext"][-1] ^ 1])}
    with pytest.raises(InvalidTag):
        open_sealed(flipped, aad, data_key)


# ---------------------------------------------------------------- what the checker refuses


def test_a_flipped_byte_in_an_entry_breaks_its_hash() -> None:
    doc = canonical(raw(vector("a-first")))
    entries = [dict(e) for e in doc["body"]["entries"]]
    result = entries[1]["result"]
    entries[1]["result"] = result[:5] + bytes([result[5] ^ 0x01]) + result[6:]
    tampered = {**doc, "body": {**doc["body"], "entries": entries}}
    with pytest.raises(Invalid, match="entry 2: hash mismatch"):
        check_body(tampered, tampered["body"])
    # a re-hashed entry then no longer links to the next one, and its signature is for the old hash
    entries[1]["hash"] = keccak(entries[1]["prev"] + dag_cbor.encode({k: entries[1][k] for k in ENTRY_BODY}))
    with pytest.raises(Invalid, match="entry 2: not signed by the executor"):
        check_body(tampered, tampered["body"])
    # and a flipped byte in the stored document no longer hashes to the anchored CID
    data = bytearray(raw(vector("a-first")))
    data[len(data) // 2] ^= 0x01
    assert stored_cid(bytes(data)) != h(vector("a-first")["cid_bytes"])


def test_a_changed_state_breaks_the_state_hash() -> None:
    doc = canonical(raw(vector("b-second")))
    body = {**doc["body"], "memory": {**doc["body"]["memory"], "rebalance": {"swapped_wei": 0}}}
    with pytest.raises(Invalid, match="state_hash does not match"):
        check_body(doc, body)


def test_the_wrong_domain_recovers_another_signer() -> None:
    vs = vectors()
    wrong = separator(vs["wrong_domain"]["chain_id"], vs["wrong_domain"]["verifying_contract"])
    assert wrong == h(vs["wrong_domain"]["separator"])
    for name in NAMES:
        doc, v = canonical(raw(vector(name))), vector(name)
        digest = checkpoint_digest(wrong, doc["session_id"], doc["seq"], doc["state_root"], doc["prev_root"])
        signer = recover(digest, doc["signature"])
        assert signer == v["wrong_domain_signer"] != doc["executor"]
        with pytest.raises(Invalid, match="not by its executor"):
            check_header(doc, wrong)
        # a header that claims another home chain is the same: its signature does not fit it
        with pytest.raises(Invalid, match="not by its executor"):
            check_header({**doc, "home_chain_id": vs["wrong_domain"]["chain_id"]})


def test_a_high_s_twin_of_a_signature_is_refused() -> None:
    doc = canonical(raw(vector("a-first")))
    sig = doc["signature"]
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]])  # same signer, other s and v
    with pytest.raises(Invalid, match="low-s"):
        check_header({**doc, "signature": twin})
    with pytest.raises(Invalid, match="v 27 or 28"):
        check_header({**doc, "signature": sig[:64] + bytes([sig[64] - 27])})


def test_a_non_canonical_encoding_is_refused() -> None:
    doc = canonical(raw(vector("c-empty")))
    # the same map with a non-minimal integer (seq as a 4-byte head) is another byte string: refused
    minimal = dag_cbor.encode(doc)
    head = b"\x63seq" + bytes([doc["seq"]])
    assert minimal.count(head) == 1
    with pytest.raises(Invalid, match="not canonical"):
        canonical(minimal.replace(head, b"\x63seq\x1a" + doc["seq"].to_bytes(4, "big")))


def test_the_checker_is_independent() -> None:
    tree = ast.parse(Path(__file__).read_text())
    for node in tree.body:  # module-level imports only: the product tests import inside their functions
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            assert name.split(".")[0] not in {"agentgpt", "services", "apps", "tests"}, name
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for fn in functions:
        if not fn.name.startswith("test_product_"):
            inner = [n for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)]
            assert not inner, f"{fn.name} imports {ast.dump(inner[0])}"


# ---------------------------------------------------------------- the product agrees


@pytest.mark.parametrize("name", NAMES)
async def test_product_verify_document_agrees(name: str, tmp_path: Path) -> None:
    from agentgpt.checkpoint_format import Domain, verify_document
    from agentgpt.ipfs import CheckpointReader, EmbeddedStore
    from agentgpt.sealing import Keyring, SessionKey

    v, vs = vector(name), vectors()
    data = raw(v)
    domain = Domain(vs["domain"]["chain_id"], vs["domain"]["verifying_contract"])
    store = EmbeddedStore(tmp_path)
    assert await store.put(data, "dag-cbor" if len(data) <= MAX_BLOCK else "raw") == v["cid"]
    header_only = verify_document(canonical(data), domain)  # as anyone without the body key
    assert header_only.sealed == (v["sealed"] is not None)
    key = SessionKey(vs["data_key"]["epoch"], h(vs["data_key"]["key"]))
    reader = CheckpointReader(store, keyring=Keyring(keys=[(vs["data_key"]["session_id"], key)]))
    doc = await reader.read(v["cid"], session_id=v["session_id"], seq=v["seq"], state_root=h(v["state_root"]))
    got = verify_document(doc, domain)
    assert not got.sealed and got.version == 2
    assert (got.head, got.log_head, got.log_start) == (
        h(v["state_root"]),
        h(v["log_head"]),
        h(v["log_start"]),
    )
    assert (got.executor, got.entries, got.prev_seq, got.epoch) == (
        v["executor"],
        len(v["entries"]),
        v["prev_seq"],
        v["epoch"],
    )
    assert got.prev_cid == (v["prev"] or "")
    assert got.first_seq == (v["prev_seq"] + 1 if v["entries"] else 0)
    assert check_body(doc, doc["body"]) == [
        {k: e[k] for k in ("body_cbor", "hash", "digest")} for e in v["entries"]
    ]
    if v["sealed"] is not None:  # the owner's private key alone opens it too
        owner = CheckpointReader(store, keyring=Keyring(private_key=vs["keys"]["owner"]["private_key"]))
        assert (await owner.read(v["cid"]))["body"] == doc["body"]


def test_product_refuses_what_the_checker_refuses() -> None:
    from agentgpt.checkpoint_format import Domain, verify_document
    from agentgpt.tasklog import TaskLogError

    vs = vectors()
    doc = canonical(raw(vector("a-first")))
    entries = [dict(e) for e in doc["body"]["entries"]]
    entries[1]["result"] = (
        entries[1]["result"][:5] + bytes([entries[1]["result"][5] ^ 1]) + entries[1]["result"][6:]
    )
    with pytest.raises(TaskLogError, match="entry 2's hash does not match its content"):
        verify_document({**doc, "body": {**doc["body"], "entries": entries}})
    wrong = Domain(vs["wrong_domain"]["chain_id"], vs["wrong_domain"]["verifying_contract"])
    with pytest.raises(TaskLogError, match="not this session's chain 31338"):
        verify_document(doc, wrong)
    with pytest.raises(
        TaskLogError, match=f"signed by {vector('a-first')['wrong_domain_signer']}, not by its"
    ):
        verify_document({**doc, "home_chain_id": wrong.chain_id})
