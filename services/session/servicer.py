"""gRPC surface of the session service: metadata -> CallContext, the request to its plane, the domain
records answered -> API messages. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from agentgpt import auth as owner_auth
from agentgpt.common.v1 import common_pb2 as common
from agentgpt.errors import InvalidArgument
from agentgpt.runtime import tls
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.session.v1 import session_pb2_grpc as pb_grpc
from services.session.control import CallContext, SessionControl
from services.session.convert import event_to_pb, inspection_to_pb, lease_to_pb, session_to_pb, task_to_pb


def call_context(context: aio.ServicerContext) -> CallContext:
    """What the caller presented: its verified certificate's identity (mTLS; the `x-agentgpt-service`
    header is then ignored), else metadata. Trust decisions are made by SessionControl.

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
    chain_signature = chain_sig if isinstance(chain_sig, bytes) else b""
    peer = tls.peer_identity(context)
    if peer is not None:
        # a client certificate that names no service (the CLI's) acts as an owner: it needs signatures
        service = peer if owner_auth.is_service_identity(peer) else None
        return CallContext(
            service=service, read_auth=read_auth, chain_signature=chain_signature, certified=True
        )
    service = md.get(owner_auth.SERVICE_HEADER)
    return CallContext(
        service=str(service)[:128] if service else None,
        read_auth=read_auth,
        chain_signature=chain_signature,
    )


class SessionServicer(pb_grpc.SessionServiceServicer):
    def __init__(self, control: SessionControl) -> None:
        self.commands = control.commands
        self.work = control.work
        self.reads = control.reads
        self.restore = control.restore

    # ------------------------------------------------------------------ owner commands

    async def CreateSession(self, request: pb.CreateSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.commands.create(request, call_context(context))

    async def EditParams(self, request: pb.EditParamsRequest, context: aio.ServicerContext) -> Any:
        return await self.commands.edit_params(request, call_context(context))

    async def AttachDecorators(
        self, request: pb.AttachDecoratorsRequest, context: aio.ServicerContext
    ) -> Any:
        return await self.commands.attach_decorators(request, call_context(context))

    async def ActivateSession(self, request: pb.ActivateSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.commands.activate(request, call_context(context))

    async def UpdateBudget(self, request: pb.UpdateBudgetRequest, context: aio.ServicerContext) -> Any:
        return await self.commands.update_budget(request, call_context(context))

    async def PauseSession(self, request: pb.PauseSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.commands.pause(request, call_context(context))

    async def ResumeSession(self, request: pb.ResumeSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.commands.resume(request, call_context(context))

    async def CompleteSession(self, request: pb.CompleteSessionRequest, context: aio.ServicerContext) -> Any:
        return await self.commands.complete(request, call_context(context))

    async def TerminateSession(
        self, request: pb.TerminateSessionRequest, context: aio.ServicerContext
    ) -> Any:
        return await self.commands.terminate(request, call_context(context))

    async def RestoreSession(self, request: pb.RestoreSessionRequest, context: aio.ServicerContext) -> Any:
        rec = await self.restore.restore(request, call_context(context))
        return pb.RestoreSessionResponse(session=session_to_pb(rec))

    async def ReassignExecutor(
        self, request: pb.ReassignExecutorRequest, context: aio.ServicerContext
    ) -> Any:
        return await self.commands.reassign(request, call_context(context))

    # ------------------------------------------------------------------ executor work

    async def SubmitTasks(self, request: pb.SubmitTasksRequest, context: aio.ServicerContext) -> Any:
        return await self.work.submit_tasks(request, call_context(context))

    async def ClaimLease(self, request: pb.ClaimLeaseRequest, context: aio.ServicerContext) -> Any:
        rec = await self.work.claim_lease(request, call_context(context))
        if rec is None:
            return pb.ClaimLeaseResponse()
        keys, owner_key = await self.work.lease_keys(rec, bytes(request.executor_public_key))
        return pb.ClaimLeaseResponse(lease=lease_to_pb(rec), session_keys=keys, owner_public_key=owner_key)

    async def GetSessionKeys(self, request: pb.GetSessionKeysRequest, context: aio.ServicerContext) -> Any:
        return await self.work.session_keys(request, call_context(context))

    async def RenewLease(self, request: pb.RenewLeaseRequest, context: aio.ServicerContext) -> Any:
        rec = await self.work.renew_lease(request, call_context(context))
        return pb.RenewLeaseResponse(lease=lease_to_pb(rec))

    async def ReleaseLease(self, request: pb.ReleaseLeaseRequest, context: aio.ServicerContext) -> Any:
        await self.work.release_lease(request, call_context(context))
        return pb.ReleaseLeaseResponse()

    async def ReportTask(self, request: pb.ReportTaskRequest, context: aio.ServicerContext) -> Any:
        version = await self.work.report_task(request, call_context(context))
        return pb.ReportTaskResponse(version=version)

    async def RecordCheckpoint(
        self, request: pb.RecordCheckpointRequest, context: aio.ServicerContext
    ) -> Any:
        await self.work.record_checkpoint(request, call_context(context))
        return pb.RecordCheckpointResponse()

    # ------------------------------------------------------------------ reads

    async def GetSession(self, request: pb.GetSessionRequest, context: aio.ServicerContext) -> Any:
        rec = await self.reads.get(request, call_context(context))
        return pb.GetSessionResponse(session=session_to_pb(rec))

    async def ListSessions(self, request: pb.ListSessionsRequest, context: aio.ServicerContext) -> Any:
        rows, token = await self.reads.list_sessions(request, call_context(context))
        return pb.ListSessionsResponse(
            sessions=[session_to_pb(r) for r in rows], page=common.PageResponse(next_page_token=token)
        )

    async def ListTasks(self, request: pb.ListTasksRequest, context: aio.ServicerContext) -> Any:
        rows, next_after = await self.reads.list_tasks(request, call_context(context))
        return pb.ListTasksResponse(tasks=[task_to_pb(t) for t in rows], next_after_seq=next_after)

    async def InspectSession(self, request: pb.InspectSessionRequest, context: aio.ServicerContext) -> Any:
        return inspection_to_pb(await self.reads.inspect(request, call_context(context)))

    async def WatchSession(
        self, request: pb.WatchSessionRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.WatchSessionResponse]:
        async for event in self.reads.watch(request, call_context(context)):
            yield pb.WatchSessionResponse(event=event_to_pb(event))
