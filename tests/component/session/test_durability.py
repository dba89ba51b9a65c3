"""Durable timers across restarts, and crash reconciliation of relayed transactions (never a second mint)."""

from __future__ import annotations

import asyncio
import json
import time

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.session.v1 import session_pb2 as pb
from services.session.memory import InMemorySessionChain, SimulatedCrash
from services.session.model import verify_chain
from tests.support import eventually

from .conftest import MakeService
from .harness import SERVICE_MD, SPEC_YAML, Owner, new_key

EXECUTOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


async def test_draft_expires_by_timer(make_service: MakeService, owner: Owner) -> None:
    h = await make_service(draft_ttl=2)
    s = await h.create(owner)
    assert s.deadline.seconds - int(time.time()) <= 2

    async def expired() -> None:
        got = await h.get(owner, s.session_id)
        assert got.state == common.SESSION_STATE_TERMINATED and got.state_reason == "draft_expired"

    await eventually(expired, timeout=10)

    async def expired_on_chain() -> None:  # the chain's expire is relayed after the local commit
        assert h.control.chain.calls[-1] == "expire"  # type: ignore[attr-defined]

    await eventually(expired_on_chain, timeout=10)


async def test_timer_fires_after_restart_and_paused_clock_stops(
    make_service: MakeService, owner: Owner
) -> None:
    chain = InMemorySessionChain()
    h = await make_service(chain=chain, active_ttl=4, paused_ttl=3, timer_interval=3600)  # timers never tick
    s = await h.create(owner)
    await h.activate(owner, s, EXECUTOR)
    pause = pb.PauseSessionRequest(idempotency_key=new_key(), session_id=s.session_id, reason="node failure")
    paused = (await h.stub.PauseSession(pause, metadata=SERVICE_MD)).session
    active_used_deadline = paused.deadline.seconds
    assert paused.deadline.seconds >= int(time.time()) + 2  # paused limit (3 s), not the active remainder
    await h.close()
    await h.service.stop()  # "crash": nothing fires while the service is down
    await asyncio.sleep(3.2)  # the service is down past the paused limit
    h2 = await make_service(chain=chain, active_ttl=4, paused_ttl=3, timer_interval=0.1)

    async def terminated() -> pb.Session:
        got = await h2.get(owner, s.session_id)
        assert got.state == common.SESSION_STATE_TERMINATED
        return got

    got = await eventually(terminated, timeout=10)
    assert got.state_reason == "paused_too_long"
    assert active_used_deadline <= int(time.time())


async def test_crash_after_mint_is_reconciled_without_second_mint(
    make_service: MakeService, owner: Owner
) -> None:
    chain = InMemorySessionChain(drop_sends=True)  # the mint lands, then the service "dies"
    h = await make_service(chain=chain, timer_interval=3600)
    key = new_key()
    req = owner.sign(pb.CreateSessionRequest(idempotency_key=key, spec_yaml=SPEC_YAML, initial_budget="7"))
    try:
        await h.stub.CreateSession(owner.chain_sign("create", None, req))
    except Exception:
        pass
    assert chain.mints == 1
    assert await h.control.db.get("1") is None  # DB never heard of it
    await h.close()
    await h.service.stop()
    chain.drop_sends = False
    h2 = await make_service(chain=chain)  # start-up reconciles the recorded transaction

    async def present() -> None:
        assert await h2.control.db.get("1") is not None

    await eventually(present)
    again = await h2.create(owner, key=key, budget="7")  # the client's retry gets the same session
    assert again.session_id == "1" and again.budget == "7"
    assert chain.mints == 1
    assert [e.type for e in await h2.control.db.events_after("1", 0)] == ["created"]


async def test_retry_reconciles_pending_activation(make_service: MakeService, owner: Owner) -> None:
    chain = InMemorySessionChain()
    h = await make_service(chain=chain, timer_interval=3600)
    s = await h.create(owner)
    chain.drop_sends = True
    key = new_key()
    req = owner.sign(
        pb.ActivateSessionRequest(idempotency_key=key, session_id=s.session_id, executor=EXECUTOR)
    )
    try:
        await h.stub.ActivateSession(owner.chain_sign("activate", s, req))
    except Exception:
        pass
    chain.drop_sends = False
    assert chain.states[1] == 2 and (await h.get(owner, s.session_id)).state == common.SESSION_STATE_DRAFT
    retry = owner.sign(
        pb.ActivateSessionRequest(idempotency_key=key, session_id=s.session_id, executor=EXECUTOR)
    )
    resp = await h.stub.ActivateSession(owner.chain_sign("activate", s, retry))
    assert resp.session.state == common.SESSION_STATE_ACTIVE and chain.calls.count("activate") == 1
    assert SimulatedCrash  # the failure mode exercised above


async def test_chain_outage_at_expiry_is_caught_up_after_the_chain_returns(
    make_service: MakeService, owner: Owner
) -> None:
    chain = InMemorySessionChain()
    h = await make_service(chain=chain, draft_ttl=1, timer_interval=0.1)
    s = await h.create(owner)
    sid = int(s.session_id)
    chain.down = True  # the chain is unreachable when the draft timer fires

    async def expired_in_db() -> None:
        rec = await h.control.db.require(s.session_id)
        assert rec.state == common.SESSION_STATE_TERMINATED
        assert rec.chain_expiry_due is not None and rec.chain_expiry_attempts >= 2  # retried, not dropped

    await eventually(expired_in_db, timeout=10)
    assert chain.states[sid] == 1 and "expire" not in chain.calls  # nothing reached the chain yet
    # the service restarts during the outage: the pending expiry is durable, not a task in memory
    await h.close()
    await h.service.stop()
    chain.down = False
    h2 = await make_service(chain=chain, draft_ttl=1, timer_interval=0.1)

    async def expired_on_chain() -> None:
        assert chain.states[sid] == 5
        rec = await h2.control.db.require(s.session_id)
        assert rec.chain_expiry_due is None

    await eventually(expired_on_chain, timeout=10)
    assert chain.calls.count("expire") == 1
    evs = await h2.control.db.events_after(s.session_id, 0)
    assert [e.type for e in evs] == ["created", "expired", "expired_on_chain"]
    settled = json.loads(evs[-1].data_json)
    assert settled["outcome"] == "expired" and settled["tx"].startswith("0x") and settled["attempts"] >= 3
    assert verify_chain(evs)


async def test_expiry_already_final_on_chain_settles_without_a_transaction(
    make_service: MakeService, owner: Owner
) -> None:
    chain = InMemorySessionChain()
    h = await make_service(chain=chain, draft_ttl=1, timer_interval=0.1)
    s = await h.create(owner)
    chain.states[int(s.session_id)] = 5  # e.g. someone else called expire() on the contract first

    async def settled() -> None:
        rec = await h.control.db.require(s.session_id)
        assert rec.state == common.SESSION_STATE_TERMINATED and rec.chain_expiry_due is None

    await eventually(settled, timeout=10)
    assert "expire" not in chain.calls
    last = (await h.control.db.events_after(s.session_id, 0))[-1]
    assert last.type == "expired_on_chain" and json.loads(last.data_json)["outcome"] == "already_final"
