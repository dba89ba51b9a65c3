"""Owners act without ETH: the `...BySig` variants with EIP-712 signatures and AGPT permits."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from agentgpt.chain import eip712
from agentgpt.lifecycle import SessionState
from tests.contracts.chain import reaffirm

from .chain import E18, Chain

WF = b"\x5a" * 32


def _gasless_owner(c: Chain, amount: int = 100 * E18) -> LocalAccount:
    owner: LocalAccount = Account.create()
    c.tx(c.agpt.functions.mint(owner.address, amount), c.actors.admin)
    assert c.w3.eth.get_balance(owner.address) == 0
    return owner


def _create_by_sig(c: Chain, owner: LocalAccount, budget: int, nonce: int | None = None) -> int:
    deadline = c.now() + 600
    nonce = c.factory.functions.nonces(owner.address).call() if nonce is None else nonce
    sig = eip712.sign_create_session(
        owner.key,
        chain_id=c.chain_id,
        factory=c.factory.address,
        owner=owner.address,
        workflow_hash=WF,
        initial_budget=budget,
        nonce=nonce,
        deadline=deadline,
    )
    permit = eip712.sign_permit(
        owner.key,
        chain_id=c.chain_id,
        token=c.agpt.address,
        owner=owner.address,
        spender=c.factory.address,
        value=budget,
        nonce=c.agpt.functions.nonces(owner.address).call(),
        deadline=deadline,
    )
    fn = c.factory.functions.createSessionBySig(
        owner.address, WF, budget, nonce, deadline, sig, permit.as_tuple()
    )
    receipt = c.tx(fn, c.actors.relayer)
    return int(c.events(receipt, c.factory, "SessionCreated")[0]["args"]["sessionId"])


def test_typehashes_match_python_type_strings(chain: Chain) -> None:
    from eth_account._utils.encode_typed_data.encoding_and_hashing import encode_type

    f = chain.factory.functions
    for primary, getter in [
        ("CreateSession", f.CREATE_TYPEHASH),
        ("Activate", f.ACTIVATE_TYPEHASH),
        ("UpdateBudget", f.UPDATE_BUDGET_TYPEHASH),
        ("Complete", f.COMPLETE_TYPEHASH),
        ("AllowedCall", f.ALLOWED_CALL_TYPEHASH),
    ]:
        assert getter().call() == keccak(text=encode_type(primary, eip712.FACTORY_TYPES)), primary


def test_full_lifecycle_by_signature_without_eth(chain: Chain) -> None:
    c, a = chain, chain.actors
    owner = _gasless_owner(c)
    sid = _create_by_sig(c, owner, 40 * E18)
    assert c.factory.functions.ownerOf(sid).call() == owner.address
    assert c.balance(owner.address) == 60 * E18
    assert c.factory.functions.nonces(owner.address).call() == 1

    allow = [(c.agpt.address, keccak(text="transfer(address,uint256)")[:4])]
    deadline = c.now() + 600
    sig = eip712.sign_activate(
        owner.key,
        chain_id=c.chain_id,
        factory=c.factory.address,
        session_id=sid,
        workflow_hash=b"\x77" * 32,
        executor=a.executor,
        allowlist=allow,
        nonce=1,
        deadline=deadline,
    )
    # the allowlist is part of what the owner signed
    c.reverts(
        c.factory.functions.activateBySig(sid, b"\x77" * 32, a.executor, [], b"", 1, deadline, sig),
        a.relayer,
        "InvalidSignature",
    )
    c.reverts(
        c.factory.functions.activateBySig(sid, b"\x77" * 32, a.executor2, allow, b"", 1, deadline, sig),
        a.relayer,
        "InvalidSignature",
    )
    c.tx(
        c.factory.functions.activateBySig(sid, b"\x77" * 32, a.executor, allow, b"", 1, deadline, sig),
        a.relayer,
    )
    s = c.session(sid)
    assert (s["state"], s["executor"], s["workflowHash"]) == (SessionState.ACTIVE, a.executor, b"\x77" * 32)
    assert c.factory.functions.isAllowed(sid, *allow[0]).call()

    sig = eip712.sign_update_budget(
        owner.key,
        chain_id=c.chain_id,
        factory=c.factory.address,
        session_id=sid,
        amount=10 * E18,
        nonce=2,
        deadline=deadline,
    )
    permit = eip712.sign_permit(
        owner.key,
        chain_id=c.chain_id,
        token=c.agpt.address,
        owner=owner.address,
        spender=c.factory.address,
        value=10 * E18,
        nonce=1,
        deadline=deadline,
    )
    c.tx(c.factory.functions.updateBudgetBySig(sid, 10 * E18, 2, deadline, sig, permit.as_tuple()), a.relayer)
    assert c.session(sid)["budget"] == 50 * E18

    sig = eip712.sign_complete(
        owner.key, chain_id=c.chain_id, factory=c.factory.address, session_id=sid, nonce=3, deadline=deadline
    )
    c.tx(c.factory.functions.completeBySig(sid, reaffirm(c.factory, sid), 3, deadline, sig), a.relayer)
    assert c.session(sid)["state"] == SessionState.COMPLETED
    assert c.balance(owner.address) == 100 * E18
    assert c.w3.eth.get_balance(owner.address) == 0


def test_bad_expired_and_replayed_signatures(chain: Chain) -> None:
    c, a = chain, chain.actors
    owner = _gasless_owner(c)
    f = c.factory.functions
    deadline = c.now() + 600
    kw: dict[str, Any] = {
        "chain_id": c.chain_id,
        "factory": c.factory.address,
        "owner": owner.address,
        "workflow_hash": WF,
        "initial_budget": 0,
    }
    good = eip712.sign_create_session(owner.key, nonce=0, deadline=deadline, **kw)
    wrong_key = eip712.sign_create_session(c.key_of[a.stranger], nonce=0, deadline=deadline, **kw)
    c.reverts(
        f.createSessionBySig(owner.address, WF, 0, 0, deadline, wrong_key, eip712.NO_PERMIT),
        a.relayer,
        "InvalidSignature",
    )
    # signed for budget 0, relayed with another budget
    c.reverts(
        f.createSessionBySig(owner.address, WF, 1, 0, deadline, good, eip712.NO_PERMIT),
        a.relayer,
        "InvalidSignature",
    )
    c.reverts(
        f.createSessionBySig(owner.address, WF, 0, 0, deadline, good[:64], eip712.NO_PERMIT),
        a.relayer,
        "InvalidSignature",
    )
    expired_deadline = c.now() - 1
    expired = eip712.sign_create_session(owner.key, nonce=0, deadline=expired_deadline, **kw)
    c.reverts(
        f.createSessionBySig(owner.address, WF, 0, 0, expired_deadline, expired, eip712.NO_PERMIT),
        a.relayer,
        "SignatureExpired",
    )
    # another chain's or contract's domain does not verify here
    other = eip712.sign_create_session(
        owner.key, nonce=0, deadline=deadline, **{**kw, "chain_id": c.chain_id + 1}
    )
    c.reverts(
        f.createSessionBySig(owner.address, WF, 0, 0, deadline, other, eip712.NO_PERMIT),
        a.relayer,
        "InvalidSignature",
    )
    c.tx(f.createSessionBySig(owner.address, WF, 0, 0, deadline, good, eip712.NO_PERMIT), a.relayer)
    c.reverts(
        f.createSessionBySig(owner.address, WF, 0, 0, deadline, good, eip712.NO_PERMIT),
        a.relayer,
        "InvalidAccountNonce",
    )  # replay
    # a signature for a future nonce is refused too (nonces are sequential)
    ahead = eip712.sign_create_session(owner.key, nonce=5, deadline=deadline, **kw)
    c.reverts(
        f.createSessionBySig(owner.address, WF, 0, 5, deadline, ahead, eip712.NO_PERMIT),
        a.relayer,
        "InvalidAccountNonce",
    )


def test_by_sig_still_enforces_lifecycle(chain: Chain) -> None:
    c, a = chain, chain.actors
    owner = _gasless_owner(c)
    sid = _create_by_sig(c, owner, E18)
    deadline = c.now() + 7200
    sig = eip712.sign_complete(
        owner.key, chain_id=c.chain_id, factory=c.factory.address, session_id=sid, nonce=1, deadline=deadline
    )
    c.reverts(
        c.factory.functions.completeBySig(sid, reaffirm(c.factory, sid), 1, deadline, sig),
        a.relayer,
        "InvalidState",
    )  # DRAFT
    # a stranger's signature cannot act for the owner
    sig = eip712.sign_complete(
        c.key_of[a.stranger],
        chain_id=c.chain_id,
        factory=c.factory.address,
        session_id=sid,
        nonce=1,
        deadline=deadline,
    )
    c.reverts(
        c.factory.functions.completeBySig(sid, reaffirm(c.factory, sid), 1, deadline, sig),
        a.relayer,
        "InvalidSignature",
    )
    c.increase_time(3600)
    sig = eip712.sign_activate(
        owner.key,
        chain_id=c.chain_id,
        factory=c.factory.address,
        session_id=sid,
        workflow_hash=WF,
        executor=a.executor,
        allowlist=[],
        nonce=1,
        deadline=deadline,
    )
    c.reverts(
        c.factory.functions.activateBySig(sid, WF, a.executor, [], b"", 1, deadline, sig),
        a.relayer,
        "DeadlinePassed",
    )


def test_create_by_sig_without_permit_or_allowance_fails(chain: Chain) -> None:
    c, a = chain, chain.actors
    owner = _gasless_owner(c)
    deadline = c.now() + 600
    sig = eip712.sign_create_session(
        owner.key,
        chain_id=c.chain_id,
        factory=c.factory.address,
        owner=owner.address,
        workflow_hash=WF,
        initial_budget=E18,
        nonce=0,
        deadline=deadline,
    )
    c.reverts(
        c.factory.functions.createSessionBySig(owner.address, WF, E18, 0, deadline, sig, eip712.NO_PERMIT),
        a.relayer,
        "ERC20InsufficientAllowance",
    )
