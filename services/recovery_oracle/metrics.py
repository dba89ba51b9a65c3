"""The recovery oracle's Prometheus metrics (the claims' counter lives with the claims, claims.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_RECOVERY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900)


class RecoveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.recoveries = Counter(
            "agentgpt_recoveries_total",
            "Recoveries finished, by outcome: resumed (after a failure), handoff (graceful), failed (gave "
            "up), ended (the session ended or was paused by someone else meanwhile)",
            ["outcome"],
            registry=registry,
        )
        self.step_seconds = Histogram(
            "agentgpt_recovery_step_seconds",
            "Duration of each recovery step, retries included",
            ["step"],
            buckets=_STEP_BUCKETS,
            registry=registry,
        )
        self.recovery_seconds = Histogram(
            "agentgpt_recovery_seconds",
            "From the start of a recovery to the session running on its new executor, by kind",
            ["kind"],
            buckets=_RECOVERY_BUCKETS,
            registry=registry,
        )
        self.without_lease = Gauge(
            "agentgpt_sessions_without_lease",
            "ACTIVE sessions whose lease lapsed longer ago than the detection grace (the last detection pass)",
            registry=registry,
        )
        self.open = Gauge("agentgpt_recoveries_open", "Recoveries in progress", registry=registry)
        self.executors_live = Gauge(
            "agentgpt_executors_live", "Executors answering the oracle's status probes", registry=registry
        )
        # Every series exists from the start at 0, so rates and increases see the first recovery.
        for outcome in ("resumed", "handoff", "failed", "ended"):
            self.recoveries.labels(outcome)
        for step in ("pause", "choose", "reassign", "verify", "resume", "rehydrate"):
            self.step_seconds.labels(step)
        for kind in ("failure", "handoff"):
            self.recovery_seconds.labels(kind)
