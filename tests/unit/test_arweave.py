"""agentgpt.arweave's wire format against arweave-js itself: deep hash, chunking, data_root, transactions
signed by arweave-js (tests/fixtures/arweave/vectors.json, made by gen_vectors.js there), and the wallet.

No gateway and no Node here: the vectors were produced once and committed; only the Python module runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agentgpt.arweave import (
    APP_NAME,
    ArweaveClient,
    FormatError,
    Transaction,
    TransactionIntegrityError,
    Wallet,
    WalletError,
    archive_tags,
    b64url_decode,
    b64url_encode,
    chunk_boundaries,
    data_root,
    deep_hash,
    merkle_root,
    tx_id_bytes,
    tx_id_from_bytes,
    verify,
    verify_signature,
)
from agentgpt.errors import FailedPrecondition, InvalidArgument

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "arweave" / "vectors.json").read_text()
)
KIB = 1024


def pattern(size: int) -> bytes:
    """The data of the merkle vectors: byte i = (i * 31 + (i >> 11)) & 0xff (see gen_vectors.js)."""
    return bytes((i * 31 + (i >> 11)) & 0xFF for i in range(size))


def deep_hash_input(spec: dict[str, Any]) -> Any:
    if "blob" in spec:
        return b64url_decode(spec["blob"])
    return [deep_hash_input(item) for item in spec["list"]]


def vector_data(spec: dict[str, Any]) -> bytes:
    return spec["text"].encode() if "text" in spec else pattern(spec["pattern"])


def js_transactions() -> list[tuple[Transaction, dict[str, Any]]]:
    return [(Transaction.from_json(v["tx"], vector_data(v["data"])), v) for v in VECTORS["transactions"]]


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return Wallet.generate()


# ---------------------------------------------------------------------------------------------- vectors
def test_vectors_come_from_the_pinned_arweave_js() -> None:
    lock = json.loads((Path(__file__).resolve().parents[2] / "tools/arlocal/package-lock.json").read_text())
    assert VECTORS["arweave_js"] == lock["packages"]["node_modules/arweave"]["version"] == "1.15.7"


@pytest.mark.parametrize("case", VECTORS["deep_hash"], ids=lambda c: c["name"])
def test_deep_hash_matches_arweave_js(case: dict[str, Any]) -> None:
    assert b64url_encode(deep_hash(deep_hash_input(case["input"]))) == case["sha384"]


def test_deep_hash_tells_blobs_lists_and_nesting_apart() -> None:
    assert deep_hash(b"") != deep_hash([])
    assert deep_hash([b"ab"]) != deep_hash([b"a", b"b"])
    assert deep_hash([[b"a"]]) != deep_hash([b"a"])
    assert deep_hash([]) == hashlib.sha384(b"list0").digest()
    with pytest.raises(TypeError, match="encode it first"):
        deep_hash("text")  # type: ignore[arg-type]


@pytest.mark.parametrize("case", VECTORS["merkle"], ids=lambda c: f"{c['size']}B")
def test_chunks_and_data_root_match_arweave_js(case: dict[str, Any]) -> None:
    data = pattern(case["size"])
    assert chunk_boundaries(len(data)) == [tuple(c) for c in case["chunks"]]
    assert b64url_encode(merkle_root(data)) == case["merkle_root"]
    assert b64url_encode(data_root(data)) == case["data_root"]


def test_the_brief_sizes_are_among_the_vectors() -> None:
    sizes = {case["size"] for case in VECTORS["merkle"]}
    assert {0, 1, 256 * KIB, 600 * KIB} <= sizes


def test_chunking_edge_cases() -> None:
    # No data and exactly one full chunk both end in an empty chunk, which is a leaf of the tree.
    assert chunk_boundaries(0) == [(0, 0)]
    assert chunk_boundaries(256 * KIB) == [(0, 256 * KIB), (256 * KIB, 256 * KIB)]
    # A remainder under 32 KiB is avoided by splitting the last two chunks evenly (odd byte first).
    assert chunk_boundaries(256 * KIB + 1) == [(0, 128 * KIB + 1), (128 * KIB + 1, 256 * KIB + 1)]
    assert data_root(b"") == b""
    assert len(merkle_root(b"")) == 32
    # One changed byte anywhere changes the root.
    data = bytearray(pattern(600 * KIB))
    root = merkle_root(bytes(data))
    data[500 * KIB] ^= 1
    assert merkle_root(bytes(data)) != root


@pytest.mark.parametrize(
    ("tx", "vector"), js_transactions(), ids=lambda v: v["name"] if isinstance(v, dict) else ""
)
def test_transactions_signed_by_arweave_js_verify(tx: Transaction, vector: dict[str, Any]) -> None:
    assert vector["verifies"] is True
    assert b64url_encode(tx.signature_data()) == vector["signature_data_sha384"]
    assert tx.id == vector["tx"]["id"]
    assert tx.owner_address == vector["owner_address"]
    assert b64url_encode(tx.data_root) == vector["tx"]["data_root"]
    verify(tx, vector["tx"]["id"])  # both salt lengths: the maximum (arweave-js default) and 32
    assert tx.to_json(include_data=False) == vector["tx"]


def _tampered(tx: Transaction) -> dict[str, Transaction]:
    first_name, first_value = tx.tags[0]
    return {
        "data": dataclasses.replace(tx, data=tx.data[:-1] + bytes([tx.data[-1] ^ 1])),
        "data_size": dataclasses.replace(tx, data=tx.data + b"!"),
        "tag": dataclasses.replace(tx, tags=((first_name, first_value + b"x"), *tx.tags[1:])),
        "tag_order": dataclasses.replace(tx, tags=tuple(reversed(tx.tags))),
        "reward": dataclasses.replace(tx, reward=tx.reward + "0"),
        "owner": dataclasses.replace(tx, owner=bytes(512)),
        "signature": dataclasses.replace(tx, signature=tx.signature[:-1] + bytes([tx.signature[-1] ^ 1])),
    }


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("data", "does not hash to its data_root"),
        ("data_size", "where data_size says"),
        ("tag", "signature does not match"),
        ("tag_order", "signature does not match"),
        ("reward", "signature does not match"),
        ("owner", "signature does not match"),
        ("signature", "hashes to id"),
    ],
)
def test_any_altered_field_fails_verification(field: str, problem: str) -> None:
    tx, vector = js_transactions()[0]
    bad = _tampered(tx)[field]
    with pytest.raises(TransactionIntegrityError, match=problem) as err:
        verify(bad, vector["tx"]["id"], gateway="http://gw")
    assert err.value.tx_id == vector["tx"]["id"]
    assert "http://gw" in err.value.message
    assert err.value.code.name == "DATA_LOSS"


def test_a_transaction_is_not_mistaken_for_another_id() -> None:
    (tx, _), (_, other) = js_transactions()[:2]
    with pytest.raises(TransactionIntegrityError, match="hashes to id"):
        verify(tx, other["tx"]["id"])


# ---------------------------------------------------------------------------------------------- wallet
def test_wallet_address_owner_and_signature(wallet: Wallet) -> None:
    assert len(wallet.owner) == 512
    assert wallet.address == b64url_encode(hashlib.sha256(wallet.owner).digest())
    assert len(wallet.address) == 43
    assert repr(wallet) == f"Wallet(address={wallet.address!r})"  # nothing of the private key
    message = deep_hash([b"x"])
    signature = wallet.sign(message)
    assert verify_signature(wallet.owner, message, signature)
    assert not verify_signature(wallet.owner, deep_hash([b"y"]), signature)
    public = rsa.RSAPublicNumbers(65537, int.from_bytes(wallet.owner, "big")).public_key()
    public.verify(signature, message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    with pytest.raises(InvalidSignature):  # the salt really is 32 bytes
        public.verify(signature, message, padding.PSS(padding.MGF1(hashes.SHA256()), 64), hashes.SHA256())


def test_python_signed_transaction_verifies_and_round_trips_json(wallet: Wallet) -> None:
    tags = archive_tags(kind="report", session_id=3, chain_id=137, seq=9, extra={"Note": "café ✓"})
    tx = Transaction.create(
        owner=wallet.owner, data=pattern(300 * KIB), tags=tags, reward="42", last_tx=b"\x01" * 48
    )
    signed = tx.with_signature(wallet.sign(tx.signature_data()))
    verify(signed, signed.id)
    body = signed.to_json()
    assert body["format"] == 2 and body["target"] == "" and body["quantity"] == "0"
    assert body["data_size"] == str(300 * KIB)
    assert [b64url_decode(t["name"]).decode() for t in body["tags"]] == list(tags)
    again = Transaction.from_json(body, b64url_decode(body["data"]))
    assert again == signed


def test_wallet_save_is_private_and_loads_back(wallet: Wallet, tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "wallet.json"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    wallet.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["wallet.json"]  # no temp file left behind
    jwk = json.loads(path.read_text())
    assert set(jwk) == {"kty", "n", "e", "d", "p", "q", "dp", "dq", "qi"}
    assert jwk["e"] == "AQAB"
    loaded = Wallet.load(path)
    assert loaded.address == wallet.address
    assert verify_signature(wallet.owner, b"m" * 48, loaded.sign(b"m" * 48))


def test_wallet_load_errors_name_the_file(tmp_path: Path, wallet: Wallet) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(WalletError, match=r"cannot read the Arweave wallet .*none\.json"):
        Wallet.load(missing)
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(WalletError, match=r"junk\.json.*not JSON"):
        Wallet.load(tmp_path / "junk.json")
    public = {k: v for k, v in wallet.to_jwk().items() if k in ("kty", "n", "e")}
    (tmp_path / "public.json").write_text(json.dumps(public))
    with pytest.raises(WalletError, match="public key only"):
        Wallet.load(tmp_path / "public.json")
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(WalletError, match="RSA-4096"):
        Wallet(small)
    broken = dict(wallet.to_jwk(), d=b64url_encode(b"\x01\x02"))
    with pytest.raises(WalletError, match="not hold a valid RSA key"):
        Wallet.from_jwk(broken)


# ---------------------------------------------------------------------------------------------- ids, tags
def test_tx_id_bytes_round_trip() -> None:
    raw = os.urandom(32)
    tx_id = tx_id_from_bytes(raw)
    assert len(tx_id) == 43 and tx_id_bytes(tx_id) == raw
    for tx, vector in js_transactions():
        assert tx_id_from_bytes(tx_id_bytes(vector["tx"]["id"])) == tx.id
    with pytest.raises(FormatError, match="43 base64url"):
        tx_id_bytes(tx_id[:-1])
    with pytest.raises(FormatError, match="not base64url"):
        tx_id_bytes("!" * 43)
    canonical = tx_id_from_bytes(b"\x00" * 32)  # ends in "A": the last character's two spare bits are zero
    with pytest.raises(FormatError, match="canonical"):
        tx_id_bytes(canonical[:-1] + "B")
    with pytest.raises(FormatError, match="32 bytes"):
        tx_id_from_bytes(b"\x00" * 31)


def test_b64url() -> None:
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b"\xfb\xff" == b64url_decode("-_8=")
    for bad in ("a+b", "a/b", "abcde", "a b"):
        with pytest.raises(FormatError):
            b64url_decode(bad)


def test_archive_tags_are_ordered_and_checked() -> None:
    tags = archive_tags(kind="event-log", session_id=7, chain_id=31337, seq=42)
    assert list(tags.items()) == [
        ("App-Name", APP_NAME),
        ("Kind", "event-log"),
        ("Session-Id", "7"),
        ("Chain-Id", "31337"),
        ("Seq", "42"),
        ("Content-Type", "application/json"),
    ]
    with pytest.raises(InvalidArgument, match="kind: unknown archive kind 'log'"):
        archive_tags(kind="log", session_id=7, chain_id=1, seq=0)
    with pytest.raises(InvalidArgument, match="'Seq' is set by archive_tags"):
        archive_tags(kind="filing", session_id=7, chain_id=1, seq=0, extra={"Seq": "1"})


async def test_bad_requests_are_refused_before_any_network_call(wallet: Wallet) -> None:
    # Port 9 (discard) on loopback: nothing answers, so reaching the network would fail differently.
    async with ArweaveClient("http://127.0.0.1:9", wallet, retries=0) as client:
        with pytest.raises(InvalidArgument, match="tags: empty tag name or value"):
            await client.post(b"x", {"Kind": ""})
        with pytest.raises(InvalidArgument, match="tags: 2049 bytes"):
            await client.post(b"x", {"K": "v" * 2048})
        with pytest.raises(InvalidArgument, match="data: must be bytes"):
            await client.post("text", {"K": "v"})  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="tx_id: an Arweave transaction id is 43"):
            await client.read("short")
    async with ArweaveClient("http://127.0.0.1:9") as client:
        with pytest.raises(FailedPrecondition, match="AGENTGPT_ARWEAVE_WALLET_PATH"):
            await client.post(b"x", {"K": "v"})
    with pytest.raises(InvalidArgument, match="gateway_url"):
        ArweaveClient("ftp://gateway")
