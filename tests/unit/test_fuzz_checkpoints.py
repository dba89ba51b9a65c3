"""Property-based tests of the checkpoint decoder and verifier (agentgpt.ipfs.codec.decode,
agentgpt.checkpoint_format.verify_document / body_of) on random bytes and on mutations of the format's
test vectors (tests/fixtures/checkpoint-v2, and the v1 documents of tests/fixtures/checkpoint-v1).

* decode: a dict, or DocumentFormatError; nothing else, whatever the bytes;
* verify_document: a VerifiedLog, or TaskLogError; nothing else, whatever the document;
* a signed v2 document changed anywhere (a flipped byte that still decodes, a header field replaced,
  removed or added, a body value changed) is never accepted, except in the fields the format leaves
  unsigned (`UNSIGNED`: bound by the document's CID instead, so the changed document's CID is not the
  anchored one) and, for a sealed body, the body (which then fails to open with the session's data
  key). A v1 document signs only its task-log entries: a changed one that is accepted must vouch for
  exactly the original's log;
* body_of: a mapping for any document, never an exception.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dag_cbor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiformats import CID

from agentgpt.checkpoint_format import Domain, body_of, verify_document
from agentgpt.errors import ServiceError
from agentgpt.ipfs.codec import decode
from agentgpt.ipfs.errors import DocumentFormatError
from agentgpt.sealing import Keyring, SessionKey, body_aad, open_body
from agentgpt.tasklog import TaskLogError, VerifiedLog

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
V2 = FIXTURES / "checkpoint-v2"
V1 = FIXTURES / "checkpoint-v1"
FUZZ = settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@cache
def _vectors() -> dict[str, Any]:
    return dict(json.loads((V2 / "vectors.json").read_text()))


@cache
def _raw(name: str) -> bytes:
    """A fixture document's bytes (small ones only: the 'large' vector makes a fuzz example slow)."""
    path = V2 / name if (V2 / name).exists() else V1 / name
    data = path.read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


DOCS = sorted(
    [v["file"] for v in _vectors()["vectors"] if not v["file"].endswith(".gz")]
    + [p.name for p in V1.glob("*.cbor")]
)
DOMAIN = Domain(_vectors()["domain"]["chain_id"], _vectors()["domain"]["verifying_contract"])


def _domain_of(doc: Mapping[str, Any]) -> Domain | None:
    return DOMAIN if doc.get("version") == 2 else None


def _verify(doc: Mapping[str, Any], domain: Domain | None) -> VerifiedLog | None:
    """verify_document's outcome: the VerifiedLog, or None when it refused with TaskLogError."""
    try:
        return verify_document(doc, domain)
    except TaskLogError as exc:
        assert str(exc), "a refusal without a reason"
        return None


def _decoded(data: bytes) -> dict[str, Any] | None:
    try:
        doc = decode(data)
    except DocumentFormatError as exc:
        assert str(exc).startswith(("not a canonical dag-cbor document", "not a document")), str(exc)
        return None
    assert isinstance(doc, dict)
    return doc


def _data_keyring() -> Keyring:
    sealed = next(v for v in _vectors()["vectors"] if v["sealed"])
    key = SessionKey(sealed["sealed"]["key_epoch"], bytes.fromhex(sealed["sealed"]["data_key"][2:]))
    return Keyring(keys=[(sealed["session_id"], key)])


def _header(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "body"}


# What a v2 header signature does not cover (docs/checkpoint-format.md §3): `epoch` (informational),
# the links `prev` and `spec` and the body's `chains` (bound by the document's CID, which the anchor
# commits to). With a sealed body also the body itself, `prev_seq` and `log_start`, which only the opened
# body is checked against (§11.2).
UNSIGNED = {("epoch",), ("prev",), ("spec",), ("body", "chains")}
UNSIGNED_SEALED = {("body",), ("prev_seq",), ("log_start",)}


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], path: tuple[Any, ...]) -> set[tuple[Any, ...]]:
    return {(*path, k) for k in set(a) | set(b) if k not in a or k not in b or a[k] != b[k]}


def _changed_paths(a: Mapping[str, Any], b: Mapping[str, Any]) -> set[tuple[Any, ...]]:
    """The header keys that differ, with a plaintext body's keys instead of ("body",)."""
    out = _diff(a, b, ())
    body_a, body_b = a.get("body"), b.get("body")
    plain = isinstance(body_a, Mapping) and "ciphertext" not in body_a
    if ("body",) in out and plain and isinstance(body_b, Mapping):
        out = (out - {("body",)}) | _diff(body_a, body_b, ("body",))
    return out


def _sha256_of(doc: Mapping[str, Any]) -> bytes | None:
    try:
        return hashlib.sha256(dag_cbor.encode(dict(doc))).digest()
    except Exception:  # not encodable: it could never have been fetched by a CID
        return None


def _check_refused_or_unsigned_only(original: dict[str, Any], changed: Mapping[str, Any]) -> None:
    """`changed` differs from the signed `original`: refused, unless it changed only what the signature
    does not cover; then its CID differs from the one the anchor commits to, and an altered sealed body
    does not open."""
    verified = _verify(changed, _domain_of(original))
    body_of(changed)  # never raises, whatever verify said
    if verified is None:
        return
    if original["version"] == 1:
        # v1 signs only its task-log entries (the state beside them is not covered: the format's
        # migration note), so an accepted v1 document must vouch for exactly the original's log
        assert verified == verify_document(original), "a changed v1 log was accepted"
        return
    allowed = UNSIGNED | (UNSIGNED_SEALED if verified.sealed else set())
    changed_paths = _changed_paths(original, changed)
    assert changed_paths <= allowed, f"a change to signed fields was accepted: {changed_paths - allowed}"
    assert _sha256_of(changed) != _sha256_of(original), "an accepted change keeps the anchored CID"
    if ("body",) in changed_paths:
        aad = body_aad(str(original["session_id"]), original["seq"], original["state_root"])
        try:
            plaintext = open_body(changed["body"], aad, _data_keyring())
        except ServiceError:  # DocumentFormatError (not a sealed body) or DecryptionError (altered)
            return
        assert plaintext == open_body(original["body"], aad, _data_keyring()), "an altered body opened"


def test_every_fixture_document_decodes_and_verifies() -> None:
    for name in DOCS:
        doc = _decoded(_raw(name))
        assert doc is not None, name
        verified = _verify(doc, _domain_of(doc))
        assert verified is not None, name
        assert isinstance(body_of(doc), Mapping)
    sealed = _decoded(_raw("d-sealed.cbor"))
    assert sealed is not None and body_of(sealed) == {}
    assert _verify(sealed, Domain(31338, DOMAIN.verifying_contract)) is None  # another chain's domain


@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes_decode_to_a_map_or_a_document_format_error(data: bytes) -> None:
    doc = _decoded(data)
    if doc is not None:
        assert _verify(doc, None) is None  # random bytes are no signed checkpoint
        assert isinstance(body_of(doc), Mapping)


@FUZZ
@given(
    name=st.sampled_from(DOCS),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=3),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_fixture_bytes_are_refused(name: str, flips: list[tuple[int, int]], cut: int | None) -> None:
    raw = _raw(name)
    data = bytearray(raw)
    for at, xor in flips:
        data[at % len(data)] ^= xor
    if cut is not None:
        del data[cut % len(data) :]
    original = decode(raw)
    changed = _decoded(bytes(data))
    if changed is None or changed == original:
        return  # refused by the decoder (or two flips cancelled out)
    _check_refused_or_unsigned_only(original, changed)


# values a field may be replaced with: the types dag-cbor carries, at their edges
CBOR_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64 - 1),
        st.sampled_from([0, 1, 2, -1, 2**63, 2**64 - 1, 2**256, 31337]),
        st.binary(max_size=70),
        st.sampled_from([bytes(32), b"\xff" * 32, bytes(64), bytes(65), b"\x1b" * 65]),
        st.text(max_size=50),
        st.sampled_from(
            ["", "7", "-1", "0x" + "00" * 20, "0x5FbDB2315678afecb367f032d93F642f64180aa3", "9" * 90]
        ),
        st.just(CID.decode("bafyreidmfo4otzw66thrrd7lzvdliehi5dhvgjk3xeyxclug42qzjxb4g4")),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a document (map keys and list indexes)."""
    out = [path] if path else []
    if isinstance(value, Mapping):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _replaced(doc: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    if isinstance(doc, Mapping):
        out = dict(doc)
    else:
        out = list(doc)
    head = path[0]
    if len(path) == 1:
        if delete:
            del out[head]
        else:
            out[head] = new
        return out
    out[head] = _replaced(doc[head], path[1:], new, delete)
    return out


@FUZZ
@given(name=st.sampled_from(DOCS), data=st.data())
def test_documents_with_a_field_changed_are_refused(name: str, data: st.DataObject) -> None:
    original = decode(_raw(name))
    path = data.draw(st.sampled_from(_paths(original)), label="path")
    delete = data.draw(st.booleans(), label="delete")
    new = None if delete else data.draw(CBOR_VALUES, label="new value")
    changed = _replaced(original, path, new, delete)
    if changed == original:
        return
    # the bytes would be refused first when the value is not canonical dag-cbor: either way, not accepted
    _check_refused_or_unsigned_only(original, changed)
    try:
        reencoded = dag_cbor.encode(changed)
    except Exception:  # not encodable (e.g. an integer dag-cbor has no room for): no bytes to decode
        return
    roundtrip = _decoded(reencoded)
    assert roundtrip is not None and roundtrip == changed


@FUZZ
@given(name=st.sampled_from(DOCS), key=st.text(max_size=20), value=CBOR_VALUES)
def test_documents_with_a_field_added_are_refused(name: str, key: str, value: Any) -> None:
    original = decode(_raw(name))
    if key in original:
        return
    _check_refused_or_unsigned_only(original, {**original, key: value})


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(["version", "body", "seq", "session_id", "x"]), CBOR_VALUES))
def test_random_documents_are_refused_with_task_log_errors(doc: dict[str, Any]) -> None:
    for version in (doc.get("version"), 1, 2):
        candidate = {**doc, "version": version}
        assert _verify(candidate, None) is None
        assert _verify(candidate, DOMAIN) is None
        assert isinstance(body_of(candidate), Mapping)
