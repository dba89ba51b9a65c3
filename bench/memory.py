"""Memory per active session: the executor process and the session service process holding N ACTIVE
sessions (default 100, 1,000 and 10,000), each with a few tasks; the goal is under 50 KB per session in
each, growing no faster than the number of sessions.

Memory is read from /proc/<pid>: USS (Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup, memory
only this process holds) where the kernel has smaps_rollup, else VmRSS of /proc/<pid>/status (the output
says which); both are printed. Each N runs in a fresh process, and its baseline is that same process
before the N sessions arrive, warmed up by the same work (so one-time costs, imports and caches are
in the baseline): the figure is (memory(N) - memory(0)) / N in KB (KiB) per session.

* session service: the real process (`python -m services.session`, as bench/session_api.py starts it:
  SQLite SessionDB in WAL mode in a temporary directory, the in-memory chain, the embedded content store,
  the loopback service header trusted). One template session is made through its RPCs (CreateSession,
  ActivateSession, SubmitTasks with 3 tasks) and read over and over (GetSession, ListTasks) as warm-up;
  then memory(0). The N sessions are then added (`--create seed`, the default: copies of the template's
  rows (session, its tasks, its events with their hash chain recomputed, its checkpoint key) written
  into the service's SessionDB from this process, with the service's own SessionDB and schema, while it
  runs; `--create rpc`: each made through the RPCs like the template, a few at a time, which is far
  slower), every one of them is read once (GetSession and ListTasks), and then memory(N).
* executor: the real process (`python -m services.executor`, with the environment apps/localnet/stack.py
  gives an executor, no chain, the embedded content store, AGENTGPT_CAPACITY above N) leasing from a
  stand-in session service in this process (tests/component/executor/fake_session.py, with an O(1)
  ClaimLease that parks a claim for a few seconds when nothing is claimable). Warm-up: one session with
  the same tasks is claimed, run, checkpointed and completed, so the executor holds none; then memory(0).
  Then N ACTIVE sessions, 3 off-chain tasks each (two notes and a publish_report to the embedded store),
  are offered; once every one is claimed (GetExecutorStatus lists it) with its tasks done and its idle
  checkpoint recorded, memory(N). The executor polls an idle session's queue every --poll-interval s
  (default 60, so 10,000 idle sessions do not keep two cores busy) and holds leases of --lease-ttl s.

Figures, per service and N: KB per session (goal <= 50, lower is better), the process's memory at N
against its baseline (ratio), and the growth: KB per session at the largest N over that at the smallest
(ideally ~1; goal <= 1.5, lower is better; there a cost under 5 KB, a tenth of the goal, counts as
5 KB: below it differences are noise), plus the marginal cost between them, which leaves out what the
smallest N still shares of one-time costs. At 100 sessions the per-session figure rests on a
difference of one or two MB, so it is the noisiest (the allocator's and the page cache's ups and downs).
The session service keeps nothing per session in memory but SQLite's page cache (2 MB per connection,
12 connections: its growth stops at about 24 MB, so its KB/session falls beyond 10,000).

    .venv/bin/python bench/memory.py [--sessions 100,1000,10000] [--only executor|session]
                                     [--create seed|rpc] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit
from benchkit import Figure

ROOT = Path(__file__).resolve().parents[1]
GOAL_KB = 50.0  # per session, each process
GROWTH_GOAL = 1.5  # per-session cost at the largest N over the smallest
# Per-session costs under this compare as equal in the growth figure: at 100 sessions a few KB per session
# is a few hundred KB of a 100 MB process, within the allocator's and the page cache's noise.
NOISE_FLOOR_KB = GOAL_KB / 10
TASKS = (  # the tasks of every session: off-chain, no chain needed
    ("load_note", {"note": "positions loaded", "i": 1}),
    ("load_note", {"note": "risk limits loaded", "i": 2}),
    ("publish_report", {"title": "holdings report"}),
)
CLONE_BASE = 10**9  # seeded copies are sessions CLONE_BASE+1.. (the in-memory chain mints 1, 2, ...)
WARM_UP_ID = str(CLONE_BASE)  # the executor's warm-up session (the measured ones are 1..N)
PROGRESS_EVERY = 5.0  # seconds between progress lines of long steps


# ------------------------------------------------------------------------------ reading memory


@dataclass(frozen=True)
class Sample:
    """A process's memory, KiB: VmRSS, and USS (None where the kernel has no smaps_rollup)."""

    rss_kb: int
    uss_kb: int | None

    @property
    def kb(self) -> int:
        """What the figures use: USS when known, else RSS."""
        return self.uss_kb if self.uss_kb is not None else self.rss_kb


def parse_kb_fields(text: str) -> dict[str, int]:
    """`Name:   1234 kB` lines (/proc/<pid>/status, smaps_rollup) -> {name: KiB}; other lines are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[name.strip()] = int(parts[0])
    return out


def uss_kb(smaps_rollup: str) -> int | None:
    """Private_Clean + Private_Dirty of an smaps_rollup text (None when it has neither)."""
    fields = parse_kb_fields(smaps_rollup)
    if "Private_Clean" not in fields and "Private_Dirty" not in fields:
        return None
    return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


def read_sample(pid: int, proc: Path = Path("/proc")) -> Sample:
    fields = parse_kb_fields((proc / str(pid) / "status").read_text())
    if "VmRSS" not in fields:
        raise RuntimeError(f"process {pid} has no VmRSS (a zombie?)")
    try:
        uss = uss_kb((proc / str(pid) / "smaps_rollup").read_text())
    except OSError:
        uss = None
    return Sample(fields["VmRSS"], uss)


def median_sample(samples: Sequence[Sample]) -> Sample:
    """The median of several readings (each field on its own)."""
    usses = [s.uss_kb for s in samples if s.uss_kb is not None]
    return Sample(
        int(statistics.median(s.rss_kb for s in samples)),
        int(statistics.median(usses)) if len(usses) == len(samples) else None,
    )


async def settled_sample(pid: int, settle: float = 1.5, readings: int = 5, gap: float = 0.2) -> Sample:
    """The process's memory once it has been left alone `settle` s: the median of `readings` readings."""
    await asyncio.sleep(settle)
    got = []
    for i in range(readings):
        if i:
            await asyncio.sleep(gap)
        got.append(read_sample(pid))
    return median_sample(got)


def metric_name(sample: Sample) -> str:
    return "USS" if sample.uss_kb is not None else "RSS"


# ------------------------------------------------------------------------------ the arithmetic


def per_session_kb(base_kb: float, loaded_kb: float, sessions: int) -> float:
    """(memory(N) - memory(0)) / N, KiB per session."""
    if sessions <= 0:
        raise ValueError("sessions must be > 0")
    return (loaded_kb - base_kb) / sessions


def growth(per_small_kb: float, per_large_kb: float, floor_kb: float = 0.0) -> float:
    """Per-session cost at the largest N over that at the smallest (1: linear), each taken as at least
    `floor_kb` (below it, differences are noise: two costs under the floor compare as 1). Without a floor,
    a cost at the smallest N that is not above zero gives NaN: there is nothing to compare with."""
    small, large = max(per_small_kb, floor_kb), max(per_large_kb, floor_kb)
    if small <= 0:
        return float("nan")
    return large / small


def marginal_kb(small: tuple[int, float], large: tuple[int, float]) -> float:
    """KiB per added session between two runs, each (N, memory(N) - memory(0) in KiB)."""
    (n1, d1), (n2, d2) = small, large
    if n2 == n1:
        raise ValueError("two different N are needed")
    return (d2 - d1) / (n2 - n1)


def parse_sessions(text: str) -> list[int]:
    """Counts like "100,1000,10000" (also "1e4", "10_000") -> sorted, distinct, positive."""
    out = set()
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part:
            continue
        n = int(float(part)) if "e" in part.lower() else int(part)
        if n <= 0:
            raise ValueError(f"session counts must be > 0, not {n}")
        out.add(n)
    if not out:
        raise ValueError("no session counts given")
    return sorted(out)


@dataclass(frozen=True)
class Run:
    """One process at one N: its memory before (baseline) and with the N sessions."""

    sessions: int
    base: Sample
    loaded: Sample
    seconds: float  # time to get the N sessions in (created/claimed, run, read)

    @property
    def delta_kb(self) -> float:
        return float(self.loaded.kb - self.base.kb)

    @property
    def per_session_kb(self) -> float:
        return per_session_kb(self.base.kb, self.loaded.kb, self.sessions)


def figures_for(service: str, runs: Sequence[Run], how: str = "") -> dict[str, Figure]:
    """The figures of one service's runs (any order): per N, KB/session and the process's memory against
    its baseline; then the growth and the marginal cost between the smallest and the largest N."""
    out: dict[str, Figure] = {}
    ordered = sorted(runs, key=lambda r: r.sessions)
    for r in ordered:
        m = metric_name(r.loaded)
        out[f"{service} KB/session at {r.sessions:,}"] = Figure(
            r.per_session_kb,
            "KB/session",
            goal=GOAL_KB,
            better="lower",
            note=(
                f"{m} {r.base.kb / 1024:.1f} -> {r.loaded.kb / 1024:.1f} MB "
                f"(RSS {r.base.rss_kb / 1024:.1f} -> {r.loaded.rss_kb / 1024:.1f} MB){how}"
            ),
        )
        out[f"{service} memory at {r.sessions:,} vs idle"] = Figure(
            r.loaded.kb / 1024, "MB", r.base.kb / 1024, better="lower", note=m
        )
    if len(ordered) >= 2:
        small, large = ordered[0], ordered[-1]
        out[f"{service} growth {small.sessions:,} -> {large.sessions:,}"] = Figure(
            large.per_session_kb,
            "KB/session",
            small.per_session_kb,
            ratio=growth(small.per_session_kb, large.per_session_kb, NOISE_FLOOR_KB),
            goal=GROWTH_GOAL,
            better="lower",
            note=(
                f"KB/session at {large.sessions:,} over KB/session at {small.sessions:,}, each taken as at "
                f"least {NOISE_FLOOR_KB:g} KB (unfloored: {growth(small.per_session_kb, large.per_session_kb):.2f})"
            ),
        )
        out[f"{service} marginal KB/session {small.sessions:,} -> {large.sessions:,}"] = Figure(
            marginal_kb((small.sessions, small.delta_kb), (large.sessions, large.delta_kb)),
            "KB/session",
            goal=GOAL_KB,
            better="lower",
            note="extra memory per extra session between the two runs",
        )
    return out


def report_table(results: Mapping[str, Sequence[Run]]) -> str:
    rows = [
        ("service", "sessions", "metric", "idle MB", "loaded MB", "RSS idle/loaded MB", "KB/session", "s")
    ]
    for service, runs in results.items():
        for r in sorted(runs, key=lambda r: r.sessions):
            rows.append(
                (
                    service,
                    f"{r.sessions:,}",
                    metric_name(r.loaded),
                    f"{r.base.kb / 1024:.1f}",
                    f"{r.loaded.kb / 1024:.1f}",
                    f"{r.base.rss_kb / 1024:.1f} / {r.loaded.rss_kb / 1024:.1f}",
                    f"{r.per_session_kb:.2f}",
                    f"{r.seconds:.0f}",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ helpers


_T0 = time.monotonic()


def say(msg: str) -> None:
    """A progress line, stamped with the seconds since the script started."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}" if msg else "", flush=True)


class Progress:
    """Prints `label: done/total` every PROGRESS_EVERY s while a long step runs."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.t0 = self.last = time.monotonic()

    def tick(self, done: int, extra: str = "") -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            rate = done / max(now - self.t0, 1e-9)
            say(f"    {self.label}: {done:,}/{self.total:,} ({rate:,.0f}/s){extra}")


async def bounded(
    jobs: Iterable[Callable[[], Any]], concurrency: int, progress: Progress | None = None
) -> int:
    """Run the coroutine functions `jobs`, `concurrency` at a time; the number that raised."""
    queue = collections.deque(jobs)
    done = failed = 0

    async def worker() -> None:
        nonlocal done, failed
        while queue:
            job = queue.popleft()
            try:
                await job()
            except Exception:
                failed += 1
            done += 1
            if progress is not None:
                progress.tick(done)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


def stop_process(proc: subprocess.Popen[bytes], wait: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------ session service


async def template_session(stub: Any) -> str:
    """An ACTIVE session made through the service's RPCs, with TASKS submitted (one signed request)."""
    import session_api

    from agentgpt.session.v1 import session_pb2 as pb

    sid = await session_api.new_session(stub)
    await stub.SubmitTasks(
        session_api.sign(
            pb.SubmitTasksRequest(
                idempotency_key=f"bench-memory-{time.time_ns()}",
                session_id=sid,
                tasks=[pb.TaskInput(kind=k, args_json=json.dumps(a)) for k, a in TASKS],
            )
        )
    )
    return sid


async def touch(stub: Any, session_id: str) -> None:
    """What reads of a held session do: the session, then its task queue (as an executor reads it)."""
    import session_api

    from agentgpt.common.v1 import common_pb2 as cpb
    from agentgpt.session.v1 import session_pb2 as pb

    got = await stub.GetSession(pb.GetSessionRequest(session_id=session_id), metadata=session_api.SERVICE_MD)
    if got.session.state != cpb.SESSION_STATE_ACTIVE:
        raise RuntimeError(f"session {session_id} is not ACTIVE")
    listed = await stub.ListTasks(
        pb.ListTasksRequest(session_id=session_id, page_size=100), metadata=session_api.SERVICE_MD
    )
    if len(listed.tasks) != len(TASKS):
        raise RuntimeError(f"session {session_id} has {len(listed.tasks)} tasks, not {len(TASKS)}")


def clone_rows(
    template: Mapping[str, Any],
    tasks_rows: Sequence[Mapping[str, Any]],
    event_rows: Sequence[Mapping[str, Any]],
    key_rows: Sequence[Mapping[str, Any]],
    session_id: str,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The template's rows as session `session_id`'s: its events re-chained (each hash commits to the new
    session id), the session's event head with them."""
    from services.session.model import ZERO_HASH, event_hash

    head = ZERO_HASH
    events_out = []
    for e in sorted(event_rows, key=lambda e: e["cursor"]):
        head = event_hash(
            head,
            session_id=session_id,
            cursor=e["cursor"],
            type=e["type"],
            state=e["state"],
            data_json=e["data_json"],
            at=e["at"],
        )
        events_out.append({**e, "session_id": session_id, "hash": head})
    session = {k: v for k, v in template.items() if k != "pk"}
    session.update(session_id=session_id, event_head=head if events_out else template["event_head"])
    tasks_out = [{**t, "session_id": session_id} for t in tasks_rows]
    keys_out = [{**k, "session_id": session_id} for k in key_rows]
    return session, tasks_out, events_out, keys_out


async def seed_clones(database_url: str, template_id: str, n: int, batch: int = 500) -> None:
    """N copies of the template session written into the running service's SessionDB (SQLite WAL: the
    service reads on while this process writes), `batch` sessions per transaction."""
    import sqlalchemy as sa

    from services.session.store import SessionDB
    from services.session.store.tables import events, session_keys, sessions, tasks

    db = await SessionDB.open(database_url, migrate=False)
    try:
        async with db.engine.connect() as conn:

            async def rows(table: sa.Table) -> list[dict[str, Any]]:
                got = await conn.execute(sa.select(table).where(table.c.session_id == template_id))
                return [dict(r._mapping) for r in got.all()]

            (template,) = await rows(sessions)
            t_rows, e_rows, k_rows = await rows(tasks), await rows(events), await rows(session_keys)
        progress = Progress("seeded", n)
        for start in range(0, n, batch):
            s_out, t_out, e_out, k_out = [], [], [], []
            for i in range(start, min(n, start + batch)):
                s, t, e, k = clone_rows(template, t_rows, e_rows, k_rows, str(CLONE_BASE + i + 1))
                s_out.append(s)
                t_out += t
                e_out += e
                k_out += k
            async with db.writes.begin() as conn:
                await conn.execute(sa.insert(sessions), s_out)
                for table, got in ((tasks, t_out), (events, e_out), (session_keys, k_out)):
                    if got:
                        await conn.execute(sa.insert(table), got)
            progress.tick(min(n, start + batch))
    finally:
        await db.close()


async def session_run(n: int, tmp: Path, create: str, concurrency: int) -> Run:
    """The session service holding `n` ACTIVE sessions (see the module doc)."""
    import session_api
    from grpc import aio

    from agentgpt.session.v1 import session_pb2_grpc as pb_grpc

    env = benchkit.session_service_env(tmp, ROOT, tmp / "session.ready.json")
    server = session_api.start(
        [sys.executable, "-m", "services.session"],
        env,
        tmp / "session.ready.json",
        tmp / "session-service.log",
    )
    try:
        async with aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.SessionServiceStub(channel)
            say("  serving; making the template session through CreateSession, ActivateSession, SubmitTasks")
            template = await template_session(stub)
            say(f"  warming up on session {template}; reading the idle memory")
            # warm-up: the reads every session gets below, enough of them to fill the pools and buffers
            await bounded([lambda: touch(stub, template)] * max(200, 4 * concurrency), concurrency)
            base = await settled_sample(server.proc.pid)
            t0 = time.monotonic()
            if create == "seed":
                say(f"  seeding {n:,} copies of session {template} into SessionDB")
                await seed_clones(env["AGENTGPT_DATABASE_URL"], template, n)
                ids = [str(CLONE_BASE + i + 1) for i in range(n)]
            else:
                say(f"  creating {n:,} sessions through CreateSession, ActivateSession, SubmitTasks")
                ids = []

                async def create_one() -> None:
                    ids.append(await template_session(stub))

                failed = await bounded([create_one] * n, concurrency, Progress("created", n))
                if failed:
                    raise RuntimeError(f"{failed} of {n} sessions could not be created")
            say(f"  reading every session once (GetSession, ListTasks), {concurrency} at a time")
            failed = await bounded(
                [lambda sid=sid: touch(stub, sid) for sid in ids], concurrency, Progress("read", n)
            )
            if failed:
                raise RuntimeError(f"{failed} of {n} sessions could not be read back ACTIVE with their tasks")
            seconds = time.monotonic() - t0
            loaded = await settled_sample(server.proc.pid)
    finally:
        stop_process(server.proc)
    return Run(n, base, loaded, seconds)


# ------------------------------------------------------------------------------ executor


def fake_session_module() -> Any:
    """tests/component/executor/fake_session.py, imported as `fake_session`."""
    path = str(ROOT / "tests" / "component" / "executor")
    if path not in sys.path:
        sys.path.insert(0, path)
    import fake_session

    return fake_session


def bench_session_service() -> Any:
    """The fake session service of the component tests, with what 10,000 sessions need: a ClaimLease of
    any session in O(1) (a queue of the claimable ones) that parks a claim up to PARK s while none is
    claimable, so the executor's claim loop takes new sessions at once; and a warm-up session that
    completes once its checkpoint covers its tasks."""
    FakeSessionService = fake_session_module().FakeSessionService

    from agentgpt.common.v1 import common_pb2 as cpb
    from agentgpt.session.v1 import session_pb2 as ss

    class BenchSessionService(FakeSessionService):
        PARK = 8.0  # under the executor's 10 s call deadline

        def __init__(self) -> None:
            super().__init__()
            self.queue: collections.deque[str] = collections.deque()
            self.offered = asyncio.Event()
            self.complete_when_checkpointed: set[str] = set()
            self.checkpointed: set[str] = set()  # sessions whose checkpoint covers all their tasks
            self.claims = 0
            self.closing = False  # parked claims answer at once

        def offer(self, session_id: str, spec: ss.SessionSpec, *, warm_up: bool = False) -> None:
            self.add_session(session_id, spec=spec)
            self.submit(session_id, list(TASKS))
            if warm_up:
                self.complete_when_checkpointed.add(session_id)
            self.queue.append(session_id)

        def wake(self) -> None:
            self.offered.set()

        async def ClaimLease(self, request: Any, context: Any) -> Any:
            if request.session_id:
                return await super().ClaimLease(request, context)
            deadline = time.monotonic() + self.PARK
            while True:
                while self.queue:
                    fs = self.sessions[self.queue.popleft()]
                    if fs.session.state != cpb.SESSION_STATE_ACTIVE or fs.lease_expires > time.time():
                        continue
                    fs.session.lease_epoch += 1
                    fs.lease_executor = request.executor_id
                    fs.lease_expires = time.time() + (request.ttl_seconds or 15)
                    self.claims += 1
                    return ss.ClaimLeaseResponse(
                        lease=ss.Lease(
                            session_id=fs.session.session_id,
                            executor_id=request.executor_id,
                            epoch=fs.session.lease_epoch,
                        )
                    )
                left = deadline - time.monotonic()
                if left <= 0 or self.closing:
                    return ss.ClaimLeaseResponse()
                self.offered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.offered.wait(), left)

        async def RecordCheckpoint(self, request: Any, context: Any) -> Any:
            resp = await super().RecordCheckpoint(request, context)
            sid = request.session_id
            if request.checkpoint.seq >= len(self.sessions[sid].tasks):
                self.checkpointed.add(sid)
                if sid in self.complete_when_checkpointed:
                    self.sessions[sid].session.state = cpb.SESSION_STATE_COMPLETED
            return resp

    return BenchSessionService


def session_spec() -> Any:
    from agentgpt.session.v1 import session_pb2 as ss

    return ss.SessionSpec(
        type="treasury_management",
        chains=[],
        models={"risk": "gpt-4-enterprise-finance", "execution": "web3-agent-v4"},
        decorators=["kyc_tier4", "ofac_filter", "gas_optimizer_v3"],
        params_json=json.dumps({"rebalance_threshold_bps": 250, "report_every": 3}),
        checkpoint_interval=50,
    )


def executor_env(tmp: Path, session_addr: str, capacity: int, poll: float, ttl: int) -> dict[str, str]:
    """An executor of the local stack (apps/localnet/stack.py) without chains, TLS or an oracle."""
    from eth_account import Account

    from apps.localnet.anvil import DEV_PRIVATE_KEYS
    from apps.localnet.stack import EXECUTOR_KEY, KYC_ISSUER_KEY

    assert EXECUTOR_KEY in DEV_PRIVATE_KEYS
    return {
        "PYTHONPATH": str(ROOT),
        "AGENTGPT_NETWORK": "",
        "AGENTGPT_IPFS_API": "",
        "AGENTGPT_IPFS_EMBEDDED_DIR": str(tmp / "blocks"),
        "AGENTGPT_HEALTH_INTERVAL": "1.0",
        "AGENTGPT_TRUST_SERVICE_HEADER": "true",
        "AGENTGPT_KYC_ISSUERS": Account.from_key(KYC_ISSUER_KEY).address,
        "AGENTGPT_SESSION_ADDR": session_addr,
        "AGENTGPT_EXECUTOR_ID": "executor-1",
        "AGENTGPT_EXECUTOR_KEY": EXECUTOR_KEY,
        "AGENTGPT_GRPC_PORT": "0",
        "AGENTGPT_METRICS_PORT": "-1",
        "AGENTGPT_READY_FILE": str(tmp / "executor.ready.json"),
        "AGENTGPT_CAPACITY": str(capacity),
        "AGENTGPT_POLL_INTERVAL": str(poll),
        "AGENTGPT_LEASE_TTL": str(ttl),
        "AGENTGPT_LOG_LEVEL": "WARNING",
    }


async def executor_status(stub: Any) -> Any:
    from agentgpt.executor.v1 import executor_pb2 as ex

    return await stub.GetExecutorStatus(ex.GetExecutorStatusRequest(), timeout=30)


async def executor_run(n: int, tmp: Path, poll: float, ttl: int, timeout: float) -> Run:
    """The executor holding `n` sessions leased from the stand-in session service (see the module doc)."""
    import session_api
    from grpc import aio
    from grpc_health.v1 import health, health_pb2_grpc

    from agentgpt.common.v1 import common_pb2 as cpb
    from agentgpt.executor.v1 import executor_pb2_grpc as ex_grpc
    from agentgpt.session.v1 import session_pb2 as ss
    from agentgpt.session.v1 import session_pb2_grpc as ss_grpc

    service = bench_session_service()()
    server = aio.server()
    ss_grpc.add_SessionServiceServicer_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    spec = session_spec()
    service.offer(WARM_UP_ID, spec, warm_up=True)
    executor = None
    try:
        executor = session_api.start(
            [sys.executable, "-m", "services.executor"],
            executor_env(tmp, f"127.0.0.1:{port}", n + 16, poll, ttl),
            tmp / "executor.ready.json",
            tmp / "executor.log",
        )
        proc = executor.proc
        async with aio.insecure_channel(
            executor.address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        ) as channel:
            stub = ex_grpc.ExecutorServiceStub(channel)

            async def until(check: Callable[[], Any], what: str, progress: Progress | None = None) -> None:
                deadline = time.monotonic() + timeout
                while not await check():
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"the executor exited ({proc.returncode}); see {tmp / 'executor.log'}"
                        )
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"timed out waiting for {what}; see {tmp / 'executor.log'}")
                    await asyncio.sleep(0.2)

            warm = service.sessions[WARM_UP_ID]

            async def warm_done() -> bool:
                if warm.session.state == cpb.SESSION_STATE_ACTIVE or warm.lease_expires > time.time():
                    return False  # not run yet, or its lease not given back yet
                return not (await executor_status(stub)).sessions

            say("  serving; waiting for the warm-up session to be claimed, run, completed and let go")
            await until(warm_done, "the warm-up session to run, complete and be let go")
            say("  reading the idle memory")
            base = await settled_sample(proc.pid)
            t0 = time.monotonic()
            say(f"  offering {n:,} ACTIVE sessions, {len(TASKS)} tasks each")
            for i in range(1, n + 1):
                service.offer(str(i), spec)
            service.wake()
            progress = Progress("claimed", n)
            ids = [str(i) for i in range(1, n + 1)]

            async def all_done() -> bool:
                checkpointed = len(service.checkpointed) - 1  # (the warm-up session's)
                progress.tick(service.claims - 1, f", run and checkpointed {checkpointed:,}")
                if checkpointed < n:
                    return False
                held = {r.session_id: r for r in (await executor_status(stub)).sessions}
                return all(
                    s in held
                    and held[s].last_task_seq == len(TASKS)
                    and held[s].last_checkpoint_seq == len(TASKS)
                    for s in ids
                )

            await until(all_done, f"{n:,} sessions to be claimed, run and checkpointed")
            seconds = time.monotonic() - t0
            failed = sum(
                t.status != ss.TASK_STATUS_SUCCEEDED for s in ids for t in service.sessions[s].tasks.values()
            )
            if failed:
                raise RuntimeError(f"{failed} of {n * len(TASKS):,} tasks did not succeed")
            await executor_status(stub)  # (the baseline's reading came after one too)
            loaded = await settled_sample(proc.pid)
    finally:
        if executor is not None:  # (measured: no need to wait for its graceful handoff of every session)
            executor.proc.kill()
            executor.proc.wait()
        service.closing = True
        service.wake()
        await server.stop(1.0)
    return Run(n, base, loaded, seconds)


# ------------------------------------------------------------------------------ main


async def measure(args: argparse.Namespace, into: dict[str, Figure], results: dict[str, list[Run]]) -> None:
    counts = parse_sessions(args.sessions)
    services = [s for s in ("session", "executor") if not args.only or s in args.only]
    how = {"seed": ", seeded into SessionDB", "rpc": ", created through the RPCs"}[args.create]
    for service in services:
        results[service] = []
        for n in counts:
            t0 = time.monotonic()
            say(f"{service}: {n:,} sessions")
            with tempfile.TemporaryDirectory(prefix=f"bench-memory-{service}-") as tmp:
                if service == "session":
                    run = await session_run(n, Path(tmp), args.create, args.concurrency)
                else:
                    run = await executor_run(n, Path(tmp), args.poll_interval, args.lease_ttl, args.timeout)
            results[service].append(run)
            say(
                f"  {metric_name(run.loaded)} {run.base.kb / 1024:.1f} MB idle -> {run.loaded.kb / 1024:.1f} MB with "
                f"{n:,}: {run.per_session_kb:.2f} KB/session ({time.monotonic() - t0:.0f} s)"
            )
        into.update(figures_for(service, results[service], how if service == "session" else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions",
        default="100,1000,10000",
        help="session counts, comma-separated (default 100,1000,10000)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=["session", "executor"], default=[], help="one service only"
    )
    parser.add_argument(
        "--create",
        choices=["seed", "rpc"],
        default="seed",
        help="session service: seed copies of an RPC-made session into SessionDB (default), or make each "
        "through CreateSession/ActivateSession/SubmitTasks (slow: tens per second)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="session service calls in flight (default 32)"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=60.0, help="executor: AGENTGPT_POLL_INTERVAL, s (default 60)"
    )
    parser.add_argument(
        "--lease-ttl", type=int, default=3600, help="executor: AGENTGPT_LEASE_TTL, s (default 3600)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="longest wait for one step, s (default 600)"
    )
    benchkit.add_json_option(parser)
    args = parser.parse_args()
    figures: dict[str, Figure] = {}
    results: dict[str, list[Run]] = {}
    try:
        asyncio.run(measure(args, figures, results))
    finally:  # what was measured is kept even when a later part fails
        detail = {
            service: [
                {
                    "sessions": r.sessions,
                    "base": r.base.__dict__,
                    "loaded": r.loaded.__dict__,
                    "seconds": round(r.seconds, 1),
                }
                for r in runs
            ]
            for service, runs in results.items()
        }
        benchkit.write_json(args.json, figures, detail=detail, create=args.create)
    say("")
    say(report_table(results))
    say("")
    for name, f in figures.items():
        if f.goal is None:
            continue
        judged = f.ratio if f.ratio is not None else f.value
        verdict = {True: "met", False: "NOT met", None: "-"}[benchkit.met(f.goal, f.better, judged)]
        shown = f"ratio {judged:.2f}" if f.ratio is not None else f"{f.value:.2f} {f.unit}"
        say(f"{name:<48} {shown:>22}   goal <= {f.goal:g}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
