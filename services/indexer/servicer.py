"""gRPC surface of the indexer: proto <-> domain, nothing else."""

from __future__ import annotations

from grpc import aio

from agentgpt import chain_rpc
from agentgpt.errors import NotFound
from agentgpt.indexer.v1 import indexer_pb2 as pb
from agentgpt.indexer.v1 import indexer_pb2_grpc as pb_grpc
from agentgpt.network import Network


class IndexerServicer(pb_grpc.IndexerServiceServicer):
    def __init__(self, network: Network) -> None:
        self.network = network

    async def GetLatestAnchor(
        self, request: pb.GetLatestAnchorRequest, context: aio.ServicerContext
    ) -> pb.GetLatestAnchorResponse:
        raise NotFound(f"no anchored checkpoint indexed for session {request.session_id}")

    async def GetChainStatus(
        self, request: pb.GetChainStatusRequest, context: aio.ServicerContext
    ) -> pb.GetChainStatusResponse:
        chains = []
        for c in self.network.chains:
            status = pb.ChainStatus(chain_id=c.chain_id, name=c.name, finality_window=c.finality_window)
            try:
                status.head_block = await chain_rpc.connect(c.rpc_url).eth.block_number
                status.health = pb.CHAIN_HEALTH_SYNCING
            except Exception as exc:
                status.health = pb.CHAIN_HEALTH_DEGRADED
                status.detail = f"RPC {c.rpc_url} failed: {exc}"[:300]
            chains.append(status)
        return pb.GetChainStatusResponse(chains=chains)
