"""Log decoding with the project's ABIs: real events decode, bad logs are skipped with a reason."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.address import to_checksum_address as reference_checksum

from agentgpt.errors import InvalidArgument
from services.indexer.decoding import EventAbi, EventDecoder, SkippedLog, parse_log, to_checksum_address
from services.indexer.queries import cid_text
from services.indexer.rpc import ChainRpcError, parse_header
from services.indexer.servicer import decode_page_token, encode_page_token
from services.indexer.store import StoredEvent

FACTORY = "0x" + "11" * 20
REGISTRY = "0x" + "22" * 20
ACCOUNT = to_checksum_address("0x" + "33" * 20)
DECODER = EventDecoder.for_chain({"SessionFactory": FACTORY, "ExecutorRegistry": REGISTRY})


def topic(decoder: EventDecoder, address: str, name: str) -> EventAbi:
    events = decoder.by_address[to_checksum_address(address)] if address else decoder.account_events
    return next(e for e in events.values() if e.name == name)


def raw_log(address: str, topics: list[str], data: bytes, /, **over: Any) -> dict[str, Any]:
    return {
        "blockNumber": "0x1a",
        "blockHash": "0x" + "ab" * 32,
        "transactionHash": "0x" + "cd" * 32,
        "logIndex": "0x3",
        "address": address,
        "topics": topics,
        "data": "0x" + data.hex(),
        **over,
    }


def word(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def test_session_created_decodes_to_json_args_and_session_id() -> None:
    ev = topic(DECODER, FACTORY, "SessionCreated")
    owner = "0x" + "44" * 20
    data = encode(["bytes32", "uint256", "address"], [b"\x55" * 32, 10**30, ACCOUNT])
    log = parse_log(raw_log(FACTORY, [ev.topic0, word(7), "0x" + "00" * 12 + "44" * 20], data))
    d = DECODER.decode(log, set())
    assert d.name == "SessionCreated" and d.session_id == "7"
    assert d.args == {
        "sessionId": "7",
        "owner": reference_checksum(owner),
        "workflowHash": "0x" + "55" * 32,
        "budget": str(10**30),
        "account": ACCOUNT,
    }
    assert (log.block_number, log.log_index) == (26, 3)


def test_dynamic_data_goes_through_the_abi_decoder() -> None:
    ev = topic(DECODER, FACTORY, "CheckpointAnchored")
    cid = bytes([1, 0x71, 0x12, 0x20]) + b"\x09" * 32
    data = encode(["address", "uint32", "bytes32", "bytes"], [ACCOUNT, 3, b"\x01" * 32, cid])
    d = DECODER.decode(parse_log(raw_log(FACTORY, [ev.topic0, word(31337), word(5), word(2)], data)), set())
    assert d.args["cid"] == "0x" + cid.hex() and d.args["seq"] == "2" and d.args["epoch"] == "3"
    assert cid_text(d.args["cid"]).startswith("bafyrei")


def test_session_account_events_only_from_known_accounts() -> None:
    ev = topic(DECODER, "", "Executed")
    data = encode(["uint256", "bytes4", "uint64", "uint8"], [0, b"\xa9\x05\x9c\xbb", 7, 1])
    log = parse_log(raw_log(ACCOUNT, [ev.topic0, word(1), word(2), word(3)], data))
    with pytest.raises(SkippedLog) as skip:
        DECODER.decode(log, set())
    assert skip.value.reason == "foreign"
    args = DECODER.decode(log, {ACCOUNT}).args
    assert (args["selector"], args["taskSeq"], args["step"]) == ("0xa9059cbb", "7", "1")  # ints as strings


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"topics": "x"}, "malformed"),
        ({"topics": []}, "malformed"),
        ({"blockHash": "0x12"}, "malformed"),
        ({"logIndex": None}, "malformed"),
        ({"address": "0xnothex"}, "malformed"),
        ({"data": "0x123"}, "malformed"),
    ],
)
def test_malformed_logs(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(SkippedLog) as skip:
        parse_log(raw_log(FACTORY, ["0x" + "00" * 32], b"", **over))
    assert skip.value.reason == reason


def test_unknown_and_undecodable_events() -> None:
    with pytest.raises(SkippedLog) as skip:
        DECODER.decode(parse_log(raw_log(FACTORY, ["0x" + "ee" * 32], b"")), set())
    assert skip.value.reason == "unknown_event"
    bonded = topic(DECODER, REGISTRY, "Bonded")
    for data in (b"\x00" * 10, b"\x00" * 96):  # too short; too long
        with pytest.raises(SkippedLog) as skip:
            DECODER.decode(parse_log(raw_log(REGISTRY, [bonded.topic0, word(1)], data)), set())
        assert skip.value.reason == "undecodable"
    dirty_address = "0x" + "ff" * 32
    with pytest.raises(SkippedLog) as skip:
        DECODER.decode(parse_log(raw_log(REGISTRY, [bonded.topic0, dirty_address], b"\x00" * 64)), set())
    assert skip.value.reason == "undecodable"


def test_fast_checksum_matches_eth_utils() -> None:
    for i in range(200):
        a = "0x" + (i * 0x9E3779B97F4A7C15 * 7919).to_bytes(20, "big").hex()
        assert to_checksum_address(a) == reference_checksum(a)


def test_headers_from_a_garbage_rpc_are_refused() -> None:
    good = {"number": "0x5", "hash": "0x" + "aa" * 32, "parentHash": "0x" + "bb" * 32}
    assert parse_header(good, 5).parent_hash == "0x" + "bb" * 32
    for bad, n in ((good, 6), ({**good, "hash": "0x1"}, 5), ("nope", 5), ({**good, "number": 5}, 5)):
        with pytest.raises(ChainRpcError) as err:
            parse_header(bad, n)
        assert err.value.kind == "garbage"


def test_page_tokens_round_trip_and_reject_forgeries() -> None:
    e = StoredEvent(9, 31337, 12, "0x", 4, "0x", "0x", "X", "{}", "", False)
    assert decode_page_token(encode_page_token(e)) == (31337, 12, 4)
    assert decode_page_token("") is None
    for bad in ("bogus", "djI6MTox", "!!!"):
        with pytest.raises(InvalidArgument):
            decode_page_token(bad)


STATIC_EVENTS = [
    e
    for table in (*DECODER.by_address.values(), DECODER.account_events)
    for e in table.values()
    if e.static_data
]


@pytest.mark.parametrize("seed", range(20))
def test_fast_static_path_equals_the_generic_abi_decoder(seed: int) -> None:
    """The hand-rolled word decoders and JSON text must give exactly what eth_abi + json.dumps give,
    for every static event of the project's ABIs (a stored row must not depend on which path made it)."""
    import json
    import random

    rng = random.Random(seed)

    def value(typ: str) -> Any:
        if typ == "address":
            return to_checksum_address("0x" + rng.randbytes(20).hex())
        if typ == "bool":
            return rng.random() < 0.5
        if typ.startswith("uint"):
            return rng.getrandbits(int(typ[4:] or 256))
        if typ.startswith("bytes"):
            return rng.randbytes(int(typ[5:]))
        raise AssertionError(typ)

    for ev in STATIC_EVENTS:
        indexed = [value(t) for _, t in ev.indexed]
        data_values = [value(t) for t in ev.data_types]
        topics = [ev.topic0] + [
            "0x" + encode([t], [v]).hex() for (_, t), v in zip(ev.indexed, indexed, strict=True)
        ]
        address = (
            next(a for a, table in DECODER.by_address.items() if ev in table.values())
            if ev not in DECODER.account_events.values()
            else ACCOUNT
        )
        lg = parse_log(raw_log(address, topics, encode(list(ev.data_types), data_values)))
        d = DECODER.decode(lg, {ACCOUNT})
        expected = {
            **{n: v for (n, _), v in zip(ev.indexed, indexed, strict=True)},
            **dict(zip(ev.data_names, data_values, strict=True)),
        }
        expected = {
            k: (v if isinstance(v, bool) else "0x" + v.hex() if isinstance(v, bytes) else str(v))
            for k, v in expected.items()
        }
        assert d.args == expected, ev.name
        assert d.args_json == json.dumps(expected, sort_keys=True, separators=(",", ":")), ev.name
