"""The executor's Prometheus metrics, registered in the service's registry (no global registry)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The label values each labelled series takes (the code that counts them uses these words). Every series
# is created at 0 from the start, so increase() and rate() see the first event and the alerts on
# failures fire on the first one (a series born at 1 shows no increase), and the dashboard's panels
# have their series before anything happened.
TASK_STATUSES = ("succeeded", "failed", "refused")  # records.STATUS_NAME
CHECKPOINT_RESULTS = ("ok", "failed")
ANCHOR_RESULTS = ("ok", "failed", "refused", "dropped")
RETRY_REASONS = (  # retry.failure_kind
    "service_unavailable",
    "model_unavailable",
    "dependency_unavailable",
    "chain_unavailable",
    "timeout",
    "network",
)
RUNNER_STAGES = ("setup", "running")
SETTLEMENT_RESULTS = ("ok", "failed")


class ExecutorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.registry = registry
        self.tasks = Counter(
            "agentgpt_executor_tasks",
            "Tasks finished and committed to the session service, by outcome",
            ["status"],
            registry=registry,
        )
        self.task_seconds = Histogram(
            "agentgpt_executor_task_seconds",
            "Seconds from a task's start to its committed report (planning, decorators, chain, report)",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.gas = Counter(
            "agentgpt_executor_gas_used", "Gas used by the executor's task transactions", registry=registry
        )
        self.charged = Counter(
            "agentgpt_executor_budget_charged",
            "AGPT base units charged to session budgets (task fees and gas)",
            registry=registry,
        )
        self.checkpoints = Counter(
            "agentgpt_executor_checkpoints",
            "Checkpoints written to IPFS, by result (ok, failed: retried later)",
            ["result"],
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "agentgpt_executor_checkpoint_seconds",
            "Seconds to encode, seal and add a checkpoint to IPFS",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=registry,
        )
        self.proof_seconds = Histogram(
            "agentgpt_executor_proof_seconds",
            "Seconds to prove a zk_batch_prover checkpoint (every batch of it, Groth16 with snarkjs)",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.anchors = Counter(
            "agentgpt_executor_anchors",
            "Checkpoint anchor transactions by chain and result (ok, failed: retried with backoff)",
            ["chain", "result"],
            registry=registry,
        )
        self.anchor_backlog = Gauge(
            "agentgpt_executor_anchor_backlog",
            "Checkpoint anchors waiting to be sent, all chains",
            registry=registry,
        )
        self.sessions = Gauge(
            "agentgpt_executor_sessions", "Sessions this executor holds a lease on", registry=registry
        )
        self.task_retries = Counter(
            "agentgpt_executor_task_retries",
            "Task attempts that failed on a dependency and are retried with backoff, by failure kind",
            ["reason"],
            registry=registry,
        )
        self.task_attempts = Gauge(
            "agentgpt_executor_task_attempts",
            "Attempts so far of the task retried most (0 when none is being retried)",
            registry=registry,
        )
        self.runner_failures = Counter(
            "agentgpt_executor_runner_failures",
            "Session runners stopped by an unexpected error (a task that failed deterministically is "
            "recorded FAILED instead); by where it happened",
            ["stage"],
            registry=registry,
        )
        self.settlements = Counter(
            "agentgpt_executor_settlements",
            "Budget settlements through the payment rail, by result (ok, failed: retried at the next one)",
            ["result"],
            registry=registry,
        )
        self.fenced = Counter(
            "agentgpt_executor_fenced",
            "Sessions stopped because their lease epoch went stale (taken over elsewhere)",
            registry=registry,
        )
        for counter, values in (
            (self.tasks, TASK_STATUSES),
            (self.checkpoints, CHECKPOINT_RESULTS),
            (self.task_retries, RETRY_REASONS),
            (self.runner_failures, RUNNER_STAGES),
            (self.settlements, SETTLEMENT_RESULTS),
        ):
            for value in values:
                counter.labels(value)

    def chains(self, names: Iterable[str]) -> None:
        """Create the anchor series of each chain (by name) at 0, every result."""
        for name in names:
            for result in ANCHOR_RESULTS:
                self.anchors.labels(name, result)
