"""Anchoring: each checkpoint's (seq, CID, state root) written on every chain of its session.

The home chain's SessionFactory.anchorCheckpoint and AnchorRegistry.anchorCheckpoint on every other
chain; a zk_batch_prover session's home anchor is SessionFactory.anchorCheckpointProved with the Groth16
proofs of every batch since the factory's stored root (agentgpt.zk.batch), gathered from the checkpoints
made here (and the last one read back on resume). Anchoring runs in a background queue that retries with backoff, so a slow or failing chain never
stops tasks; a session that has ended (completed, terminated) is anchored no more, and a chain whose
contract keeps refusing (counted as result="refused", e.g. NotAuthorizedWriter) shows in the anchors
metric and its alert. The checkpoint documents themselves are written by checkpoints.Checkpointer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from multiformats import CID

from agentgpt.zk.batch import Proof, Statement, ZkError
from services.executor.metrics import ExecutorMetrics
from services.executor.transactions import ChainSet, TxError, TxIntentRecord, TxReverted, explain_revert

log = logging.getLogger("agentgpt.executor.checkpoints")


@dataclass(frozen=True)
class Anchor:
    chain_id: int
    block_number: int
    block_hash: bytes
    tx_hash: bytes


AnchorDone = Callable[[str, int, str, bytes, list[Anchor]], Awaitable[None]]


# SessionFactory.SessionState values after which nothing is anchored (NONE: burned or never existed).
_ENDED_STATES = frozenset({0, 4, 5})


class SessionEnded(Exception):
    """Nothing more can be anchored for this job: the session is final on its home chain (or names a chain
    this deployment does not have)."""


@dataclass
class _AnchorJob:
    session_id: str
    seq: int
    cid: str
    state_root: bytes
    chain: str
    home_chain_id: int
    attempts: int = 0
    not_before: float = 0.0


class AnchorQueue:
    """Anchors checkpoints on chain in the background, one worker per chain, retrying with backoff.

    Per (chain, session) only the newest checkpoint waits: a newer one supersedes an older one that
    has not been anchored yet (anchors are strictly increasing, the newest covers everything before).
    A chain that keeps failing therefore delays only its own anchors, never another chain's or the tasks.
    """

    def __init__(
        self,
        chains: ChainSet,
        on_anchored: AnchorDone,
        *,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        poll: float = 0.05,
        metrics: ExecutorMetrics | None = None,
    ) -> None:
        self.chains = chains
        self.on_anchored = on_anchored
        self.metrics = metrics
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.poll = poll
        self._pending: dict[str, dict[str, _AnchorJob]] = {}  # chain -> session -> newest job
        self._done: dict[str, dict[int, list[Anchor]]] = {}  # session -> checkpoint seq -> its anchors so far
        self._wake: dict[str, asyncio.Event] = {}
        self.failures = 0  # total failed attempts (a metric; checked by tests)
        # zk_batch_prover sessions: session -> [(checkpoint seq, statement, proof)] in order, not yet anchored
        self._batches: dict[str, list[tuple[int, Statement, Proof]]] = {}

    def add_batches(self, session_id: str, seq: int, batches: Sequence[tuple[Statement, Proof]]) -> None:
        """The proofs of checkpoint `seq` (once per checkpoint): its home anchor, or a later one, carries them."""
        held = self._batches.setdefault(session_id, [])
        if not batches or any(s == seq for s, _, _ in held):
            return
        held.extend((seq, st, pr) for st, pr in batches)
        held.sort(key=lambda b: b[0])

    def _proofs_for(self, session_id: str, root: int, spent: int, seq: int) -> list[tuple[Statement, Proof]]:
        """The held batches chaining from the factory's (root, spent) through checkpoint `seq`."""
        held = self._batches.get(session_id, [])
        start = next(
            (i for i, (_, st, _) in enumerate(held) if st.prev_root == root and st.spent_before == spent),
            None,
        )
        if start is None:
            raise ZkError(f"no proof at hand continues the factory's root of session {session_id}")
        chosen = [b for b in held[start:] if b[0] <= seq]
        if not chosen or chosen[-1][0] != seq:
            raise ZkError(f"the proofs of session {session_id} through checkpoint {seq} are not all at hand")
        return [(st, pr) for _, st, pr in chosen]

    def submit(
        self,
        session_id: str,
        seq: int,
        cid: str,
        state_root: bytes,
        chains: Sequence[str],
        home_chain_id: int,
    ) -> None:
        for chain in chains:
            per_chain = self._pending.setdefault(chain, {})
            old = per_chain.get(session_id)
            if old is not None and old.seq >= seq:
                continue
            per_chain[session_id] = _AnchorJob(session_id, seq, cid, state_root, chain, home_chain_id)
            self._wake.setdefault(chain, asyncio.Event()).set()

    def pending(self) -> int:
        return sum(len(v) for v in self._pending.values())

    async def run(self) -> None:
        workers: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                for chain in list(self._pending):
                    if chain not in workers:
                        workers[chain] = asyncio.create_task(self._worker(chain), name=f"anchor-{chain}")
                await asyncio.sleep(self.poll)
        finally:
            for w in workers.values():
                w.cancel()
            for w in workers.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await w

    async def _worker(self, chain: str) -> None:
        wake = self._wake.setdefault(chain, asyncio.Event())
        while True:
            now = time.monotonic()
            jobs = sorted(self._pending.get(chain, {}).values(), key=lambda j: j.not_before)
            ready = [j for j in jobs if j.not_before <= now]
            if not ready:
                wake.clear()
                timeout = (jobs[0].not_before - now) if jobs else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
                continue
            job = ready[0]
            try:
                anchor = await self._anchor(job, chain)
            except asyncio.CancelledError:
                raise
            except SessionEnded as exc:
                self._drop(chain, job)
                if self.metrics is not None:
                    self.metrics.anchors.labels(chain, "dropped").inc()
                log.info("not anchoring checkpoint %s/%d on %s: %s", job.session_id, job.seq, chain, exc)
                continue
            except Exception as exc:
                job.attempts += 1
                self.failures += 1
                if self.metrics is not None:
                    # refused: the contract said no (retrying only helps if someone fixes the cause)
                    self.metrics.anchors.labels(
                        chain, "refused" if isinstance(exc, TxReverted) else "failed"
                    ).inc()
                delay = min(self.retry_max, self.retry_base * 2 ** min(job.attempts - 1, 8))
                job.not_before = time.monotonic() + delay
                log.warning(
                    "anchoring checkpoint %s/%d on %s failed (%s); retrying in %.1fs",
                    job.session_id,
                    job.seq,
                    chain,
                    str(exc)[:200],
                    delay,
                )
                continue
            self._drop(chain, job)
            if anchor is None:
                continue
            if self.metrics is not None:
                self.metrics.anchors.labels(chain, "ok").inc()
            done = self._done.setdefault(job.session_id, {}).setdefault(job.seq, [])
            done.append(anchor)
            self._forget_older(job.session_id, job.seq)
            try:
                await self.on_anchored(job.session_id, job.seq, job.cid, job.state_root, list(done))
            except Exception as exc:  # the anchor is on chain either way; the record is informational
                log.warning("recording the anchors of %s/%d failed: %s", job.session_id, job.seq, exc)

    def _forget_older(self, session_id: str, seq: int) -> None:
        """The anchors kept of a session's earlier checkpoints, once a later one is anchored somewhere and
        no chain still has one of them to anchor: one entry per session lives on, not one per checkpoint
        for as long as the executor runs."""
        pending = {
            per_chain[session_id].seq for per_chain in self._pending.values() if session_id in per_chain
        }
        kept = self._done.get(session_id, {})
        for older in [s for s in kept if s < seq and s not in pending]:
            del kept[older]

    def _drop(self, chain: str, job: _AnchorJob) -> None:
        per_chain = self._pending.get(chain, {})
        if per_chain.get(job.session_id) is job:
            del per_chain[job.session_id]

    async def _anchor(self, job: _AnchorJob, chain: str) -> Anchor | None:
        try:
            handle = self.chains.get(chain)
        except KeyError as exc:  # a spec from before chains were checked against the manifest
            raise SessionEnded(f"{exc.args[0]}: nothing to anchor on") from None
        cid_bytes = bytes(CID.decode(job.cid))
        sid = int(job.session_id)
        state = (
            await self.chains.get(job.home_chain_id).contract("SessionFactory").functions.stateOf(sid).call()
        )
        if int(state) in _ENDED_STATES:
            raise SessionEnded(f"session {sid} has ended on its home chain (state {int(state)})")
        gas: int | None = None
        if handle.chain_id == job.home_chain_id:
            contract = handle.contract("SessionFactory")
            last_seq, _ = await contract.functions.latestCheckpoint(sid).call()
            fn = contract.functions.anchorCheckpoint(sid, job.seq, cid_bytes, job.state_root)
            if job.session_id in self._batches and int(last_seq) < job.seq:
                root, spent = await contract.functions.batchProofOf(sid).call()
                proofs = self._proofs_for(job.session_id, int(root), int(spent), job.seq)
                fn = contract.functions.anchorCheckpointProved(
                    sid,
                    job.seq,
                    cid_bytes,
                    job.state_root,
                    [st.public_signals() for st, _ in proofs],
                    [list(pr.words) for _, pr in proofs],
                )
                # explicit: the verifier answers false (not a revert) when its pairing check runs out of gas
                gas = 150_000 + 330_000 * len(proofs)
                try:  # so a refused proof costs no transaction (there is no estimate to refuse it)
                    await fn.call({"from": handle.sender.address, "gas": gas})
                except Exception as exc:
                    raise TxReverted(f"transaction would revert: {explain_revert(exc)}") from None
        else:
            contract = handle.contract("AnchorRegistry")
            _, _, last_seq, _ = await contract.functions.streamOf(job.home_chain_id, sid).call()
            fn = contract.functions.anchorCheckpoint(
                job.home_chain_id, sid, job.seq, cid_bytes, job.state_root
            )
        if int(last_seq) >= job.seq:
            # Already anchored (a retry after a lost answer, or a newer checkpoint overtook this one).
            return None
        data = bytes.fromhex(fn._encode_transaction_data()[2:])

        async def journal(intent: TxIntentRecord) -> None:
            # Anchors are idempotent on chain (strictly increasing seq): no durable intent needed.
            return None

        try:
            result = await handle.sender.send(to=contract.address, data=data, journal=journal, gas=gas)
        except TxError:
            raise
        if gas is not None:  # proved: what it carried is on chain now
            held = self._batches.get(job.session_id, [])
            held[:] = [b for b in held if b[0] > job.seq]
        block = await handle.w3.eth.get_block(result.block_number)
        return Anchor(handle.chain_id, result.block_number, bytes(block["hash"]), result.tx_hash)
