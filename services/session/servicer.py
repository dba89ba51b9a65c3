"""gRPC surface of the session service: metadata -> CallContext, then the control plane. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from agentgpt import auth as owner_auth
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.errors import InvalidArgument
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.session.v1 import session_pb2_grpc as pb_grpc
from services.session.control import CallContext, SessionControl


def call_context(context: aio.ServicerContext) -> CallContext:
    """What the caller presented in metadata. Trust decisions are made by SessionControl.

    The read-signature and chain-signature headers are deprecated (the requests have fields for them now)
    and are read only so that older clients keep working for one more release."""
    md: dict[str, Any] = {}
    for k, v in context.invocation_metadata() or ():
        md[k] = v
    read_auth = None
    raw = md.get(owner_auth.READ_AUTH_HEADER)
    if raw:
        try:
            read_auth = common.OwnerSignature.FromString(raw if isinstance(raw, bytes) else raw.encode())
        except Exception:
            raise InvalidArgument(owner_auth.READ_AUTH_HEADER, "is not a serialized OwnerSignature") from None
    chain_sig = md.get(owner_auth.CHAIN_SIGNATURE_HEADER, b"")
    service = md.get(owner_auth.SERVICE_HEADER)
    return CallContext(
        service=str(service)[:128] if service else None,
        read_auth=read_auth,
        chain_signature=chain_sig if isinstance(chain_sig, bytes) else b"",
    )


class SessionServicer(pb_grpc.SessionServiceServicer):
    def __init__(self, control: SessionControl) -> None:
        self.control = control

    async def CreateSession(self, request: pb.CreateSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.control.create(request, call_context(context))

    async def GetSession(self, request: pb.GetSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.control.get(request, call_context(context))

    async def ListSessions(self, request: pb.ListSessionsRequest, context: aio.ServicerContext) -> Any:
        return await self.control.list_sessions(request, call_context(context))

    async def EditParams(self, request: pb.EditParamsRequest, context: aio.ServicerContext) -> Any:
        return await self.control.edit_params(request, call_context(context))

    async def AttachDecorators(
        self, request: pb.AttachDecoratorsRequest, context: aio.ServicerContext
    ) -> Any:
        return await self.control.attach_decorators(request, call_context(context))

    async def ActivateSession(self, request: pb.ActivateSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.control.activate(request, call_context(context))

    async def UpdateBudget(self, request: pb.UpdateBudgetRequest, context: aio.ServicerContext) -> Any:
        return await self.control.update_budget(request, call_context(context))

    async def PauseSession(self, request: pb.PauseSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.control.pause(request, call_context(context))

    async def ResumeSession(self, request: pb.ResumeSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.control.resume(request, call_context(context))

    async def CompleteSession(self, request: pb.CompleteSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.control.complete(request, call_context(context))

    async def TerminateSession(
        self, request: pb.TerminateSessionRequest, context: aio.ServicerContext
    ) -> Any:
        return await self.control.terminate(request, call_context(context))

    async def SubmitTasks(self, request: pb.SubmitTasksRequest, context: aio.ServicerContext) -> Any:
        return await self.control.submit_tasks(request, call_context(context))

    async def ClaimLease(self, request: pb.ClaimLeaseRequest, context: aio.ServicerContext) -> Any:
        return await self.control.claim_lease(request, call_context(context))

    async def RenewLease(self, request: pb.RenewLeaseRequest, context: aio.ServicerContext) -> Any:
        return await self.control.renew_lease(request, call_context(context))

    async def ReleaseLease(self, request: pb.ReleaseLeaseRequest, context: aio.ServicerContext) -> Any:
        return await self.control.release_lease(request, call_context(context))

    async def ReportTask(self, request: pb.ReportTaskRequest, context: aio.ServicerContext) -> Any:
        return await self.control.report_task(request, call_context(context))

    async def RecordCheckpoint(
        self, request: pb.RecordCheckpointRequest, context: aio.ServicerContext
    ) -> Any:
        return await self.control.record_checkpoint(request, call_context(context))

    async def WatchSession(
        self, request: pb.WatchSessionRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.WatchSessionResponse]:
        async for item in self.control.watch(request, call_context(context)):
            yield item

    async def InspectSession(self, request: pb.InspectSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.control.inspect(request, call_context(context))

    async def ListTasks(self, request: pb.ListTasksRequest, context: aio.ServicerContext) -> Any:
        return await self.control.list_tasks(request, call_context(context))
