"""Pure tests of local CID computation, canonical dag-cbor and the AES-GCM envelope (no node, no disk).

Known CIDs below were produced by js-ipfs 0.66 (`add --cid-version=1 --raw-leaves --chunker=size-262144`
and `dag/put`) on this machine; the integration tests recheck them against a live node.
"""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID

from agentgpt.errors import InvalidArgument
from agentgpt.ipfs import cid as cids
from agentgpt.ipfs import codec
from agentgpt.ipfs.errors import (
    CheckpointIntegrityError,
    CidMismatchError,
    ContentIntegrityError,
    DecryptionError,
    DocumentFormatError,
)
from agentgpt.ipfs.store import EmbeddedStore, IpfsConfig, KuboStore, open_store
from agentgpt.runtime.config import ConfigError, load

EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
HELLO = b"hello ipfs checkpoint\n"
HELLO_RAW = "bafkreig4zpziu5mrfgrycwwm7cgg43ox64tidwt5io5hyd7h5vhipara34"
AB_256K_PLUS_1 = "bafybeicwybtugpssovb535uzrxaefsn6mtxk7vu3jb3scuxzuddqrutniq"  # b"\xab" * (256 KiB + 1)
PATTERN_1M = (
    "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau"  # bytes(i % 251 for i in range(1 MiB))
)
DAG_DOC_CID = "bafyreidxhdva5d4fb5377cnfaphxjqov6gtl6s7tgz46rdf6ew4lothcti"


# ---------------------------------------------------------------- CIDs
def test_raw_cids_match_known_node_answers() -> None:
    assert cids.raw_cid(b"") == EMPTY_RAW
    assert cids.file_cid(b"") == EMPTY_RAW
    assert cids.raw_cid(HELLO) == HELLO_RAW
    assert cids.compute_cid(HELLO, "raw") == HELLO_RAW


def test_one_full_chunk_is_still_a_raw_leaf_and_one_byte_more_is_a_dag_pb_tree() -> None:
    full = b"\xab" * cids.CHUNK_SIZE
    assert cids.file_cid(full) == cids.raw_cid(full)
    tree = cids.file_cid(full + b"\xab")
    assert tree == AB_256K_PLUS_1
    assert cids.codec_of(tree) == "dag-pb"
    assert cids.file_cid(bytes(i % 251 for i in range(1 << 20))) == PATTERN_1M


def test_dag_cbor_cid_matches_js_ipfs_dag_put() -> None:
    doc = {"step": 42, "name": "model-a", "ckpt": CID.decode(HELLO_RAW)}
    assert cids.dag_cbor_cid(codec.encode(doc)) == DAG_DOC_CID
    assert cids.compute_cid(codec.encode(doc), "dag-cbor") == DAG_DOC_CID


def test_normalize_turns_js_ipfs_base58_answers_into_base32_v1() -> None:
    # js-ipfs answered these for the same content
    assert cids.normalize("zb2rhmy65F3REf8SZp7De11gxtECBGgUKaLdiDj7MCGCHxbDW") == EMPTY_RAW
    v1_tree = cids.normalize("zdj7WkpFgJ6edMfZkzcsH7PuqFbroQyGDxYKD8zGR3e2iaPaZ")
    assert v1_tree == "bafybeihetfpzhje2tdagwd7z5kgilzgwj5uj5jwwrfbhlpwmp7oqblslji"
    v0 = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"
    v1 = cids.normalize(v0)
    assert v1.startswith("bafybei") and CID.decode(v1).digest == CID.decode(v0).digest
    assert cids.normalize(EMPTY_RAW) == EMPTY_RAW
    assert cids.normalize(f"  {EMPTY_RAW}\n") == EMPTY_RAW


@pytest.mark.parametrize("bad", ["", "   ", "not-a-cid", "bafkrei", "Qm123"])
def test_normalize_rejects_garbage_as_invalid_argument(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        cids.normalize(bad)
    assert err.value.field == "cid"


def test_compute_cid_rejects_unknown_codec() -> None:
    with pytest.raises(InvalidArgument, match="codec"):
        cids.compute_cid(b"x", "dag-json")  # type: ignore[arg-type]


def test_verify_accepts_matching_bytes_and_rejects_any_change() -> None:
    assert cids.verify("zb2rhmy65F3REf8SZp7De11gxtECBGgUKaLdiDj7MCGCHxbDW", b"") == EMPTY_RAW
    with pytest.raises(CidMismatchError) as err:
        cids.verify(HELLO_RAW, HELLO[:-1] + b"!")
    assert err.value.expected == HELLO_RAW and err.value.actual == cids.raw_cid(HELLO[:-1] + b"!")
    assert err.value.code == grpc.StatusCode.DATA_LOSS

    big = bytes(i % 251 for i in range(1 << 20))
    assert cids.verify(PATTERN_1M, big) == PATTERN_1M
    tampered = bytearray(big)
    tampered[700_000] ^= 1  # inside the third leaf
    with pytest.raises(CidMismatchError):
        cids.verify(PATTERN_1M, bytes(tampered))
    with pytest.raises(CidMismatchError):
        cids.verify(PATTERN_1M, big[:-1])


def test_verify_dag_cbor_and_unsupported_hashes() -> None:
    block = codec.encode({"a": 1})
    cids.verify(cids.dag_cbor_cid(block), block)
    with pytest.raises(CidMismatchError):
        cids.verify(cids.dag_cbor_cid(block), codec.encode({"a": 2}))
    other_hash = str(CID("base32", 1, "raw", ("identity", b"abc")))
    with pytest.raises(InvalidArgument, match="unsupported hash"):
        cids.verify(other_hash, b"abc")


# ---------------------------------------------------------------- dag-cbor documents
def test_encoding_is_canonical_regardless_of_key_order() -> None:
    a = {"seq": 1, "session_id": "7", "z": [1, 2], "aa": {"y": None, "x": True}}
    b = {"aa": {"x": True, "y": None}, "z": [1, 2], "session_id": "7", "seq": 1}
    assert codec.encode(a) == codec.encode(b)
    # dag-cbor canonical order: shorter keys first, then bytewise
    assert list(codec.decode(codec.encode(a))) == ["z", "aa", "seq", "session_id"]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"gas": 1.5}, "document.gas"),
        ({"tasks": [{"fee": 0.1}]}, "document.tasks[0].fee"),
        ({"n": 2**64}, "document.n"),
        ({"n": -(2**64) - 1}, "document.n"),
        ({"t": (1, 2)}, "document.t"),
        ({"m": {1: "x"}}, "document.m"),
        ({"s": {1, 2}}, "document.s"),
    ],
)
def test_values_dag_cbor_cannot_round_trip_are_rejected_with_their_path(doc: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        codec.encode(doc)
    assert err.value.field == field


def test_extreme_64_bit_integers_are_allowed() -> None:
    doc = {"max": 2**64 - 1, "min": -(2**64), "cid": CID.decode(HELLO_RAW)}
    assert codec.decode(codec.encode(doc)) == doc


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("a2616202616101"),  # keys out of canonical order
        bytes.fromhex("a161611801"),  # {"a": 1} with a non-minimal integer
        bytes.fromhex("0102"),  # two top-level items
        bytes.fromhex("83010203"),  # a list, not a document
        b"AGCE\x01" + b"\x00" * 40,  # an envelope is not a document
    ],
)
def test_decode_rejects_non_canonical_or_non_document_bytes(data: bytes) -> None:
    with pytest.raises(DocumentFormatError):
        codec.decode(data)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
_documents = st.dictionaries(st.text(max_size=12), _values, max_size=8)


@settings(max_examples=300, deadline=None)
@given(_documents)
def test_documents_round_trip_and_bytes_are_a_fixed_point(doc: dict) -> None:
    data = codec.encode(doc)
    assert codec.decode(data) == doc
    assert codec.encode(codec.decode(data)) == data
    # insertion order never changes the bytes (hence the CID)
    assert codec.encode(dict(reversed(list(doc.items())))) == data


# ---------------------------------------------------------------- envelopes
KEY = bytes(range(32))


def test_seal_open_round_trip_with_fresh_nonces() -> None:
    one = codec.seal(b"secret state", KEY, b"ctx")
    two = codec.seal(b"secret state", KEY, b"ctx")
    assert one != two  # random nonce per seal
    assert one[:5] == b"AGCE\x01" and codec.is_sealed(one)
    assert len(one) == 5 + 12 + len(b"secret state") + 16
    assert b"secret state" not in one
    assert codec.open_(one, KEY, b"ctx") == codec.open_(two, KEY, b"ctx") == b"secret state"


def test_wrong_key_or_wrong_aad_fails_as_decryption_error() -> None:
    env = codec.seal(b"state", KEY, b"session 1 seq 50")
    with pytest.raises(DecryptionError) as err:
        codec.open_(env, codec.generate_key(), b"session 1 seq 50")
    assert isinstance(err.value, CheckpointIntegrityError)
    assert err.value.code == grpc.StatusCode.DATA_LOSS
    with pytest.raises(DecryptionError):
        codec.open_(env, KEY, b"session 1 seq 51")


@pytest.mark.parametrize("position", [6, 17, 20, -1])  # nonce, first ciphertext byte, ciphertext, tag
def test_any_flipped_bit_after_the_header_fails_authentication(position: int) -> None:
    env = bytearray(codec.seal(b"some checkpoint bytes", KEY))
    env[position] ^= 0x01
    with pytest.raises(DecryptionError):
        codec.open_(bytes(env), KEY)


def test_header_tampering_and_truncation_are_format_errors() -> None:
    env = codec.seal(b"x", KEY)
    with pytest.raises(DocumentFormatError, match="version 2"):
        codec.open_(env[:4] + b"\x02" + env[5:], KEY)
    with pytest.raises(DocumentFormatError):
        codec.open_(b"XXXX" + env[4:], KEY)
    with pytest.raises(DocumentFormatError):
        codec.open_(env[:20], KEY)
    assert issubclass(DocumentFormatError, ContentIntegrityError)


@pytest.mark.parametrize("key", [b"", b"k" * 16, b"k" * 31, b"k" * 33])
def test_keys_must_be_256_bit(key: bytes) -> None:
    with pytest.raises(InvalidArgument) as err:
        codec.seal(b"x", key)
    assert err.value.field == "key"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=4096), st.binary(max_size=64))
def test_envelope_round_trip_property(plaintext: bytes, aad: bytes) -> None:
    assert codec.open_(codec.seal(plaintext, KEY, aad), KEY, aad) == plaintext


# ---------------------------------------------------------------- configuration
def test_config_picks_the_store_from_agentgpt_ipfs_env(tmp_path) -> None:
    cfg = load(
        IpfsConfig, env={"AGENTGPT_IPFS_API": "/ip4/127.0.0.1/tcp/5001", "AGENTGPT_IPFS_TIMEOUT": "2.5"}
    )
    store = open_store(cfg)
    assert isinstance(store, KuboStore)
    assert store.endpoint == "http://127.0.0.1:5001" and store.timeout == 2.5

    cfg = load(IpfsConfig, env={"AGENTGPT_IPFS_EMBEDDED_DIR": str(tmp_path)})
    store2 = open_store(cfg)
    assert isinstance(store2, EmbeddedStore) and store2.directory == tmp_path


@pytest.mark.parametrize(
    ("api", "endpoint"),
    [
        ("http://ipfs.internal:5001", "http://ipfs.internal:5001"),
        ("https://pin.example/api/v0", "https://pin.example"),
        ("127.0.0.1:15001", "http://127.0.0.1:15001"),
        ("/dns4/ipfs/tcp/5001", "http://ipfs:5001"),
        ("/ip4/10.0.0.2/tcp/443/https", "https://10.0.0.2"),
    ],
)
def test_api_forms_accepted(api: str, endpoint: str) -> None:
    assert KuboStore(api).endpoint == endpoint


@pytest.mark.parametrize("api", ["/ip4/127.0.0.1", "/ip4/127.0.0.1/udp/5001", "ftp://x:21"])
def test_bad_api_is_a_config_error_naming_the_variable(api: str) -> None:
    with pytest.raises(ConfigError, match="AGENTGPT_IPFS_API"):
        KuboStore(api)


def test_nonpositive_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="AGENTGPT_IPFS_TIMEOUT"):
        open_store(IpfsConfig(ipfs_api="/ip4/127.0.0.1/tcp/1", ipfs_timeout=0))
