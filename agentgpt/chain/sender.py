"""One service key sending contract calls on one chain, one at a time: simulate, sign, send, wait.

For the services' own administrative transactions (the session service's writer grants, the recovery
oracle's penalties): each call is simulated against the pending block first, so a revert surfaces as the
contract's error before anything is signed; the nonce is the node's pending count, read under a lock, so
the service's calls never race each other. (The executor's task transactions need more — durable intents,
fee bumps, resumption — and have their own sender.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3

from agentgpt.chain.rpc import connect
from agentgpt.contracts import load_artifact
from agentgpt.network import ChainInfo


class TransactionReverted(RuntimeError):
    """A mined transaction reverted (its simulation passed: the state changed in between)."""


class KeySender:
    def __init__(self, info: ChainInfo, private_key: str, *, timeout: float = 10.0) -> None:
        self.info = info
        self.w3: AsyncWeb3[Any] = connect(info.rpc_url, timeout=timeout)
        self.account: LocalAccount = Account.from_key(private_key)
        self.lock = asyncio.Lock()
        self._contracts: dict[str, Any] = {}

    @property
    def address(self) -> str:
        return str(self.account.address)

    def contract(self, name: str) -> Any:
        """The deployed contract `name`, built once (web3 builds a class per contract object: a chain sync
        pass asks one per session)."""
        built = self._contracts.get(name)
        if built is None:
            built = self._contracts[name] = self.w3.eth.contract(
                address=to_checksum_address(self.info.contracts[name]), abi=load_artifact(name).abi
            )
        return built

    async def transact(self, fn: Any, receipt_timeout: float = 60.0) -> bytes:
        """Send `fn` (a bound contract function) from this key; the transaction hash once it is mined."""
        async with self.lock:
            sender = self.account.address
            await fn.call({"from": sender}, block_identifier="pending")
            tx = await fn.build_transaction(
                {
                    "from": sender,
                    "nonce": await self.w3.eth.get_transaction_count(sender, "pending"),
                    "chainId": self.info.chain_id,
                }
            )
            signed = self.account.sign_transaction(tx)
            await self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = await self.w3.eth.wait_for_transaction_receipt(
                signed.hash, timeout=receipt_timeout, poll_latency=0.1
            )
            if receipt["status"] != 1:
                raise TransactionReverted(f"transaction 0x{bytes(signed.hash).hex()} reverted")
            return bytes(signed.hash)

    async def close(self) -> None:
        await self.w3.provider.disconnect()
