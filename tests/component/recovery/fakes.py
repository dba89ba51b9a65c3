"""Stand-ins the recovery tests share: the indexer's view of a session (its CheckpointAnchored and
ExecutorAssigned events) and checkpoints written the way the executor writes them."""

from __future__ import annotations

import json
from typing import Any

import grpc
from multiformats import CID

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.errors import RpcError
from agentgpt.indexer.v1 import indexer_pb2 as ix
from agentgpt.ipfs import CheckpointWriter
from agentgpt.tasklog import ZERO_HASH, ExecutorKey, TaskLog
from agentgpt.tasklog import checkpoint_document_v1 as checkpoint_document
from apps.localnet.anvil import DEV_PRIVATE_KEYS

EXECUTOR = ExecutorKey(DEV_PRIVATE_KEYS[1])
OTHER = ExecutorKey(DEV_PRIVATE_KEYS[3])
SID = "7"
HOME, OTHER_CHAIN = 31337, 31338


class Indexer:
    """What the verifier asks the indexer: the session's CheckpointAnchored and ExecutorAssigned events."""

    def __init__(self, executor: str = EXECUTOR.address) -> None:
        self.events: list[ix.ChainEvent] = []
        self.down = False
        self.executor = executor
        self.assign(executor, epoch=1)

    def _add(self, chain_id: int, name: str, args: dict[str, Any]) -> None:
        self.events.append(
            ix.ChainEvent(
                cursor=len(self.events) + 1,
                chain_id=chain_id,
                name=name,
                session_id=SID,
                args_json=json.dumps(args),
            )
        )

    def assign(self, executor: str, *, epoch: int) -> None:
        self._add(HOME, "ExecutorAssigned", {"sessionId": SID, "executor": executor, "epoch": str(epoch)})

    def anchor(self, chain_id: int, cp: cpb.Checkpoint, *, writer: str = "", epoch: int = 1) -> None:
        args = {
            "homeChainId": str(HOME),
            "sessionId": SID,
            "seq": str(cp.seq),
            "writer": writer or self.executor,
            "epoch": str(epoch),
            "stateRoot": "0x" + bytes(cp.state_root).hex(),
            "cid": "0x" + bytes(CID.decode(cp.cid)).hex(),
        }
        self._add(chain_id, "CheckpointAnchored", args)

    async def list_events(self, req: ix.ListEventsRequest) -> ix.ListEventsResponse:
        if self.down:
            raise RpcError("indexer", "ListEvents", grpc.StatusCode.UNAVAILABLE, "connection refused")
        names = set(req.filter.names)
        start = int(req.page.page_token or 0)
        found = [e for e in self.events if e.name in names and e.session_id == req.filter.session_id]
        page = found[start : start + 2]  # small pages: the verifier must follow them
        more = start + 2 < len(found)
        return ix.ListEventsResponse(
            events=page, page=cpb.PageResponse(next_page_token=str(start + 2) if more else "")
        )


class Checkpoints:
    """Writes checkpoints the way the executor does: a signed task log, then the document."""

    def __init__(self, writer: CheckpointWriter, key: ExecutorKey = EXECUTOR) -> None:
        self.writer, self.log = writer, TaskLog(SID, key)
        self.prev_cid, self.prev_root = "", ZERO_HASH

    async def make(self, tasks: int, **tamper: Any) -> cpb.Checkpoint:
        start = self.log.seq
        for i in range(start + 1, start + tasks + 1):
            self.log.append(i, "analyze_market", "succeeded", {"i": i}, context_epoch=1)
        entries = self.log.take_pending()
        if "entries" in tamper:
            entries = tamper.pop("entries")(entries)
        doc = checkpoint_document(
            session_id=SID,
            seq=self.log.seq,
            state_root=self.log.head,
            prev_cid=self.prev_cid,
            prev_root=self.prev_root,
            entries=entries,
            key=self.log.key,
            context=[{"epoch": 1}],
            budget={"spent": 0},
            memory={},
            chains=["arbitrum", "polygon"],
        )
        doc.update(tamper)
        cid, _ = await self.writer.write(doc)
        self.prev_cid, self.prev_root = cid, self.log.head
        return cpb.Checkpoint(session_id=SID, seq=self.log.seq, cid=cid, state_root=self.log.head)
