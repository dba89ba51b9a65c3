"""SessionAccount's action policies (ERC-7715-shaped limits committed at activation): each rule refuses a
call that breaks it with PolicyViolation naming the rule, counts and periods are kept on chain, and calls
without a policy, or the owner's own outside ACTIVE, are limited as before."""

from __future__ import annotations

from eth_utils.crypto import keccak
from web3.types import Wei

from agentgpt.chain import eip712
from agentgpt.policies import ZERO_ADDRESS, Policy, encode_policies, policy_hash

from .chain import E18, Chain

TRANSFER = keccak(text="transfer(address,uint256)")[:4]
APPROVE = keccak(text="approve(address,uint256)")[:4]


def transfer(c: Chain, to: str, amount: int) -> bytes:
    return bytes.fromhex(c.agpt.encode_abi("transfer", [to, amount])[2:])


def funded(
    c: Chain, policies: list[Policy], extra: list[tuple[str, bytes]] | None = None
) -> tuple[int, object]:
    allow = [(c.agpt.address, TRANSFER), *(extra or [])]
    sid = c.active_session(allowlist=allow, policies=encode_policies(policies))
    acc = c.account_contract(sid)
    c.tx(c.agpt.functions.transfer(acc.address, 20 * E18), c.actors.owner)
    return sid, acc


def test_recipients_and_amounts_per_call(chain: Chain) -> None:
    c, a = chain, chain.actors
    policy = Policy(c.agpt.address, TRANSFER, recipient_arg=0, recipients=(a.relayer.lower(), ZERO_ADDRESS),
                    amount_arg=1, max_per_call=2 * E18)  # fmt: skip
    _, acc = funded(c, [policy])
    rule = acc.functions.policyOf(c.agpt.address, TRANSFER).call()
    assert rule[0] is True and acc.functions.recipientAllowed(c.agpt.address, TRANSFER, acc.address).call()
    c.tx(acc.functions.execute(1, 0, c.agpt.address, 0, transfer(c, a.relayer, 2 * E18)), a.executor)
    c.tx(acc.functions.execute(2, 0, c.agpt.address, 0, transfer(c, acc.address, E18)), a.executor)  # self
    c.reverts(acc.functions.execute(3, 0, c.agpt.address, 0, transfer(c, a.stranger, E18)), a.executor,
              "PolicyViolation")  # fmt: skip
    data = c.reverts(acc.functions.execute(3, 0, c.agpt.address, 0, transfer(c, a.relayer, 3 * E18)),
                     a.executor, "PolicyViolation")  # fmt: skip
    assert b"max_per_call" in data
    # the owner is held to the policy too while ACTIVE; a truncated call cannot dodge the recipient rule
    c.reverts(
        acc.functions.execute(4, 0, c.agpt.address, 0, transfer(c, a.stranger, 1)), a.owner, "PolicyViolation"
    )
    c.reverts(
        acc.functions.execute(5, 0, c.agpt.address, 0, TRANSFER + b"\x00" * 8), a.executor, "PolicyViolation"
    )
    # address(0) stands for the account in the list; as the recipient of a call it is not the account
    c.reverts(acc.functions.execute(5, 0, c.agpt.address, 0, transfer(c, ZERO_ADDRESS, 1)), a.executor,
              "PolicyViolation")  # fmt: skip
    assert c.balance(a.relayer) >= 2 * E18


def test_a_period_allowance_a_call_count_and_an_expiry(chain: Chain) -> None:
    c, a = chain, chain.actors
    expires = c.now() + 3600
    policy = Policy(c.agpt.address, TRANSFER, amount_arg=1, period=600, max_per_period=3 * E18, max_calls=4,
                    expires_at=expires)  # fmt: skip
    _, acc = funded(c, [policy])
    c.tx(acc.functions.execute(1, 0, c.agpt.address, 0, transfer(c, a.relayer, 2 * E18)), a.executor)
    data = c.reverts(acc.functions.execute(2, 0, c.agpt.address, 0, transfer(c, a.relayer, 2 * E18)),
                     a.executor, "PolicyViolation")  # fmt: skip
    assert b"max_per_period" in data
    c.tx(acc.functions.execute(2, 0, c.agpt.address, 0, transfer(c, a.relayer, E18)), a.executor)
    c.increase_time(601)  # a new period
    c.tx(acc.functions.execute(3, 0, c.agpt.address, 0, transfer(c, a.relayer, 3 * E18)), a.executor)
    c.increase_time(601)
    c.tx(acc.functions.execute(4, 0, c.agpt.address, 0, transfer(c, a.relayer, E18)), a.executor)
    data = c.reverts(acc.functions.execute(5, 0, c.agpt.address, 0, transfer(c, a.relayer, 1)), a.executor,
                     "PolicyViolation")  # fmt: skip
    assert b"max_calls" in data  # 4 calls made
    assert acc.functions.policyOf(c.agpt.address, TRANSFER).call()[6] == 4
    other = Policy(c.agpt.address, TRANSFER, expires_at=c.now() + 10)
    _, acc2 = funded(c, [other])
    c.increase_time(11)
    data = c.reverts(acc2.functions.execute(1, 0, c.agpt.address, 0, transfer(c, a.relayer, 1)), a.executor,
                     "PolicyViolation")  # fmt: skip
    assert b"expires_at" in data


def test_native_value_limit_and_pairs_without_a_policy(chain: Chain) -> None:
    c, a = chain, chain.actors
    plain = (a.relayer, b"\x00" * 4)  # plain ETH transfers to the relayer: value is the amount
    policy = Policy(a.relayer, b"\x00" * 4, max_per_call=E18 // 2, max_value=E18)
    _, acc = funded(c, [policy], extra=[plain, (c.agpt.address, APPROVE)])
    c.w3.eth.wait_for_transaction_receipt(
        c.w3.eth.send_transaction({"from": a.owner, "to": acc.address, "value": Wei(2 * E18)})
    )
    c.tx(acc.functions.execute(1, 0, a.relayer, E18 // 2, b""), a.executor)
    c.reverts(acc.functions.execute(2, 0, a.relayer, E18 // 2 + 1, b""), a.executor, "PolicyViolation")
    approve = bytes.fromhex(c.agpt.encode_abi("approve", [a.stranger, 10**30])[2:])
    c.tx(acc.functions.execute(3, 0, c.agpt.address, 0, approve), a.executor)  # no policy: allowlist only


def test_policies_come_only_from_the_factory_and_are_signed_with_the_activation(chain: Chain) -> None:
    c, a = chain, chain.actors
    policies = [Policy(c.agpt.address, TRANSFER, max_calls=1)]
    _, acc = funded(c, policies)
    c.reverts(acc.functions.commitPolicies(encode_policies(policies)), a.executor, "NotFactory")
    # activateBySig: the signature covers keccak256(policies); other policies with it are refused
    sid2 = c.create()
    deadline = c.now() + 600
    nonce = c.factory.functions.nonces(a.owner).call()
    sig = eip712.sign_activate(
        c.key_of[a.owner], chain_id=c.w3.eth.chain_id, factory=c.factory.address, session_id=sid2,
        workflow_hash=b"\x22" * 32, executor=a.executor, allowlist=[(c.agpt.address, TRANSFER)], nonce=nonce,
        deadline=deadline, policy_hash=policy_hash(policies),
    )  # fmt: skip
    looser = encode_policies([Policy(c.agpt.address, TRANSFER, max_calls=100)])
    allow = [(c.agpt.address, TRANSFER)]
    c.reverts(c.factory.functions.activateBySig(sid2, b"\x22" * 32, a.executor, allow, looser, nonce, deadline, sig),
              a.relayer, "InvalidSignature")  # fmt: skip
    c.tx(c.factory.functions.activateBySig(sid2, b"\x22" * 32, a.executor, allow, encode_policies(policies),
                                           nonce, deadline, sig), a.relayer)  # fmt: skip
    acc2 = c.account_contract(sid2)
    assert acc2.functions.policyOf(c.agpt.address, TRANSFER).call()[3] == 1
    dup = encode_policies(policies * 2)
    c.reverts(c.factory.functions.activate(c.create(), b"\x22" * 32, a.executor, allow, dup), a.owner,
              "DuplicatePolicy")  # fmt: skip
