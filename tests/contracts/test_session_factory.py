"""SessionFactory: lifecycle transitions, escrow, executor fencing, checkpoints and the action guard."""

from __future__ import annotations

from eth_abi.abi import decode
from eth_utils.crypto import keccak

from agentgpt.lifecycle import SessionState
from tests.contracts.chain import reaffirm

from .chain import E18, Chain

DRAFT_S, ACTIVE_S, PAUSED_S = 3600, 72 * 3600, 24 * 3600
ZERO = "0x0000000000000000000000000000000000000000"


def state(c: Chain, sid: int) -> SessionState:
    return SessionState(c.factory.functions.stateOf(sid).call())


# ---------------------------------------------------------------------------- create


def test_create_mints_nft_escrows_budget_and_deploys_account(chain: Chain) -> None:
    c, a = chain, chain.actors
    before = c.balance(a.owner)
    c.tx(c.agpt.functions.approve(c.factory.address, 50 * E18), a.owner)
    receipt = c.tx(c.factory.functions.createSession(b"\x11" * 32, 50 * E18), a.owner)
    created = c.events(receipt, c.factory, "SessionCreated")[0]["args"]
    sid = created["sessionId"]
    assert sid == c.factory.functions.lastSessionId().call()
    assert c.factory.functions.ownerOf(sid).call() == a.owner
    assert state(c, sid) is SessionState.DRAFT
    s = c.session(sid)
    assert (s["owner"], s["budget"], s["workflowHash"], s["epoch"]) == (a.owner, 50 * E18, b"\x11" * 32, 0)
    assert s["enteredAt"] == c.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert c.balance(a.owner) == before - 50 * E18
    assert c.balance(c.factory.address) == 50 * E18
    account = c.factory.functions.accountOf(sid).call()
    assert created["account"] == account
    assert len(c.w3.eth.get_code(account)) > 0
    acc = c.contract("SessionAccount", account)
    assert acc.functions.factory().call() == c.factory.address
    assert acc.functions.sessionId().call() == sid
    changed = c.events(receipt, c.factory, "SessionStateChanged")[0]["args"]
    assert (changed["from"], changed["to"]) == (0, SessionState.DRAFT)
    assert c.factory.functions.deadlineOf(sid).call() == s["enteredAt"] + DRAFT_S


def test_create_without_allowance_reverts(chain: Chain) -> None:
    c = chain
    c.reverts(
        c.factory.functions.createSession(b"\x11" * 32, E18), c.actors.owner, "ERC20InsufficientAllowance"
    )


def test_unknown_session_reverts(chain: Chain) -> None:
    c, a = chain, chain.actors
    c.reverts(
        c.factory.functions.activate(999, b"\x00" * 32, a.executor, [], b""), a.owner, "SessionNotFound"
    )
    c.reverts(c.factory.functions.expire(999), a.stranger, "SessionNotFound")
    c.reverts(c.factory.functions.accountOf(999), a.stranger, "SessionNotFound")


# ---------------------------------------------------------------------------- activate


def test_activate_commits_workflow_executor_and_allowlist(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.create()
    sel = keccak(text="transfer(address,uint256)")[:4]
    receipt = c.activate(sid, allowlist=[(c.agpt.address, sel)], workflow=b"\x33" * 32)
    s = c.session(sid)
    assert state(c, sid) is SessionState.ACTIVE
    assert (s["executor"], s["epoch"], s["workflowHash"]) == (a.executor, 1, b"\x33" * 32)
    assert c.factory.functions.isAllowed(sid, c.agpt.address, sel).call()
    assert not c.factory.functions.isAllowed(sid, c.agpt.address, b"\x00" * 4).call()
    act = c.events(receipt, c.factory, "SessionActivated")[0]["args"]
    assert act["allowlistLength"] == 1
    assert act["allowlistHash"] == c.factory.functions.hashAllowlist([(c.agpt.address, sel)]).call()
    assigned = c.events(receipt, c.factory, "ExecutorAssigned")[0]["args"]
    assert (assigned["executor"], assigned["epoch"]) == (a.executor, 1)
    assert c.factory.functions.deadlineOf(sid).call() == s["enteredAt"] + ACTIVE_S


def test_activate_reverts(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.create()
    f = c.factory.functions
    c.reverts(f.activate(sid, b"\x22" * 32, a.executor, [], b""), a.stranger, "NotSessionOwner")
    c.reverts(f.activate(sid, b"\x22" * 32, a.unbonded, [], b""), a.owner, "ExecutorNotBonded")
    too_long = [(c.agpt.address, i.to_bytes(4, "big")) for i in range(65)]
    c.reverts(f.activate(sid, b"\x22" * 32, a.executor, too_long, b""), a.owner, "AllowlistTooLong")
    c.activate(sid)
    c.reverts(f.activate(sid, b"\x22" * 32, a.executor, [], b""), a.owner, "InvalidState")


def test_activate_after_draft_deadline_reverts(chain: Chain) -> None:
    c = chain
    sid = c.create()
    c.increase_time(DRAFT_S)
    data = c.reverts(
        c.factory.functions.activate(sid, b"\x22" * 32, c.actors.executor, [], b""),
        c.actors.owner,
        "DeadlinePassed",
    )
    _, deadline = decode(["uint256", "uint256"], data[4:])
    assert deadline == c.session(sid)["enteredAt"] + DRAFT_S


# ---------------------------------------------------------------------------- budget


def test_update_budget(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.create(budget=10 * E18)
    f = c.factory.functions
    c.tx(c.agpt.functions.approve(c.factory.address, 5 * E18), a.owner)
    c.reverts(f.updateBudget(sid, 5 * E18), a.owner, "InvalidState")  # DRAFT
    c.activate(sid)
    c.reverts(f.updateBudget(sid, 5 * E18), a.stranger, "NotSessionOwner")
    c.reverts(f.updateBudget(sid, 0), a.owner, "ZeroAmount")
    receipt = c.tx(f.updateBudget(sid, 5 * E18), a.owner)
    assert c.session(sid)["budget"] == 15 * E18
    ev = c.events(receipt, c.factory, "BudgetAdded")[0]["args"]
    assert (ev["amount"], ev["budget"]) == (5 * E18, 15 * E18)
    c.reverts(f.updateBudget(sid, E18), a.owner, "ERC20InsufficientAllowance")


def test_charge_budget_pays_executor(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(budget=10 * E18)
    f = c.factory.functions
    before = c.balance(a.executor)
    receipt = c.tx(f.chargeBudget(sid, 3, 3 * E18, b"\x99" * 32), a.executor)
    ev = c.events(receipt, c.factory, "BudgetCharged")[0]["args"]
    assert (ev["amount"], ev["remaining"], ev["receiptHash"]) == (3 * E18, 7 * E18, b"\x99" * 32)
    assert (ev["fromSeq"], ev["throughSeq"]) == (0, 3)
    assert c.balance(a.executor) == before + 3 * E18
    s = c.session(sid)
    assert (s["budget"], s["spent"], s["chargedSeq"]) == (7 * E18, 3 * E18, 3)
    assert f.budgetOf(sid).call() == [7 * E18, 3 * E18, 3]
    c.reverts(f.chargeBudget(sid, 4, 7 * E18 + 1, b"\x99" * 32), a.executor, "BudgetExceeded")
    c.reverts(f.chargeBudget(sid, 4, 0, b"\x99" * 32), a.executor, "ZeroAmount")
    c.reverts(f.chargeBudget(sid, 4, E18, b"\x99" * 32), a.owner, "NotAssignedExecutor")
    c.tx(f.chargeBudget(sid, 5, 7 * E18, b"\x98" * 32), a.executor)  # exactly the rest is fine
    assert c.session(sid)["budget"] == 0


def test_a_task_is_charged_at_most_once(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(budget=10 * E18)
    f = c.factory.functions
    c.tx(f.chargeBudget(sid, 2, E18, b"\x01" * 32), a.executor)
    # a replayed charge (the same tasks again), or one reaching back into charged tasks, reverts
    data = c.reverts(f.chargeBudget(sid, 2, E18, b"\x01" * 32), a.executor, "AlreadyCharged")
    assert decode(["uint256", "uint64", "uint64"], data[4:]) == (sid, 2, 2)
    c.reverts(f.chargeBudget(sid, 1, E18, b"\x01" * 32), a.executor, "AlreadyCharged")
    # ... also for the executor that takes the session over
    c.tx(f.pause(sid), a.admin)
    c.tx(f.reassignExecutor(sid, a.executor2), a.admin)
    c.tx(f.resume(sid), a.admin)
    c.reverts(f.chargeBudget(sid, 2, E18, b"\x01" * 32), a.executor2, "AlreadyCharged")
    receipt = c.tx(f.chargeBudget(sid, 3, E18, b"\x02" * 32), a.executor2)
    ev = c.events(receipt, c.factory, "BudgetCharged")[0]["args"]
    assert (ev["fromSeq"], ev["throughSeq"], ev["executor"]) == (2, 3, a.executor2)
    assert f.budgetOf(sid).call() == [8 * E18, 2 * E18, 3]


def test_budgets_beyond_uint96_are_refused(chain: Chain) -> None:
    c, a = chain, chain.actors
    c.reverts(c.factory.functions.createSession(b"\x01" * 32, 2**96), a.owner, "AmountTooLarge")


# ---------------------------------------------------------------------------- pause / resume / clock


def test_pause_resume_and_paused_time_does_not_count(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session()
    f = c.factory.functions
    activated_at = c.session(sid)["enteredAt"]
    c.reverts(f.pause(sid), a.stranger, "AccessControlUnauthorizedAccount")
    c.reverts(f.resume(sid), a.admin, "InvalidState")
    c.set_next_timestamp(activated_at + 10 * 3600)
    receipt = c.tx(f.pause(sid), a.admin)
    assert state(c, sid) is SessionState.PAUSED
    assert c.session(sid)["activeUsed"] == 10 * 3600
    ev = c.events(receipt, c.factory, "SessionStateChanged")[0]["args"]
    assert (ev["from"], ev["to"], ev["activeUsed"]) == (SessionState.ACTIVE, SessionState.PAUSED, 10 * 3600)
    c.reverts(f.pause(sid), a.admin, "InvalidState")
    c.reverts(f.anchorCheckpoint(sid, 1, b"cid", b"\x01" * 32), a.executor, "InvalidState")
    c.reverts(f.complete(sid, reaffirm(c.factory, sid)), a.owner, "InvalidState")
    resumed_at = activated_at + 30 * 3600  # 20 h paused
    c.set_next_timestamp(resumed_at)
    c.tx(f.resume(sid), a.admin)
    assert state(c, sid) is SessionState.ACTIVE
    assert c.factory.functions.deadlineOf(sid).call() == resumed_at + ACTIVE_S - 10 * 3600


def test_paused_deadline_blocks_resume(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session()
    c.tx(c.factory.functions.pause(sid), a.admin)
    c.increase_time(PAUSED_S)
    c.reverts(c.factory.functions.resume(sid), a.admin, "DeadlinePassed")


# ---------------------------------------------------------------------------- complete / terminate / expire


def test_complete_by_owner_refunds_and_burns(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(budget=10 * E18)
    c.tx(c.factory.functions.chargeBudget(sid, 1, 4 * E18, b"\x01" * 32), a.executor)
    before = c.balance(a.owner)
    receipt = c.tx(c.factory.functions.complete(sid, reaffirm(c.factory, sid)), a.owner)
    assert c.balance(a.owner) == before + 6 * E18
    assert c.balance(c.factory.address) == 0
    s = c.session(sid)
    assert (s["state"], s["reason"], s["budget"]) == (SessionState.COMPLETED, 1, 0)
    assert c.events(receipt, c.factory, "BudgetRefunded")[0]["args"]["amount"] == 6 * E18
    c.reverts(c.factory.functions.ownerOf(sid), a.owner, "ERC721NonexistentToken")
    assert c.factory.functions.deadlineOf(sid).call() == 0
    for fn in (
        c.factory.functions.complete(sid, reaffirm(c.factory, sid)),
        c.factory.functions.terminate(sid, reaffirm(c.factory, sid)),
        c.factory.functions.expire(sid),
    ):
        c.reverts(fn, a.owner, "InvalidState")


def test_complete_by_executor_and_wrong_callers(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session()
    c.reverts(c.factory.functions.complete(sid, reaffirm(c.factory, sid)), a.stranger, "NotOwnerOrExecutor")
    c.tx(c.factory.functions.complete(sid, reaffirm(c.factory, sid)), a.executor)
    assert state(c, sid) is SessionState.COMPLETED
    draft = c.create()
    c.reverts(c.factory.functions.complete(draft, reaffirm(c.factory, draft)), a.owner, "InvalidState")


def test_complete_after_active_deadline_reverts_then_expire(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(budget=10 * E18)
    c.increase_time(ACTIVE_S)
    c.reverts(c.factory.functions.complete(sid, reaffirm(c.factory, sid)), a.owner, "DeadlinePassed")
    c.reverts(c.factory.functions.chargeBudget(sid, 1, E18, b"\x01" * 32), a.executor, "DeadlinePassed")
    c.reverts(c.factory.functions.anchorCheckpoint(sid, 1, b"c", b"\x01" * 32), a.executor, "DeadlinePassed")
    c.reverts(c.factory.functions.terminate(sid, reaffirm(c.factory, sid)), a.owner, "DeadlinePassed")
    before = c.balance(a.owner)
    c.tx(c.factory.functions.expire(sid), a.stranger)
    s = c.session(sid)
    assert (s["state"], s["reason"]) == (SessionState.TERMINATED, 3)  # ACTIVE_TIMED_OUT
    assert s["activeUsed"] >= ACTIVE_S
    assert c.balance(a.owner) == before + 10 * E18


def test_terminate(chain: Chain) -> None:
    c, a = chain, chain.actors
    draft = c.create(budget=7 * E18)
    c.reverts(
        c.factory.functions.terminate(draft, reaffirm(c.factory, draft)), a.stranger, "NotOwnerOrOracle"
    )
    before = c.balance(a.owner)
    c.tx(c.factory.functions.terminate(draft, reaffirm(c.factory, draft)), a.owner)
    s = c.session(draft)
    assert (s["state"], s["reason"]) == (SessionState.TERMINATED, 5)  # CANCELLED
    assert c.balance(a.owner) == before + 7 * E18
    paused = c.active_session()
    c.tx(c.factory.functions.pause(paused), a.admin)
    c.tx(
        c.factory.functions.terminate(paused, reaffirm(c.factory, paused)), a.admin
    )  # the oracle may cancel too
    assert state(c, paused) is SessionState.TERMINATED


def test_expire_each_state(chain: Chain) -> None:
    c, a = chain, chain.actors
    f = c.factory.functions
    draft = c.create()
    data = c.reverts(f.expire(draft), a.stranger, "DeadlineNotPassed")
    assert decode(["uint256", "uint256"], data[4:])[1] == c.session(draft)["enteredAt"] + DRAFT_S
    active = c.active_session()
    paused = c.active_session()
    c.tx(f.pause(paused), a.admin)
    c.reverts(f.expire(active), a.stranger, "DeadlineNotPassed")
    c.reverts(f.expire(paused), a.stranger, "DeadlineNotPassed")
    c.increase_time(DRAFT_S)
    c.tx(f.expire(draft), a.stranger)
    assert c.session(draft)["reason"] == 2  # DRAFT_EXPIRED
    c.reverts(f.expire(paused), a.stranger, "DeadlineNotPassed")
    c.increase_time(PAUSED_S - DRAFT_S)
    receipt = c.tx(f.expire(paused), a.stranger)
    assert c.session(paused)["reason"] == 4  # PAUSED_TOO_LONG
    ev = c.events(receipt, c.factory, "SessionStateChanged")[0]["args"]
    assert (ev["from"], ev["to"], ev["reason"]) == (SessionState.PAUSED, SessionState.TERMINATED, 4)
    c.reverts(f.expire(active), a.stranger, "DeadlineNotPassed")
    c.increase_time(ACTIVE_S - PAUSED_S)
    c.tx(f.expire(active), a.stranger)
    assert c.session(active)["reason"] == 3


def test_nft_transfer_moves_ownership_and_refund(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(budget=10 * E18)
    c.tx(c.factory.functions.transferFrom(a.owner, a.stranger, sid), a.owner)
    assert c.session(sid)["owner"] == a.stranger
    c.reverts(c.factory.functions.complete(sid, reaffirm(c.factory, sid)), a.owner, "NotOwnerOrExecutor")
    before = c.balance(a.stranger)
    c.tx(c.factory.functions.complete(sid, reaffirm(c.factory, sid)), a.stranger)
    assert c.balance(a.stranger) == before + 10 * E18
    assert c.session(sid)["owner"] == a.stranger  # kept after the burn


# ---------------------------------------------------------------------------- checkpoints


def test_anchor_checkpoint(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session()
    f = c.factory.functions
    cid = b"\x01\x55\x12\x20" + b"\xab" * 32  # a CIDv1 (raw, sha2-256) in binary form
    root = b"\x42" * 32
    receipt = c.tx(f.anchorCheckpoint(sid, 1, cid, root), a.executor)
    ev = c.events(receipt, c.factory, "CheckpointAnchored")[0]["args"]
    assert (ev["homeChainId"], ev["sessionId"], ev["seq"], ev["writer"], ev["epoch"]) == (
        c.chain_id,
        sid,
        1,
        a.executor,
        1,
    )
    assert (ev["stateRoot"], ev["cid"]) == (root, cid)
    seq, commitment = f.latestCheckpoint(sid).call()
    assert seq == 1
    assert commitment == keccak(keccak(cid) + root) == f.checkpointCommitment(cid, root).call()
    c.reverts(f.anchorCheckpoint(sid, 1, cid, root), a.executor, "NonIncreasingSeq")
    c.tx(f.anchorCheckpoint(sid, 50, cid, root), a.executor)  # gaps are fine
    data = c.reverts(f.anchorCheckpoint(sid, 49, cid, root), a.executor, "NonIncreasingSeq")
    assert decode(["uint256", "uint64", "uint64"], data[4:]) == (sid, 50, 49)
    c.reverts(f.anchorCheckpoint(sid, 51, cid, root), a.owner, "NotAssignedExecutor")
    draft = c.create()
    c.reverts(f.anchorCheckpoint(draft, 1, cid, root), a.executor, "InvalidState")
    c.reverts(f.anchorCheckpoint(12345, 1, cid, root), a.executor, "SessionNotFound")


def test_reassign_executor_fences_the_old_one(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(budget=10 * E18)
    f = c.factory.functions
    c.tx(f.anchorCheckpoint(sid, 1, b"c1", b"\x01" * 32), a.executor)
    c.tx(f.pause(sid), a.admin)
    c.reverts(f.reassignExecutor(sid, a.executor2), a.stranger, "AccessControlUnauthorizedAccount")
    c.reverts(f.reassignExecutor(sid, a.unbonded), a.admin, "ExecutorNotBonded")
    receipt = c.tx(f.reassignExecutor(sid, a.executor2), a.admin)
    assert c.events(receipt, c.factory, "ExecutorAssigned")[0]["args"]["epoch"] == 2
    c.tx(f.resume(sid), a.admin)
    data = c.reverts(f.anchorCheckpoint(sid, 2, b"c2", b"\x02" * 32), a.executor, "NotAssignedExecutor")
    assert decode(["uint256", "address", "uint32"], data[4:])[2] == 2
    c.reverts(f.chargeBudget(sid, 1, E18, b"\x01" * 32), a.executor, "NotAssignedExecutor")
    c.reverts(f.complete(sid, reaffirm(c.factory, sid)), a.executor, "NotOwnerOrExecutor")
    receipt = c.tx(f.anchorCheckpoint(sid, 2, b"c2", b"\x02" * 32), a.executor2)
    assert c.events(receipt, c.factory, "CheckpointAnchored")[0]["args"]["epoch"] == 2
    draft = c.create()
    c.reverts(f.reassignExecutor(draft, a.executor2), a.admin, "InvalidState")


def test_unbonded_executor_can_still_be_fenced_out(chain: Chain) -> None:
    """An executor that unbonds mid-session keeps its assignment until the oracle reassigns."""
    c, a = chain, chain.actors
    sid = c.active_session()
    c.tx(c.registry.functions.requestUnbond(1), a.executor)
    assert not c.registry.functions.isBonded(a.executor).call()
    c.tx(c.factory.functions.reassignExecutor(sid, a.executor2), a.admin)
    assert c.session(sid)["executor"] == a.executor2


# ---------------------------------------------------------------------------- guard


def test_validate_session_action(chain: Chain) -> None:
    c, a = chain, chain.actors
    transfer = keccak(text="transfer(address,uint256)")[:4]
    sid = c.create()
    f = c.factory.functions
    data = transfer + b"\x00" * 64
    c.reverts(f.validateSessionAction(sid, c.agpt.address, data), a.executor, "InvalidState")
    c.activate(sid, allowlist=[(c.agpt.address, transfer), (a.stranger, b"\x00" * 4)])
    f.validateSessionAction(sid, c.agpt.address, data).call({"from": a.executor})
    f.validateSessionAction(sid, c.agpt.address, data).call({"from": a.owner})
    f.validateSessionAction(sid, a.stranger, b"").call({"from": a.executor})  # plain ETH transfer
    c.reverts(f.validateSessionAction(sid, c.agpt.address, data), a.stranger, "NotOwnerOrExecutor")
    approve = keccak(text="approve(address,uint256)")[:4] + b"\x00" * 64
    c.reverts(f.validateSessionAction(sid, c.agpt.address, approve), a.executor, "ActionNotAllowed")
    c.reverts(f.validateSessionAction(sid, c.registry.address, data), a.executor, "ActionNotAllowed")
    c.tx(f.pause(sid), a.admin)
    c.reverts(f.validateSessionAction(sid, c.agpt.address, data), a.executor, "InvalidState")
