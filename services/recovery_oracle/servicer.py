"""gRPC surface of the recovery oracle: proto <-> domain, nothing else."""

from __future__ import annotations

from grpc import aio

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.recovery.v1 import recovery_pb2 as pb
from agentgpt.recovery.v1 import recovery_pb2_grpc as pb_grpc
from agentgpt.verify import CheckpointVerifier
from services.recovery_oracle.claims import ClaimJudge
from services.recovery_oracle.protocol import Recoverer
from services.recovery_oracle.store import RecoveryStore

DEFAULT_PAGE = 50


class RecoveryServicer(pb_grpc.RecoveryServiceServicer):
    def __init__(
        self, verifier: CheckpointVerifier, claims: ClaimJudge, recoverer: Recoverer, store: RecoveryStore
    ) -> None:
        self.verifier = verifier
        self.claims = claims
        self.recoverer = recoverer
        self.store = store

    async def GetVerifiedState(
        self, request: pb.GetVerifiedStateRequest, context: aio.ServicerContext
    ) -> pb.GetVerifiedStateResponse:
        return await self.verifier.verified_state(request.session_id)

    async def RecoverSession(
        self, request: pb.RecoverSessionRequest, context: aio.ServicerContext
    ) -> pb.RecoverSessionResponse:
        rec = await self.recoverer.start(request.session_id, request.reason, handoff=request.handoff)
        return pb.RecoverSessionResponse(recovery=rec)

    async def SubmitClaim(
        self, request: pb.SubmitClaimRequest, context: aio.ServicerContext
    ) -> pb.SubmitClaimResponse:
        return await self.claims.submit(request)

    async def ListRecoveries(
        self, request: pb.ListRecoveriesRequest, context: aio.ServicerContext
    ) -> pb.ListRecoveriesResponse:
        rows, token = await self.store.list(
            session_id=request.session_id,
            recovery_id=request.recovery_id,
            page_token=request.page.page_token,
            limit=request.page.page_size or DEFAULT_PAGE,
        )
        return pb.ListRecoveriesResponse(recoveries=rows, page=cpb.PageResponse(next_page_token=token))
