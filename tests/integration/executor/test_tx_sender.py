"""TxSender against a real anvil: intent before broadcast, crash recovery, fee bumps, confirmations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from eth_account import Account
from web3 import AsyncWeb3, Web3
from web3.exceptions import TransactionNotFound

from agentgpt.chain.rpc import connect
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.executor.transactions import TxError, TxIntentRecord, TxReverted, TxSender
from tests.fixtures.anvil import rpc_chain_id
from tests.support import eventually

pytestmark = pytest.mark.chain
RECIPIENT = Web3.to_checksum_address("0x" + "5a" * 20)


@pytest_asyncio.fixture(loop_scope="session")
async def w3(eth_rpc: str) -> AsyncIterator[AsyncWeb3[Any]]:
    w = connect(eth_rpc)
    yield w
    await w.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    await w.provider.disconnect()  # type: ignore[attr-defined]


class Journal:
    """Records intents; checks each is recorded before the node has ever seen it."""

    def __init__(self, w3: AsyncWeb3[Any], fail: bool = False) -> None:
        self.w3, self.fail, self.intents = w3, fail, []  # type: ignore[var-annotated]
        self.unseen_when_recorded: list[bool] = []

    async def __call__(self, intent: TxIntentRecord) -> None:
        try:
            await self.w3.eth.get_transaction(intent.tx_hash)  # type: ignore[arg-type]
            self.unseen_when_recorded.append(False)
        except TransactionNotFound:
            self.unseen_when_recorded.append(True)
        self.intents.append(intent)
        if self.fail:
            raise RuntimeError("executor crashed right after recording the intent")


def sender(w3: AsyncWeb3[Any], key_index: int, **kw: Any) -> TxSender:
    kw.setdefault("receipt_timeout", 20.0)  # fail fast instead of hanging on a lost transaction
    chain_id = rpc_chain_id(w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    return TxSender(w3, DEV_PRIVATE_KEYS[key_index], chain_id, poll_interval=0.05, **kw)


async def test_intent_is_recorded_before_broadcast_and_receipt_returned(w3: AsyncWeb3[Any]) -> None:
    s = sender(w3, 7)
    journal = Journal(w3)
    before = await w3.eth.get_balance(RECIPIENT)
    result = await s.send(to=RECIPIENT, value=12345, journal=journal)
    assert journal.unseen_when_recorded == [True]
    assert result.status == 1 and result.tx_hash == journal.intents[0].tx_hash
    assert await w3.eth.get_balance(RECIPIENT) == before + 12345
    mined = await w3.eth.get_transaction(result.tx_hash)  # type: ignore[arg-type]
    assert mined["type"] == 2 and mined["maxFeePerGas"] > 0


async def test_crash_before_broadcast_resumes_with_the_same_signed_tx(w3: AsyncWeb3[Any]) -> None:
    address = Account.from_key(DEV_PRIVATE_KEYS[8]).address
    nonce0 = await w3.eth.get_transaction_count(address)
    before = await w3.eth.get_balance(RECIPIENT)
    crashed = Journal(w3, fail=True)
    with pytest.raises(RuntimeError, match="crashed"):
        await sender(w3, 8).send(to=RECIPIENT, value=777, journal=crashed)
    (intent,) = crashed.intents
    assert await w3.eth.get_transaction_count(address) == nonce0  # nothing was broadcast
    # A new executor process (fresh TxSender) picks the step up from the durable record.
    result = await sender(w3, 8).resume([intent], Journal(w3))
    assert result.tx_hash == intent.tx_hash and result.nonce == nonce0
    assert await w3.eth.get_transaction_count(address) == nonce0 + 1
    assert await w3.eth.get_balance(RECIPIENT) == before + 777
    # Resuming again (crash after broadcast) finds the receipt: no second transaction.
    again = await sender(w3, 8).resume([intent], Journal(w3))
    assert again.tx_hash == intent.tx_hash
    assert await w3.eth.get_transaction_count(address) == nonce0 + 1
    assert await w3.eth.get_balance(RECIPIENT) == before + 777


async def test_another_executor_finishes_the_previous_ones_recorded_transaction(w3: AsyncWeb3[Any]) -> None:
    """After a takeover the new executor resumes a transaction its predecessor signed: it rebroadcasts
    those bytes and waits for them, judging the nonce by their signer, never by its own."""
    old = Account.from_key(DEV_PRIVATE_KEYS[5]).address
    crashed = Journal(w3, fail=True)
    with pytest.raises(RuntimeError, match="crashed"):
        await sender(w3, 5).send(to=RECIPIENT, value=4242, journal=crashed)
    (intent,) = crashed.intents
    new = sender(w3, 4)
    while (
        await w3.eth.get_transaction_count(new.address) <= intent.nonce
    ):  # its own nonce is past the old one
        await new.send(to=RECIPIENT, value=1, journal=Journal(w3))
    before = await w3.eth.get_balance(RECIPIENT)
    await w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]

    async def mine_later() -> None:
        await asyncio.sleep(0.5)  # pending meanwhile: the nonce check runs while it waits
        await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    miner = asyncio.create_task(mine_later())
    try:
        result = await new.resume([intent], Journal(w3))
    finally:
        await miner
        await w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    assert result.tx_hash == intent.tx_hash and result.status == 1
    assert await w3.eth.get_balance(RECIPIENT) == before + 4242
    assert await w3.eth.get_transaction_count(old) == intent.nonce + 1  # the predecessor's one transaction


async def test_stuck_transaction_is_replaced_with_a_fee_bump(w3: AsyncWeb3[Any]) -> None:
    address = Account.from_key(DEV_PRIVATE_KEYS[9]).address
    nonce0 = await w3.eth.get_transaction_count(address)
    await w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    journal = Journal(w3)
    try:
        task = asyncio.create_task(
            sender(w3, 9, stuck_after=0.3).send(to=RECIPIENT, value=1, journal=journal)
        )

        async def replaced() -> bool:
            return len(journal.intents) >= 2

        await eventually(replaced, 10, what="the replacement recorded")
        await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        result = await asyncio.wait_for(task, 10)
    finally:
        await w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    first, second = journal.intents[0], journal.intents[1]
    assert first.nonce == second.nonce == nonce0 and first.tx_hash != second.tx_hash
    assert result.tx_hash in {i.tx_hash for i in journal.intents[1:]}
    assert all(journal.unseen_when_recorded)
    with pytest.raises(TransactionNotFound):
        await w3.eth.get_transaction_receipt(first.tx_hash)  # type: ignore[arg-type]
    assert await w3.eth.get_transaction_count(address) == nonce0 + 1
    replacement = await w3.eth.get_transaction(result.tx_hash)  # type: ignore[arg-type]
    assert replacement["maxPriorityFeePerGas"] > 0


async def test_waits_for_confirmations(w3: AsyncWeb3[Any]) -> None:
    s = sender(w3, 7, confirmations=3)
    task = asyncio.create_task(s.send(to=RECIPIENT, value=1, journal=Journal(w3)))
    await asyncio.sleep(0.6)
    assert not task.done()
    await w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
    result = await asyncio.wait_for(task, 10)
    assert await w3.eth.block_number >= result.block_number + 2


async def test_a_reverting_call_records_nothing(w3: AsyncWeb3[Any]) -> None:
    # A contract whose every call reverts: runtime PUSH1 0 PUSH1 0 REVERT.
    deployer = Account.from_key(DEV_PRIVATE_KEYS[6]).address
    tx_hash = await w3.eth.send_transaction(
        {"from": deployer, "data": bytes.fromhex("6005600c60003960056000f3" + "60006000fd")}
    )
    reverter = (await w3.eth.wait_for_transaction_receipt(tx_hash))["contractAddress"]
    journal = Journal(w3)
    nonce0 = await w3.eth.get_transaction_count(deployer)
    with pytest.raises(TxReverted, match="would revert"):
        await sender(w3, 6).send(to=reverter, data=b"\x12\x34\x56\x78", journal=journal)
    assert journal.intents == []
    assert await w3.eth.get_transaction_count(deployer) == nonce0


async def test_a_refused_broadcast_is_an_error_not_a_hang(w3: AsyncWeb3[Any]) -> None:
    journal = Journal(w3)
    with pytest.raises(TxError, match="refused"):
        await sender(w3, 6).send(to=RECIPIENT, value=10**30, journal=journal, gas=21_000)
    assert len(journal.intents) == 1  # recorded, then refused by the node: never mined
    # The sender re-reads its nonce afterwards, so the next send is not stuck behind a gap.
    result = await sender(w3, 6).send(to=RECIPIENT, value=1, journal=Journal(w3))
    assert result.status == 1
