"""Contract tests run against the session's anvil (`eth_rpc`, tests/fixtures/anvil.py: started once, or the
node at $AGENTGPT_TEST_ETH_RPC). Every test runs inside an evm_snapshot that is reverted afterwards, so tests are isolated and the deployment is done only once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from web3 import Web3

from agentgpt.chain.deploy import deploy_all
from apps.localnet.anvil import DEV_PRIVATE_KEYS

from .chain import E18, Chain

MIN_BOND = 100 * E18
UNBONDING_DELAY = 7 * 24 * 3600


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chain(eth_rpc: str) -> AsyncIterator[Chain]:
    deployment = await deploy_all(
        eth_rpc, DEV_PRIVATE_KEYS[0], min_bond=MIN_BOND, unbonding_delay=UNBONDING_DELAY
    )
    w3 = Web3(Web3.HTTPProvider(eth_rpc, request_kwargs={"timeout": 30}))
    c = Chain(w3, deployment, DEV_PRIVATE_KEYS)
    a = c.actors
    for who in (a.owner, a.executor, a.executor2, a.stranger, a.unbonded):
        c.tx(c.agpt.functions.mint(who, 10_000 * E18), a.admin)
    for ex in (a.executor, a.executor2):
        c.tx(c.agpt.functions.approve(c.registry.address, MIN_BOND), ex)
        c.tx(c.registry.functions.bond(MIN_BOND), ex)
    yield c


@pytest.fixture(autouse=True)
def _isolated(chain: Chain) -> Iterator[None]:
    snap = chain.rpc("evm_snapshot")
    yield
    assert chain.rpc("evm_revert", [snap]) is True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything here needs a real anvil: mark it `chain` (pyproject's marker) for `-m 'not chain'`."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.chain)
