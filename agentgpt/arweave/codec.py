"""Arweave's wire format, computed locally: base64url, the deep hash, the data_root merkle tree, and format-2
transactions (signature data, id, JSON form).

Each function is the Python twin of one in arweave-js 1.15.7 (named in its docstring); the package docstring
(agentgpt.arweave) states the algorithms in full, and tests/unit/test_arweave.py checks them against vectors
arweave-js itself produced. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

#: A deep-hash input: bytes, or a list of deep-hash inputs (nested to any depth).
DeepHashable: TypeAlias = bytes | Sequence["DeepHashable"]

MAX_CHUNK_SIZE = 256 * 1024
MIN_CHUNK_SIZE = 32 * 1024
NOTE_SIZE = 32
#: Ids, addresses and data roots are 32 bytes: 43 base64url characters.
ID_LENGTH = 43

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class FormatError(ValueError):
    """A field is not what the Arweave format allows (bad base64url, wrong length, not a number)."""


# ---------------------------------------------------------------------------------------------- base64url
def b64url_encode(data: bytes) -> str:
    """base64url without padding (arweave-js `bufferTob64Url`)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, field: str = "value") -> bytes:
    """The bytes of unpadded (or padded) base64url `text`; FormatError naming `field` if it is not that."""
    stripped = text.rstrip("=")
    if not _B64URL.fullmatch(stripped) or len(stripped) % 4 == 1:
        raise FormatError(f"{field}: not base64url: {text[:60]!r}")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def tx_id_bytes(tx_id: str) -> bytes:
    """The 32 bytes behind a transaction id (what the chain anchors as a bytes32)."""
    if len(tx_id) != ID_LENGTH:
        raise FormatError(
            f"tx_id: an Arweave transaction id is {ID_LENGTH} base64url characters, got {tx_id!r}"
        )
    raw = b64url_decode(tx_id, "tx_id")
    if (
        b64url_encode(raw) != tx_id
    ):  # the last character carries 2 unused bits: only one spelling is canonical
        raise FormatError(f"tx_id: {tx_id!r} is not a canonical base64url encoding of 32 bytes")
    return raw


def tx_id_from_bytes(raw: bytes) -> str:
    """The transaction id for 32 bytes read back from the chain (inverse of tx_id_bytes)."""
    if len(raw) != 32:
        raise FormatError(f"tx_id: expected 32 bytes, got {len(raw)}")
    return b64url_encode(bytes(raw))


# ---------------------------------------------------------------------------------------------- deep hash
def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def deep_hash(item: DeepHashable) -> bytes:
    """SHA-384 deep hash (arweave-js `lib/deepHash.ts`): what a format-2 transaction signs.

    blob b:  sha384(sha384(b"blob" + ascii(len(b))) + sha384(b))
    list l:  acc = sha384(b"list" + ascii(len(l))); for each x in l: acc = sha384(acc + deep_hash(x)); acc
    """
    if isinstance(item, bytes | bytearray | memoryview):
        data = bytes(item)
        return _sha384(_sha384(b"blob" + str(len(data)).encode()) + _sha384(data))
    if isinstance(item, str):
        raise TypeError("deep_hash takes bytes or lists of them, not str: encode it first")
    acc = _sha384(b"list" + str(len(item)).encode())
    for child in item:
        acc = _sha384(acc + deep_hash(child))
    return acc


# ---------------------------------------------------------------------------------------------- data_root
def _sha256(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def _note(value: int) -> bytes:
    """An offset as the tree hashes it: 32 bytes, big-endian (arweave-js `intToBuffer`)."""
    return value.to_bytes(NOTE_SIZE, "big")


def chunk_boundaries(size: int) -> list[tuple[int, int]]:
    """(start, end) byte ranges of the chunks of `size` bytes of data (arweave-js `chunkData`).

    Chunks are 256 KiB, except that when what would follow a full chunk is shorter than 32 KiB the two are
    split evenly instead (the first gets the odd byte). The last chunk is whatever remains: for data that
    is a whole number of 256 KiB chunks (and for no data) that is an empty chunk, which is part of the tree.
    """
    ranges: list[tuple[int, int]] = []
    cursor = 0
    rest = size
    while rest >= MAX_CHUNK_SIZE:
        chunk = MAX_CHUNK_SIZE
        after = rest - MAX_CHUNK_SIZE
        if 0 < after < MIN_CHUNK_SIZE:
            chunk = -(-rest // 2)  # ceil
        ranges.append((cursor, cursor + chunk))
        cursor += chunk
        rest -= chunk
    ranges.append((cursor, cursor + rest))
    return ranges


@dataclasses.dataclass(frozen=True)
class _Node:
    id: bytes
    max_byte_range: int


def merkle_root(data: bytes) -> bytes:
    """Root of the chunk tree of `data` (arweave-js `merkle.computeRootHash`).

    leaf:    sha256(sha256(sha256(chunk)) + sha256(note(end)))
    branch:  sha256(sha256(left.id) + sha256(right.id) + sha256(note(left.end))), its end is right.end
    Each layer pairs nodes left to right; an odd last node moves up unchanged; the last one left is the root.
    """
    view = memoryview(data)
    layer = [
        _Node(_sha256(_sha256(_sha256(view[start:end])) + _sha256(_note(end))), end)
        for start, end in chunk_boundaries(len(data))
    ]
    while len(layer) > 1:
        nxt: list[_Node] = []
        for i in range(0, len(layer), 2):
            if i + 1 == len(layer):
                nxt.append(layer[i])
                continue
            left, right = layer[i], layer[i + 1]
            branch_id = _sha256(_sha256(left.id) + _sha256(right.id) + _sha256(_note(left.max_byte_range)))
            nxt.append(_Node(branch_id, right.max_byte_range))
        layer = nxt
    return layer[0].id


def data_root(data: bytes) -> bytes:
    """The data_root a transaction carries for `data`: the merkle root, or empty for no data (arweave-js
    `Transaction.prepareChunks`)."""
    return merkle_root(data) if data else b""


# ---------------------------------------------------------------------------------------------- transactions
def _winston(value: str, field: str) -> str:
    if not value.isdigit() or not value.isascii():
        raise FormatError(f"{field}: expected a whole number of winston as decimal digits, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Transaction:
    """A format-2 Arweave transaction, fields as raw bytes (base64url only on the wire).

    `signature` and `id` are empty until `with_signature`; `data` travels inline with the transaction.
    """

    owner: bytes
    last_tx: bytes
    reward: str
    tags: tuple[tuple[bytes, bytes], ...]
    data: bytes
    data_size: int
    data_root: bytes
    target: bytes = b""
    quantity: str = "0"
    signature: bytes = b""
    format: int = 2

    @classmethod
    def create(
        cls,
        *,
        owner: bytes,
        data: bytes,
        tags: Sequence[tuple[str, str]] | Mapping[str, str],
        reward: str,
        last_tx: bytes,
    ) -> Transaction:
        """An unsigned transaction carrying `data`, with its data_size and data_root computed."""
        pairs = tags.items() if isinstance(tags, Mapping) else tags
        return cls(
            owner=owner,
            last_tx=last_tx,
            reward=_winston(reward, "reward"),
            tags=tuple((name.encode(), value.encode()) for name, value in pairs),
            data=bytes(data),
            data_size=len(data),
            data_root=data_root(data),
        )

    @property
    def id(self) -> str:
        """base64url(sha256(signature)); empty while unsigned."""
        return b64url_encode(_sha256(self.signature)) if self.signature else ""

    @property
    def owner_address(self) -> str:
        """The wallet address of the owner: base64url(sha256(owner modulus))."""
        return b64url_encode(_sha256(self.owner))

    def signature_data(self) -> bytes:
        """What the owner signs (arweave-js `Transaction.getSignatureData`, format 2): the deep hash of
        [b"2", owner, target, quantity, reward, last_tx, [[name, value], ...], data_size, data_root]."""
        if self.format != 2:
            raise FormatError(f"format: only format-2 transactions are supported, got {self.format}")
        return deep_hash(
            [
                str(self.format).encode(),
                self.owner,
                self.target,
                self.quantity.encode(),
                self.reward.encode(),
                self.last_tx,
                [[name, value] for name, value in self.tags],
                str(self.data_size).encode(),
                self.data_root,
            ]
        )

    def with_signature(self, signature: bytes) -> Transaction:
        return dataclasses.replace(self, signature=signature)

    def to_json(self, *, include_data: bool = True) -> dict[str, Any]:
        """The JSON a gateway's POST /tx takes (and GET /tx/<id> answers, without data)."""
        body: dict[str, Any] = {
            "format": self.format,
            "id": self.id,
            "last_tx": b64url_encode(self.last_tx),
            "owner": b64url_encode(self.owner),
            "tags": [{"name": b64url_encode(n), "value": b64url_encode(v)} for n, v in self.tags],
            "target": b64url_encode(self.target),
            "quantity": self.quantity,
            "data_size": str(self.data_size),
            "data_root": b64url_encode(self.data_root),
            "reward": self.reward,
            "signature": b64url_encode(self.signature),
        }
        if include_data:
            body["data"] = b64url_encode(self.data)
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any], data: bytes = b"") -> Transaction:
        """A transaction from a gateway's header JSON, with `data` fetched separately (FormatError if a
        field is malformed). The stated data_size and data_root are kept as they are: verify() checks them."""
        try:
            fmt = int(body.get("format", 2))
            tags = body.get("tags") or []
            if not isinstance(tags, list):
                raise FormatError("tags: expected a list")
            return cls(
                format=fmt,
                owner=b64url_decode(str(body["owner"]), "owner"),
                target=b64url_decode(str(body.get("target") or ""), "target"),
                quantity=_winston(str(body.get("quantity") or "0"), "quantity"),
                reward=_winston(str(body["reward"]), "reward"),
                last_tx=b64url_decode(str(body.get("last_tx") or ""), "last_tx"),
                tags=tuple(
                    (b64url_decode(str(t["name"]), "tags.name"), b64url_decode(str(t["value"]), "tags.value"))
                    for t in tags
                ),
                data=bytes(data),
                data_size=int(str(body.get("data_size") or "0")),
                data_root=b64url_decode(str(body.get("data_root") or ""), "data_root"),
                signature=b64url_decode(str(body["signature"]), "signature"),
            )
        except KeyError as exc:
            raise FormatError(f"{exc.args[0]}: missing from the transaction") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"malformed transaction: {exc}") from None
