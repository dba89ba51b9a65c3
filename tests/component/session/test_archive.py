"""The completed session's event log is archived in the IPFS library's file form: a long log becomes a
UnixFS dag-pb file that round-trips by CID and verifies."""

from __future__ import annotations

import json

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.ipfs import codec_of, file_cid
from agentgpt.session.v1 import session_pb2 as pb
from services.session.model import verify_chain

from .harness import Harness, Owner, grow_log, new_key
from .test_lifecycle import EXECUTOR

EVENTS = 2000


async def complete(service: Harness, owner: Owner, s: pb.Session) -> pb.CompleteSessionResponse:
    req = owner.sign(pb.CompleteSessionRequest(idempotency_key=new_key(), session_id=s.session_id))
    return await service.stub.CompleteSession(owner.chain_sign("complete", s, req))  # type: ignore[no-any-return]


async def test_large_log_round_trips_by_cid_as_a_unixfs_file(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, EXECUTOR)
    await grow_log(service.control, s.session_id, EVENTS)
    done = await complete(service, owner, s)
    assert done.session.state == common.SESSION_STATE_COMPLETED
    raw = await service.control.archive.get(done.log_cid)  # verified against the CID by the store
    assert len(raw) > 256 * 1024 and codec_of(done.log_cid) == "dag-pb"
    assert file_cid(raw) == done.log_cid
    archived = json.loads(raw)
    evs = await service.control.db.events_after(s.session_id, 0, limit=10_000)
    assert len(archived["events"]) == EVENTS + 2 == len(evs) - 1  # created, activated, tasks; not "completed"
    assert [e["hash"] for e in archived["events"]] == ["0x" + e.hash.hex() for e in evs[:-1]]
    assert archived["head"] == "0x" + evs[-2].hash.hex() and verify_chain(evs)
    assert json.loads(evs[-1].data_json)["log_cid"] == done.log_cid


async def test_short_log_is_one_raw_block(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, EXECUTOR)
    done = await complete(service, owner, s)
    assert codec_of(done.log_cid) == "raw"
    archived = json.loads(await service.control.archive.get(done.log_cid))
    assert [e["type"] for e in archived["events"]] == ["created", "activated"]
