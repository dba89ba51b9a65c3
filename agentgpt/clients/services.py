"""One typed client per service. Methods mirror the RPCs; see protos/ for field documentation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from agentgpt.clients.base import ServiceClient
from agentgpt.executor.v1 import executor_pb2 as ex
from agentgpt.executor.v1 import executor_pb2_grpc as ex_grpc
from agentgpt.indexer.v1 import indexer_pb2 as ix
from agentgpt.indexer.v1 import indexer_pb2_grpc as ix_grpc
from agentgpt.recovery.v1 import recovery_pb2 as rc
from agentgpt.recovery.v1 import recovery_pb2_grpc as rc_grpc
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.session.v1 import session_pb2_grpc as ss_grpc


class SessionClient(ServiceClient):
    service = "agentgpt.session.v1.SessionService"
    stub_class = ss_grpc.SessionServiceStub
    peer_name = "session"

    async def create_session(self, req: ss.CreateSessionRequest) -> ss.CreateSessionResponse:
        # Waits for the mint receipt.
        return cast(ss.CreateSessionResponse, await self.unary("CreateSession", req, timeout=60))

    async def get_session(self, session_id: str) -> ss.Session:
        resp = await self.unary("GetSession", ss.GetSessionRequest(session_id=session_id))
        return cast(ss.Session, resp.session)

    async def list_sessions(self, req: ss.ListSessionsRequest) -> ss.ListSessionsResponse:
        return cast(ss.ListSessionsResponse, await self.unary("ListSessions", req))

    async def edit_params(self, req: ss.EditParamsRequest) -> ss.EditParamsResponse:
        return cast(ss.EditParamsResponse, await self.unary("EditParams", req))

    async def attach_decorators(self, req: ss.AttachDecoratorsRequest) -> ss.AttachDecoratorsResponse:
        return cast(ss.AttachDecoratorsResponse, await self.unary("AttachDecorators", req))

    async def activate_session(self, req: ss.ActivateSessionRequest) -> ss.ActivateSessionResponse:
        return cast(ss.ActivateSessionResponse, await self.unary("ActivateSession", req, timeout=60))

    async def update_budget(self, req: ss.UpdateBudgetRequest) -> ss.UpdateBudgetResponse:
        return cast(ss.UpdateBudgetResponse, await self.unary("UpdateBudget", req, timeout=60))

    async def pause_session(self, req: ss.PauseSessionRequest) -> ss.PauseSessionResponse:
        return cast(ss.PauseSessionResponse, await self.unary("PauseSession", req, timeout=60))

    async def resume_session(self, req: ss.ResumeSessionRequest) -> ss.ResumeSessionResponse:
        return cast(ss.ResumeSessionResponse, await self.unary("ResumeSession", req, timeout=60))

    async def complete_session(self, req: ss.CompleteSessionRequest) -> ss.CompleteSessionResponse:
        return cast(ss.CompleteSessionResponse, await self.unary("CompleteSession", req, timeout=120))

    async def terminate_session(self, req: ss.TerminateSessionRequest) -> ss.TerminateSessionResponse:
        return cast(ss.TerminateSessionResponse, await self.unary("TerminateSession", req, timeout=60))

    async def restore_session(self, session_id: str) -> ss.RestoreSessionResponse:
        return cast(
            ss.RestoreSessionResponse,
            await self.unary("RestoreSession", ss.RestoreSessionRequest(session_id=session_id), timeout=120),
        )

    async def reassign_executor(self, req: ss.ReassignExecutorRequest) -> ss.ReassignExecutorResponse:
        return cast(ss.ReassignExecutorResponse, await self.unary("ReassignExecutor", req, timeout=120))

    async def get_session_keys(self, session_id: str, public_key: bytes) -> ss.GetSessionKeysResponse:
        """Every epoch's checkpoint data key of a session, wrapped to `public_key` (recovery oracle only)."""
        req = ss.GetSessionKeysRequest(session_id=session_id, public_key=public_key)
        return cast(ss.GetSessionKeysResponse, await self.unary("GetSessionKeys", req))

    async def submit_tasks(self, req: ss.SubmitTasksRequest) -> ss.SubmitTasksResponse:
        return cast(ss.SubmitTasksResponse, await self.unary("SubmitTasks", req))

    async def claim_lease(self, req: ss.ClaimLeaseRequest) -> ss.ClaimLeaseResponse:
        return cast(ss.ClaimLeaseResponse, await self.unary("ClaimLease", req))

    async def renew_lease(self, req: ss.RenewLeaseRequest) -> ss.RenewLeaseResponse:
        return cast(ss.RenewLeaseResponse, await self.unary("RenewLease", req))

    async def release_lease(self, req: ss.ReleaseLeaseRequest) -> ss.ReleaseLeaseResponse:
        return cast(ss.ReleaseLeaseResponse, await self.unary("ReleaseLease", req))

    async def report_task(self, req: ss.ReportTaskRequest) -> ss.ReportTaskResponse:
        return cast(ss.ReportTaskResponse, await self.unary("ReportTask", req))

    async def record_checkpoint(self, req: ss.RecordCheckpointRequest) -> ss.RecordCheckpointResponse:
        return cast(ss.RecordCheckpointResponse, await self.unary("RecordCheckpoint", req))

    async def list_tasks(self, req: ss.ListTasksRequest) -> ss.ListTasksResponse:
        return cast(ss.ListTasksResponse, await self.unary("ListTasks", req))

    async def inspect(self, req: ss.InspectSessionRequest) -> ss.InspectSessionResponse:
        """InspectSession with a full request (e.g. carrying the owner's read signature in `auth`)."""
        return cast(ss.InspectSessionResponse, await self.unary("InspectSession", req))

    async def inspect_session(self, session_id: str, detail: str = "summary") -> ss.InspectSessionResponse:
        return await self.inspect(ss.InspectSessionRequest(session_id=session_id, detail=detail))

    def watch_session(
        self, session_id: str, from_cursor: int = 0, history_only: bool = False
    ) -> AsyncIterator[ss.WatchSessionResponse]:
        req = ss.WatchSessionRequest(
            session_id=session_id, from_cursor=from_cursor, history_only=history_only
        )
        return self.stream("WatchSession", req)


class ExecutorClient(ServiceClient):
    service = "agentgpt.executor.v1.ExecutorService"
    stub_class = ex_grpc.ExecutorServiceStub

    async def assign_session(self, session_id: str) -> ex.AssignSessionResponse:
        return cast(
            ex.AssignSessionResponse,
            await self.unary("AssignSession", ex.AssignSessionRequest(session_id=session_id)),
        )

    async def rehydrate_session(self, req: ex.RehydrateSessionRequest) -> ex.RehydrateSessionResponse:
        return cast(ex.RehydrateSessionResponse, await self.unary("RehydrateSession", req, timeout=60))

    async def release_session(self, session_id: str) -> ex.ReleaseSessionResponse:
        return cast(
            ex.ReleaseSessionResponse,
            await self.unary("ReleaseSession", ex.ReleaseSessionRequest(session_id=session_id)),
        )

    async def get_status(
        self, *, timeout: float | None = None, retry: bool = True
    ) -> ex.GetExecutorStatusResponse:
        return cast(
            ex.GetExecutorStatusResponse,
            await self.unary(
                "GetExecutorStatus", ex.GetExecutorStatusRequest(), timeout=timeout, retry=retry
            ),
        )


class RecoveryClient(ServiceClient):
    service = "agentgpt.recovery.v1.RecoveryService"
    stub_class = rc_grpc.RecoveryServiceStub
    peer_name = "recovery-oracle"

    async def get_verified_state(self, session_id: str) -> rc.GetVerifiedStateResponse:
        return cast(
            rc.GetVerifiedStateResponse,
            await self.unary(
                "GetVerifiedState", rc.GetVerifiedStateRequest(session_id=session_id), timeout=30
            ),
        )

    async def recover_session(
        self, session_id: str, reason: str, *, handoff: bool = False
    ) -> rc.RecoverSessionResponse:
        return cast(
            rc.RecoverSessionResponse,
            await self.unary(
                "RecoverSession",
                rc.RecoverSessionRequest(session_id=session_id, reason=reason, handoff=handoff),
                timeout=30,
            ),
        )

    async def submit_claim(self, req: rc.SubmitClaimRequest) -> rc.SubmitClaimResponse:
        return cast(rc.SubmitClaimResponse, await self.unary("SubmitClaim", req, timeout=60))

    async def list_recoveries(self, req: rc.ListRecoveriesRequest) -> rc.ListRecoveriesResponse:
        return cast(rc.ListRecoveriesResponse, await self.unary("ListRecoveries", req))


class IndexerClient(ServiceClient):
    service = "agentgpt.indexer.v1.IndexerService"
    stub_class = ix_grpc.IndexerServiceStub
    peer_name = "indexer"

    async def get_latest_anchor(self, session_id: str, home_chain_id: int = 0) -> ix.GetLatestAnchorResponse:
        req = ix.GetLatestAnchorRequest(session_id=session_id, home_chain_id=home_chain_id)
        return cast(ix.GetLatestAnchorResponse, await self.unary("GetLatestAnchor", req))

    async def get_on_chain_session(
        self, session_id: str, home_chain_id: int = 0
    ) -> ix.GetOnChainSessionResponse:
        req = ix.GetOnChainSessionRequest(session_id=session_id, home_chain_id=home_chain_id)
        return cast(ix.GetOnChainSessionResponse, await self.unary("GetOnChainSession", req))

    async def list_events(self, req: ix.ListEventsRequest) -> ix.ListEventsResponse:
        return cast(ix.ListEventsResponse, await self.unary("ListEvents", req))

    def stream_events(self, req: ix.StreamEventsRequest) -> AsyncIterator[ix.StreamEventsResponse]:
        return self.stream("StreamEvents", req)

    async def get_chain_status(self) -> ix.GetChainStatusResponse:
        return cast(ix.GetChainStatusResponse, await self.unary("GetChainStatus", ix.GetChainStatusRequest()))
