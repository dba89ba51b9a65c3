"""AGPT (mint, burn, permit) and ExecutorRegistry (bond, unbond, slash, burn)."""

from __future__ import annotations

from eth_account import Account
from eth_utils.crypto import keccak

from agentgpt.chain.eip712 import sign_permit

from .chain import E18, Chain
from .conftest import MIN_BOND, UNBONDING_DELAY


def test_agpt_metadata_mint_burn(chain: Chain) -> None:
    c, a = chain, chain.actors
    t = c.agpt.functions
    assert (t.name().call(), t.symbol().call(), t.decimals().call()) == ("AgentGPT Token", "AGPT", 18)
    supply = t.totalSupply().call()
    c.tx(t.mint(a.stranger, 5 * E18), a.admin)
    assert t.totalSupply().call() == supply + 5 * E18
    c.reverts(t.mint(a.stranger, 1), a.stranger, "AccessControlUnauthorizedAccount")
    c.tx(t.burn(2 * E18), a.stranger)
    assert t.totalSupply().call() == supply + 3 * E18


def test_agpt_permit(chain: Chain) -> None:
    c, a = chain, chain.actors
    holder = Account.create()
    deadline = c.now() + 3600
    p = sign_permit(
        holder.key,
        chain_id=c.chain_id,
        token=c.agpt.address,
        owner=holder.address,
        spender=a.stranger,
        value=E18,
        nonce=0,
        deadline=deadline,
    )
    fn = c.agpt.functions.permit(holder.address, a.stranger, E18, deadline, p.v, p.r, p.s)
    c.reverts(
        c.agpt.functions.permit(holder.address, a.stranger, 2 * E18, deadline, p.v, p.r, p.s),
        a.relayer,
        "ERC2612InvalidSigner",
    )
    c.tx(fn, a.relayer)
    assert c.agpt.functions.allowance(holder.address, a.stranger).call() == E18
    assert c.agpt.functions.nonces(holder.address).call() == 1
    c.reverts(fn, a.relayer, "ERC2612InvalidSigner")  # replay: the nonce moved on
    old = sign_permit(
        holder.key,
        chain_id=c.chain_id,
        token=c.agpt.address,
        owner=holder.address,
        spender=a.stranger,
        value=E18,
        nonce=1,
        deadline=c.now() - 1,
    )
    c.reverts(
        c.agpt.functions.permit(holder.address, a.stranger, E18, old.deadline, old.v, old.r, old.s),
        a.relayer,
        "ERC2612ExpiredSignature",
    )


def test_bond_and_is_bonded(chain: Chain) -> None:
    c, a = chain, chain.actors
    r = c.registry.functions
    assert r.isBonded(a.executor).call()
    assert not r.isBonded(a.unbonded).call()
    c.tx(c.agpt.functions.approve(c.registry.address, MIN_BOND), a.unbonded)
    receipt = c.tx(r.bond(MIN_BOND - 1), a.unbonded)
    ev = c.events(receipt, c.registry, "Bonded")[0]["args"]
    assert (ev["amount"], ev["activeBond"]) == (MIN_BOND - 1, MIN_BOND - 1)
    assert not r.isBonded(a.unbonded).call()
    c.tx(r.bond(1), a.unbonded)
    assert r.isBonded(a.unbonded).call()
    assert c.balance(c.registry.address) == 3 * MIN_BOND
    c.reverts(r.bond(0), a.unbonded, "ZeroAmount")
    c.reverts(r.bond(E18), a.unbonded, "ERC20InsufficientAllowance")


def test_unbond_and_withdraw(chain: Chain) -> None:
    c, a = chain, chain.actors
    r = c.registry.functions
    c.reverts(r.withdraw(), a.executor, "NothingToWithdraw")
    c.reverts(r.requestUnbond(MIN_BOND + 1), a.executor, "InsufficientBond")
    c.reverts(r.requestUnbond(0), a.executor, "ZeroAmount")
    receipt = c.tx(r.requestUnbond(40 * E18), a.executor)
    ev = c.events(receipt, c.registry, "UnbondRequested")[0]["args"]
    assert ev["unlockAt"] == c.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + UNBONDING_DELAY
    assert r.bondOf(a.executor).call() == [MIN_BOND - 40 * E18, 40 * E18, ev["unlockAt"]]
    assert not r.isBonded(a.executor).call()
    c.reverts(r.withdraw(), a.executor, "UnbondingNotElapsed")
    c.increase_time(UNBONDING_DELAY)
    before = c.balance(a.executor)
    c.tx(r.withdraw(), a.executor)
    assert c.balance(a.executor) == before + 40 * E18
    assert r.bondOf(a.executor).call() == [MIN_BOND - 40 * E18, 0, 0]


def test_slash_false_recovery_claim(chain: Chain) -> None:
    c, a = chain, chain.actors
    r = c.registry.functions
    assert r.FALSE_RECOVERY_SLASH_BPS().call() == 1500
    c.tx(r.requestUnbond(MIN_BOND), a.executor)  # unbonding stake is still slashable
    evidence = "false_recovery_claim session=1 seq=50 cid=bafy-example"
    c.reverts(r.slash(a.executor, 1500, a.stranger, evidence), a.stranger, "AccessControlUnauthorizedAccount")
    c.reverts(r.slash(a.executor, 1500, a.stranger, ""), a.admin, "EmptyEvidence")
    c.reverts(r.slash(a.executor, 0, a.stranger, evidence), a.admin, "InvalidBps")
    c.reverts(r.slash(a.executor, 10_001, a.stranger, evidence), a.admin, "InvalidBps")
    c.reverts(r.slash(a.executor, 1500, "0x" + "00" * 20, evidence), a.admin, "ZeroAddress")
    before = c.balance(a.stranger)
    receipt = c.tx(r.slash(a.executor, 1500, a.stranger, evidence), a.admin)
    ev = c.events(receipt, c.registry, "Slashed")[0]["args"]
    expected = MIN_BOND * 1500 // 10_000
    assert (
        ev["executor"],
        ev["bps"],
        ev["amount"],
        ev["beneficiary"],
        ev["evidenceHash"],
        ev["evidence"],
    ) == (
        a.executor,
        1500,
        expected,
        a.stranger,
        keccak(text=evidence),
        evidence,
    )
    assert c.balance(a.stranger) == before + expected
    assert r.bondOf(a.executor).call()[:2] == [0, MIN_BOND - expected]
    # the same evidence is penalised once
    assert r.penalized(keccak(text=evidence)).call()
    c.reverts(r.slash(a.executor, 1500, a.stranger, evidence), a.admin, "AlreadyPenalized")


def test_burn_data_loss(chain: Chain) -> None:
    c, a = chain, chain.actors
    r = c.registry.functions
    assert r.DATA_LOSS_BURN_BPS().call() == 500
    supply = c.agpt.functions.totalSupply().call()
    evidence = "data_loss session=1 seq=50 cid=bafy-example"
    c.reverts(r.burn(a.executor, 500, evidence), a.executor, "AccessControlUnauthorizedAccount")
    receipt = c.tx(r.burn(a.executor, 500, evidence), a.admin)
    burned = MIN_BOND * 500 // 10_000
    ev = c.events(receipt, c.registry, "Burned")[0]["args"]
    assert (ev["amount"], ev["bps"], ev["evidenceHash"], ev["evidence"]) == (
        burned,
        500,
        keccak(text=evidence),
        evidence,
    )
    assert c.agpt.functions.totalSupply().call() == supply - burned
    assert r.bondOf(a.executor).call()[0] == MIN_BOND - burned
    assert not r.isBonded(a.executor).call()  # now under the minimum
    c.reverts(r.burn(a.executor, 500, evidence), a.admin, "AlreadyPenalized")
