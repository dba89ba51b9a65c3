"""gRPC surface of the indexer: proto <-> domain, nothing else."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from typing import cast

from grpc import aio

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.errors import InvalidArgument, NotFound
from agentgpt.indexer.v1 import indexer_pb2 as pb
from agentgpt.indexer.v1 import indexer_pb2_grpc as pb_grpc
from agentgpt.network import Network
from agentgpt.timestamps import to_timestamp
from services.indexer.follower import ChainFollower, Health
from services.indexer.queries import Anchor, IndexerQueries
from services.indexer.store import EventQuery, IndexerStore, StoredEvent

DEFAULT_PAGE = 50
STREAM_BATCH = 500
_HEALTH = {
    Health.FOLLOWING: pb.CHAIN_HEALTH_FOLLOWING,
    Health.SYNCING: pb.CHAIN_HEALTH_SYNCING,
    Health.DEGRADED: pb.CHAIN_HEALTH_DEGRADED,
    Health.HALTED: pb.CHAIN_HEALTH_HALTED,
}


def _hash_bytes(h: str) -> bytes:
    return bytes.fromhex(h[2:])


def event_to_proto(e: StoredEvent) -> pb.ChainEvent:
    return pb.ChainEvent(
        cursor=e.cursor,
        chain_id=e.chain_id,
        block_number=e.block_number,
        block_hash=_hash_bytes(e.block_hash),
        tx_hash=_hash_bytes(e.tx_hash),
        log_index=e.log_index,
        address=e.address,
        name=e.name,
        args_json=e.args_json,
        session_id=e.session_id,
        removed=e.removed,
    )


def query_from_proto(f: pb.EventFilter) -> EventQuery:
    return EventQuery(
        chain_ids=tuple(f.chain_ids),
        names=tuple(f.names),
        session_id=f.session_id,
        from_block=f.from_block,
        to_block=f.to_block,
    )


def encode_page_token(e: StoredEvent) -> str:
    return base64.urlsafe_b64encode(f"v1:{e.chain_id}:{e.block_number}:{e.log_index}".encode()).decode()


def decode_page_token(token: str) -> tuple[int, int, int] | None:
    if not token:
        return None
    try:
        version, chain_id, block, log_index = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if version != "v1":
            raise ValueError(version)
        return int(chain_id), int(block), int(log_index)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page.page_token", "is not a token this service issued") from None


def _anchor_to_proto(a: Anchor) -> pb.AnchorOnChain:
    block = common.BlockRef(chain_id=a.chain_id, number=a.block_number, hash=_hash_bytes(a.block_hash))
    return pb.AnchorOnChain(
        chain_id=a.chain_id,
        checkpoint=common.Checkpoint(
            session_id=a.session_id, seq=a.seq, cid=a.cid, state_root=a.state_root, anchors=[block]
        ),
        block=block,
        confirmations=a.confirmations,
    )


class IndexerServicer(pb_grpc.IndexerServiceServicer):
    def __init__(
        self,
        network: Network,
        store: IndexerStore,
        queries: IndexerQueries,
        followers: Sequence[ChainFollower],
        stream_wait: float = 1.0,
    ) -> None:
        self.network = network
        self.store = store
        self.queries = queries
        self.followers = followers
        self.stream_wait = stream_wait

    def _home(self, home_chain_id: int) -> int:
        if home_chain_id and home_chain_id not in {c.chain_id for c in self.network.chains}:
            raise InvalidArgument("home_chain_id", f"chain {home_chain_id} is not followed by this indexer")
        if not home_chain_id and not self.network.chains:
            raise NotFound("this indexer follows no chain")
        return home_chain_id or self.network.home.chain_id

    async def GetLatestAnchor(
        self, request: pb.GetLatestAnchorRequest, context: aio.ServicerContext
    ) -> pb.GetLatestAnchorResponse:
        anchors = await self.queries.latest_anchors(request.session_id, self._home(request.home_chain_id))
        if not anchors:
            raise NotFound(f"no anchored checkpoint indexed for session {request.session_id}")
        highest = max(anchors, key=lambda a: (a.seq, a.confirmations))
        return pb.GetLatestAnchorResponse(
            per_chain=[_anchor_to_proto(a) for a in anchors], highest=_anchor_to_proto(highest)
        )

    async def GetOnChainSession(
        self, request: pb.GetOnChainSessionRequest, context: aio.ServicerContext
    ) -> pb.GetOnChainSessionResponse:
        home = self._home(request.home_chain_id)
        s = await self.queries.on_chain_session(request.session_id, home)
        if s is None:
            raise NotFound(
                f"session {request.session_id} has no SessionCreated event indexed on chain {home}"
            )
        follower = next((f for f in self.followers if f.chain.chain_id == home), None)
        as_of = common.BlockRef(chain_id=home)
        if follower is not None:
            as_of.number = follower.status.indexed_block
            h = await self.store.block_hash(home, follower.status.indexed_block)
            if h:
                as_of.hash = _hash_bytes(h)
        return pb.GetOnChainSessionResponse(
            session_id=s.session_id,
            owner=s.owner,
            state=cast(common.SessionState.ValueType, s.state),
            workflow_hash=s.workflow_hash,
            budget=str(s.budget),
            spent=str(s.spent),
            executor=s.executor,
            executor_epoch=s.executor_epoch,
            latest_seq=s.latest_seq,
            as_of=as_of,
        )

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: aio.ServicerContext
    ) -> pb.ListEventsResponse:
        size = request.page.page_size or DEFAULT_PAGE
        after = decode_page_token(request.page.page_token)
        rows = await self.store.live_events(query_from_proto(request.filter), after, size + 1)
        page = rows[:size]
        token = encode_page_token(page[-1]) if len(rows) > size else ""
        return pb.ListEventsResponse(
            events=[event_to_proto(e) for e in page], page=common.PageResponse(next_page_token=token)
        )

    async def StreamEvents(
        self, request: pb.StreamEventsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        cursor = request.from_cursor
        q = query_from_proto(request.filter)
        while True:
            # Wake on commits; re-query on every wake-up (filtered streams skip other events' cursors).
            seen_top = self.store.last_cursor
            rows = await self.store.events_after(cursor, q, STREAM_BATCH)
            for e in rows:
                yield pb.StreamEventsResponse(event=event_to_proto(e))
                cursor = e.cursor
            if len(rows) < STREAM_BATCH:
                await self.store.wait_for_cursor_above(max(cursor, seen_top), self.stream_wait)

    async def GetChainStatus(
        self, request: pb.GetChainStatusRequest, context: aio.ServicerContext
    ) -> pb.GetChainStatusResponse:
        out = []
        for f in self.followers:
            s = f.status
            updated = to_timestamp(s.updated_at)
            out.append(
                pb.ChainStatus(
                    chain_id=s.chain_id,
                    name=s.name,
                    health=_HEALTH[s.health],
                    head_block=s.head_block,
                    indexed_block=s.indexed_block,
                    lag_blocks=s.lag_blocks,
                    confirmation_depth=s.confirmations,
                    finality_window=s.finality_window,
                    reorgs_total=s.reorgs_total,
                    detail=s.detail,
                    updated_at=updated,
                )
            )
        return pb.GetChainStatusResponse(chains=out)
