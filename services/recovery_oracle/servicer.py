"""gRPC surface of the recovery oracle: proto <-> domain, nothing else."""

from __future__ import annotations

from grpc import aio

from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.recovery.v1 import recovery_pb2_grpc as pb_grpc
from services.recovery_oracle.claims import ClaimJudge
from services.recovery_oracle.verify import CheckpointVerifier


class RecoveryServicer(pb_grpc.RecoveryServiceServicer):
    def __init__(self, verifier: CheckpointVerifier, claims: ClaimJudge) -> None:
        self.verifier = verifier
        self.claims = claims

    async def GetVerifiedState(
        self, request: pb.GetVerifiedStateRequest, context: aio.ServicerContext
    ) -> pb.GetVerifiedStateResponse:
        return await self.verifier.verified_state(request.session_id)

    # Rehydration and the recovery history arrive with the recovery protocol; until then they answer
    # UNIMPLEMENTED with this message (the ErrorInterceptor maps NotImplementedError).
    async def RecoverSession(
        self, request: pb.RecoverSessionRequest, context: aio.ServicerContext
    ) -> pb.RecoverSessionResponse:
        raise NotImplementedError("RecoverSession is not available in this version of the recovery oracle")

    async def SubmitClaim(
        self, request: pb.SubmitClaimRequest, context: aio.ServicerContext
    ) -> pb.SubmitClaimResponse:
        return await self.claims.submit(request)

    async def ListRecoveries(
        self, request: pb.ListRecoveriesRequest, context: aio.ServicerContext
    ) -> pb.ListRecoveriesResponse:
        raise NotImplementedError("ListRecoveries is not available in this version of the recovery oracle")
