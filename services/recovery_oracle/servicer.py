"""gRPC surface of the recovery oracle: proto <-> domain, nothing else."""

from __future__ import annotations

import grpc
from grpc import aio

from agentgpt.clients import IndexerClient
from agentgpt.errors import NotFound, RpcError, Unavailable
from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.recovery.v1 import recovery_pb2_grpc as pb_grpc


class RecoveryServicer(pb_grpc.RecoveryServiceServicer):
    def __init__(self, indexer: IndexerClient) -> None:
        self.indexer = indexer

    async def GetVerifiedState(
        self, request: pb.GetVerifiedStateRequest, context: aio.ServicerContext
    ) -> pb.GetVerifiedStateResponse:
        try:
            anchors = await self.indexer.get_latest_anchor(request.session_id)
        except RpcError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"session {request.session_id} has no anchored checkpoint on any chain"
                ) from None
            raise Unavailable(f"indexer: {exc.details}") from None
        if not anchors.HasField("highest"):
            raise NotFound(f"session {request.session_id} has no anchored checkpoint on any chain")
        # Checkpoint verification (fetch from IPFS, check CID and state root) arrives with the
        # executor's checkpoint format; until then nothing is reported as verified.
        return pb.GetVerifiedStateResponse(
            checkpoint=anchors.highest.checkpoint,
            verification=pb.Verification(
                verified=False,
                anchored_on=[a.chain_id for a in anchors.per_chain],
                failure="checkpoint verification is not available in this version",
            ),
        )

    # Rehydration, claims and the recovery history arrive with the recovery milestone; until then they
    # answer UNIMPLEMENTED with this message (the ErrorInterceptor maps NotImplementedError).
    async def RecoverSession(
        self, request: pb.RecoverSessionRequest, context: aio.ServicerContext
    ) -> pb.RecoverSessionResponse:
        raise NotImplementedError("RecoverSession is not available in this version of the recovery oracle")

    async def SubmitClaim(
        self, request: pb.SubmitClaimRequest, context: aio.ServicerContext
    ) -> pb.SubmitClaimResponse:
        raise NotImplementedError("SubmitClaim is not available in this version of the recovery oracle")

    async def ListRecoveries(
        self, request: pb.ListRecoveriesRequest, context: aio.ServicerContext
    ) -> pb.ListRecoveriesResponse:
        raise NotImplementedError("ListRecoveries is not available in this version of the recovery oracle")
