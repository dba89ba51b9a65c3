"""gRPC surface of the executor: proto <-> engine, nothing else."""

from __future__ import annotations

from grpc import aio

from agentgpt.executor.v1 import executor_pb2 as pb
from agentgpt.executor.v1 import executor_pb2_grpc as pb_grpc
from agentgpt.timestamps import to_timestamp
from services.executor.engine import Engine


class ExecutorServicer(pb_grpc.ExecutorServiceServicer):
    def __init__(
        self,
        engine: Engine,
        address: str,
        started_at: float,
        attestation: tuple[bytes, str] = (b"", ""),
    ) -> None:
        self.engine = engine
        self.address = address
        self.started_at = to_timestamp(started_at)
        self.attestation = attestation

    async def AssignSession(
        self, request: pb.AssignSessionRequest, context: aio.ServicerContext
    ) -> pb.AssignSessionResponse:
        return pb.AssignSessionResponse(epoch=await self.engine.assign(request.session_id))

    async def RehydrateSession(
        self, request: pb.RehydrateSessionRequest, context: aio.ServicerContext
    ) -> pb.RehydrateSessionResponse:
        cp = request.checkpoint
        resume = await self.engine.rehydrate(
            request.session_id, cp.seq, cp.cid, bytes(cp.state_root), request.epoch
        )
        return pb.RehydrateSessionResponse(resume_from_seq=resume)

    async def ReleaseSession(
        self, request: pb.ReleaseSessionRequest, context: aio.ServicerContext
    ) -> pb.ReleaseSessionResponse:
        await self.engine.release(request.session_id)
        return pb.ReleaseSessionResponse()

    async def GetExecutorStatus(
        self, request: pb.GetExecutorStatusRequest, context: aio.ServicerContext
    ) -> pb.GetExecutorStatusResponse:
        return pb.GetExecutorStatusResponse(
            executor_id=self.engine.config.executor_id,
            address=self.address,
            capacity=self.engine.config.capacity,
            started_at=self.started_at,
            draining=self.engine.draining,
            attestation_quote=self.attestation[0],
            attestation_collateral_json=self.attestation[1],
            sessions=[
                pb.RunningSession(
                    session_id=r.session_id,
                    epoch=r.lease.epoch,
                    last_task_seq=r.last_seq,
                    last_checkpoint_seq=r.last_checkpoint_seq,
                    context_epoch=r.context_epoch,
                )
                for r in list(self.engine.runners.values())
            ],
        )
