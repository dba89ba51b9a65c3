"""services.session.convert: SessionDB records -> the API messages stored as responses and streamed."""

from __future__ import annotations

import json

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.session.v1 import session_pb2 as pb
from services.session.convert import event_to_pb, session_to_pb, spec_to_pb, task_to_pb, timestamp
from services.session.model import EventRecord, TaskRecord

from .records import SPEC_JSON, session_record


def test_timestamp_keeps_sub_second_precision() -> None:
    ts = timestamp(1_700_000_000.25)
    assert (ts.seconds, ts.nanos) == (1_700_000_000, 250_000_000)


def test_session_fields_map_one_to_one() -> None:
    rec = session_record(state=2, executor="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", lease_epoch=4)
    s = session_to_pb(rec)
    assert (s.session_id, s.owner, s.state, s.version) == ("7", rec.owner, common.SESSION_STATE_ACTIVE, 3)
    assert s.budget == str(2**200) and s.budget_spent == "10"  # uint256 survives as a decimal string
    assert (s.workflow_hash, s.mint_tx_hash, s.home_chain_id) == (b"\x11" * 32, b"\x22" * 32, 31337)
    assert (s.executor, s.lease_epoch) == (rec.executor, 4)
    assert s.deadline.seconds == rec.deadline and s.created_at.nanos == 250_000_000
    assert not s.HasField("latest_checkpoint")


def test_final_session_has_no_deadline() -> None:
    s = session_to_pb(session_record(state=5, deadline=None, terminal_reason="draft_expired"))
    assert not s.HasField("deadline") and s.state == common.SESSION_STATE_TERMINATED


def test_checkpoint_with_anchors() -> None:
    cp = {
        "seq": 50,
        "cid": "bafkreiabc",
        "state_root": "ab" * 32,
        "at": 1_700_000_100.5,
        "anchors": [{"chain_id": 31337, "number": 12, "hash": "cd" * 32}],
    }
    s = session_to_pb(session_record(checkpoint_json=json.dumps(cp)))
    got = s.latest_checkpoint
    assert (got.session_id, got.seq, got.cid, got.state_root) == ("7", 50, "bafkreiabc", b"\xab" * 32)
    assert [(a.chain_id, a.number, a.hash) for a in got.anchors] == [(31337, 12, b"\xcd" * 32)]
    assert got.created_at.seconds == 1_700_000_100


def test_spec_round_trip() -> None:
    spec = spec_to_pb(json.loads(SPEC_JSON))
    assert (spec.type, list(spec.chains), dict(spec.models)) == (
        "treasury_management",
        ["arbitrum"],
        {"risk": "gpt-4"},
    )
    assert list(spec.decorators) == ["kyc_tier4"] and json.loads(spec.params_json) == {"rebalance": 0.3}
    assert spec.checkpoint_interval == 50


def test_event_and_task() -> None:
    e = event_to_pb(EventRecord("7", 3, "paused", 3, '{"reason":"x"}', 1.5, b"\x09" * 32))
    assert (e.cursor, e.type, e.state, e.hash, e.at.nanos) == (3, "paused", 3, b"\x09" * 32, 500_000_000)
    intents = pb.Task(intents=[pb.TxIntent(chain_id=1, nonce=4, tx_hash=b"\x01" * 32, raw_tx=b"raw")])
    t = task_to_pb(
        TaskRecord(
            "7",
            2,
            "rebalance",
            "{}",
            3,
            '{"ok":true}',
            "",
            intents.SerializeToString(),
            21000,
            "10",
            b"\x02" * 32,
            0.8,
            "ex-a",
            1,
            1.0,
        )
    )
    assert (t.seq, t.input.kind, t.status, t.gas_used, t.cost) == (2, "rebalance", 3, 21000, "10")
    assert list(t.intents) == list(intents.intents) and t.log_hash == b"\x02" * 32
    empty = task_to_pb(TaskRecord("7", 1, "k", "{}", 1, "", "", b"", 0, "0", b"", None, "", 0, 1.0))
    assert len(empty.intents) == 0


def test_timestamp_edges() -> None:
    assert (timestamp(0).seconds, timestamp(0).nanos) == (0, 0)
    up = timestamp(1.9999999)  # rounds to the next whole second, never nanos == 1e9
    assert (up.seconds, up.nanos) == (2, 0)
    assert timestamp(1_700_000_000.000001).nanos == 1000
