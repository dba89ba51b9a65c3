"""Local CID computation, so no node is ever trusted to name content.

Every CID this project writes is CIDv1, sha2-256, base32 (Kubo's canonical text form), in one of three
shapes:

* ``raw`` (0x55): an opaque payload of at most one chunk (256 KiB) — exactly what
  ``ipfs add --cid-version=1 --raw-leaves --chunker=size-262144`` answers for such a payload;
* ``dag-pb`` (0x70): an opaque payload of more than one chunk, stored as a UnixFS file with raw leaves of
  256 KiB and the balanced layout (174 links per node) — again exactly what ``ipfs add`` with those
  options builds, so the CID names the *whole* payload and ``ipfs cat <cid>`` works on any node;
* ``dag-cbor`` (0x71): a single canonical dag-cbor block (a document the node can traverse).

`file_cid` rebuilds the UnixFS tree locally (protobuf encoding of PBNode/UnixFS Data, cross-checked
against js-ipfs 0.66 for 0 B .. 44 MiB, one- and two-level trees); `verify` recomputes a CID from bytes.
A dag-pb CID built with other chunking options (not by this library) will not verify: we only read back
what we wrote.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Literal

from multiformats import CID

from agentgpt.errors import InvalidArgument
from agentgpt.ipfs.errors import CidMismatchError

#: Payload codecs a store accepts: "raw" = opaque bytes (UnixFS file), "dag-cbor" = one IPLD block.
Codec = Literal["raw", "dag-cbor"]
CODECS: tuple[str, ...] = ("raw", "dag-cbor")

CHUNK_SIZE = 262_144  # chunker "size-262144" (Kubo's default chunk size, pinned explicitly)
MAX_LINKS = 174  # Kubo/js-ipfs balanced layout: links per internal node
#: Largest single block Kubo accepts by default (block/put and dag/put refuse bigger ones).
MAX_BLOCK_SIZE = 1_048_576


_CODEC_CODES = {"raw": 0x55, "dag-pb": 0x70, "dag-cbor": 0x71}  # all single-byte varints
_SHA2_256_PREFIX = b"\x12\x20"  # multihash: sha2-256, 32-byte digest


def _cid_bytes(codec: str, block: bytes | memoryview) -> bytes:
    """Binary CIDv1 (sha2-256). Built by hand: the multiformats objects cost ~40x more per small block."""
    return bytes((1, _CODEC_CODES[codec])) + _SHA2_256_PREFIX + hashlib.sha256(block).digest()


def _b32(cid_bytes: bytes) -> str:
    """Multibase base32 (lower case, unpadded, prefix "b"): Kubo's canonical CIDv1 text."""
    return "b" + base64.b32encode(cid_bytes).decode().lower().rstrip("=")


def raw_cid(data: bytes) -> str:
    """CIDv1 (raw, sha2-256) of `data` as a single block."""
    return _b32(_cid_bytes("raw", data))


def dag_cbor_cid(block: bytes) -> str:
    """CIDv1 (dag-cbor, sha2-256) of an already encoded dag-cbor block."""
    return _b32(_cid_bytes("dag-cbor", block))


# ---------------------------------------------------------------- UnixFS (dag-pb) file trees
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_varint(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def _field_bytes(num: int, value: bytes) -> bytes:
    return _varint((num << 3) | 2) + _varint(len(value)) + value


# (binary cid, cumulative block size "Tsize", payload bytes covered)
_Node = tuple[bytes, int, int]


def _parent(children: list[_Node]) -> _Node:
    """One UnixFS File node over `children`, encoded like go/js dag-pb (Links before Data, empty Name)."""
    filesize = sum(c[2] for c in children)
    unixfs = (
        _field_varint(1, 2)  # Type = File
        + _field_varint(3, filesize)
        + b"".join(_field_varint(4, c[2]) for c in children)  # blocksizes (unpacked, proto2)
    )
    links = b"".join(
        _field_bytes(2, _field_bytes(1, c[0]) + _field_bytes(2, b"") + _field_varint(3, c[1]))
        for c in children
    )
    block = links + _field_bytes(1, unixfs)
    return (_cid_bytes("dag-pb", block), len(block) + sum(c[1] for c in children), filesize)


def file_cid(data: bytes) -> str:
    """The CID ``ipfs add --cid-version=1 --raw-leaves --chunker=size-262144`` gives for `data`.

    Single-chunk payloads (including empty) are their own raw leaf; bigger ones get a balanced dag-pb tree.
    """
    view = memoryview(data)
    leaves: list[_Node] = []
    for off in range(0, max(len(data), 1), CHUNK_SIZE):
        chunk = view[off : off + CHUNK_SIZE]
        leaves.append((_cid_bytes("raw", chunk), len(chunk), len(chunk)))
    if len(leaves) == 1:
        return _b32(leaves[0][0])
    level = leaves
    while len(level) > 1:
        level = [_parent(level[i : i + MAX_LINKS]) for i in range(0, len(level), MAX_LINKS)]
    return _b32(level[0][0])


# ---------------------------------------------------------------- public helpers
def compute_cid(data: bytes, codec: Codec) -> str:
    """The CID a store must answer for `put(data, codec)`."""
    if codec == "raw":
        return file_cid(data)
    if codec == "dag-cbor":
        return dag_cbor_cid(data)
    raise InvalidArgument("codec", f"unsupported codec {codec!r}; use one of {', '.join(CODECS)}")


def parse(cid: str | CID) -> CID:
    """Parse any CID text (base58btc CIDv0 ``Qm..``, CIDv1 in any multibase) or object; bad input is the
    caller's fault (InvalidArgument on field ``cid``)."""
    if isinstance(cid, CID):
        return cid
    if not isinstance(cid, str) or not cid.strip():
        raise InvalidArgument("cid", "must be a non-empty CID string")
    return _parse_text(cid.strip())


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> CID:
    # Cached: the same few CIDs are parsed several times per operation, and multiformats is slow.
    try:
        return CID.decode(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument("cid", f"{text!r} is not a valid CID: {exc}") from None


def normalize(cid: str | CID) -> str:
    """Any CID as CIDv1 base32 (js-ipfs answers base58btc; Kubo and our anchors use base32)."""
    c = parse(cid)
    return _b32(bytes(c.set(version=1) if c.version == 0 else c))


def codec_of(cid: str | CID) -> str:
    """The multicodec name of a CID: "raw", "dag-cbor", "dag-pb", ..."""
    return str(parse(cid).codec.name)


def verify(cid: str | CID, data: bytes) -> str:
    """Check that `data` is the content named by `cid`; return the normalised CID.

    raw / dag-cbor: sha2-256 of the block. dag-pb: the UnixFS file tree rebuilt from `data` with this
    library's chunking (see module doc). Raises CidMismatchError on any difference.
    """
    c = parse(cid)
    expected = normalize(c)
    if c.hashfun.name != "sha2-256":
        raise InvalidArgument("cid", f"{expected}: unsupported hash {c.hashfun.name}; only sha2-256 is used")
    codec = c.codec.name
    if codec == "raw":
        actual = raw_cid(data)
    elif codec == "dag-cbor":
        actual = dag_cbor_cid(data)
    elif codec == "dag-pb":
        actual = file_cid(data)
    else:
        raise InvalidArgument(
            "cid", f"{expected}: unsupported codec {codec}; expected raw, dag-cbor or dag-pb"
        )
    if actual != expected:
        raise CidMismatchError(
            f"content does not match CID {expected}: its {len(data)} bytes hash to {actual}",
            expected=expected,
            actual=actual,
        )
    return expected
