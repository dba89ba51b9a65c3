"""Request validation for the indexer: one validator per RPC."""

from __future__ import annotations

from agentgpt.errors import InvalidArgument
from agentgpt.indexer.v1 import indexer_pb2 as pb
from agentgpt.runtime import validation as v
from agentgpt.runtime.interceptors import Validator

PREFIX = "/agentgpt.indexer.v1.IndexerService/"


def event_filter(f: pb.EventFilter) -> None:
    if f.session_id:
        v.session_id(f.session_id, "filter.session_id")
    for i, n in enumerate(f.names):
        if not n or len(n) > 64 or not n.isidentifier():
            raise InvalidArgument(f"filter.names[{i}]", f"is not an event name: {n[:80]!r}")
    for i, chain in enumerate(f.chain_ids):
        v.int64(chain, f"filter.chain_ids[{i}]")
    v.int64(f.from_block, "filter.from_block")
    v.int64(f.to_block, "filter.to_block")
    if f.to_block and f.from_block > f.to_block:
        raise InvalidArgument("filter.from_block", "must not be greater than filter.to_block")


def list_events(req: pb.ListEventsRequest) -> None:
    event_filter(req.filter)
    v.page(req.page)


def stream_events(req: pb.StreamEventsRequest) -> None:
    event_filter(req.filter)
    v.int64(req.from_cursor, "from_cursor")


def session_request(req: pb.GetLatestAnchorRequest | pb.GetOnChainSessionRequest) -> None:
    v.session_id(req.session_id)


VALIDATORS: dict[str, Validator] = {
    PREFIX + "GetLatestAnchor": session_request,
    PREFIX + "GetOnChainSession": session_request,
    PREFIX + "ListEvents": list_events,
    PREFIX + "StreamEvents": stream_events,
    PREFIX + "GetChainStatus": v.no_validation,
}
