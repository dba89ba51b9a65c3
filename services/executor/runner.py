"""SessionRunner: one per held lease, runs that session's tasks in order and reports every step.

It renews the lease every ttl/3 and stops the moment the epoch is stale (a refused renew or report);
plans each task with the session's context, runs the decorators and the budget check, executes the
actions (intents made durable through ReportTask RUNNING before any broadcast), appends the signed log
entry and commits the result through ReportTask before the next task starts; checkpoints every N tasks.
A task that fails deterministically (bad data, a bug, a revert) is recorded FAILED once and the session
goes on; a task whose dependency is down (session service, chain RPC, IPFS, model) is retried with capped
backoff, never re-running a recorded transaction and never charging twice (charges are settled from
committed task records, see budget.py).

On start it rebuilds the session's state from the records (resume.resume_state); when it ends (session
no longer ACTIVE, lease lost, stop asked, or a failure no retry mends) it settles, releases the lease
unless fenced, and calls its `on_done` callback. It knows the engine only by that callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentgpt.checkpoint_format import body_of, checkpoint_document, entry_digest, sign
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.jsonvalue import parse_json_object
from agentgpt.sealing import Sealing
from agentgpt.session.v1 import session_pb2 as ss
from agentgpt.spec import spec_from_message
from agentgpt.tasklog import ZERO_HASH, LogEntry, TaskLog, TaskLogError
from agentgpt.zk import batch as zk_batch
from agentgpt.zk import proves_batches
from services.executor.actions import Step
from services.executor.budget import BudgetMeter
from services.executor.context import SessionContext
from services.executor.plan import PlanDeferred, PlanRejected, TaskRequest
from services.executor.planners.base import Feedback, SessionView
from services.executor.ports import Fenced, ResumePoint
from services.executor.records import (
    DONE,
    FAILED,
    REFUSED,
    RUNNING,
    STATUS_NAME,
    SUCCEEDED,
    checkpoint_pb,
    intent_from_pb,
    intent_to_pb,
    result_json,
)
from services.executor.resume import remember, resume_state
from services.executor.retry import backoff, failure_kind, printable
from services.executor.transactions import TxError, TxIntentRecord, TxReverted

if TYPE_CHECKING:
    from services.executor.engine import EngineConfig, EngineDeps

# The engine's logger: the runners' messages are the engine's log, as operators know it.
log = logging.getLogger("agentgpt.executor.engine")

# The planner's chain feedback: eth_feeHistory of the session's first chain is read at most every
# FEE_FEEDBACK_TTL s (waiting at most FEE_FEEDBACK_TIMEOUT s; after a failure the last answer stands and the
# next read is FEE_FEEDBACK_BACKOFF s later), so off-chain tasks do not wait on the chain.
FEE_FEEDBACK_TTL = 3.0
FEE_FEEDBACK_TIMEOUT = 2.0
FEE_FEEDBACK_BACKOFF = 30.0
FEE_FEEDBACK_BLOCKS = 5
RECENT_GAS_TASKS = 10

ACTIVE = cpb.SESSION_STATE_ACTIVE


class SessionRunner:
    """Runs one leased session until it ends, the lease is lost or it is asked to stop; then calls
    `on_done(self)` (once, last)."""

    def __init__(
        self,
        config: EngineConfig,
        deps: EngineDeps,
        lease: ss.Lease,
        on_done: Callable[[SessionRunner], None],
        resume: ResumePoint | None = None,
    ) -> None:
        self.config = config
        self.deps = deps
        self.on_done = on_done
        self.lease = lease
        self.session_id = lease.session_id
        self.resume = resume
        self.last_seq = 0
        self.last_checkpoint_seq = 0
        self.prev_cid = ""
        self.prev_root = ZERO_HASH  # the previous checkpoint's state root
        self.prev_log_head = ZERO_HASH  # the log head the next checkpoint's entries link from
        self.chain_epoch = 0  # the home chain's assignment epoch this runner writes under (0: off chain)
        self.spec_cid = ""  # the spec published on IPFS (raw block; keccak256 of it is the workflowHash)
        # How checkpoint bodies are sealed: this epoch's data key from the lease (set by the engine);
        # None: plaintext bodies.
        self.sealing: Sealing | None = None
        self.fenced = False
        self.stop_requested = False
        self.ctx: SessionContext | None = None
        self.tasklog: TaskLog | None = None
        self.meter: BudgetMeter | None = None
        self.memory: dict[str, Any] = {}
        self.params: dict[str, Any] = {}
        self.chains: tuple[str, ...] = ()
        self.spec_json = ""  # the spec's canonical JSON, carried by every checkpoint (restore needs it)
        self.interval = self.config.checkpoint_interval
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self._checkpoint_failures = 0
        self._checkpoint_retry_at = 0.0
        self._checkpoint_log_head = b""  # a v2 checkpoint document's log head, read when records are gone
        self.attempts: dict[int, int] = {}  # task seq -> failed attempts so far (retried tasks only)
        self._queue_failures = 0
        self.recent_gas: deque[int] = deque(maxlen=RECENT_GAS_TASKS)  # the planner's gas feedback
        # zk_batch_prover: each pending task's charge, and the Poseidon root / proved spend the next
        # checkpoint's proofs start from (the previous checkpoint's last batch; 0, 0 for the first)
        self.costs: dict[int, int] = {}
        self.zk_root, self.zk_spent = 0, 0
        self._fees: tuple[list[int], list[int]] | None = None  # the last eth_feeHistory answer
        self._fees_due = 0.0  # monotonic time of the next read

    @property
    def context_epoch(self) -> int:
        return self.ctx.epoch.epoch if self.ctx else 0

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        renewer = asyncio.create_task(self._renew_loop(), name=f"lease-{self.session_id}")
        try:
            await self._setup()
            self.ready.set()
            await self._loop()
        except Fenced as exc:
            log.warning("session %s: fenced, stopping (%s)", self.session_id, exc)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            # Not a task's failure (those are recorded FAILED): setup, the queue or a report broke in a way
            # a retry cannot mend. Keep the lease a while before letting go, so the same session is not
            # claimed straight back into the same failure.
            self.deps.metrics.runner_failures.labels("running" if self.ready.is_set() else "setup").inc()
            log.error(
                "session %s: runner failed: %s; releasing the lease",
                self.session_id,
                printable(f"{type(exc).__name__}: {exc}"),
                exc_info=True,
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(min(self.config.retry_max, self.config.retry_base * 8))
        finally:
            self.ready.set()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            if not self.fenced:
                with contextlib.suppress(Exception):
                    await self._settle()
                with contextlib.suppress(Exception):
                    await self.deps.port.release(self.lease)
            self.on_done(self)

    async def _renew_loop(self) -> None:
        interval = max(0.2, self.config.lease_ttl / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                self.lease = await self.deps.port.renew(self.lease, self.config.lease_ttl)
            except Fenced as exc:
                self._fence(str(exc))
                return
            except Exception as exc:  # transient: the lease has ttl/3*2 left; keep trying
                log.warning("session %s: renewing the lease failed: %s", self.session_id, exc)

    def _fence(self, why: str) -> None:
        if not self.fenced:
            self.deps.metrics.fenced.inc()
        self.fenced = True
        log.warning(
            "session %s: lease epoch %d is stale (%s); stopping at once",
            self.session_id,
            self.lease.epoch,
            why,
        )
        if self.task is not None:
            self.task.cancel()

    async def _setup(self) -> None:
        session = await self.deps.port.session(self.session_id)
        spec = session.spec
        self.params = parse_json_object(spec.params_json, "spec.params_json", max_bytes=None)
        self.chains = tuple(spec.chains)
        try:
            self.spec_json = spec_from_message(spec).canonical().decode()
        except Exception as exc:  # an invalid spec was refused at creation; never expected here
            log.warning(
                "session %s: its spec does not rebuild (%s); checkpoints go without it", self.session_id, exc
            )
        self.interval = int(
            spec.checkpoint_interval
            or self.params.get("checkpoint_interval")
            or self.config.checkpoint_interval
        )
        self.ctx = self.deps.contexts.build(
            self.session_id,
            models=dict(spec.models),
            decorators=list(spec.decorators),
            payment_rail=str(self.params.get("payment_rail", "")),
            owner=session.owner,
            params=self.params,
            chains=self.chains,
        )
        committed = await self.deps.port.tasks(self.session_id, 0)
        checkpoint = session.latest_checkpoint if session.HasField("latest_checkpoint") else None
        state = resume_state(committed, checkpoint, self.resume)
        # What earlier holders of the lease did applies again, in order: the session's memory (the
        # latest outputs of each task kind) and its context swaps, as recorded epochs.
        base_memory = self.resume.memory if self.resume else {}
        if not self.resume and checkpoint is not None and not any(t.seq <= checkpoint.seq for t in committed):
            # The records before the checkpoint are gone (a session restored from chain + IPFS): its
            # memory comes from the checkpoint document.
            base_memory = await self._checkpoint_memory(checkpoint)
        self.memory = {**base_memory, **state.memory}
        for swap in state.swaps:
            try:
                self.deps.contexts.swap(self.ctx, json.loads(swap.args_json or "{}"), at_seq=swap.seq)
            except (PlanRejected, ValueError) as exc:
                log.error(
                    "session %s: cannot re-apply the context swap of task %d: %s",
                    self.session_id,
                    swap.seq,
                    exc,
                )
        self.meter = BudgetMeter(
            int(session.budget or 0),
            int(session.budget_spent or 0),
            task_fee=self.config.task_fee,
            agpt_per_gas=self.config.agpt_per_gas,
            # Every committed charge may still be unsettled (a previous holder died before settling): the
            # first settlement asks the rail what it already has and pays for the rest, exactly once.
            unsettled_tasks=list(state.unsettled),
        )
        head = state.head
        if (
            not self.resume
            and checkpoint is not None
            and head != ZERO_HASH
            and not any(t.seq == checkpoint.seq for t in committed)
        ):
            head = self._checkpoint_log_head or head
        self.prev_cid, self.prev_root, self.last_checkpoint_seq = state.prev_cid, state.root, state.seq
        self.prev_log_head = head
        domain, key = self.deps.domain, self.deps.key
        self.tasklog = TaskLog(
            self.session_id,
            key,
            head,
            state.seq,
            sign_entry=lambda seq, h: sign(key, entry_digest(domain, self.session_id, seq, h)),
        )
        if self.deps.assignment is not None:
            try:
                self.chain_epoch = (await self.deps.assignment(self.session_id))[1]
            except Exception as exc:  # checked again by the chain when anchoring; the header says 0
                log.warning("session %s: reading its assignment epoch failed: %s", self.session_id, exc)
        # Roll forward over tasks already committed after the checkpoint (SessionDB records): their log
        # entries are rebuilt, checked against the recorded log hashes and signed by this executor, so
        # the next checkpoint carries an unbroken log from the previous one.
        for t in state.relog:
            self._relog(t)
        self.last_seq = state.last_seq
        log.info(
            "session %s: running from task %d (epoch %d, context %d)",
            self.session_id,
            self.last_seq + 1,
            self.lease.epoch,
            self.context_epoch,
        )

    async def _checkpoint_memory(self, checkpoint: cpb.Checkpoint) -> dict[str, Any]:
        reader = self.deps.reader
        if reader is None:
            return {}
        doc = await reader.read(
            checkpoint.cid,
            session_id=self.session_id,
            seq=checkpoint.seq,
            state_root=bytes(checkpoint.state_root),
        )
        log_head = doc.get("log_head")
        if isinstance(log_head, bytes):  # v2: the state root is not the log head
            self._checkpoint_log_head = log_head
        if "zk" in doc:  # the proofs continue from its last batch; it may not be anchored yet
            batches, _ = zk_batch.parse_block(doc["zk"])
            self.zk_root, self.zk_spent = batches[-1][0].new_root, batches[-1][0].spent_after
            if self.deps.anchors is not None:
                self.deps.anchors.add_batches(self.session_id, checkpoint.seq, batches)
        return dict(body_of(doc).get("memory") or {})

    def _relog(self, t: ss.Task) -> None:
        assert self.tasklog is not None
        self.costs[t.seq] = int(t.cost or 0)
        try:
            result = json.loads(t.result_json or "{}")
            self.tasklog.append(
                t.seq,
                t.input.kind,
                STATUS_NAME[t.status],
                result,
                context_epoch=int(result.get("context_epoch", 0)),
                tx_hashes=[bytes.fromhex(str(h).removeprefix("0x")) for h in result.get("tx_hashes", [])],
                expected_hash=bytes(t.log_hash),
            )
        except (TaskLogError, ValueError, TypeError, AttributeError, KeyError) as exc:
            # A record that does not rebuild its entry (written by an older executor, or altered): the
            # next checkpoint's log starts after it, from its recorded hash, with no link to the previous
            # checkpoint (prev_cid empty) — a visible gap rather than an unverifiable chain.
            log.warning(
                "session %s: task %d: %s; the next checkpoint starts after it", self.session_id, t.seq, exc
            )
            self.tasklog.take_pending()
            self.tasklog.head, self.tasklog.seq = bytes(t.log_hash), t.seq
            self.prev_root, self.prev_cid = ZERO_HASH, ""
            self.prev_log_head, self.last_checkpoint_seq = bytes(t.log_hash), t.seq

    async def _loop(self) -> None:
        while not self.stop_requested:
            try:
                if await self._pass():
                    return
                self._queue_failures = 0
            except (Fenced, asyncio.CancelledError):
                raise
            except Exception as exc:
                kind = failure_kind(exc)
                if kind is None:
                    raise
                # The session service (or the chain, for the idle settlement) is down: the lease renewer
                # keeps trying on its own; the queue is read again after a pause.
                self._queue_failures += 1
                delay = backoff(self._queue_failures, self.config.retry_base, self.config.retry_max)
                log.warning(
                    "session %s: reading the queue failed (%s: %s); again in %.1f s",
                    self.session_id,
                    kind,
                    printable(str(exc)),
                    delay,
                )
                await asyncio.sleep(delay)

    async def _pass(self) -> bool:
        """Run what is runnable now, in order; True once the session is no longer ACTIVE."""
        pending = await self.deps.port.tasks(self.session_id, self.last_seq)
        if not any(t.status not in DONE for t in pending):
            await self._on_idle()
            session = await self.deps.port.session(self.session_id)
            if session.state != ACTIVE:
                log.info(
                    "session %s is %s; leaving it", self.session_id, cpb.SessionState.Name(session.state)
                )
                return True
            await asyncio.sleep(self.config.poll_interval)
            return False
        for t in pending:
            if self.stop_requested or self.fenced:
                return False
            if t.seq != self.last_seq + 1:
                break  # a gap: the queue is read again
            if t.status in DONE:
                # Committed by an earlier attempt whose acknowledgement was lost: adopt it, never rerun it.
                self._adopt(t)
                continue
            started = time.perf_counter()
            try:
                await self.run_task(t)
            except (Fenced, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._task_error(t, exc)
                return False  # read the queue again: the task's record (intents, status) may have moved
            self.attempts.pop(t.seq, None)
            if self.last_seq == t.seq:  # committed (not deferred)
                self.deps.metrics.task_seconds.observe(time.perf_counter() - started)
        return False

    def _adopt(self, t: ss.Task) -> None:
        assert self.meter is not None
        self._relog(t)
        remember(self.memory, t.input.kind, t.result_json)
        self.meter.commit(t.seq, int(t.cost or 0))
        self.last_seq = t.seq
        self.attempts.pop(t.seq, None)

    async def _task_error(self, t: ss.Task, exc: Exception) -> None:
        """A task attempt raised: retry it if a dependency failed, else record it FAILED (once)."""
        m = self.deps.metrics
        attempts = self.attempts[t.seq] = self.attempts.get(t.seq, 0) + 1
        kind = failure_kind(exc)
        reason = printable(f"{type(exc).__name__}: {exc}")
        in_flight = await self._recorded_intents(t)
        if kind is not None and (attempts < self.config.task_attempts or in_flight):
            # A transaction in flight is never given up on: its outcome must be found on chain first.
            delay = backoff(attempts, self.config.retry_base, self.config.retry_max)
            m.task_retries.labels(kind).inc()
            log.warning(
                "session %s task %d: attempt %d failed (%s); retrying in %.1f s",
                self.session_id,
                t.seq,
                attempts,
                reason,
                delay,
            )
            with contextlib.suppress(Exception):
                await self._report(
                    t,
                    RUNNING,
                    error=f"retrying: attempt {attempts} failed ({kind}): {reason}",
                    intents=in_flight,
                )
            await asyncio.sleep(delay)
            return
        why = f"gave up after {attempts} attempts: {reason}" if kind is not None else reason
        log.error("session %s task %d failed: %s", self.session_id, t.seq, why)
        await self._finish(t, FAILED, {}, error=f"executor: {why}", intents=in_flight)
        self.attempts.pop(t.seq, None)

    async def _recorded_intents(self, t: ss.Task) -> list[TxIntentRecord]:
        """The task's transaction intents as SessionDB has them now (a failed attempt may have added some)."""
        try:
            fresh = await self.deps.port.tasks(self.session_id, t.seq - 1)
        except Exception:
            fresh = []
        record = next((x for x in fresh if x.seq == t.seq), t)
        return [intent_from_pb(i) for i in record.intents]

    async def _on_idle(self) -> None:
        assert self.tasklog is not None
        if (
            self.config.checkpoint_on_idle
            and self.last_seq > self.last_checkpoint_seq
            and time.monotonic() >= self._checkpoint_retry_at
        ):
            await self.checkpoint()
        await self._settle()

    # ------------------------------------------------------------------ one task
    async def run_task(self, t: ss.Task) -> None:
        assert self.ctx is not None and self.tasklog is not None and self.meter is not None
        try:  # the session service's own check again: a record from before it, or written around it
            args = parse_json_object(t.input.args_json, "args_json", max_bytes=None)
        except ValueError as exc:
            await self._finish(t, REFUSED, {}, error=f"task args: {exc}")
            return
        task = TaskRequest(self.session_id, t.seq, t.input.kind, args)
        if task.kind == "swap_context":
            try:
                epoch = self.deps.contexts.swap(self.ctx, args, at_seq=task.seq)
            except PlanRejected as exc:
                await self._finish(t, REFUSED, {}, error=str(exc))
                return
            await self._finish(t, SUCCEEDED, {"context": epoch.to_json()})
            return
        intents: list[TxIntentRecord] = [intent_from_pb(i) for i in t.intents]
        while True:
            try:
                plan = await self.ctx.plan(task, await self._view())
                self.meter.check(plan)
                break
            except PlanRejected as exc:
                await self._finish(t, REFUSED, {}, error=str(exc))
                return
            except PlanDeferred as exc:  # a decorator's deliberate wait (e.g. fees too high), not a failure
                await self._report(t, RUNNING, error=f"deferred: {exc}", intents=intents)
                await asyncio.sleep(exc.retry_after)
        outputs: list[dict[str, Any]] = []
        txs = []
        try:
            redo = False
            if intents:
                # A previous attempt recorded this step's transaction: finish THAT transaction.
                try:
                    txs.append(await self.deps.actions.resume(intents, self._journal(t, intents)))
                    outputs.append({"resumed_tx": "0x" + txs[-1].tx_hash.hex()})
                except TxReverted as exc:
                    # Mined after its executor lost the session (the reassignment fenced it out): it did
                    # nothing. The step runs again, once, with this executor's transaction.
                    if not await self.deps.actions.redo_allowed(self.session_id, Step(t.seq, 0), intents):
                        raise
                    log.warning(
                        "session %s task %d: the previous executor's transaction reverted (%s) and the "
                        "account never executed the step; running it again",
                        self.session_id,
                        t.seq,
                        exc,
                    )
                    redo = True
            if not intents or redo:
                for index, action in enumerate(plan.actions):
                    outcome = await self.deps.actions.run(
                        self.session_id,
                        Step(t.seq, index),
                        action,
                        plan,
                        self.memory,
                        self.params,
                        self._journal(t, intents),
                    )
                    outputs.append(outcome.result)
                    txs.extend(outcome.txs)
        except PlanRejected as exc:
            await self._finish(t, REFUSED, {"plan": plan.to_json()}, error=str(exc), intents=intents)
            return
        except TxError as exc:
            gas = sum(x.gas_used for x in txs)
            await self._finish(
                t,
                FAILED,
                {"plan": plan.to_json(), "outputs": outputs},
                error=str(exc),
                intents=intents,
                gas_used=gas,
            )
            return
        gas = sum(x.gas_used for x in txs)
        result = {
            "plan": plan.to_json(),
            "outputs": outputs,
            "model_score": plan.score,
            "gas_cost_wei": str(sum(x.gas_used * x.effective_gas_price for x in txs)),
        }
        await self._finish(
            t, SUCCEEDED, result, intents=intents, gas_used=gas, tx_hashes=[x.tx_hash for x in txs]
        )
        self.memory[task.kind] = outputs[0] if len(outputs) == 1 else outputs

    def _journal(self, t: ss.Task, intents: list[TxIntentRecord]) -> Any:
        async def journal(intent: TxIntentRecord) -> None:
            intents.append(intent)
            await self._report(t, RUNNING, intents=intents)  # durable before broadcast

        return journal

    async def _view(self) -> SessionView:
        return SessionView(self.session_id, self.params, self.chains, "", self.memory, await self._feedback())

    async def _feedback(self) -> Feedback:
        assert self.meter is not None
        source = self.deps.fee_source
        if source is not None and self.chains and time.monotonic() >= self._fees_due:
            try:
                self._fees = await asyncio.wait_for(
                    source.fee_history(self.chains[0], FEE_FEEDBACK_BLOCKS, 50.0), FEE_FEEDBACK_TIMEOUT
                )
                self._fees_due = time.monotonic() + FEE_FEEDBACK_TTL
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the chain away or slow: plan with what was last known
                log.info(
                    "session %s: no fee history for the planner (%s)",
                    self.session_id,
                    printable(str(exc) or type(exc).__name__),
                )
                self._fees_due = time.monotonic() + FEE_FEEDBACK_BACKOFF
        base_fees, rewards = self._fees or ([], [])
        tips = sorted(r for r in rewards if r > 0)
        return Feedback(
            base_fee_wei=base_fees[-1] if base_fees else None,
            base_fees_wei=tuple(base_fees[:-1]),
            priority_fee_wei=tips[len(tips) // 2] if tips else None,
            recent_gas_used=tuple(self.recent_gas),
            budget_left=max(0, self.meter.budget - self.meter.spent),
            task_fee=self.meter.task_fee,
            agpt_per_gas=self.meter.agpt_per_gas,
        )

    async def _report(
        self,
        t: ss.Task,
        status: int,
        *,
        result: Mapping[str, Any] | None = None,
        error: str = "",
        intents: Sequence[TxIntentRecord] = (),
        gas_used: int = 0,
        cost: int = 0,
        log_hash: bytes = b"",
    ) -> None:
        task = ss.Task(
            session_id=self.session_id,
            seq=t.seq,
            input=t.input,
            status=status,  # type: ignore[arg-type]
            result_json=result_json(result or {}),
            error=printable(error)[:2000],
            intents=[intent_to_pb(i) for i in intents],
            gas_used=gas_used,
            cost=str(cost),
            log_hash=log_hash,
        )
        if self.fenced:
            raise Fenced("lease lost")
        await self.deps.port.report(self.lease, task)

    async def _finish(
        self,
        t: ss.Task,
        status: int,
        result: dict[str, Any],
        *,
        error: str = "",
        intents: Sequence[TxIntentRecord] = (),
        gas_used: int = 0,
        tx_hashes: Sequence[bytes] = (),
    ) -> None:
        assert self.tasklog is not None and self.meter is not None and self.ctx is not None
        if gas_used:
            self.recent_gas.append(gas_used)
        # A task that ran (succeeded or failed) pays the task fee and its gas; a refused one only its gas.
        cost = self.meter.cost_of(gas_used) if status != REFUSED or gas_used else 0
        result = {**result, "context_epoch": self.context_epoch}
        if error:
            result["error"] = error
        if tx_hashes:
            result["tx_hashes"] = ["0x" + bytes(h).hex() for h in tx_hashes]
        # The log commits to the result exactly as reported (its JSON form), so whoever takes the session
        # over can rebuild this entry from SessionDB and check it against the recorded log hash.
        result = json.loads(result_json(result))
        entry = self.tasklog.append(
            t.seq,
            t.input.kind,
            STATUS_NAME[status],
            result,
            context_epoch=self.context_epoch,
            tx_hashes=tx_hashes,
        )
        try:
            await self._report(
                t,
                status,
                result=result,
                error=error,
                intents=intents,
                gas_used=gas_used,
                cost=cost,
                log_hash=entry.hash,
            )
        except BaseException:
            # Not committed: the entry must not stay in our log (the task will be run or resumed again).
            self.tasklog.drop_last(entry.prev_hash, self.last_seq)
            raise
        self.meter.commit(t.seq, cost)  # committed: now it is part of the record settlements pay from
        self.costs[t.seq] = cost
        self.last_seq = t.seq
        m = self.deps.metrics
        m.tasks.labels(STATUS_NAME[status]).inc()
        m.gas.inc(gas_used)
        m.charged.inc(cost)
        if error:
            log.info("session %s task %d %s: %s", self.session_id, t.seq, STATUS_NAME[status], error)
        if t.seq - self.last_checkpoint_seq >= self.interval:
            await self.checkpoint()
            await self._settle()

    # ------------------------------------------------------------------ checkpoints and budget
    async def checkpoint(self) -> None:
        cp = self.deps.checkpointer
        if cp is None or self.tasklog is None or self.ctx is None or self.meter is None:
            return
        entries = list(self.tasklog.pending)
        proofs: list[tuple[zk_batch.Statement, zk_batch.Proof]] = []
        try:
            if self.spec_json and not self.spec_cid:
                self.spec_cid = await cp.writer.store.put(self.spec_json.encode(), "raw")
            zk = await self._prove(entries, proofs) if self.proves_batches and entries else None
            doc = checkpoint_document(
                domain=self.deps.domain,
                session_id=self.session_id,
                seq=self.last_seq,
                epoch=self.chain_epoch,
                prev_cid=self.prev_cid,
                prev_seq=self.last_checkpoint_seq,
                prev_root=self.prev_root,
                log_start=self.prev_log_head,
                entries=entries,
                results=dict(self.tasklog.results),
                key=self.deps.key,
                context=[e.to_json() for e in self.ctx.history],
                budget={"budget": str(self.meter.budget), "spent": str(self.meter.spent)},
                memory=self.memory,
                chains=self.chains,
                spec_cid=self.spec_cid,
                zk=zk,
            )
            made = await cp.make(doc, sealing=self.sealing)
        except Exception as exc:
            # IPFS trouble must not stop the session: tried again at the next boundary, or when idle
            # after a pause that grows with each failure.
            self._checkpoint_failures += 1
            self.deps.metrics.checkpoints.labels("failed").inc()
            self._checkpoint_retry_at = time.monotonic() + min(60.0, 0.5 * 2**self._checkpoint_failures)
            log.warning("session %s: checkpoint %d failed: %s", self.session_id, self.last_seq, exc)
            return
        self._checkpoint_failures = 0
        self.deps.metrics.checkpoints.labels("ok").inc()
        self.deps.metrics.checkpoint_seconds.observe(made.encode_add_s)
        self.tasklog.take_pending()
        self.prev_cid, self.prev_root, self.last_checkpoint_seq = made.cid, made.state_root, made.seq
        self.prev_log_head = bytes(doc["log_head"])
        for e in entries:
            self.costs.pop(e.seq, None)
        if proofs:
            self.zk_root, self.zk_spent = proofs[-1][0].new_root, proofs[-1][0].spent_after
            if self.deps.anchors is not None:
                self.deps.anchors.add_batches(self.session_id, made.seq, proofs)
        await self.deps.port.record_checkpoint(
            self.lease,
            checkpoint_pb(made.session_id, made.seq, made.cid, made.state_root, [], made.created_at),
        )
        if self.deps.anchors is not None and self.chains:
            names = [self.deps.chain_names.get(c, c) for c in self.chains]
            self.deps.anchors.submit(
                self.session_id, made.seq, made.cid, made.state_root, names, self.deps.home_chain_id
            )

    @property
    def proves_batches(self) -> bool:
        return self.ctx is not None and proves_batches([d.name for d in self.ctx.decorators])

    async def _prove(
        self, entries: Sequence[LogEntry], out: list[tuple[zk_batch.Statement, zk_batch.Proof]]
    ) -> dict[str, Any]:
        """The zk block of a checkpoint over `entries`: one Groth16 proof per batch (appended to `out`)."""
        worker = self.deps.zk
        if worker is None:
            raise zk_batch.ZkError("this executor has no zk prover")
        fees = [self.costs.get(e.seq, 0) for e in entries]
        started = time.perf_counter()
        for w in zk_batch.witnesses(self.zk_root, self.zk_spent, [e.hash for e in entries], fees):
            out.append((w.statement, await worker.prove(w)))
        self.deps.metrics.proof_seconds.observe(time.perf_counter() - started)
        return zk_batch.zk_block(out, fees)

    async def _settle(self) -> None:
        """Pay for the committed tasks the rail has not been paid for yet (from the record, exactly once)."""
        if self.ctx is None or self.meter is None or self.tasklog is None:
            return
        meter, rail = self.meter, self.ctx.rail
        if not meter.unsettled_tasks or meter.unsettled < self.config.settle_min:
            return
        try:
            done = await rail.settled_through(self.session_id)
            if done is None:  # the rail keeps no record of its own: the task records are the settlement
                meter.settled_through(self.last_seq)
                return
            meter.settled_through(done)  # paid already (by us before a crash, or by a previous holder)
            if not meter.unsettled_tasks:
                return
            through, amount = meter.unsettled_tasks[-1][0], meter.unsettled
            tx = await rail.settle(self.session_id, through, amount, self.tasklog.head)
            meter.settled_through(through)
            self.deps.metrics.settlements.labels("ok").inc()
            log.info(
                "session %s: charged %d AGPT base units for tasks %d-%d%s",
                self.session_id,
                amount,
                done + 1,
                through,
                f" (tx 0x{tx.hex()})" if tx else "",
            )
        except Exception as exc:
            self.deps.metrics.settlements.labels("failed").inc()
            log.warning(
                "session %s: settling %d through %s failed (tried again at the next settlement): %s",
                self.session_id,
                meter.unsettled,
                rail.name,
                printable(str(exc)),
            )
