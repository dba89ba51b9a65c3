"""SessionAccount: the session treasury, callable only through the factory's guard."""

from __future__ import annotations

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.types import Wei

from tests.contracts.chain import reaffirm

from .chain import E18, Chain

TRANSFER = keccak(text="transfer(address,uint256)")[:4]


def _transfer_data(c: Chain, to: str, amount: int) -> bytes:
    return bytes.fromhex(c.agpt.encode_abi("transfer", [to, amount])[2:])


def test_account_receives_eth_and_executes_allowlisted_calls(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(allowlist=[(c.agpt.address, TRANSFER), (a.relayer, b"\x00" * 4)])
    acc = c.account_contract(sid)
    c.tx(c.agpt.functions.transfer(acc.address, 5 * E18), a.owner)
    c.w3.eth.wait_for_transaction_receipt(
        c.w3.eth.send_transaction({"from": a.owner, "to": acc.address, "value": Wei(E18)})
    )
    assert c.w3.eth.get_balance(acc.address) == E18
    receipt = c.tx(
        acc.functions.execute(1, 0, c.agpt.address, 0, _transfer_data(c, a.stranger, 2 * E18)), a.executor
    )
    ev = c.events(receipt, acc, "Executed")[0]["args"]
    assert (ev["sessionId"], ev["caller"], ev["target"], ev["selector"]) == (
        sid,
        a.executor,
        c.agpt.address,
        TRANSFER,
    )
    assert c.balance(acc.address) == 3 * E18
    before = c.w3.eth.get_balance(to_checksum_address(a.relayer))
    c.tx(acc.functions.execute(2, 0, a.relayer, E18 // 2, b""), a.executor)  # plain ETH transfer, selector 0
    assert c.w3.eth.get_balance(to_checksum_address(a.relayer)) == before + E18 // 2


def test_account_rejects_what_the_guard_rejects(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(allowlist=[(c.agpt.address, TRANSFER)])
    acc = c.account_contract(sid)
    c.tx(c.agpt.functions.transfer(acc.address, 5 * E18), a.owner)
    data = _transfer_data(c, a.stranger, E18)
    c.reverts(acc.functions.execute(3, 0, c.agpt.address, 0, data), a.stranger, "NotOwnerOrExecutor")
    approve = bytes.fromhex(c.agpt.encode_abi("approve", [a.stranger, E18])[2:])
    c.reverts(acc.functions.execute(4, 0, c.agpt.address, 0, approve), a.executor, "ActionNotAllowed")
    # the target's own revert is bubbled up unchanged
    c.reverts(
        acc.functions.execute(5, 0, c.agpt.address, 0, _transfer_data(c, a.stranger, 6 * E18)),
        a.executor,
        "ERC20InsufficientBalance",
    )
    c.tx(c.factory.functions.pause(sid), a.admin)
    c.reverts(acc.functions.execute(6, 0, c.agpt.address, 0, data), a.executor, "AccountCallNotAllowed")
    c.reverts(acc.functions.execute(7, 0, c.agpt.address, 0, data), a.owner, "AccountCallNotAllowed")
    c.tx(c.factory.functions.reassignExecutor(sid, a.executor2), a.admin)
    c.tx(c.factory.functions.resume(sid), a.admin)
    c.reverts(acc.functions.execute(8, 0, c.agpt.address, 0, data), a.executor, "NotOwnerOrExecutor")
    c.tx(acc.functions.execute(9, 0, c.agpt.address, 0, data), a.executor2)


def test_owner_controls_account_in_draft_and_after_the_end(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.create()
    acc = c.account_contract(sid)
    c.tx(c.agpt.functions.transfer(acc.address, 4 * E18), a.owner)
    c.reverts(
        acc.functions.execute(10, 0, c.agpt.address, 0, _transfer_data(c, a.owner, E18)),
        a.executor,
        "AccountCallNotAllowed",
    )
    c.tx(
        acc.functions.execute(11, 0, c.agpt.address, 0, _transfer_data(c, a.owner, E18)), a.owner
    )  # unrestricted
    c.activate(sid)
    c.tx(c.factory.functions.complete(sid, reaffirm(c.factory, sid)), a.owner)
    before = c.balance(a.owner)
    c.reverts(
        acc.functions.execute(12, 0, c.agpt.address, 0, _transfer_data(c, a.executor, E18)),
        a.executor,
        "AccountCallNotAllowed",
    )
    c.tx(
        acc.functions.execute(13, 0, c.agpt.address, 0, _transfer_data(c, a.owner, 3 * E18)), a.owner
    )  # sweep
    assert c.balance(a.owner) == before + 3 * E18


def test_implementation_is_not_usable_directly(chain: Chain) -> None:
    c, a = chain, chain.actors
    c.reverts(c.implementation.functions.execute(14, 0, a.owner, 0, b""), a.owner, "NotAClone")


def test_each_task_step_runs_at_most_once(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(allowlist=[(c.agpt.address, TRANSFER)])
    acc = c.account_contract(sid)
    c.tx(c.agpt.functions.transfer(acc.address, 5 * E18), a.owner)
    data = _transfer_data(c, a.stranger, E18)
    start = c.balance(a.stranger)
    assert not acc.functions.executed(7, 0).call()
    receipt = c.tx(acc.functions.execute(7, 0, c.agpt.address, 0, data), a.executor)
    ev = c.events(receipt, acc, "Executed")[0]["args"]
    assert (ev["taskSeq"], ev["step"]) == (7, 0)
    assert acc.functions.executed(7, 0).call() and not acc.functions.executed(7, 1).call()
    # the same step again, by the same executor or by the one that takes the session over, reverts
    c.reverts(acc.functions.execute(7, 0, c.agpt.address, 0, data), a.executor, "AlreadyExecuted")
    c.tx(c.factory.functions.reassignExecutor(sid, a.executor2), a.admin)
    reverted = c.reverts(acc.functions.execute(7, 0, c.agpt.address, 0, data), a.executor2, "AlreadyExecuted")
    assert decode(["uint256", "uint64", "uint8"], reverted[4:]) == (sid, 7, 0)
    assert c.balance(a.stranger) == start + E18  # paid once
    # another step of the task, and the next task, are separate effects
    c.tx(acc.functions.execute(7, 1, c.agpt.address, 0, data), a.executor2)
    c.tx(acc.functions.execute(8, 0, c.agpt.address, 0, data), a.executor2)
    assert c.balance(a.stranger) == start + 3 * E18
    c.reverts(acc.functions.execute(9, 16, c.agpt.address, 0, data), a.executor2, "StepOutOfRange")


def test_a_reverted_step_can_run_again(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(allowlist=[(c.agpt.address, TRANSFER)])
    acc = c.account_contract(sid)
    too_much = _transfer_data(c, a.stranger, E18)
    c.reverts(
        acc.functions.execute(3, 0, c.agpt.address, 0, too_much), a.executor, "ERC20InsufficientBalance"
    )
    assert not acc.functions.executed(3, 0).call()  # the revert undid the marker
    c.tx(c.agpt.functions.transfer(acc.address, E18), a.owner)
    c.tx(acc.functions.execute(3, 0, c.agpt.address, 0, too_much), a.executor)
    assert acc.functions.executed(3, 0).call()
