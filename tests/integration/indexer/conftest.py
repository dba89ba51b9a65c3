"""Each indexer chain test gets its own anvil (reorgs and halts must not leak between tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.integration.indexer.chainkit import DeployedChain, deploy_chain
from tests.integration.indexer.rpcproxy import RpcProxy


@pytest_asyncio.fixture(loop_scope="session")
async def chain() -> AsyncIterator[DeployedChain]:
    deployed = await deploy_chain()
    try:
        yield deployed
    finally:
        deployed.node.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(chain: DeployedChain) -> AsyncIterator[RpcProxy]:
    p = RpcProxy(chain.rpc_url)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
