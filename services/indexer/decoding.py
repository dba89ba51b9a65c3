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

from agentgpt.canonical import canonical_json_ascii
from agentgpt.contracts import load_artifact

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,16}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DATA = re.compile(r"0x[0-9a-fA-F]*")


#: Hex digit -> 0x20 where EIP-55 upper-cases (digest nibble >= 8) / where the digit is a letter.
_UPPER_NIBBLE = str.maketrans("0123456789abcdef", "\0" * 8 + " " * 8)
_LETTER = str.maketrans("0123456789abcdef", "\0" * 10 + " " * 6)


@lru_cache(maxsize=65536)
def to_checksum_address(address: str) -> str:
    """EIP-55 is the decoder's hottest path: cached (the same addresses recur in every log), hashed with
    pycryptodome directly and cased with integer masks (eth_utils' generic conversions, and
    pycryptodome's hexdigest, cost several times more per address).

    Lower-case ASCII letters differ from upper-case ones by the 0x20 bit: the address's bytes are
    XORed with 0x20 where the digest's nibble is >= 8 and the address's digit is a letter.
    """
    body = address[2:].lower() if address.startswith(("0x", "0X")) else address.lower()
    if len(body) != 40 or not body.isascii():
        return str(_to_checksum_address(address))  # let eth_utils raise its error
    raw = body.encode()
    digest = _keccak256.new(digest_bits=256, data=raw).digest().hex()
    flip = int.from_bytes(digest[:40].translate(_UPPER_NIBBLE).encode(), "big") & int.from_bytes(
        body.translate(_LETTER).encode(), "big"
    )
    return "0x" + (int.from_bytes(raw, "big") ^ flip).to_bytes(40, "big").decode()


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


def _quantity(value: Any, what: str, memo: dict[str, int] | None = None) -> int:
    if memo is not None:
        known = memo.get(value) if isinstance(value, str) else None
        if known is not None:
            return known
    if not isinstance(value, str) or _QUANTITY.fullmatch(value) is None:
        raise SkippedLog("malformed", f"{what} is not a hex quantity: {str(value)[:80]!r}")
    n = int(value, 16)
    if memo is not None:
        memo[value] = n
    return n


class LogParser:
    """Validates eth_getLogs entries (`parse`), one instance per batch: it remembers the strings it has
    already validated, because within a batch the same block numbers, block and transaction hashes,
    addresses, log indexes and topics recur in many logs (a dict hit costs far less than a regex)."""

    __slots__ = ("addresses", "datas", "hexes", "quantities")

    def __init__(self) -> None:
        self.hexes: dict[str, str] = {}  # raw hash / topic -> lower-case
        self.quantities: dict[str, int] = {}  # raw quantity -> int
        self.addresses: dict[str, str] = {}  # raw address -> checksummed
        self.datas: dict[str, str] = {}  # raw data -> lower-case (many events' data recur verbatim)

    def parse(self, raw: Any) -> RawLog:
        """The validated log; SkippedLog("malformed") if any field is missing or wrong."""
        if not isinstance(raw, dict):
            raise SkippedLog("malformed", f"log is not an object: {str(raw)[:80]!r}")
        topics = raw.get("topics")
        if not isinstance(topics, list) or not 0 < len(topics) <= 4:
            raise SkippedLog("malformed", f"topics: {str(topics)[:80]!r}")
        data = raw.get("data", "0x")
        lowered = self.datas.get(data) if isinstance(data, str) else None
        if lowered is None:
            if not isinstance(data, str) or len(data) % 2 or _DATA.fullmatch(data) is None:
                raise SkippedLog("malformed", f"data is not hex bytes: {str(data)[:80]!r}")
            lowered = self.datas[data] = data.lower()
        hexes, quantities = self.hexes, self.quantities
        number: Any = raw.get("blockNumber")
        block: Any = raw.get("blockHash")
        tx: Any = raw.get("transactionHash")
        index: Any = raw.get("logIndex")
        address: Any = raw.get("address")
        try:
            # Remembered strings first (a miss, or a value that is not a string, takes the checked path).
            return RawLog(
                quantities.get(number) or _quantity(number, "blockNumber", quantities),
                hexes.get(block) or _hex(block, "blockHash", _HASH, hexes),
                hexes.get(tx) or _hex(tx, "transactionHash", _HASH, hexes),
                quantities.get(index) or _quantity(index, "logIndex", quantities),
                self.addresses.get(address) or self._address(address),
                tuple([hexes.get(t) or _hex(t, "topic", _HASH, hexes) for t in topics]),
                lowered,
            )
        except TypeError:  # an unhashable value (a list or an object) where a string belongs
            return RawLog(
                _quantity(number, "blockNumber"),
                _hex(block, "blockHash", _HASH, None),
                _hex(tx, "transactionHash", _HASH, None),
                _quantity(index, "logIndex"),
                to_checksum_address(_hex(address, "address", _ADDRESS, None)),
                tuple([_hex(t, "topic", _HASH, None) for t in topics]),
                lowered,
            )

    def _address(self, value: Any) -> str:
        address = to_checksum_address(_hex(value, "address", _ADDRESS, None))
        self.addresses[value] = address
        return address


def parse_log(raw: Any, parser: LogParser | None = None) -> RawLog:
    """Validate one eth_getLogs entry; SkippedLog("malformed") if any field is missing or wrong.

    `parser` (optional, one per batch) remembers strings already validated; see `LogParser`.
    """
    return (parser or LogParser()).parse(raw)


def _canonical_type(param: dict[str, Any]) -> str:
    t = str(param["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in param["components"]) + ")" + t[5:]
    return t


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


def _signed(word: str, bits: int, what: str) -> str:
    n = int(word, 16)
    if n >> 255:
        n -= 1 << 256
    if not -(1 << (bits - 1)) <= n < (1 << (bits - 1)):
        raise SkippedLog("undecodable", f"{what}: int{bits} out of range")
    return str(n)


def _word_source(typ: str, s: str, i: int, what: str) -> tuple[list[str], str]:
    """Python source decoding the static ABI word of type `typ` at `s[i : i + 64]` (hex text, already
    validated as hex, lower-case): (statements checking padding and range, the value's expression).
    The value is JSON-ready: digits for integers, 0x-hex for bytes, checksummed addresses, bools."""

    def bad(message: str) -> str:
        return f"    raise SkippedLog('undecodable', {what + ': ' + message!r})"

    if typ == "address":
        return [
            f"if not {s}.startswith(Z24, {i}):",
            bad("address with dirty upper bytes"),
        ], (f"checksum('0x' + {s}[{i + 24}:{i + 64}])")
    if typ == "bool":
        return [
            f"if not ({s}.startswith(Z63, {i}) and {s}[{i + 63}] in '01'):",
            bad("bool is not 0 or 1"),
        ], f"{s}[{i + 63}] == '1'"
    if typ.startswith("uint"):
        bits = int(typ[4:] or 256)
        pad = 64 - bits // 4
        value = f"str(int({s}[{i + pad}:{i + 64}], 16))"
        if pad == 0:
            return [], value
        return [
            f"if not {s}.startswith({'0' * pad!r}, {i}):",
            bad(f"{typ} out of range"),
        ], value
    if typ.startswith("int"):
        return [], f"signed({s}[{i}:{i + 64}], {int(typ[3:] or 256)}, {what!r})"
    if typ.startswith("bytes") and typ != "bytes":
        size = 2 * int(typ[5:])
        checks = (
            [
                f"if not {s}.startswith({'0' * (64 - size)!r}, {i + size}):",
                bad(f"{typ} with dirty lower bytes"),
            ]
            if size < 64
            else []
        )
        return checks, f"'0x' + {s}[{i}:{i + size}]"
    raise KeyError(typ)


_DECODER_GLOBALS: dict[str, Any] = {
    "SkippedLog": SkippedLog,
    "checksum": to_checksum_address,
    "signed": _signed,
    "Z24": "0" * 24,
    "Z63": "0" * 63,
}


def _compile_decoder(event: EventAbi) -> Callable[[tuple[str, ...], str], tuple[dict[str, Any], str]]:
    """One Python function decoding `event`'s logs: (topics, data hex) -> (JSON-ready args, their
    canonical JSON text).

    Generated once per event from its ABI, so decoding a log is straight-line slicing and int() calls:
    no per-word function calls, type dispatch or loops (the hot path of ingestion; eth_abi's generic
    decoder costs ~10x more, a table-driven loop ~2x). Dynamic data is left to eth_abi (returns the
    topics' args and "" for the JSON); static data and the JSON text are built here: a static event's
    values are digits, 0x-hex or bools, which need no escaping, so its canonical JSON is a join
    (json.dumps costs ~5x more). The unit tests compare this with eth_abi + json.dumps on every event.
    """
    name = event.name
    lines = [
        "def decode(topics, data):",
        f"    if len(topics) != {1 + len(event.indexed)}:",
        f"        raise SkippedLog('undecodable', {name!r} + f': {{len(topics) - 1}} indexed topics, ABI has {len(event.indexed)}')",
    ]
    values: list[tuple[str, str, bool]] = []  # (arg name, variable, is bool)
    for k, (arg, typ) in enumerate(event.indexed):
        var = f"v{len(values)}"
        lines.append(f"    t{k + 1} = topics[{k + 1}]")
        if _STATIC.match(typ):
            checks, expr = _word_source(typ, f"t{k + 1}", 2, f"{name}.{arg}")
        else:
            checks, expr = [], f"t{k + 1}"  # dynamic indexed values are topics holding their hash
        lines += ["    " + c for c in checks] + [f"    {var} = {expr}"]
        values.append((arg, var, typ == "bool"))
    if event.static_data:
        hex_len = 2 + 64 * len(event.data_types)
        lines += [
            f"    if len(data) != {hex_len}:",
            f"        raise SkippedLog('undecodable', {name!r} + f': {{(len(data) - 2) // 2}} data bytes, ABI needs {32 * len(event.data_types)}')",
        ]
        for j, (arg, typ) in enumerate(zip(event.data_names, event.data_types, strict=True)):
            var = f"v{len(values)}"
            checks, expr = _word_source(typ, "data", 2 + 64 * j, name)
            lines += ["    " + c for c in checks] + [f"    {var} = {expr}"]
            values.append((arg, var, typ == "bool"))
    args = "{" + ", ".join(f"{arg!r}: {var}" for arg, var, _ in values) + "}"
    if event.static_data:
        parts: list[str] = []
        text = "{"
        for n, (arg, var, is_bool) in enumerate(sorted(values)):
            text += ("," if n else "") + json.dumps(arg) + ":"
            if is_bool:
                parts += [repr(text), f"('true' if {var} else 'false')"]
                text = ""
            else:
                parts += [repr(text + '"'), var]
                text = '"'
        parts.append(repr(text + "}"))
        lines.append(f"    return {args}, {' + '.join(parts)}")
    else:
        lines.append(f"    return {args}, ''")
    namespace = dict(_DECODER_GLOBALS)
    exec(compile("\n".join(lines), f"<decoder of {name}>", "exec"), namespace)
    return namespace["decode"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class EventAbi:
    name: str
    topic0: str
    indexed: tuple[tuple[str, str], ...]  # (name, type)
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]
    static_data: bool = False
    # Generated in __post_init__ (see _compile_decoder).
    _decode: Callable[[tuple[str, ...], str], tuple[dict[str, Any], str]] = field(
        init=False, repr=False, compare=False
    )

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
        object.__setattr__(self, "_decode", _compile_decoder(self))

    def decode(self, log: RawLog) -> dict[str, Any]:
        return self.decode_with_json(log)[0]

    def decode_with_json(self, log: RawLog) -> tuple[dict[str, Any], str]:
        """The log's arguments (JSON-ready) and their canonical JSON text."""
        args, text = self._decode(log.topics, log.data_hex)
        if self.static_data:
            return args, text
        try:
            values = abi_decode(list(self.data_types), log.data, strict=True)
        except Exception as exc:
            raise SkippedLog("undecodable", f"{self.name}: {type(exc).__name__}: {exc}"[:200]) from None
        for name, value in zip(self.data_names, values, strict=True):
            args[name] = _jsonable(value)
        return args, canonical_json_ascii(args)


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
        if abi.static_data:
            args, args_json = abi._decode(log.topics, log.data_hex)
        else:
            args, args_json = abi.decode_with_json(log)
        session_id = args.get("sessionId", "")
        if not session_id and abi.name in ("Transfer", "Approval") and "tokenId" in args:
            session_id = args["tokenId"]  # the factory's ERC-721 token id is the session id
        return DecodedEvent(log, abi.name, args, str(session_id), args_json)
