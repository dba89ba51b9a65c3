"""zk_batch_prover: every checkpoint of the session carries Groth16 proofs of its task records.

The decorator changes no plan; what it names happens at checkpoints (services/executor/runner.py): the
runner proves each batch of at most agentgpt.zk.batch.BATCH tasks with this executor's snarkjs worker,
writes the proofs into the checkpoint's `zk` block, and anchors through
SessionFactory.anchorCheckpointProved. An executor that cannot prove (no Node, no setup) cannot provide
the decorator: the registry stands a Refusing decorator in for it, so the session's tasks are refused
rather than run unproved.
"""

from __future__ import annotations

from services.executor.decorators import DecoratorContext, DecoratorDeps, UnknownDecorator
from services.executor.plan import Plan


class BatchProver:
    def __init__(self, name: str) -> None:
        self.name = name

    async def apply(self, plan: Plan, ctx: DecoratorContext) -> Plan:
        return plan  # the proofs are made at checkpoints


def make_zk_batch_prover(name: str, deps: DecoratorDeps) -> BatchProver:
    worker = deps.zk_worker
    why = "this executor has no zk prover configured" if worker is None else worker.available()
    if why is not None:
        raise UnknownDecorator(name, f"decorator {name!r} is supported but cannot be loaded here: {why}")
    return BatchProver(name)
