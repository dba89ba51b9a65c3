"""The executor's chain tests: the session's anvil (`eth_rpc`, tests/fixtures/anvil.py) for single-chain
tests, and two anvils of their own (two chain ids at once) for the cross-chain ones."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from eth_account import Account

from agentgpt.chain.deploy import deploy_all
from agentgpt.clients import SessionClient
from agentgpt.network import Network, write_network
from agentgpt.runtime.config import load
from agentgpt.tasklog import ExecutorKey
from apps.localnet.anvil import DEV_PRIVATE_KEYS, AnvilNode
from services.executor.app import ExecutorParts, build_parts
from services.executor.config import ExecutorConfig
from services.executor.grpc_port import GrpcSessionPort
from tests.component.executor import conftest as component
from tests.component.executor.fake_session import FakeSessionServer
from tests.contracts.chain import Chain
from tests.integration.executor.two_chains import TwoChains, chain_info, web3

HOME_ID, OTHER_ID = 31981, 31982


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def two_chains() -> AsyncIterator[TwoChains]:
    """Two anvil chains (HOME_ID, OTHER_ID), contracts deployed on both (deployer = oracle = dev key 0).
    Chain ids no other suite uses: a node that answers on a reused port with another id is refused by
    AnvilNode's readiness check instead of being mistaken for ours."""
    nodes = [AnvilNode(chain_id=HOME_ID), AnvilNode(chain_id=OTHER_ID)]
    try:
        chains = []
        infos = []
        for name, node in zip(("arbitrum", "polygon"), nodes, strict=True):
            node.start()
            dep = await deploy_all(node.rpc_url, DEV_PRIVATE_KEYS[0], min_bond=100 * 10**18)
            chain = Chain(web3(node.rpc_url), dep, DEV_PRIVATE_KEYS)
            chains.append(chain)
            infos.append(chain_info(name, chain, node.rpc_url))
        yield TwoChains(chains[0], chains[1], Network(tuple(infos)))
    finally:
        for node in nodes:
            node.stop()


fake_session = component.fake_session  # the same stand-in session API as the component tests

EXECUTOR_KEY = DEV_PRIVATE_KEYS[2]  # tests.contracts.chain actors.executor
CHECKPOINT_KEY = "7f" * 32
TASK_FEE = 10**15
KYC_ISSUER_KEY = "0x" + "a1" * 32


@pytest_asyncio.fixture(loop_scope="session")
async def executor(
    two_chains: TwoChains, fake_session: FakeSessionServer, ipfs_api: str, tmp_path: Path
) -> AsyncIterator[ExecutorParts]:
    network = tmp_path / "network.json"
    write_network(two_chains.network, network)
    config = load(
        ExecutorConfig,
        env={},
        executor_key=EXECUTOR_KEY,
        network=str(network),
        poll_interval=0.05,
        lease_ttl=5,
        checkpoint_key=CHECKPOINT_KEY,
        ipfs_api=ipfs_api,
        anchor_retry_base=0.2,
        task_fee=TASK_FEE,
        kyc_issuers=(Account.from_key(KYC_ISSUER_KEY).address,),
    )
    client = SessionClient(fake_session.address)
    # the executor's public key goes with its claims: a session with keys gets its checkpoints sealed
    parts = build_parts(config, GrpcSessionPort(client, public_key=ExecutorKey(EXECUTOR_KEY).public_key))
    assert parts.engine.deps.anchors is not None
    jobs = [asyncio.create_task(parts.engine.run()), asyncio.create_task(parts.engine.deps.anchors.run())]
    try:
        yield parts
    finally:
        for job in jobs:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await parts.engine.stop()
        await parts.store.close()
        assert parts.chains is not None
        await parts.chains.close()
        await client.close()
