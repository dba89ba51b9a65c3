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
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from Crypto.Hash import keccak as _keccak256
from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address as _to_checksum_address
from eth_utils.crypto import keccak

from agentgpt.contracts import load_artifact

_QUANTITY = re.compile(r"^0x[0-9a-fA-F]{1,16}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")


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


@dataclass(frozen=True)
class RawLog:
    """The parts of an eth_getLogs entry the indexer keeps, validated."""

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    address: str  # checksummed
    topics: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class DecodedEvent:
    log: RawLog
    name: str
    args: dict[str, Any]  # JSON-ready: ints as decimal strings, bytes as 0x hex, addresses checksummed
    session_id: str

    @property
    def args_json(self) -> str:
        return json.dumps(self.args, sort_keys=True, separators=(",", ":"))


def _hex(value: Any, what: str, length: int | None = None) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise SkippedLog("malformed", f"{what} is not hex: {str(value)[:80]!r}")
    if not _HEX.match(value):
        raise SkippedLog("malformed", f"{what} is not hex: {value[:80]!r}")
    if length is not None and len(value) != 2 + 2 * length:
        raise SkippedLog("malformed", f"{what} is not {length} bytes: {value[:80]!r}")
    return value.lower()


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise SkippedLog("malformed", f"{what} is not a hex quantity: {str(value)[:80]!r}")
    return int(value, 16)


def parse_log(raw: Any) -> RawLog:
    """Validate one eth_getLogs entry; SkippedLog("malformed") if any field is missing or wrong."""
    if not isinstance(raw, dict):
        raise SkippedLog("malformed", f"log is not an object: {str(raw)[:80]!r}")
    number = _quantity(raw.get("blockNumber"), "blockNumber")
    log_index = _quantity(raw.get("logIndex"), "logIndex")
    topics = raw.get("topics")
    if not isinstance(topics, list) or not 0 < len(topics) <= 4:
        raise SkippedLog("malformed", f"topics: {str(topics)[:80]!r}")
    return RawLog(
        block_number=number,
        block_hash=_hex(raw.get("blockHash"), "blockHash", 32),
        tx_hash=_hex(raw.get("transactionHash"), "transactionHash", 32),
        log_index=log_index,
        address=to_checksum_address(_hex(raw.get("address"), "address", 20)),
        topics=tuple(_hex(t, "topic", 32) for t in topics),
        data=bytes.fromhex(_hex(raw.get("data", "0x"), "data")[2:]),
    )


def _canonical_type(param: dict[str, Any]) -> str:
    t = str(param["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in param["components"]) + ")" + t[5:]
    return t


def _static_word(typ: str, word: bytes) -> Any:
    """One 32-byte ABI word of a static type, JSON-ready; ValueError if the padding or range is wrong.

    The hot path of ingestion: eth_abi's generic decoder costs ~10x more for the same result.
    """
    if typ == "address":
        if any(word[:12]):
            raise ValueError("address with dirty upper bytes")
        return to_checksum_address("0x" + word[12:].hex())
    if typ.startswith("uint"):
        n = int.from_bytes(word, "big")
        if n >> int(typ[4:] or 256):
            raise ValueError(f"{typ} out of range")
        return str(n)
    if typ.startswith("int"):
        bits = int(typ[3:] or 256)
        n = int.from_bytes(word, "big", signed=True)
        if not -(1 << (bits - 1)) <= n < (1 << (bits - 1)):
            raise ValueError(f"{typ} out of range")
        return str(n)
    if typ == "bool":
        if any(word[:31]) or word[31] > 1:
            raise ValueError("bool is not 0 or 1")
        return word[31] == 1
    if typ.startswith("bytes") and typ != "bytes":
        size = int(typ[5:])
        if any(word[size:]):
            raise ValueError(f"{typ} with dirty lower bytes")
        return "0x" + word[:size].hex()
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


@dataclass(frozen=True)
class EventAbi:
    name: str
    topic0: str
    indexed: tuple[tuple[str, str], ...]  # (name, type)
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]
    static_data: bool = False

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

    def decode(self, log: RawLog) -> dict[str, Any]:
        if len(log.topics) != 1 + len(self.indexed):
            raise SkippedLog(
                "undecodable",
                f"{self.name}: {len(log.topics) - 1} indexed topics, ABI has {len(self.indexed)}",
            )
        args: dict[str, Any] = {}
        for (name, typ), topic in zip(self.indexed, log.topics[1:], strict=True):
            raw = bytes.fromhex(topic[2:])
            if not _STATIC.match(typ):
                args[name] = "0x" + raw.hex()  # dynamic indexed values are stored as their hash
            else:
                try:
                    args[name] = _static_word(typ, raw)
                except ValueError as exc:
                    raise SkippedLog("undecodable", f"{self.name}.{name}: {exc}") from None
        data = log.data
        if self.static_data:
            if len(data) != 32 * len(self.data_types):
                raise SkippedLog(
                    "undecodable",
                    f"{self.name}: {len(data)} data bytes, ABI needs {32 * len(self.data_types)}",
                )
            try:
                for i, (name, typ) in enumerate(zip(self.data_names, self.data_types, strict=True)):
                    args[name] = _static_word(typ, data[32 * i : 32 * i + 32])
            except ValueError as exc:
                raise SkippedLog("undecodable", f"{self.name}: {exc}") from None
            return args
        try:
            values = abi_decode(list(self.data_types), data, strict=True)
        except Exception as exc:
            raise SkippedLog("undecodable", f"{self.name}: {type(exc).__name__}: {exc}"[:200]) from None
        for name, value in zip(self.data_names, values, strict=True):
            args[name] = _jsonable(value)
        return args


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
        args = abi.decode(log)
        session_id = args.get("sessionId", "")
        if not session_id and abi.name in ("Transfer", "Approval") and "tokenId" in args:
            session_id = args["tokenId"]  # the factory's ERC-721 token id is the session id
        return DecodedEvent(log=log, name=abi.name, args=args, session_id=str(session_id))
