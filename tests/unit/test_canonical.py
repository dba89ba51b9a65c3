"""Canonical JSON and Timestamps in one place (agentgpt.canonical, agentgpt.timestamps) without changing
one committed byte: the vectors below were written by the code each function replaced, before it was
replaced. A workflow hash, an event hash, a task log entry or a checkpoint written then still verifies."""

from __future__ import annotations

import json

from agentgpt.canonical import canonical_json, canonical_json_ascii, sorted_json
from agentgpt.spec import SessionSpec
from agentgpt.tasklog import (
    ZERO_HASH,
    ExecutorKey,
    LogEntry,
    TaskLog,
    result_digest,
    verify_chain,
    verify_checkpoint_log,
)
from agentgpt.tasklog import (
    checkpoint_document_v1 as checkpoint_document,
)
from agentgpt.timestamps import set_timestamp, to_timestamp, whole_seconds
from services.session.model import event_hash

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
DATA = {"reason": "Marché fermé — 市場", "budget": "100", "nested": {"b": [1, 2], "a": None}}
RESULT = {"cid": "bafy", "size": 12, "title": "weekly — é", "raw": b"\x01\x02", "big": 2**70}

# written by services.session.model.canonical_json / event_hash before the move
EVENT_DATA_JSON = '{"budget":"100","nested":{"a":null,"b":[1,2]},"reason":"Marché fermé — 市場"}'
EVENT_HASH = "faac51806a4a97f54e428b28f0abcbd1463754c5999e91f396f5653629a46d8d"
# written by agentgpt.spec.SessionSpec.canonical / workflow_hash
SPEC_CANONICAL = (
    '{"chains":["arbitrum","polygon"],"checkpoint_interval":50,"decorators":["kyc_tier4","ofac_filter"],'
    '"models":{"planner":"builtin"},"params":{"market":{"pair":"WETH/dUSD"},"note":"Zürich ✓"},'
    '"type":"treasury_management"}'
)
WORKFLOW_HASH = "4d5419d72f4beab36422031484719dcb7fa7f515d928c6993ad039cc5455643a"
# written by services.indexer.decoding.canonical_json (the stored args_json)
INDEXER_ARGS_JSON = '{"amount":"10","label":"caf\\u00e9","owner":"0xAbC"}'
# written by services.executor.engine.result_json, and the digest the task log took of it
RESULT_JSON = (
    '{"big": 1180591620717411303424, "cid": "bafy", "raw": "b\'\\\\x01\\\\x02\'", "size": 12, '
    '"title": "weekly \\u2014 \\u00e9"}'
)
RESULT_DIGEST = "9bf50c6603ca85e8887e5f4baaa915d8971c80a6e429196661a4d7dfb95496da"
# two task log entries signed before the change (session 7, context epoch 2, one tx each)
PUBLIC_KEY = (
    "ba5734d8f7091719471e7f7ed6b9df170dc70cc661ca05e688601ad984f068b0"
    "d67351e5f06073092499336ab0839ef8a521afd334e53807205fa2f08eec74f4"
)
ENTRIES = [
    (
        "analyze_market",
        "succeeded",
        RESULT_DIGEST,
        "6420baa354183dea95c0f4f3bfc5135d01fe585a920737cf2daec246f4c1c7f0",
        "837303e990834aa8193f37edf3a1e2eaba4327ca343ade0ab6eead06b2de8dd5"
        "74ebedcb57419a988d3ed23ebd967c22b44568b9b66acbc67c58770caa77c3ce",
    ),
    (
        "rebalance",
        "failed",
        "57338f934ac7eee255f727ef90dcff234452e955e288dbb16143d315fa04a391",
        "62dcf5deb8dc5d6c6438816a6d64df4e6be26a01c755441aee25e8cbf6ff3aa8",
        "c69ccb70c443922fa29797e0d2a622f6dc28fa507bc090577f71cf88ba72f85c"
        "0af538a2a2dcb32fb95058170e41269b115124a96d6607bb7ac13fe32c843405",
    ),
]


def _recorded_entries() -> list[LogEntry]:
    prev, out = ZERO_HASH, []
    for seq, (kind, status, result, digest, sig) in enumerate(ENTRIES, start=1):
        out.append(
            LogEntry(
                "7",
                seq,
                kind,
                status,
                bytes.fromhex(result),
                2,
                (bytes([seq]) * 32,),
                prev,
                bytes.fromhex(digest),
                bytes.fromhex(sig),
            )
        )
        prev = out[-1].hash
    return out


def test_event_hashes_and_workflow_hashes_are_unchanged() -> None:
    assert canonical_json(DATA) == EVENT_DATA_JSON
    at = 1717171717.123456
    got = event_hash(
        ZERO_HASH, session_id="7", cursor=3, type="session_paused", state=4, data_json=json.dumps(DATA), at=at
    )
    assert got.hex() == EVENT_HASH
    spec = SessionSpec(
        type="treasury_management",
        chains=("arbitrum", "polygon"),
        models={"planner": "builtin"},
        decorators=("kyc_tier4", "ofac_filter"),
        params={"note": "Zürich ✓", "market": {"pair": "WETH/dUSD"}},
    )
    assert spec.canonical().decode() == SPEC_CANONICAL
    assert spec.workflow_hash().hex() == WORKFLOW_HASH


def test_the_ascii_and_sorted_variants_are_unchanged() -> None:
    assert canonical_json_ascii({"owner": "0xAbC", "label": "café", "amount": "10"}) == INDEXER_ARGS_JSON
    assert sorted_json(RESULT, default=str) == RESULT_JSON
    assert canonical_json_ascii({"é": b"\x01"}, default=str) == '{"\\u00e9":"b\'\\\\x01\'"}'


def test_task_results_digest_and_log_entries_as_before() -> None:
    from services.executor.records import result_json

    assert result_json(RESULT) == RESULT_JSON
    assert result_digest(json.loads(result_json(RESULT))).hex() == RESULT_DIGEST
    log = TaskLog("7", ExecutorKey(KEY))
    rebuilt = [
        log.append(
            1,
            "analyze_market",
            "succeeded",
            json.loads(RESULT_JSON),
            context_epoch=2,
            tx_hashes=[b"\x01" * 32],
        ),
        log.append(
            2, "rebalance", "failed", {"error": "reverted — é"}, context_epoch=2, tx_hashes=[b"\x02" * 32]
        ),
    ]
    assert [e.hash for e in rebuilt] == [e.hash for e in _recorded_entries()]


def test_log_entries_and_checkpoints_written_before_still_verify() -> None:
    entries = _recorded_entries()
    public_key = bytes.fromhex(PUBLIC_KEY)
    assert verify_chain(entries, ZERO_HASH, public_key) == entries[-1].hash
    key = ExecutorKey(KEY)
    assert key.public_key == public_key
    doc = checkpoint_document(
        session_id="7",
        seq=2,
        state_root=entries[-1].hash,
        prev_cid="",
        prev_root=ZERO_HASH,
        entries=entries,
        key=key,
        context=[],
        budget={},
        memory={},
        chains=["arbitrum"],
    )
    verified = verify_checkpoint_log(doc)
    assert (verified.head, verified.entries, verified.first_seq) == (entries[-1].hash, 2, 1)


def test_timestamps_to_the_microsecond() -> None:
    ts = to_timestamp(1717171717.25)
    assert (ts.seconds, ts.nanos) == (1717171717, 250_000_000)
    assert (to_timestamp(9.9999999).seconds, to_timestamp(9.9999999).nanos) == (10, 0)
    assert whole_seconds(ts) == ts.ToSeconds() == 1717171717
    from google.protobuf.timestamp_pb2 import Timestamp

    field = Timestamp()
    set_timestamp(field, 12.5)
    assert (field.seconds, field.nanos) == (12, 500_000_000)
