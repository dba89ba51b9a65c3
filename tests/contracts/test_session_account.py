"""SessionAccount: the session treasury, callable only through the factory's guard."""

from __future__ import annotations

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.types import Wei

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
        acc.functions.execute(c.agpt.address, 0, _transfer_data(c, a.stranger, 2 * E18)), a.executor
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
    c.tx(acc.functions.execute(a.relayer, E18 // 2, b""), a.executor)  # plain ETH transfer, selector 0
    assert c.w3.eth.get_balance(to_checksum_address(a.relayer)) == before + E18 // 2


def test_account_rejects_what_the_guard_rejects(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.active_session(allowlist=[(c.agpt.address, TRANSFER)])
    acc = c.account_contract(sid)
    c.tx(c.agpt.functions.transfer(acc.address, 5 * E18), a.owner)
    data = _transfer_data(c, a.stranger, E18)
    c.reverts(acc.functions.execute(c.agpt.address, 0, data), a.stranger, "NotOwnerOrExecutor")
    approve = bytes.fromhex(c.agpt.encode_abi("approve", [a.stranger, E18])[2:])
    c.reverts(acc.functions.execute(c.agpt.address, 0, approve), a.executor, "ActionNotAllowed")
    # the target's own revert is bubbled up unchanged
    c.reverts(
        acc.functions.execute(c.agpt.address, 0, _transfer_data(c, a.stranger, 6 * E18)),
        a.executor,
        "ERC20InsufficientBalance",
    )
    c.tx(c.factory.functions.pause(sid), a.admin)
    c.reverts(acc.functions.execute(c.agpt.address, 0, data), a.executor, "AccountCallNotAllowed")
    c.reverts(acc.functions.execute(c.agpt.address, 0, data), a.owner, "AccountCallNotAllowed")
    c.tx(c.factory.functions.reassignExecutor(sid, a.executor2), a.admin)
    c.tx(c.factory.functions.resume(sid), a.admin)
    c.reverts(acc.functions.execute(c.agpt.address, 0, data), a.executor, "NotOwnerOrExecutor")
    c.tx(acc.functions.execute(c.agpt.address, 0, data), a.executor2)


def test_owner_controls_account_in_draft_and_after_the_end(chain: Chain) -> None:
    c, a = chain, chain.actors
    sid = c.create()
    acc = c.account_contract(sid)
    c.tx(c.agpt.functions.transfer(acc.address, 4 * E18), a.owner)
    c.reverts(
        acc.functions.execute(c.agpt.address, 0, _transfer_data(c, a.owner, E18)),
        a.executor,
        "AccountCallNotAllowed",
    )
    c.tx(acc.functions.execute(c.agpt.address, 0, _transfer_data(c, a.owner, E18)), a.owner)  # unrestricted
    c.activate(sid)
    c.tx(c.factory.functions.complete(sid), a.owner)
    before = c.balance(a.owner)
    c.reverts(
        acc.functions.execute(c.agpt.address, 0, _transfer_data(c, a.executor, E18)),
        a.executor,
        "AccountCallNotAllowed",
    )
    c.tx(acc.functions.execute(c.agpt.address, 0, _transfer_data(c, a.owner, 3 * E18)), a.owner)  # sweep
    assert c.balance(a.owner) == before + 3 * E18


def test_implementation_is_not_usable_directly(chain: Chain) -> None:
    c, a = chain, chain.actors
    c.reverts(c.implementation.functions.execute(a.owner, 0, b""), a.owner, "NotAClone")
