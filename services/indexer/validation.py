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
    if f.to_block and f.from_block > f.to_block:
        raise InvalidArgument("filter.from_block", "must not be greater than filter.to_block")


def list_events(req: pb.ListEventsRequest) -> None:
    event_filter(req.filter)
    v.page(req.page)


def session_request(req: pb.GetLatestAnchorRequest | pb.GetOnChainSessionRequest) -> None:
    v.session_id(req.session_id)


VALIDATORS: dict[str, Validator] = {
    PREFIX + "GetLatestAnchor": session_request,
    PREFIX + "GetOnChainSession": session_request,
    PREFIX + "ListEvents": list_events,
    PREFIX + "StreamEvents": lambda r: event_filter(r.filter),
    PREFIX + "GetChainStatus": v.no_validation,
}
