"""gRPC surface of the executor: proto <-> engine, nothing else."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from agentgpt.executor.v1 import executor_pb2 as pb
from agentgpt.executor.v1 import executor_pb2_grpc as pb_grpc
from services.executor.config import ExecutorConfig


class ExecutorServicer(pb_grpc.ExecutorServiceServicer):
    def __init__(self, config: ExecutorConfig, address: str, started_at: float) -> None:
        self.config = config
        self.address = address
        self.started_at = Timestamp()
        self.started_at.FromNanoseconds(int(started_at * 1e9))

    async def GetExecutorStatus(
        self, request: pb.GetExecutorStatusRequest, context: aio.ServicerContext
    ) -> pb.GetExecutorStatusResponse:
        return pb.GetExecutorStatusResponse(
            executor_id=self.config.executor_id,
            address=self.address,
            capacity=self.config.capacity,
            started_at=self.started_at,
        )
