"""The relay pipeline (services/session/control/relay.py) against fakes of SessionDB and the chain: every
path of authorise -> reserve the key -> record the intent -> broadcast -> settle, and every path of
reconciling a crashed call from its recorded transaction (which the end-to-end drills reach only in
subprocesses, where coverage does not see them)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pytest

from agentgpt.errors import Aborted, FailedPrecondition, Unavailable
from agentgpt.lifecycle import SessionClock, SessionState
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.spec import parse_yaml
from services.session.chain import PreparedTx, Receipt
from services.session.control import relay as relay_mod
from services.session.control.relay import CREATE, OPS, STALE_PENDING_S, Relay
from services.session.control.specs import spec_to_dict
from services.session.model import Caller
from services.session.store import Change, StoredRequest

OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TX = b"\xaa" * 32
SPEC = "type: treasury_management\nparams:\n  chains: [arbitrum]\n"


def receipt(ok: bool = True, **over: Any) -> Receipt:
    return Receipt(tx_hash=TX, ok=ok, block_number=1, gas_used=21000, **over)


def stored(**over: Any) -> StoredRequest:
    fields: dict[str, Any] = {
        "principal": OWNER,
        "key": "k",
        "method": "UpdateBudget",
        "request_hash": b"h",
        "status": "pending",
        "response": None,
        "session_id": "7",
        "op": "update_budget",
        "payload_json": json.dumps({"amount": "5"}),
        "tx_hash": TX,
        "raw_tx": b"raw",
        "created_at": 0.0,
        **over,
    }
    return StoredRequest(**fields)


@dataclass
class Record:
    session_id: str = "7"
    lifecycle_state: SessionState = SessionState.ACTIVE
    version: int = 1
    budget: str = "100"
    workflow_hash: bytes = b"\x01" * 32
    owner_public_key: bytes | None = b"\x04" * 64
    mint_tx_hash: bytes = TX
    home_chain_id: int = 31337


@dataclass
class FakeDB:
    requests: dict[tuple[str, str], StoredRequest] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)
    keys: list[Any] = field(default_factory=list)
    finished: dict[tuple[str, str], bytes] = field(default_factory=dict)
    nonces: list[tuple[str, int]] = field(default_factory=list)
    abandoned: list[tuple[str, str, bool]] = field(default_factory=list)
    intents: list[dict[str, Any]] = field(default_factory=list)
    commits: list[Change] = field(default_factory=list)
    inserted: list[dict[str, Any]] = field(default_factory=list)
    pending: list[StoredRequest] = field(default_factory=list)

    async def begin_request(
        self, principal: str, key: str, method: str, req_hash: bytes, *, nonce: tuple[str, int] | None = None
    ) -> StoredRequest | None:
        existing = self.requests.get((principal, key))
        if existing is None:
            if nonce is not None:  # a new key is reserved together with the owner's nonce (SessionDB)
                self.nonces.append(nonce)
            self.requests[(principal, key)] = stored(principal=principal, key=key, tx_hash=None)
        return existing

    async def get_request(self, principal: str, key: str) -> StoredRequest | None:
        return self.requests.get((principal, key))

    async def use_nonce(self, owner: str, nonce: int) -> None:
        self.nonces.append((owner, nonce))

    async def abandon_request(self, principal: str, key: str, even_with_intent: bool = False) -> None:
        self.abandoned.append((principal, key, even_with_intent))

    async def record_intent(self, principal: str, key: str, **intent: Any) -> None:
        self.intents.append(intent)

    async def get(self, sid: str) -> Record | None:
        return self.records.get(sid)

    async def require(self, sid: str) -> Record:
        return self.records[sid]

    async def finish_request(self, principal: str, key: str, response: bytes) -> None:
        self.finished[(principal, key)] = response
        if (principal, key) in self.requests:
            self.requests[(principal, key)] = replace(
                self.requests[(principal, key)], status="done", response=response
            )

    async def insert(self, values: dict[str, Any], events: Any, request: Any) -> Record:
        self.inserted.append(values)
        rec = Record(session_id=values["session_id"], lifecycle_state=SessionState.DRAFT)
        principal, key, respond = request
        await self.finish_request(principal, key, respond(rec))
        return rec

    async def session_keys(self, sid: str) -> list[Any]:
        return self.keys

    async def pending_intents(self) -> list[StoredRequest]:
        return self.pending


class FakeChain:
    chain_id = 31337

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.to_send: list[Receipt | Exception] = []
        self.on_chain: list[Receipt | None] = []
        self.sent: list[PreparedTx] = []

    async def send(self, tx: PreparedTx, timeout: float) -> Receipt:
        self.sent.append(tx)
        outcome = self.to_send.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def receipt(self, tx_hash: bytes) -> Receipt | None:
        return self.on_chain.pop(0)


class FakeCore:
    def __init__(self) -> None:
        self.db = FakeDB()
        self.chain = FakeChain()
        self.receipt_timeout = 30.0
        self.now = 1000.0
        self.custody: Any = None
        self.chain_sync: Any = None
        self.bus = SimpleNamespace(notified=[], notify=lambda sid: self.bus.notified.append(sid))

    def clock(self) -> float:
        return self.now

    def clock_values(self, clock: SessionClock, reason: str) -> dict[str, Any]:
        return {"state": clock.state.name, "state_reason": reason}

    def next_clock(self, rec: Record, action: Any, settled: bool) -> SessionClock:
        return SessionClock(SessionState.ACTIVE, int(self.now))

    async def commit(self, change: Change) -> Record:
        self.db.commits.append(change)
        rec = self.db.records[change.session_id]
        assert change.finish_request is not None
        principal, key, respond = change.finish_request
        await self.db.finish_request(principal, key, respond(rec))
        return rec

    async def retry_on_conflict(self, attempt: Any, gave_up: str) -> Any:
        return await attempt()


class FakeCallers:
    def __init__(self, caller: Caller) -> None:
        self.who = caller

    def caller(self, request: Any, ctx: Any, service_allowed: bool = False) -> Caller:
        return self.who


@pytest.fixture(autouse=True)
def _plain_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Responses carry the session id only: session_to_pb of a full row is tested elsewhere."""
    monkeypatch.setattr(relay_mod, "session_to_pb", lambda rec: pb.Session(session_id=rec.session_id))


def make(caller: Caller | None = None) -> tuple[Relay, FakeCore]:
    core = FakeCore()
    core.db.records["7"] = Record()
    return Relay(core, FakeCallers(caller or Caller(owner=OWNER))), core  # type: ignore[arg-type]


def budget_request(key: str = "k") -> pb.UpdateBudgetRequest:
    req = pb.UpdateBudgetRequest(idempotency_key=key, session_id="7", add_amount="5")
    req.auth.nonce = 42
    return req


async def answer(caller: Caller, key: str) -> pb.UpdateBudgetResponse:
    return pb.UpdateBudgetResponse(session=pb.Session(session_id="fresh"))


# ------------------------------------------------------------------------------ idempotent()
async def test_a_new_request_uses_the_owners_nonce_and_runs() -> None:
    relay, core = make()
    resp = await relay.idempotent(budget_request(), None, pb.UpdateBudgetResponse, answer)  # type: ignore[arg-type]
    assert resp.session.session_id == "fresh" and core.db.nonces == [(OWNER, 42)]


async def test_a_service_caller_spends_no_nonce() -> None:
    relay, core = make(Caller(service="recovery-oracle"))
    resp = await relay.idempotent(
        budget_request(),
        None,  # type: ignore[arg-type]
        pb.UpdateBudgetResponse,
        answer,
        service_allowed=True,
    )
    assert resp.session.session_id == "fresh" and core.db.nonces == []


async def test_a_failing_body_gives_the_key_back() -> None:
    relay, core = make()

    async def broken(caller: Caller, key: str) -> pb.UpdateBudgetResponse:
        raise FailedPrecondition("no")

    with pytest.raises(FailedPrecondition):
        await relay.idempotent(budget_request(), None, pb.UpdateBudgetResponse, broken)  # type: ignore[arg-type]
    assert core.db.abandoned == [(OWNER, "k", False)]


async def test_a_finished_key_answers_its_stored_response() -> None:
    relay, core = make()
    done = pb.UpdateBudgetResponse(session=pb.Session(session_id="stored")).SerializeToString()
    core.db.requests[(OWNER, "k")] = stored(status="done", response=done)
    resp = await relay.idempotent(budget_request(), None, pb.UpdateBudgetResponse, answer)  # type: ignore[arg-type]
    assert resp.session.session_id == "stored" and core.db.nonces == []


async def test_a_key_with_a_recorded_transaction_is_settled_first() -> None:
    relay, core = make()
    core.db.requests[(OWNER, "k")] = stored()
    core.chain.on_chain = [receipt()]
    resp = await relay.idempotent(budget_request(), None, pb.UpdateBudgetResponse, answer)  # type: ignore[arg-type]
    assert resp.session.session_id == "7"  # the settled operation's answer, not a second run
    assert core.db.commits[0].values["budget"] == "105"


async def test_a_key_whose_transaction_is_not_settled_yet_is_unavailable() -> None:
    relay, core = make()
    core.db.requests[(OWNER, "k")] = stored(raw_tx=None)
    core.chain.on_chain = [None]  # not mined, nothing to resend: the intent is forgotten
    with pytest.raises(Unavailable, match="not settled yet"):
        await relay.idempotent(budget_request(), None, pb.UpdateBudgetResponse, answer)  # type: ignore[arg-type]


async def test_a_key_in_progress_is_aborted_and_a_stale_one_taken_over() -> None:
    relay, core = make()
    core.db.requests[(OWNER, "k")] = stored(tx_hash=None, created_at=core.now - 1)
    with pytest.raises(Aborted, match="in progress"):
        await relay.idempotent(budget_request(), None, pb.UpdateBudgetResponse, answer)  # type: ignore[arg-type]
    core.db.requests[(OWNER, "k")] = stored(tx_hash=None, created_at=core.now - STALE_PENDING_S - 1)
    resp = await relay.idempotent(budget_request(), None, pb.UpdateBudgetResponse, answer)  # type: ignore[arg-type]
    assert resp.session.session_id == "fresh" and core.db.nonces == [(OWNER, 42)]  # the taker's nonce is used


async def test_a_service_caller_takes_a_stale_key_over_without_a_nonce() -> None:
    relay, core = make(Caller(service="recovery-oracle"))
    principal = Caller(service="recovery-oracle").principal
    core.db.requests[(principal, "k")] = stored(tx_hash=None, created_at=core.now - STALE_PENDING_S - 1)
    resp = await relay.idempotent(
        budget_request(),
        None,  # type: ignore[arg-type]
        pb.UpdateBudgetResponse,
        answer,
        service_allowed=True,
    )
    assert resp.session.session_id == "fresh" and core.db.nonces == []


# ------------------------------------------------------------------------------ send() and run()
async def prepare() -> PreparedTx:
    return PreparedTx(TX, b"raw")


async def test_run_records_the_intent_before_broadcasting_and_settles() -> None:
    relay, core = make()
    core.chain.to_send = [receipt()]
    op = OPS["update_budget"]
    resp = await relay.run(op, Caller(owner=OWNER), "k", "7", {"amount": "5"}, prepare)
    assert isinstance(resp, pb.UpdateBudgetResponse) and resp.session.session_id == "7"
    assert core.db.intents[0]["tx_hash"] == TX and core.db.intents[0]["op"] == "update_budget"
    assert (OWNER, "k") in core.db.finished


async def test_a_reverted_transaction_abandons_the_key() -> None:
    relay, core = make()
    core.chain.to_send = [receipt(ok=False)]
    with pytest.raises(FailedPrecondition, match="reverted on chain"):
        await relay.send(OWNER, "k", "pause", "7", {}, prepare)
    assert core.db.abandoned == [(OWNER, "k", True)]


# ------------------------------------------------------------------------------ finish_create()
def create_payload() -> dict[str, Any]:
    return {"spec": spec_to_dict(parse_yaml(SPEC)), "owner": OWNER, "budget": "10"}


async def test_a_mint_inserts_the_session_once() -> None:
    relay, core = make()
    rec = await relay.finish_create(OWNER, "k", create_payload(), receipt(session_id=8))
    assert rec.session_id == "8" and core.db.inserted[0]["budget"] == "10"
    assert core.bus.notified == ["8"]
    # reconciled again: the row is this mint's, the key just settles
    core.db.records["8"] = Record(session_id="8")
    again = await relay.finish_create(OWNER, "k2", create_payload(), receipt(session_id=8))
    assert again is core.db.records["8"] and (OWNER, "k2") in core.db.finished
    assert len(core.db.inserted) == 1


async def test_a_mint_without_its_event_or_of_another_chain_is_refused() -> None:
    relay, core = make()
    with pytest.raises(FailedPrecondition, match="no SessionCreated event"):
        await relay.finish_create(OWNER, "k", create_payload(), receipt())
    core.db.records["8"] = Record(session_id="8", mint_tx_hash=b"\xbb" * 32)
    with pytest.raises(FailedPrecondition, match="disagree"):
        await relay.finish_create(OWNER, "k", create_payload(), receipt(session_id=8))


# ------------------------------------------------------------------------------ settle()
async def test_an_operation_the_session_moved_past_answers_with_what_it_is_now() -> None:
    relay, core = make()
    core.db.records["7"] = Record(lifecycle_state=SessionState.COMPLETED)
    resp = await relay.settle(OPS["pause"], OWNER, "k", "7", {"reason": "r", "by": "x"}, receipt())
    assert resp.session.session_id == "7" and core.db.commits == [] and (OWNER, "k") in core.db.finished


async def test_settling_commits_each_operations_effect() -> None:
    cases: list[tuple[str, SessionState, dict[str, Any], Receipt]] = [
        ("activate", SessionState.DRAFT, {"executor": OWNER}, receipt(assigned_epoch=1)),
        ("update_budget", SessionState.ACTIVE, {"amount": "5"}, receipt()),
        ("complete", SessionState.ACTIVE, {"log_cid": "bafy", "log_arweave_tx": "ar"}, receipt()),
        ("complete", SessionState.ACTIVE, {"log_cid": "bafy"}, receipt()),
        ("pause", SessionState.ACTIVE, {"reason": "r", "by": "oracle"}, receipt()),
        ("resume", SessionState.PAUSED, {"reason": "r", "by": "oracle"}, receipt()),
        ("terminate", SessionState.ACTIVE, {"reason": "r", "by": "owner"}, receipt()),
        (
            "reassign_executor",
            SessionState.ACTIVE,
            {"executor": OWNER, "from": "0x0", "reason": "r", "by": "oracle"},
            receipt(assigned_epoch=3),
        ),
        (
            "reassign_executor",
            SessionState.PAUSED,
            {"executor": OWNER, "from": "0x0", "reason": "r", "by": "oracle"},
            receipt(),
        ),
    ]
    for name, state, payload, rcpt in cases:
        relay, core = make()
        core.db.records["7"] = Record(lifecycle_state=state)
        resp = await relay.settle(OPS[name], OWNER, "k", "7", payload, rcpt)
        assert isinstance(resp, OPS[name].response), name
        change = core.db.commits[0]
        events = [e.type for e in change.events]
        assert len(events) == 1, (name, events)
        if name == "update_budget":
            assert change.values == {"budget": "105"}  # no lifecycle transition: the clock stays
        elif name == "reassign_executor":
            assert change.values == {"executor": OWNER, "lease_expires_at": None}  # nor here
        else:
            assert "state_reason" in change.values, name
        if name in ("pause", "terminate"):
            assert change.values["lease_expires_at"] is None
        if name == "terminate":
            assert change.values["final_tx_hash"] == TX
        if name == "complete":
            assert change.events[0].data.get("log_arweave_tx") == payload.get("log_arweave_tx")
        if name == "reassign_executor":
            assert change.events[0].data["chain_epoch"] == (rcpt.assigned_epoch or 0)


async def test_a_new_executor_kicks_the_chain_sync() -> None:
    relay, core = make()
    kicks: list[str] = []
    core.chain_sync = SimpleNamespace(kick=kicks.append)
    core.db.records["7"] = Record(lifecycle_state=SessionState.DRAFT)
    await relay.settle(OPS["activate"], OWNER, "k", "7", {"executor": OWNER}, receipt(assigned_epoch=1))
    assert kicks == ["7"]  # that session's grants, not a pass over every live session


# ------------------------------------------------------------------------------ _epoch_key()
class Custody:
    def new_key_row(self, sid: str, epoch: int, executor: str, now: float) -> dict[str, Any]:
        return {"session_id": sid, "epoch": epoch, "executor": executor}


async def test_a_new_executor_of_record_gets_a_data_key_for_its_epoch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay, core = make()
    rec = Record(owner_public_key=None)
    payload = {"executor": OWNER}
    # no custody configured: no keys, whatever else holds
    assert await relay._epoch_key(rec, payload, receipt(), {}) == ({}, [])
    core.custody = Custody()
    # no owner public key (activated before checkpoint keys were kept): a warning, no key
    with caplog.at_level(logging.WARNING, logger="agentgpt.session"):
        assert await relay._epoch_key(rec, payload, receipt(), {}) == ({}, [])
    assert "no owner public key" in caplog.text
    # the activation recovered the owner's key: it is stored, and the chain's epoch gets a data key
    with_key = {**payload, "owner_public_key": ("04" * 64)}
    values, rows = await relay._epoch_key(rec, with_key, receipt(assigned_epoch=2), {})
    assert values == {"owner_public_key": b"\x04" * 64} and rows == [
        {"session_id": "7", "epoch": 2, "executor": OWNER}
    ]
    # a key for that epoch exists already: none added; no epoch on the receipt: the next after the held ones
    core.db.keys = [SimpleNamespace(epoch=2)]
    assert await relay._epoch_key(Record(), payload, receipt(assigned_epoch=2), {}) == ({}, [])
    assert (await relay._epoch_key(Record(), payload, receipt(), {}))[1][0]["epoch"] == 3


# ------------------------------------------------------------------------------ reconcile()
async def test_reconcile_settles_each_recorded_intent_and_survives_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay, core = make()
    core.db.pending = [stored(key="a"), stored(key="b", session_id="missing")]
    core.chain.on_chain = [receipt(), receipt()]
    with caplog.at_level(logging.ERROR, logger="agentgpt.session"):
        assert await relay.reconcile() == 1
    assert "reconciling update_budget b failed" in caplog.text
    assert core.db.commits[0].values == {"budget": "105"}


async def test_reconcile_resends_a_transaction_the_chain_never_saw() -> None:
    relay, core = make()
    core.chain.on_chain = [None]
    core.chain.to_send = [receipt()]
    await relay.reconcile_one(stored())
    assert core.chain.sent == [PreparedTx(TX, b"raw")] and core.db.commits


async def test_reconcile_rereads_the_receipt_when_the_resend_is_unavailable() -> None:
    relay, core = make()
    core.chain.on_chain = [None, receipt()]
    core.chain.to_send = [Unavailable("node down")]
    await relay.reconcile_one(stored())
    assert core.db.commits and core.db.abandoned == []


async def test_reconcile_forgets_what_is_not_on_chain_and_what_reverted() -> None:
    relay, core = make()
    core.chain.on_chain = [None, None]
    core.chain.to_send = [Unavailable("node down")]
    await relay.reconcile_one(stored())
    core.chain.on_chain = [receipt(ok=False)]
    await relay.reconcile_one(stored(key="k2"))
    assert core.db.abandoned == [(OWNER, "k", True), (OWNER, "k2", True)] and core.db.commits == []


async def test_reconcile_finishes_a_recorded_mint() -> None:
    relay, core = make()
    core.chain.on_chain = [receipt(session_id=9)]
    await relay.reconcile_one(
        stored(op=CREATE, session_id=None, payload_json=json.dumps(create_payload()), method="CreateSession")
    )
    assert core.db.inserted[0]["session_id"] == "9"
