"""Session service API: GetSession, InspectSession and SubmitTasks throughput and p50/p99 latency, against
a bare grpc.aio server answering the same messages, driven by the same client at the same concurrency.

Both servers run in their own process on the same machine, measured in turns, scenario by scenario: the real one is the
service's own entry point (`python -m services.session`: SQLite SessionDB in WAL mode, in-memory chain,
embedded archive, JSON logs at INFO to a file, the loopback service header trusted); the baseline is a
grpc.aio server with the same SessionService stubs whose methods answer, without any work, the responses
the real service gave during the setup (same sizes, same parsing and serialization of the messages).
The client (this process, one channel per server) keeps `--concurrency` calls in flight for
`--duration` seconds per scenario and server, after a short warm-up, and times every call; that time is
cut into `--slices` turns alternating between the two servers, so both see the same machine (it is
shared: other work comes and goes within seconds). Scenarios, each at every concurrency:

* get/service, inspect/service: reads as a service identity (the `x-agentgpt-service` header);
* get/owner, inspect/owner: reads signed by the owner, one read signature reused (as a client does
  within its signature's lifetime);
* get/owner-fresh: a different owner read signature on every call (nothing to remember);
* submit/owner: one task per call, owner-signed with a fresh nonce and idempotency key every call
  (pre-signed before the clock starts; the bare server gets the same requests), round-robin over
  SUBMIT_SESSIONS sessions of the owner (many sessions taking tasks at once, not one session's queue
  fought over by every caller).

InspectSession asks detail "full" (recent tasks and events) of a session with 25 tasks queued. Figures:
throughput (ratio to the bare server's; goals GetSession >= 0.7, InspectSession >= 0.5), p50 and p99
latency (ratio: lower is better) and the server's CPU time per call (ms).

    .venv/bin/python bench/session_api.py [--duration 2] [--concurrency 16 64] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit
from grpc import aio

from agentgpt import auth
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.session.v1 import session_pb2_grpc as pb_grpc
from apps.localnet.anvil import DEV_PRIVATE_KEYS

ROOT = Path(__file__).resolve().parents[1]
OWNER_KEY = DEV_PRIVATE_KEYS[1]
CHAIN_ID = 31337  # the service's owner-signature domain without a network manifest
EXECUTOR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
SERVICE_MD = ((auth.SERVICE_HEADER, "executor-1"),)
SPEC_YAML = """
type: "treasury_management"
params:
  chains: [arbitrum, polygon]
  models:
    risk: "gpt-4-enterprise-finance"
    execution: "web3-agent-v4"
decorators:
  - "kyc_tier4"
  - "ofac_filter"
"""
GOALS = {"get": 0.7, "inspect": 0.5}
SUBMIT_SESSIONS = 16
SUBMIT_BUDGET = 3000  # pre-signed submissions per second of a scenario
_nonces = itertools.count(time.time_ns())


def sign(req: Any, *, nonce: int | None = None, deadline: int | None = None) -> Any:
    return auth.signed(
        req,
        OWNER_KEY,
        nonce=next(_nonces) if nonce is None else nonce,
        deadline=deadline or int(time.time()) + 1800,
        chain_id=CHAIN_ID,
    )


# ------------------------------------------------------------------------------------------ servers


class BareServicer(pb_grpc.SessionServiceServicer):
    """Answers each benchmarked RPC with a canned response: no work but parsing and serializing."""

    def __init__(self, responses: dict[str, bytes]) -> None:
        self.get = pb.GetSessionResponse.FromString(responses["GetSession"])
        self.inspect = pb.InspectSessionResponse.FromString(responses["InspectSession"])
        self.submit = pb.SubmitTasksResponse.FromString(responses["SubmitTasks"])

    async def GetSession(self, request: Any, context: Any) -> Any:
        return self.get

    async def InspectSession(self, request: Any, context: Any) -> Any:
        return self.inspect

    async def SubmitTasks(self, request: Any, context: Any) -> Any:
        return self.submit


async def bare_server(responses_file: str, ready_file: str) -> None:
    responses = {k: bytes.fromhex(v) for k, v in json.loads(Path(responses_file).read_text()).items()}
    # the real server's options (agentgpt.runtime.server.RunningService)
    server = aio.server(
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024), ("grpc.so_reuseport", 0)]
    )
    pb_grpc.add_SessionServiceServicer_to_server(BareServicer(responses), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    Path(ready_file).write_text(json.dumps({"grpc": f"127.0.0.1:{port}"}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    address: str

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(cmd: list[str], env: dict[str, str], ready: Path, log: Path, cwd: Path = ROOT) -> Server:
    ready.unlink(missing_ok=True)
    with log.open("ab") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=sink, stderr=sink)
    deadline = time.monotonic() + 60
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server {cmd[-1]} did not start; see {log}")
        time.sleep(0.05)
    return Server(proc, json.loads(ready.read_text())["grpc"])


def real_server(tmp: Path, root: Path, profile: str = "") -> Server:
    env = benchkit.session_service_env(tmp, root, tmp / "ready-real.json", log_level="INFO")
    return start(
        [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "services.session"],
        env,
        tmp / "ready-real.json",
        tmp / "session-service.log",
        root,
    )


def baseline_server(tmp: Path, responses: dict[str, bytes]) -> Server:
    (tmp / "responses.json").write_text(json.dumps({k: v.hex() for k, v in responses.items()}))
    cmd = [
        sys.executable,
        __file__,
        "--bare-server",
        str(tmp / "responses.json"),
        str(tmp / "ready-bare.json"),
    ]
    return start(cmd, {"PYTHONPATH": str(ROOT)}, tmp / "ready-bare.json", tmp / "bare-server.log")


# ------------------------------------------------------------------------------------------ the client


@dataclass
class Scenario:
    name: str  # "<method>/<auth>"
    rpc: str
    calls: Callable[[], tuple[Any, Any]]  # the next (request, metadata)


@dataclass
class Result:
    calls: int
    seconds: float
    latencies: list[float]
    cpu: float
    errors: int

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def cpu_ms_per_call(self) -> float:
        return self.cpu / max(self.calls, 1) * 1e3


async def drive(
    stub: pb_grpc.SessionServiceStub,
    scenario: Scenario,
    concurrency: int,
    duration: float,
    server: Server,
    warm_up: float = 0.0,
) -> Result:
    """`concurrency` calls in flight for `duration` seconds (after `warm_up` seconds not recorded)."""
    method = getattr(stub, scenario.rpc)
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0
    recording = False

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            try:
                req, md = scenario.calls()
            except StopIteration:
                return
            t0 = time.perf_counter()
            try:
                await method(req, metadata=md, timeout=30)
            except aio.AioRpcError:
                errors += 1 if recording else 0
                continue
            if recording:
                latencies.append(time.perf_counter() - t0)

    if warm_up:
        stop_at = time.perf_counter() + warm_up
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    recording = True
    cpu0 = server.cpu_seconds()
    t0 = time.perf_counter()
    stop_at = t0 + duration
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return Result(len(latencies), elapsed, latencies, server.cpu_seconds() - cpu0, errors)


def merged(parts: Sequence[Result]) -> Result:
    return Result(
        sum(r.calls for r in parts),
        sum(r.seconds for r in parts),
        [x for r in parts for x in r.latencies],
        sum(r.cpu for r in parts),
        sum(r.errors for r in parts),
    )


def scenarios(session_id: str, submits: Sequence[pb.SubmitTasksRequest]) -> list[Scenario]:
    """The scenarios: reads of `session_id`, and `submits` sent in turn."""
    get = pb.GetSessionRequest(session_id=session_id)
    inspect = pb.InspectSessionRequest(session_id=session_id, detail="full")
    get_owner, inspect_owner = (
        sign(pb.GetSessionRequest(session_id=session_id), nonce=0),
        sign(pb.InspectSessionRequest(session_id=session_id, detail="full"), nonce=0),
    )
    base = int(time.time()) + 1800
    fresh = itertools.count()
    submit_iter = iter(submits)

    def fresh_get() -> tuple[Any, Any]:
        # a distinct deadline: a distinct signature (signed here, so the client pays for it too)
        return sign(pb.GetSessionRequest(session_id=session_id), nonce=0, deadline=base + next(fresh)), None

    return [
        Scenario("get/service", "GetSession", lambda: (get, SERVICE_MD)),
        Scenario("get/owner", "GetSession", lambda: (get_owner, None)),
        Scenario("get/owner-fresh", "GetSession", fresh_get),
        Scenario("inspect/service", "InspectSession", lambda: (inspect, SERVICE_MD)),
        Scenario("inspect/owner", "InspectSession", lambda: (inspect_owner, None)),
        Scenario("submit/owner", "SubmitTasks", lambda: (next(submit_iter), None)),
    ]


def submit_requests(session_ids: Sequence[str], n: int) -> list[pb.SubmitTasksRequest]:
    """`n` one-task submissions, to each of `session_ids` in turn."""
    return [
        sign(
            pb.SubmitTasksRequest(
                idempotency_key=f"bench-{time.time_ns()}-{i}",
                session_id=session_ids[i % len(session_ids)],
                tasks=[pb.TaskInput(kind="publish_report", args_json=json.dumps({"title": f"report {i}"}))],
            )
        )
        for i in range(n)
    ]


async def new_session(stub: pb_grpc.SessionServiceStub) -> str:
    """An ACTIVE session of the owner."""
    create = sign(
        pb.CreateSessionRequest(
            idempotency_key=f"bench-{time.time_ns()}", spec_yaml=SPEC_YAML, initial_budget="1000000"
        )
    )
    create.chain_signature = b"\x01" * 65  # the in-memory chain takes any
    session = (await stub.CreateSession(create)).session
    activate = sign(
        pb.ActivateSessionRequest(
            idempotency_key=f"bench-{time.time_ns()}", session_id=session.session_id, executor=EXECUTOR
        )
    )
    activate.chain_signature = b"\x01" * 65
    await stub.ActivateSession(activate)
    return str(session.session_id)


async def setup(address: str) -> tuple[list[str], dict[str, bytes]]:
    """SUBMIT_SESSIONS ACTIVE sessions, the first with 25 tasks queued (the one read); the responses the
    benchmarked RPCs answer about it."""
    async with aio.insecure_channel(address) as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        sids = [await new_session(stub) for _ in range(SUBMIT_SESSIONS)]
        sid = sids[0]
        submit = submit_requests([sid], 25)
        for req in submit[:-1]:
            await stub.SubmitTasks(req)
        responses = {
            "SubmitTasks": (await stub.SubmitTasks(submit[-1])).SerializeToString(),
            "GetSession": (
                await stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=SERVICE_MD)
            ).SerializeToString(),
            "InspectSession": (
                await stub.InspectSession(
                    pb.InspectSessionRequest(session_id=sid, detail="full"), metadata=SERVICE_MD
                )
            ).SerializeToString(),
        }
    return sids, responses


async def measure_both(
    real: Server,
    bare: Server,
    session_ids: Sequence[str],
    concurrencies: Sequence[int],
    duration: float,
    slices: int,
    only: Sequence[str] = (),
) -> tuple[dict[tuple[str, int], Result], dict[tuple[str, int], Result]]:
    """Every scenario at every concurrency on both servers, each scenario's time cut into `slices`
    slices run in turns (bare, real, real, bare, ...), so both see the same machine at the same time
    (it is shared: other work comes and goes within seconds)."""
    got_real: dict[tuple[str, int], Result] = {}
    got_bare: dict[tuple[str, int], Result] = {}
    async with aio.insecure_channel(real.address) as rc, aio.insecure_channel(bare.address) as bc:
        stubs = {"real": pb_grpc.SessionServiceStub(rc), "bare": pb_grpc.SessionServiceStub(bc)}
        servers = {"real": real, "bare": bare}
        for c in concurrencies:
            # fresh submissions for the real server (enough for the bare server's pace, at most: the
            # scenario ends early when they run out, which the figures show as fewer calls)
            submits = submit_requests(session_ids, int(SUBMIT_BUDGET * (duration + 1)))
            plans = {
                who: [sc for sc in scenarios(session_ids[0], submits) if not only or sc.name in only]
                for who in stubs
            }
            for i in range(len(plans["real"])):
                parts: dict[str, list[Result]] = {"real": [], "bare": []}
                for k in range(slices):
                    for who in ("bare", "real") if k % 2 == 0 else ("real", "bare"):
                        sc = plans[who][i]
                        parts[who].append(
                            await drive(
                                stubs[who], sc, c, duration / slices, servers[who], warm_up=0.0 if k else 0.2
                            )
                        )
                name = plans["real"][i].name
                got_real[(name, c)], got_bare[(name, c)] = merged(parts["real"]), merged(parts["bare"])
    return got_real, got_bare


async def measure(
    duration: float,
    concurrencies: Sequence[int],
    tmp: Path,
    root: Path,
    profile: str = "",
    slices: int = 4,
    only: Sequence[str] = (),
) -> tuple[dict[str, benchkit.Figure], dict[str, Any]]:
    real = real_server(tmp, root, profile)
    try:
        session_ids, responses = await setup(real.address)
        bare = baseline_server(tmp, responses)
        try:
            got_real, got_bare = await measure_both(
                real, bare, session_ids, concurrencies, duration, slices, only
            )
        finally:
            bare.stop()
    finally:
        real.stop()
    figures: dict[str, benchkit.Figure] = {}
    detail: dict[str, Any] = {"response_bytes": {k: len(v) for k, v in responses.items()}}
    for (name, c), r in got_real.items():
        b = got_bare[(name, c)]
        method = name.split("/")[0]
        figures[f"{name} c{c} throughput"] = benchkit.Figure(
            r.rate, "calls/s", b.rate, goal=GOALS.get(method), note=f"{r.errors} errors" if r.errors else ""
        )
        for q in (0.5, 0.99):
            figures[f"{name} c{c} p{int(q * 100)}"] = benchkit.Figure(
                benchkit.percentile(r.latencies, q) * 1e3,
                "ms",
                benchkit.percentile(b.latencies, q) * 1e3,
                better="lower",
            )
        figures[f"{name} c{c} server cpu/call"] = benchkit.Figure(
            r.cpu_ms_per_call(), "ms", b.cpu_ms_per_call(), better="lower"
        )
        detail[f"{name} c{c}"] = {
            "real_calls": r.calls,
            "bare_calls": b.calls,
            "real_errors": r.errors,
            "bare_errors": b.errors,
        }
    return figures, detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds per scenario and server (default 2)"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[16, 64], help="calls in flight (default 16 64)"
    )
    parser.add_argument("--slices", type=int, default=4, help="turns of each server per scenario (default 4)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=[],
        metavar="NAME",
        help="only these (e.g. get/service submit/owner)",
    )
    parser.add_argument(
        "--server-root",
        type=Path,
        default=ROOT,
        help="run the session service from this checkout (e.g. an older commit's, for a before/after)",
    )
    parser.add_argument(
        "--profile-server",
        metavar="PATH",
        default="",
        help="run the real service under cProfile, stats to PATH",
    )
    parser.add_argument("--keep", action="store_true", help="keep the servers' directory (logs, database)")
    parser.add_argument("--bare-server", nargs=2, metavar=("RESPONSES", "READY"), help=argparse.SUPPRESS)
    benchkit.add_json_option(parser)
    args = parser.parse_args()
    if args.bare_server:
        asyncio.run(bare_server(*args.bare_server))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-session-api-"))
    figures, detail = asyncio.run(
        measure(
            args.duration,
            args.concurrency,
            tmp,
            args.server_root.resolve(),
            args.profile_server,
            args.slices,
            args.scenarios,
        )
    )
    print(
        f"session service vs a bare grpc.aio server, {args.duration:g} s per scenario (servers' files: {tmp})"
    )
    print(
        f"{'scenario':<28}{'real/s':>9}{'bare/s':>9}{'ratio':>7}{'p50 ms':>9}{'p99 ms':>9}{'bare p99':>9}{'cpu ms':>8}"
    )
    for key in detail:
        if key == "response_bytes":
            continue
        t, p50, p99, cpu = (figures[f"{key} {s}"] for s in ("throughput", "p50", "p99", "server cpu/call"))
        goal = f"  (goal >= {t.goal})" if t.goal else ""
        print(
            f"{key:<28}{t.value:>9.0f}{t.baseline or 0:>9.0f}{t.ratio or 0:>7.2f}{p50.value:>9.1f}{p99.value:>9.1f}"
            f"{p99.baseline or 0:>9.1f}{cpu.value:>8.2f}{goal}"
        )
    benchkit.write_json(args.json, figures, detail=detail)
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
