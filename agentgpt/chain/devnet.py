"""Dev-network bootstrap for the local stack and tests: give dev accounts AGPT and bond executors.

On a real network operators do this themselves (buy/receive AGPT, `bond()` from the executor's key);
locally the deployer, which holds AGPT's minter role, does it for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3

from agentgpt.chain.deploy import Deployment, _Sender
from agentgpt.chain.rpc import connect
from agentgpt.contracts import load_artifact


async def _sender(w3: AsyncWeb3[Any], key: str) -> _Sender:
    account: LocalAccount = Account.from_key(key)
    chain_id = await w3.eth.chain_id
    nonce = await w3.eth.get_transaction_count(account.address, "pending")
    return _Sender(w3, account, chain_id, nonce)


async def fund_and_bond(
    rpc_url: str,
    deployment: Deployment,
    admin_key: str,
    *,
    executor_keys: Sequence[str] = (),
    owners: Sequence[str] = (),
    amount: int = 10_000 * 10**18,
    receipt_timeout: float = 60.0,
) -> None:
    """Mint `amount` AGPT to every owner and executor; each executor bonds the registry's minimum."""
    w3 = connect(rpc_url)
    try:
        agpt = w3.eth.contract(
            address=to_checksum_address(deployment.address("AGPT")), abi=load_artifact("AGPT").abi
        )
        registry_addr = to_checksum_address(deployment.address("ExecutorRegistry"))
        registry = w3.eth.contract(address=registry_addr, abi=load_artifact("ExecutorRegistry").abi)
        admin = await _sender(w3, admin_key)
        executors = [Account.from_key(k).address for k in executor_keys]
        for to in [*owners, *executors]:
            tx = await agpt.functions.mint(to_checksum_address(to), amount).build_transaction(admin.base())
            await admin.send(f"mint AGPT to {to}", dict(tx), receipt_timeout)
        for key in executor_keys:
            ex = await _sender(w3, key)
            tx = await agpt.functions.approve(registry_addr, deployment.min_bond).build_transaction(ex.base())
            await ex.send("approve bond", dict(tx), receipt_timeout)
            tx = await registry.functions.bond(deployment.min_bond).build_transaction(ex.base())
            await ex.send("bond", dict(tx), receipt_timeout)
    finally:
        await w3.provider.disconnect()
