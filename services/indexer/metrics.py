"""The indexer's Prometheus metrics, registered in the service's registry (no global registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

# The label values of the per-chain series that have a second label (the words rpc.ChainRpcError and
# decoding.SkippedLog use).
RPC_ERROR_KINDS = ("unreachable", "timeout", "garbage", "error", "range_too_large")
SKIP_REASONS = ("malformed", "unknown_event", "undecodable", "foreign")


class IndexerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.chain_halted = Gauge(
            "agentgpt_indexer_chain_halted",
            "1 when the chain is halted (reorg deeper than the finality window); needs an operator",
            ["chain_id"],
            registry=registry,
        )
        self.reorgs = Counter(
            "agentgpt_indexer_reorgs",
            "Reorgs rolled back to a common ancestor",
            ["chain_id"],
            registry=registry,
        )
        self.reorg_depth = Gauge(
            "agentgpt_indexer_last_reorg_depth",
            "Depth in blocks of the latest reorg",
            ["chain_id"],
            registry=registry,
        )
        self.lag = Gauge(
            "agentgpt_indexer_lag_blocks",
            "Head block seen on the RPC minus the last indexed block",
            ["chain_id"],
            registry=registry,
        )
        self.head = Gauge(
            "agentgpt_indexer_head_block", "Latest head seen on the RPC", ["chain_id"], registry=registry
        )
        self.indexed = Gauge(
            "agentgpt_indexer_indexed_block", "Latest block indexed", ["chain_id"], registry=registry
        )
        self.events = Counter(
            "agentgpt_indexer_events",
            "Events ingested (originals, not retractions)",
            ["chain_id"],
            registry=registry,
        )
        self.retracted = Counter(
            "agentgpt_indexer_events_retracted", "Events retracted by reorgs", ["chain_id"], registry=registry
        )
        self.skipped_logs = Counter(
            "agentgpt_indexer_skipped_logs",
            "Logs not indexed, by reason (malformed, unknown_event, undecodable, foreign)",
            ["chain_id", "reason"],
            registry=registry,
        )
        self.rpc_errors = Counter(
            "agentgpt_indexer_rpc_errors",
            "Failed chain RPC calls, by kind (unreachable, timeout, garbage, error, range_too_large)",
            ["chain_id", "kind"],
            registry=registry,
        )
        self.lagging_rpc = Counter(
            "agentgpt_indexer_rpc_lagging",
            "Times the RPC answered an older head or lacked a block we expected (waited, not a reorg)",
            ["chain_id"],
            registry=registry,
        )

    def chain(self, chain_id: int) -> None:
        """Create the per-chain series at 0, so dashboards and alerts see them before anything happens (and
        increase() sees the first event: a series born at 1 shows none). The head and indexed block come
        with the first poll: 0 would be a block number."""
        label = str(chain_id)
        self.chain_halted.labels(label).set(0)
        self.reorgs.labels(label)
        self.reorg_depth.labels(label).set(0)
        self.events.labels(label)
        self.retracted.labels(label)
        self.lag.labels(label)
        self.lagging_rpc.labels(label)
        for kind in RPC_ERROR_KINDS:
            self.rpc_errors.labels(label, kind)
        for reason in SKIP_REASONS:
            self.skipped_logs.labels(label, reason)
