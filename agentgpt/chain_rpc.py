"""Minimal async JSON-RPC access to a chain, for probes and head tracking.

Heavier chain work (contracts, signing, deployment) uses web3.py in agentgpt.chain.
"""

from __future__ import annotations

from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3


def connect(rpc_url: str, timeout: float = 5.0) -> AsyncWeb3[Any]:
    return AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


async def expect_chain(w3: AsyncWeb3[Any], chain_id: int) -> None:
    """Raise unless the endpoint answers and is the chain we were configured for."""
    actual = await w3.eth.chain_id
    if actual != chain_id:
        raise RuntimeError(f"RPC answers chain id {actual}, expected {chain_id}")
