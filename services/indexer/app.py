"""Assembles the indexer from its config and dependencies."""

from __future__ import annotations

import asyncio

from agentgpt.indexer.v1 import indexer_pb2, indexer_pb2_grpc
from agentgpt.network import Network, load_network
from agentgpt.runtime.server import Probe, ServiceDefinition, Servicer
from services.indexer.config import IndexerConfig
from services.indexer.follower import ChainFollower, FollowerTuning
from services.indexer.metrics import IndexerMetrics
from services.indexer.queries import IndexerQueries
from services.indexer.rpc import ChainRpc
from services.indexer.servicer import IndexerServicer
from services.indexer.store import IndexerStore
from services.indexer.validation import VALIDATORS


def halted_probe(follower: ChainFollower) -> Probe:
    """Fails while the chain is halted, so health ("" and the service) reports NOT_SERVING."""

    async def probe() -> None:
        if follower.halted:
            raise RuntimeError(
                f"chain {follower.chain.name} ({follower.chain.chain_id}) halted: {follower.status.detail}"
            )

    return probe


async def build(
    config: IndexerConfig, *, network: Network | None = None, store: IndexerStore | None = None
) -> ServiceDefinition:
    network = network if network is not None else load_network(config.network)
    store = store if store is not None else await IndexerStore.open(config.database_url)
    definition = ServiceDefinition(name="indexer", servicers=[], validators=VALIDATORS)
    metrics = IndexerMetrics(definition.registry)
    tuning = FollowerTuning(poll_interval=config.poll_interval, max_batch_blocks=config.max_batch_blocks)
    rpcs = [ChainRpc(c.rpc_url, timeout=config.rpc_timeout) for c in network.chains]
    followers = [
        ChainFollower(c, store, rpc, metrics, tuning) for c, rpc in zip(network.chains, rpcs, strict=True)
    ]
    for f in followers:
        await f.load()  # a halted chain is reported (health, metric, status) from the first probe on

    def head_of(chain_id: int) -> int:
        return next((f.status.head_block for f in followers if f.chain.chain_id == chain_id), 0)

    queries = IndexerQueries(store, network.home.chain_id if network.chains else 0, head_of)

    async def follow_all() -> None:
        # One task per chain: a chain whose RPC is down (or halted) never holds the others back.
        await asyncio.gather(*(f.run() for f in followers))

    async def close() -> None:
        for rpc in rpcs:
            await rpc.close()
        await store.close()

    definition.servicers = [
        Servicer(
            IndexerServicer(network, store, queries, followers, stream_wait=config.stream_wait),
            indexer_pb2_grpc.add_IndexerServiceServicer_to_server,
            indexer_pb2.DESCRIPTOR.services_by_name["IndexerService"],
        )
    ]
    definition.probes = {f"chain:{f.chain.name}": halted_probe(f) for f in followers}
    definition.background = [follow_all] if followers else []
    definition.on_stop = [close]
    return definition
