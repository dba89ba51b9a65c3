"""The contract and agentgpt.lifecycle agree: the same random operations at the same times drive both,
and after every step the on-chain session equals the model's SessionClock.

Every transaction is mined at an explicit timestamp (evm_setNextBlockTimestamp) with explicit gas, so a
refused operation is a mined, reverted transaction at a known time: a LifecycleError in the model must be
a revert on chain and vice versa. Mapping: TERMINATE = `terminate` (owner cancels before the deadline),
EXPIRE = `expire` (anyone, once the deadline has passed); both refund and burn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agentgpt.lifecycle import (
    Action,
    Durations,
    LifecycleError,
    SessionClock,
    SessionState,
    TerminalReason,
    apply,
)
from tests.contracts.chain import reaffirm

from .chain import E18, Chain
from .conftest import UNBONDING_DELAY

DUR = Durations()
REASON_CODE = {
    None: 0,
    TerminalReason.COMPLETED: 1,
    TerminalReason.DRAFT_EXPIRED: 2,
    TerminalReason.ACTIVE_TIMED_OUT: 3,
    TerminalReason.PAUSED_TOO_LONG: 4,
    TerminalReason.CANCELLED: 5,
}
# steps of time: mostly small, with the values that straddle every limit (just before, exactly at)
DELTAS = st.sampled_from(
    [1, 60, 600, 1800] * 4
    + [
        DUR.draft - 2,
        DUR.draft,
        6 * 3600,
        DUR.paused - 2,
        DUR.paused,
        DUR.active // 2,
        DUR.active - DUR.paused,
    ]
)
# weighted: the transitions that keep a session alive come up more often than the ones that end it
OPS = st.sampled_from(
    [Action.ACTIVATE] * 3
    + [Action.EXECUTE_TASKS] * 3
    + [Action.PAUSE] * 2
    + [Action.RESUME] * 2
    + [Action.EXPIRE] * 2
    + [Action.COMPLETE, Action.TERMINATE]
)


class LifecycleMachine(RuleBasedStateMachine):
    chain: Chain  # set by the test function
    outcomes: Counter[tuple[str, bool]] = Counter()  # (action, accepted) over all examples

    @initialize()
    def start(self) -> None:
        c = self.chain
        self.snapshot = c.rpc("evm_snapshot")
        c.tx(c.agpt.functions.approve(c.factory.address, 10**9 * E18), c.actors.owner)
        self.now = c.now() + 10
        self.steps: list[str] = []
        self._create()

    def _create(self) -> None:
        c, a = self.chain, self.chain.actors
        self.now += 1
        receipt = self._send(c.factory.functions.createSession(b"\x01" * 32, 10 * E18), a.owner)
        assert receipt["status"] == 1
        self.sid = int(c.events(receipt, c.factory, "SessionCreated")[0]["args"]["sessionId"])
        self.clock = SessionClock(SessionState.DRAFT, self.now)

    def teardown(self) -> None:
        if hasattr(self, "snapshot"):
            self.chain.rpc("evm_revert", [self.snapshot])

    def _send(self, fn: Any, sender: str) -> Any:
        self.chain.set_next_timestamp(self.now)
        return self.chain.send_raw(fn, sender)

    def _step(self, action: Action, fn: Any, sender: str) -> None:
        self.now += 1
        try:
            expected: SessionClock | None = apply(self.clock, action, self.now, DUR)
        except LifecycleError:
            expected = None
        receipt = self._send(fn, sender)
        self.steps.append(f"{action.value}@{self.now} -> {'ok' if receipt['status'] else 'revert'}")
        assert receipt["status"] == (1 if expected else 0), (
            f"{action.value} at {self.now}: model says {'ok' if expected else 'refused'}, chain says "
            f"{'ok' if receipt['status'] else 'revert'}; clock {self.clock}; steps {self.steps}"
        )
        self.outcomes[(action.value, expected is not None)] += 1
        if expected is not None:
            self.clock = expected

    @rule(delta=DELTAS)
    def advance(self, delta: int) -> None:
        self.now += delta

    @precondition(lambda self: self.clock.state.is_final)
    @rule()
    def new_session(self) -> None:
        """Once a session has ended, carry on with a fresh one so that every example walks further."""
        self._create()

    @rule(action=OPS)
    def op(self, action: Action) -> None:
        c, a = self.chain, self.chain.actors
        f = c.factory.functions
        calls: dict[Action, tuple[Callable[[], Any], str]] = {
            Action.ACTIVATE: (lambda: f.activate(self.sid, b"\x02" * 32, a.executor, [], b""), a.owner),
            Action.PAUSE: (lambda: f.pause(self.sid), a.admin),
            Action.RESUME: (lambda: f.resume(self.sid), a.admin),
            Action.COMPLETE: (lambda: f.complete(self.sid, reaffirm(c.factory, self.sid)), a.owner),
            Action.TERMINATE: (lambda: f.terminate(self.sid, reaffirm(c.factory, self.sid)), a.owner),
            Action.EXPIRE: (lambda: f.expire(self.sid), a.stranger),
            # EXECUTE_TASKS maps to anchoring a checkpoint: allowed exactly while ACTIVE and not overdue
            Action.EXECUTE_TASKS: (
                lambda: f.anchorCheckpoint(self.sid, len(self.steps) + 1, b"cid", b"\x03" * 32),
                a.executor,
            ),
        }
        make, sender = calls[action]
        self._step(action, make(), sender)

    @invariant()
    def chain_matches_model(self) -> None:
        if not hasattr(self, "sid"):
            return
        s = self.chain.session(self.sid)
        clock = self.clock
        assert SessionState(s["state"]) is clock.state, self.steps
        assert s["enteredAt"] == clock.entered_at, self.steps
        assert s["activeUsed"] == clock.active_used, self.steps
        assert s["reason"] == REASON_CODE[clock.terminal_reason], self.steps
        deadline = clock.deadline(DUR)
        assert self.chain.factory.functions.deadlineOf(self.sid).call() == (deadline or 0), self.steps
        if clock.state.is_final:
            assert s["budget"] == 0


@pytest.mark.timeout(600)  # a long random walk on anvil; room for a loaded machine with coverage on
def test_contract_follows_the_lifecycle_model(chain: Chain) -> None:
    LifecycleMachine.chain = chain
    LifecycleMachine.outcomes = Counter()
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,  # a fixed walk: the coverage check below must not flake
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
    print(sorted(LifecycleMachine.outcomes.items()))
    # the random walk must have exercised both outcomes of the common transitions
    for action in ("activate", "pause", "resume", "complete", "terminate", "expire", "execute_tasks"):
        assert LifecycleMachine.outcomes[(action, True)] > 0, (action, LifecycleMachine.outcomes)
        assert LifecycleMachine.outcomes[(action, False)] > 0, (action, LifecycleMachine.outcomes)


# ------------------------------------------------------------------------------------ money
AMOUNTS = st.sampled_from([1, E18, 3 * E18, 10 * E18, 40 * E18])
BONDERS = ("executor2", "stranger", "unbonded")  # never the executor the sessions are activated with
BPS = st.sampled_from([1, 500, 1500, 10_000])


class MoneyMachine(LifecycleMachine):
    """The lifecycle walk with budgets and executor bonds alongside: after every step the escrow equals
    the budgets of the live sessions as the model keeps them, nothing is lost (deposits = owner refunds +
    executor charges + escrow, each side read from the token balances), and the registry holds exactly
    the bonds it records, which equal the model's."""

    money: Counter[str] = Counter()  # accepted operations over all examples

    @initialize()
    def start(self) -> None:
        c, a = self.chain, self.chain.actors
        self.deposits = self.refunds = self.charges = self.burned = self.slashed_out = 0
        self.budgets: dict[int, int] = {}  # live sessions: the model's budget
        self.charged_seq: dict[int, int] = {}
        for who in BONDERS:  # before the walk's timestamps start (each later transaction sets its own)
            c.tx(c.agpt.functions.approve(c.registry.address, 10**9 * E18), getattr(a, who))
        super().start()
        self.evidence = 0
        self.bonds = {who: list(c.registry.functions.bondOf(getattr(a, who)).call()[:2]) for who in BONDERS}
        # the other accounts' bonds, which no rule changes (the sessions' executor's among them)
        others = [getattr(a, f) for f in a.__dataclass_fields__ if f not in BONDERS]
        self.fixed_bonds = sum(sum(c.registry.functions.bondOf(x).call()[:2]) for x in others)
        self.balances0 = {
            name: c.agpt.functions.balanceOf(addr).call()
            for name, addr in (
                ("owner", a.owner),
                ("executor", a.executor),
                ("factory", c.factory.address),
                ("registry", c.registry.address),
                ("admin", a.admin),
                *((who, getattr(a, who)) for who in BONDERS),
            )
        }
        # the session start() created before the balances were read: count it as if made after
        self.balances0["owner"] += self.budgets[self.sid]
        self.balances0["factory"] -= self.budgets[self.sid]
        self.supply0 = c.agpt.functions.totalSupply().call()

    def _create(self) -> None:
        super()._create()
        self.budgets[self.sid] = 10 * E18
        self.charged_seq[self.sid] = 0
        self.deposits += 10 * E18

    def _step(self, action: Action, fn: Any, sender: str) -> None:
        was_final = self.clock.state.is_final
        super()._step(action, fn, sender)
        if not was_final and self.clock.state.is_final:  # the escrow went back to the owner
            self.refunds += self.budgets.pop(self.sid)

    def _live_now(self) -> bool:
        """Whether a budget operation at `self.now` finds the session ACTIVE and before its deadline."""
        try:
            apply(self.clock, Action.EXECUTE_TASKS, self.now, DUR)
        except LifecycleError:
            return False
        return True

    @rule(charge=st.booleans(), amount=AMOUNTS, replay=st.booleans())
    def budget_op(self, charge: bool, amount: int, replay: bool) -> None:
        """The owner adds to the budget, or the executor charges it (a replayed seq must revert)."""
        if charge:
            self._charge(amount, replay)
        else:
            self._add_budget(amount)

    @rule(
        op=st.sampled_from(["bond", "bond", "unbond", "unbond", "withdraw", "wait_and_withdraw", "penalise"]),
        who=st.sampled_from(BONDERS),
        amount=AMOUNTS,
        bps=BPS,
        burn=st.booleans(),
    )
    def bond_op(self, op: str, who: str, amount: int, bps: int, burn: bool) -> None:
        if op == "bond":
            self._bond(who, amount)
        elif op == "unbond":
            self._request_unbond(who, amount)
        elif op == "penalise":
            self._penalise(who, bps, burn)
        else:
            if op == "wait_and_withdraw":
                self.now += UNBONDING_DELAY
            self._withdraw(who)

    def _add_budget(self, amount: int) -> None:
        c = self.chain
        self.now += 1
        expected = self._live_now()
        receipt = self._send(c.factory.functions.updateBudget(self.sid, amount), c.actors.owner)
        assert receipt["status"] == (1 if expected else 0), (self.clock, self.steps)
        if expected:
            self.budgets[self.sid] += amount
            self.deposits += amount
            self.money["add_budget"] += 1

    def _charge(self, amount: int, replay: bool) -> None:
        c = self.chain
        self.now += 1
        through = self.charged_seq.get(self.sid, 0) + (0 if replay else 1)
        expected = self._live_now() and not replay and amount <= self.budgets.get(self.sid, 0)
        fn = c.factory.functions.chargeBudget(self.sid, through, amount, b"\x04" * 32)
        receipt = self._send(fn, c.actors.executor)
        assert receipt["status"] == (1 if expected else 0), (amount, replay, self.clock, self.steps)
        if expected:
            self.budgets[self.sid] -= amount
            self.charged_seq[self.sid] = through
            self.charges += amount
            self.money["charge"] += 1

    # ------------------------------------------------------------------ bonds
    def _bond(self, who: str, amount: int) -> None:
        c = self.chain
        self.now += 1
        receipt = self._send(c.registry.functions.bond(amount), getattr(c.actors, who))
        assert receipt["status"] == 1
        self.bonds[who][0] += amount
        self.money["bond"] += 1

    def _request_unbond(self, who: str, amount: int) -> None:
        c = self.chain
        self.now += 1
        receipt = self._send(c.registry.functions.requestUnbond(amount), getattr(c.actors, who))
        expected = amount <= self.bonds[who][0]
        assert receipt["status"] == (1 if expected else 0)
        if expected:
            self.bonds[who][0] -= amount
            self.bonds[who][1] += amount
            self.money["unbond"] += 1

    def _withdraw(self, who: str) -> None:
        c = self.chain
        addr = getattr(c.actors, who)
        unlock_at = c.registry.functions.bondOf(addr).call()[2]
        self.now += 1
        receipt = self._send(c.registry.functions.withdraw(), addr)
        expected = self.bonds[who][1] > 0 and self.now >= unlock_at
        assert receipt["status"] == (1 if expected else 0), (who, self.bonds[who], unlock_at, self.now)
        if expected:
            self.bonds[who][1] = 0
            self.money["withdraw"] += 1

    def _penalise(self, who: str, bps: int, burn: bool) -> None:
        c, a = self.chain, self.chain.actors
        self.evidence += 1
        evidence = f"session {self.sid} checkpoint {self.evidence}: test penalty"
        active, unbonding = self.bonds[who]
        amount = (active + unbonding) * bps // 10_000
        if burn:
            fn = c.registry.functions.burn(getattr(a, who), bps, evidence)
        else:
            fn = c.registry.functions.slash(getattr(a, who), bps, a.admin, evidence)
        self.now += 1
        assert self._send(fn, a.admin)["status"] == 1
        taken_active = min(amount, active)
        self.bonds[who] = [active - taken_active, unbonding - (amount - taken_active)]
        if burn:
            self.burned += amount
        else:
            self.slashed_out += amount
        self.money["burn" if burn else "slash"] += 1
        # the same evidence is penalised once: a second claim reverts
        self.now += 1
        assert self._send(fn, a.admin)["status"] == 0

    # ------------------------------------------------------------------ invariants
    @invariant()
    def nothing_is_lost(self) -> None:
        if not hasattr(self, "balances0"):
            return
        c, a = self.chain, self.chain.actors
        bal = c.agpt.functions.balanceOf
        escrow = bal(c.factory.address).call() - self.balances0["factory"]
        assert escrow == sum(self.budgets.values()), (escrow, self.budgets, self.steps)
        for sid, budget in self.budgets.items():
            assert c.factory.functions.budgetOf(sid).call()[0] == budget, (sid, self.steps)
        owner_now = bal(a.owner).call() - self.balances0["owner"]
        assert owner_now == self.refunds - self.deposits, self.steps  # refunds as the model predicts them
        assert bal(a.executor).call() - self.balances0["executor"] == self.charges, self.steps
        assert self.deposits == self.refunds + self.charges + escrow

    @invariant()
    def registry_holds_exactly_the_bonds(self) -> None:
        if not hasattr(self, "balances0"):
            return
        c, a = self.chain, self.chain.actors
        recorded = self.fixed_bonds
        for who in BONDERS:
            bond = list(c.registry.functions.bondOf(getattr(a, who)).call()[:2])
            assert bond == self.bonds[who], who
            recorded += sum(bond)
        assert c.agpt.functions.balanceOf(c.registry.address).call() == recorded
        # where penalties went: slashes to the beneficiary (admin), burns out of the supply
        assert c.agpt.functions.totalSupply().call() == self.supply0 - self.burned
        assert c.agpt.functions.balanceOf(a.admin).call() == self.balances0["admin"] + self.slashed_out


@pytest.mark.timeout(600)  # about 2 minutes on an idle machine: room for a loaded one
def test_budgets_and_bonds_are_conserved(chain: Chain) -> None:
    MoneyMachine.chain = chain
    MoneyMachine.outcomes = Counter()
    MoneyMachine.money = Counter()
    run_state_machine_as_test(
        MoneyMachine,
        settings=settings(
            max_examples=6,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
    print(sorted(MoneyMachine.money.items()))
    for op in ("add_budget", "charge", "bond", "unbond", "withdraw", "slash", "burn"):
        assert MoneyMachine.money[op] > 0, (op, MoneyMachine.money)
