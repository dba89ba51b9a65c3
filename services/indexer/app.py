"""Assembles the indexer from its config and dependencies."""

from __future__ import annotations

from agentgpt import chain_rpc
from agentgpt.indexer.v1 import indexer_pb2, indexer_pb2_grpc
from agentgpt.network import ChainInfo, load_network
from agentgpt.runtime.server import Probe, ServiceDefinition, Servicer
from services.indexer.config import IndexerConfig
from services.indexer.servicer import IndexerServicer
from services.indexer.validation import VALIDATORS


def chain_probe(chain: ChainInfo) -> Probe:
    w3 = chain_rpc.connect(chain.rpc_url)

    async def probe() -> None:
        await chain_rpc.expect_chain(w3, chain.chain_id)

    return probe


async def build(config: IndexerConfig) -> ServiceDefinition:
    network = load_network(config.network)
    return ServiceDefinition(
        name="indexer",
        servicers=[
            Servicer(
                IndexerServicer(network),
                indexer_pb2_grpc.add_IndexerServiceServicer_to_server,
                indexer_pb2.DESCRIPTOR.services_by_name["IndexerService"],
            )
        ],
        validators=VALIDATORS,
        probes={f"chain:{c.name}": chain_probe(c) for c in network.chains},
    )
