"""Turns raw logs into named events with JSON arguments, using the project's contract ABIs.

Which logs are ours: logs of the configured contracts (SessionFactory, ExecutorRegistry,
AnchorRegistry, by address), plus the session accounts' `Executed` events. Session accounts are
clones created by the factory, one per session, at addresses known only from the factory's
`SessionCreated(…, account)` event; so the account events are fetched by topic (any address) and kept
only if the emitter is an account the factory created (see `Follower`). Anything else is skipped
with a reason and counted, never guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from Crypto.Hash import keccak as _keccak256
from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address as _to_checksum_address
from eth_utils.crypto import keccak

from agentgpt.contracts import load_artifact

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,16}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DATA = re.compile(r"0x[0-9a-fA-F]*")


@lru_cache(maxsize=65536)
def to_checksum_address(address: str) -> str:
    """EIP-55 is the decoder's hottest path: cached (the same addresses recur in every log), and hashed
    with pycryptodome directly (eth_utils' generic conversions cost ~5x more per address)."""
    body = address[2:].lower() if address.startswith(("0x", "0X")) else address.lower()
    if len(body) != 40:
        return str(_to_checksum_address(address))  # let eth_utils raise its error
    digest = _keccak256.new(digest_bits=256, data=body.encode()).hexdigest()
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(body, digest, strict=False))


#: Contracts followed by address, by their manifest name.
FOLLOWED_CONTRACTS = ("SessionFactory", "ExecutorRegistry", "AnchorRegistry")
#: Emitted by per-session account clones, followed by topic.
ACCOUNT_CONTRACT = "SessionAccount"


class SkippedLog(Exception):
    """A log that is not indexed; `reason` is a metric label (malformed, unknown_event, undecodable)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RawLog(NamedTuple):
    """The parts of an eth_getLogs entry the indexer keeps, validated.

    A NamedTuple, not a dataclass: ingestion builds one per log, and a frozen dataclass costs ~4x more
    to construct. `data_hex` stays hex: the decoder slices ABI words out of it without a bytes round trip.
    """

    block_number: int
    block_hash: str  # 0x-prefixed lower-case hex
    tx_hash: str
    log_index: int
    address: str  # checksummed
    topics: tuple[str, ...]  # lower-case hex
    data_hex: str  # 0x-prefixed lower-case hex, even length

    @property
    def data(self) -> bytes:
        return bytes.fromhex(self.data_hex[2:])


class DecodedEvent(NamedTuple):
    log: RawLog
    name: str
    args: dict[str, Any]  # JSON-ready: ints as decimal strings, bytes as 0x hex, addresses checksummed
    session_id: str
    args_json: str  # `args` as canonical JSON (sorted keys, no spaces): what the store keeps


def canonical_json(args: dict[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"))


def _hex(value: Any, what: str, pattern: re.Pattern[str], memo: dict[str, str] | None) -> str:
    """`value` validated against `pattern` and lower-cased. `memo` remembers strings already checked:
    within one batch the same block hashes, tx hashes, addresses and topics recur in many logs."""
    if memo is not None:
        known = memo.get(value) if isinstance(value, str) else None
        if known is not None:
            return known
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise SkippedLog("malformed", f"{what} is not valid hex: {str(value)[:80]!r}")
    lowered = value.lower()
    if memo is not None:
        memo[value] = lowered
    return lowered


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or _QUANTITY.fullmatch(value) is None:
        raise SkippedLog("malformed", f"{what} is not a hex quantity: {str(value)[:80]!r}")
    return int(value, 16)


def parse_log(raw: Any, memo: dict[str, str] | None = None) -> RawLog:
    """Validate one eth_getLogs entry; SkippedLog("malformed") if any field is missing or wrong.

    `memo` (optional, one per batch) caches validated hex strings; see `_hex`.
    """
    if not isinstance(raw, dict):
        raise SkippedLog("malformed", f"log is not an object: {str(raw)[:80]!r}")
    topics = raw.get("topics")
    if not isinstance(topics, list) or not 0 < len(topics) <= 4:
        raise SkippedLog("malformed", f"topics: {str(topics)[:80]!r}")
    data = raw.get("data", "0x")
    if not isinstance(data, str) or len(data) % 2 or _DATA.fullmatch(data) is None:
        raise SkippedLog("malformed", f"data is not hex bytes: {str(data)[:80]!r}")
    address = _hex(raw.get("address"), "address", _ADDRESS, memo)
    return RawLog(
        _quantity(raw.get("blockNumber"), "blockNumber"),
        _hex(raw.get("blockHash"), "blockHash", _HASH, memo),
        _hex(raw.get("transactionHash"), "transactionHash", _HASH, memo),
        _quantity(raw.get("logIndex"), "logIndex"),
        to_checksum_address(address),
        tuple([_hex(t, "topic", _HASH, memo) for t in topics]),
        data.lower(),
    )


def _canonical_type(param: dict[str, Any]) -> str:
    t = str(param["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in param["components"]) + ")" + t[5:]
    return t


#: Reads one 32-byte ABI word, given as 64 lower-case hex digits, into its JSON-ready value.
WordDecoder = Callable[[str], Any]
_ZEROS = "0" * 64


def _word_decoder(typ: str) -> WordDecoder:
    """The decoder of one static ABI type, working on hex text (the RPC's own form): no bytes round
    trip, no per-word type dispatch. Raises ValueError if the padding or the range is wrong.

    The hot path of ingestion: eth_abi's generic decoder costs ~10x more for the same result.
    """
    if typ == "address":

        def address(w: str) -> str:
            if w[:24] != _ZEROS[:24]:
                raise ValueError("address with dirty upper bytes")
            return to_checksum_address("0x" + w[24:])

        return address
    if typ == "bool":

        def boolean(w: str) -> bool:
            if w[:63] != _ZEROS[:63] or w[63] not in "01":
                raise ValueError("bool is not 0 or 1")
            return w[63] == "1"

        return boolean
    if typ.startswith("uint"):
        bits = int(typ[4:] or 256)
        if bits == 256:
            return lambda w: str(int(w, 16))
        pad = 64 - bits // 4

        def uint(w: str) -> str:
            if w[:pad] != _ZEROS[:pad]:
                raise ValueError(f"{typ} out of range")
            return str(int(w, 16))

        return uint
    if typ.startswith("int"):
        bits = int(typ[3:] or 256)

        def sint(w: str) -> str:
            n = int(w, 16)
            if n >> 255:
                n -= 1 << 256
            if not -(1 << (bits - 1)) <= n < (1 << (bits - 1)):
                raise ValueError(f"{typ} out of range")
            return str(n)

        return sint
    if typ.startswith("bytes") and typ != "bytes":
        size = 2 * int(typ[5:])

        def fixed_bytes(w: str) -> str:
            if w[size:] != _ZEROS[size:]:
                raise ValueError(f"{typ} with dirty lower bytes")
            return "0x" + w[:size]

        return fixed_bytes
    raise KeyError(typ)


_STATIC = re.compile(
    r"^(address|bool|u?int(8|16|24|32|40|48|56|64|72|80|88|96|104|112|120|128|136|144|152|160|168|176|184|192|200|208|216|224|232|240|248|256)?|bytes([1-9]|[12][0-9]|3[0-2]))$"
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    return value


def _hash_topic(w: str) -> str:
    return "0x" + w  # dynamic indexed values are stored as their hash


@dataclass(frozen=True)
class EventAbi:
    name: str
    topic0: str
    indexed: tuple[tuple[str, str], ...]  # (name, type)
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]
    static_data: bool = False
    # Precomputed in __post_init__, so decoding a log is slicing and table lookups only.
    topic_decoders: tuple[tuple[str, WordDecoder], ...] = field(init=False, repr=False, compare=False)
    data_decoders: tuple[tuple[str, WordDecoder, int], ...] = field(init=False, repr=False, compare=False)
    data_hex_len: int = field(init=False, repr=False, compare=False)
    json_keys: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def from_abi(cls, item: dict[str, Any]) -> EventAbi:
        inputs = item["inputs"]
        signature = f"{item['name']}({','.join(_canonical_type(i) for i in inputs)})"
        return cls(
            name=item["name"],
            topic0="0x" + keccak(text=signature).hex(),
            indexed=tuple((i["name"], _canonical_type(i)) for i in inputs if i.get("indexed")),
            data_names=tuple(i["name"] for i in inputs if not i.get("indexed")),
            data_types=tuple(_canonical_type(i) for i in inputs if not i.get("indexed")),
            static_data=all(_STATIC.match(_canonical_type(i)) for i in inputs if not i.get("indexed")),
        )

    def __post_init__(self) -> None:
        topic_decoders = tuple(
            (name, _word_decoder(typ) if _STATIC.match(typ) else _hash_topic) for name, typ in self.indexed
        )
        data_decoders = (
            tuple(
                (name, _word_decoder(typ), 2 + 64 * i)
                for i, (name, typ) in enumerate(zip(self.data_names, self.data_types, strict=True))
            )
            if self.static_data
            else ()
        )
        names = sorted([*(n for n, _ in self.indexed), *self.data_names])
        object.__setattr__(self, "topic_decoders", topic_decoders)
        object.__setattr__(self, "data_decoders", data_decoders)
        object.__setattr__(self, "data_hex_len", 2 + 64 * len(self.data_types))
        # JSON keys in sorted order, already quoted: a static event's values are digits, 0x-hex or bools,
        # which need no escaping, so its canonical JSON is built by joining (json.dumps costs ~5x more).
        object.__setattr__(self, "json_keys", tuple((n, json.dumps(n) + ":") for n in names))

    def decode(self, log: RawLog) -> dict[str, Any]:
        return self.decode_with_json(log)[0]

    def decode_with_json(self, log: RawLog) -> tuple[dict[str, Any], str]:
        """The log's arguments (JSON-ready) and their canonical JSON text."""
        topics = log.topics
        decoders = self.topic_decoders
        if len(topics) != 1 + len(decoders):
            raise SkippedLog(
                "undecodable",
                f"{self.name}: {len(topics) - 1} indexed topics, ABI has {len(self.indexed)}",
            )
        args: dict[str, Any] = {}
        name = ""
        try:
            for (name, word), topic in zip(decoders, topics[1:], strict=True):
                args[name] = word(topic[2:])
        except ValueError as exc:
            raise SkippedLog("undecodable", f"{self.name}.{name}: {exc}") from None
        if not self.static_data:
            return self._decode_dynamic(log, args)
        data = log.data_hex
        if len(data) != self.data_hex_len:
            raise SkippedLog(
                "undecodable",
                f"{self.name}: {(len(data) - 2) // 2} data bytes, ABI needs {32 * len(self.data_types)}",
            )
        try:
            for name, word, at in self.data_decoders:
                args[name] = word(data[at : at + 64])
        except ValueError as exc:
            raise SkippedLog("undecodable", f"{self.name}: {exc}") from None
        parts = []
        for key, quoted in self.json_keys:
            value = args[key]
            if value is True:
                parts.append(quoted + "true")
            elif value is False:
                parts.append(quoted + "false")
            else:
                parts.append(quoted + '"' + value + '"')
        return args, "{" + ",".join(parts) + "}"

    def _decode_dynamic(self, log: RawLog, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        try:
            values = abi_decode(list(self.data_types), log.data, strict=True)
        except Exception as exc:
            raise SkippedLog("undecodable", f"{self.name}: {type(exc).__name__}: {exc}"[:200]) from None
        for name, value in zip(self.data_names, values, strict=True):
            args[name] = _jsonable(value)
        return args, canonical_json(args)


class EventDecoder:
    """Decodes the logs of a set of contracts (address -> ABI) and of session accounts (by topic)."""

    def __init__(
        self, contracts: dict[str, list[dict[str, Any]]], account_abi: list[dict[str, Any]] | None
    ) -> None:
        self.by_address: dict[str, dict[str, EventAbi]] = {}
        for address, abi in contracts.items():
            events = [
                EventAbi.from_abi(i) for i in abi if i.get("type") == "event" and not i.get("anonymous")
            ]
            self.by_address[to_checksum_address(address)] = {e.topic0: e for e in events}
        self.account_events: dict[str, EventAbi] = {}
        if account_abi is not None:
            for item in account_abi:
                if item.get("type") == "event":
                    e = EventAbi.from_abi(item)
                    self.account_events[e.topic0] = e

    @classmethod
    def for_chain(cls, contracts: dict[str, str]) -> EventDecoder:
        """The decoder for a chain's manifest `contracts` (name -> address), with the project's ABIs."""
        followed = {contracts[n]: load_artifact(n).abi for n in FOLLOWED_CONTRACTS if n in contracts}
        account_abi = load_artifact(ACCOUNT_CONTRACT).abi if "SessionFactory" in contracts else None
        return cls(followed, account_abi)

    @property
    def addresses(self) -> list[str]:
        return sorted(self.by_address)

    @property
    def account_topics(self) -> list[str]:
        return sorted(self.account_events)

    def decode(self, log: RawLog, known_accounts: set[str]) -> DecodedEvent:
        events = self.by_address.get(log.address)
        if events is None:
            if log.address not in known_accounts:
                raise SkippedLog(
                    "foreign", f"log of {log.address}, which is neither followed nor a session account"
                )
            events = self.account_events
        abi = events.get(log.topics[0])
        if abi is None:
            raise SkippedLog("unknown_event", f"topic {log.topics[0]} of {log.address} is in no ABI")
        args, args_json = abi.decode_with_json(log)
        session_id = args.get("sessionId", "")
        if not session_id and abi.name in ("Transfer", "Approval") and "tokenId" in args:
            session_id = args["tokenId"]  # the factory's ERC-721 token id is the session id
        return DecodedEvent(log, abi.name, args, str(session_id), args_json)
