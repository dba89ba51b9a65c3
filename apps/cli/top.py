"""`agentgpt top`: a live view of the fleet for operators — every executor and the sessions, refreshed
every --interval seconds (in place on a terminal), like `kubectl top` or `htop` for sessions.

Executors: GetExecutorStatus (as `agentgpt status` asks it) for the sessions each holds, and its
/metrics for the tasks it finished since it started (`agentgpt_executor_tasks_total`, every outcome) and
tasks/s (between two frames; in the first, the average since it started). Sessions: ListSessions, then
InspectSession (summary) of each for its tasks done and queued.

Where to ask: the local stack of --workdir (its stack.json), or --session-addr and --executor-addr
(with --metrics-port for the executors' /metrics). `collect` gathers one frame as JSON-able data and
`render` (pure: no network, no clock) prints it; `--json` prints the frame itself.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.cli.owner import CommandFailed, UsageError, stack_state
from apps.cli.recovery import short

DEFAULT_INTERVAL = 2.0
LIVE_STATES = ("draft", "active", "paused")
ALL_STATES = (*LIVE_STATES, "completed", "terminated")
TASKS_METRIC = "agentgpt_executor_tasks_total"
# ANSI: cursor home + clear screen; hide / show the cursor while frames are redrawn in place
CLEAR, HIDE_CURSOR, SHOW_CURSOR = "\x1b[H\x1b[2J", "\x1b[?25l", "\x1b[?25h"
AGPT_UNITS = 10**18


@dataclass(frozen=True)
class ExecutorSource:
    """Where one executor answers: its gRPC address, its /metrics URL ("" unknown), its local pid."""

    name: str
    grpc: str
    metrics_url: str = ""
    pid: int | None = None


@dataclass(frozen=True)
class Sources:
    session_addr: str
    executors: tuple[ExecutorSource, ...]
    names: Mapping[str, str]  # executor address (lower case) -> its stack name, where the stack knows it


# ------------------------------------------------------------------------------------ where to ask
def _address(text: str, option: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise UsageError(f"{option} {text!r}: pass HOST:PORT (e.g. 127.0.0.1:50052)")
    return text


def sources(args: argparse.Namespace) -> Sources:
    """The session service and the executors to ask: the options, else the local stack's."""
    from apps.cli.recovery import executor_names

    given = [_address(a, "--executor-addr") for a in args.executor_addr]
    if args.metrics_port is not None and not 1 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port {args.metrics_port}: must be between 1 and 65535")
    session_addr = _address(args.session_addr, "--session-addr") if args.session_addr else ""
    session_addr = session_addr or os.environ.get("AGENTGPT_SESSION_ADDR", "")
    state = stack_state(args.workdir) if not (session_addr and given) else {}
    services = state.get("services") if isinstance(state.get("services"), dict) else {}
    assert isinstance(services, dict)
    if not session_addr:
        info = services.get("session")
        if not isinstance(info, dict) or not isinstance(info.get("grpc"), str):
            path = Path(args.workdir) / "stack.json"
            raise CommandFailed(
                f"no running stack found ({path} does not exist); start one with `agentgpt up` "
                "(or pass --workdir DIR, or --session-addr HOST:PORT and --executor-addr HOST:PORT)"
                if not state
                else f"{path} names no session service; restart the stack with `agentgpt up`"
            )
        session_addr = info["grpc"]
    executors: list[ExecutorSource] = []
    if given:
        for addr in given:
            host = addr.rpartition(":")[0]
            url = f"http://{host}:{args.metrics_port}/metrics" if args.metrics_port else ""
            executors.append(ExecutorSource(addr, addr, url))
    else:
        for name, info in services.items():
            if not (
                name.startswith("executor") and isinstance(info, dict) and isinstance(info.get("grpc"), str)
            ):
                continue
            host = info["grpc"].rpartition(":")[0]
            port = info.get("metrics_port")
            url = f"http://{host}:{port}/metrics" if isinstance(port, int) and port > 0 else ""
            pid = info.get("pid") if isinstance(info.get("pid"), int) else None
            executors.append(ExecutorSource(name, info["grpc"], url, pid))
    return Sources(session_addr, tuple(executors), executor_names(args.workdir))


# ------------------------------------------------------------------------------------------ a frame
def _exact_agpt(units: int) -> str:
    """Base units as an exact AGPT decimal string (`0.0032`, `50`)."""
    whole, frac = divmod(units, AGPT_UNITS)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".") if frac else str(whole)


def _seconds(ts: Any) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


def _tasks_done(text: str) -> int:
    """Tasks finished (every outcome) in an executor's /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    return int(
        sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == TASKS_METRIC
        )
    )


def _scrape(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


async def _executor(
    source: ExecutorSource, timeout: float, at: float, previous: Mapping[str, Any]
) -> dict[str, Any]:
    from agentgpt.clients import ChannelOptions, ExecutorClient
    from agentgpt.errors import RpcError

    row: dict[str, Any] = {
        "name": source.name,
        "pid": source.pid,
        "grpc": source.grpc,
        "answering": False,
        "address": "",
        "capacity": 0,
        "draining": False,
        "started_at": None,
        "sessions": [],
        "tasks_done": None,
        "tasks_per_s": None,
        "error": "",
    }
    try:
        async with ExecutorClient(
            source.grpc, options=ChannelOptions(timeout=timeout, attempts=1), identity="cli"
        ) as client:
            status = await client.get_status()
    except RpcError as exc:
        row["error"] = exc.code.name
        return row
    row.update(
        answering=True,
        name=status.executor_id or source.name,
        address=status.address,
        capacity=status.capacity,
        draining=status.draining,
        started_at=_seconds(status.started_at) if status.HasField("started_at") else None,
        sessions=[
            {"session_id": s.session_id, "epoch": s.epoch, "last_task_seq": s.last_task_seq}
            for s in status.sessions
        ],
    )
    if source.metrics_url:
        try:
            text = await asyncio.to_thread(_scrape, source.metrics_url, timeout)
            row["tasks_done"] = _tasks_done(text)
        except (urllib.error.URLError, OSError, ValueError):
            pass  # shown as "-": the status above still stands
    row["tasks_per_s"] = _rate(row, at, previous.get(row["name"]))
    return row


def _rate(row: Mapping[str, Any], at: float, before: Mapping[str, Any] | None) -> float | None:
    """Tasks/s since the previous frame of the same process, else the average since it started."""
    if row["tasks_done"] is None:
        return None
    done = int(row["tasks_done"])
    if (
        before is not None
        and before.get("started_at") == row["started_at"]
        and before.get("tasks_done") is not None
    ):
        elapsed = at - float(before["at"])
        if elapsed > 0:
            return max(0.0, (done - int(before["tasks_done"])) / elapsed)
    if row["started_at"] is None or at <= float(row["started_at"]):
        return None
    return done / (at - float(row["started_at"]))


async def _sessions(addr: str, states: Sequence[str], limit: int, timeout: float) -> list[dict[str, Any]]:
    from agentgpt.clients import ChannelOptions, SessionClient
    from agentgpt.common.v1 import common_pb2
    from agentgpt.errors import RpcError
    from agentgpt.session.v1 import session_pb2

    async with SessionClient(
        addr, options=ChannelOptions(timeout=timeout, attempts=2), identity="cli"
    ) as client:
        listed = await client.list_sessions(
            session_pb2.ListSessionsRequest(
                states=[common_pb2.SessionState.Value("SESSION_STATE_" + s.upper()) for s in states],
                page=common_pb2.PageRequest(page_size=limit),
            )
        )

        async def inspect(session_id: str) -> Any:
            try:
                return await client.inspect_session(session_id)
            except RpcError:
                return None  # ended (or removed) between the list and now: shown without its task counts

        inspected = await asyncio.gather(*(inspect(s.session_id) for s in listed.sessions))
    rows = []
    for s, seen in zip(listed.sessions, inspected, strict=True):
        budget, spent = int(s.budget or "0"), int(s.budget_spent or "0")
        done = int(seen.tasks_done) if seen is not None else None
        total = int(seen.tasks_total) if seen is not None else None
        rows.append(
            {
                "session_id": s.session_id,
                "state": common_pb2.SessionState.Name(s.state).removeprefix("SESSION_STATE_"),
                "type": s.spec.type,
                "executor": s.executor,
                "lease_epoch": s.lease_epoch,
                "tasks_done": done,
                "tasks_queued": (total - done) if total is not None and done is not None else None,
                "budget": str(budget),
                "budget_spent": str(spent),
                "budget_left": str(max(0, budget - spent)),
                "budget_agpt": _exact_agpt(budget),
                "budget_spent_agpt": _exact_agpt(spent),
                "budget_left_agpt": _exact_agpt(max(0, budget - spent)),
                "alerts_critical": int(seen.alerts_critical) if seen is not None else 0,
                "alerts_warning": int(seen.alerts_warning) if seen is not None else 0,
            }
        )
    return rows


async def collect(
    src: Sources,
    *,
    states: Sequence[str],
    limit: int,
    timeout: float,
    previous: Mapping[str, Any] | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """One frame: every executor and the sessions, as JSON-able data. `previous` (the frame before)
    gives the executors' tasks/s over the interval. RpcError when the session service fails."""
    at = now()
    before = {e["name"]: {**e, "at": previous["at"]} for e in previous["executors"]} if previous else {}
    executors, sessions = await asyncio.gather(
        asyncio.gather(*(_executor(e, timeout, at, before) for e in src.executors)),
        _sessions(src.session_addr, states, limit, timeout),
    )
    names = dict(src.names)
    for e in executors:
        if e["address"]:
            names[e["address"].lower()] = e["name"]
    holders = {s["session_id"]: e["name"] for e in executors for s in e["sessions"]}
    for s in sessions:
        s["executor_name"] = names.get(s["executor"].lower(), "") if s["executor"] else ""
        s["held_by"] = holders.get(s["session_id"], "")
    return {
        "at": at,
        "session_addr": src.session_addr,
        "states": list(states),
        "executors": list(executors),
        "sessions": sessions,
        "limit": limit,
    }


# ---------------------------------------------------------------------------------------- rendering
def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def render(frame: Mapping[str, Any], *, interval: float | None = None, width: int | None = None) -> str:
    """The frame as text: a header, the executors, the sessions. `width` cuts every line to it (a
    terminal's width); None leaves them whole."""
    from apps.cli.dashboard import _units as agpt  # the dashboard's AGPT amounts (loads the protobufs)

    executors: list[Mapping[str, Any]] = frame["executors"]
    sessions: list[Mapping[str, Any]] = frame["sessions"]
    answering = sum(1 for e in executors if e["answering"])
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(frame["at"]))
    every = f"  every {interval:g} s" if interval else ""
    by_state: dict[str, int] = {}
    for s in sessions:
        by_state[s["state"]] = by_state.get(s["state"], 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted(by_state.items())) or "none"
    shown = "live " if list(frame.get("states", ())) == list(LIVE_STATES) else ""
    more = f" (the newest {frame['limit']}: --limit)" if len(sessions) >= frame.get("limit", 0) > 0 else ""
    lines = [
        f"agentgpt top  {at}{every}  session service {frame['session_addr']}",
        f"executors: {len(executors)} ({answering} answering)   {shown}sessions: {len(sessions)} ({states}){more}",
    ]
    if frame.get("error"):
        lines.append(f"! {frame['error']}")
    lines.append("")
    lines.append(
        f"{'EXECUTOR':<16} {'PID':<8} {'GRPC':<22} {'ADDRESS':<42} {'HELD':>5} {'TASKS':>6} {'TASKS/S':>8}  SESSIONS"
    )
    for e in executors:
        if not e["answering"]:
            lines.append(
                f"{e['name']:<16} {_cell(e['pid']):<8} {e['grpc']:<22} {'-':<42} "
                f"not answering ({e['error'] or 'no status'})"
            )
            continue
        held = f"{len(e['sessions'])}/{e['capacity']}" if e["capacity"] else str(len(e["sessions"]))
        rate = e["tasks_per_s"]
        held_ids = ", ".join(s["session_id"] for s in e["sessions"]) or "-"
        if e["draining"]:
            held_ids += " [draining]"
        lines.append(
            f"{e['name']:<16} {_cell(e['pid']):<8} {e['grpc']:<22} {e['address'] or '-':<42} {held:>5} "
            f"{_cell(e['tasks_done']):>6} {'-' if rate is None else f'{rate:.2f}':>8}  {held_ids}"
        )
    if not executors:
        lines.append("(no executors known: pass --executor-addr HOST:PORT)")
    lines.append("")
    lines.append(
        f"{'SESSION':<10} {'STATE':<10} {'EXECUTOR':<16} {'EPOCH':>5} {'DONE':>6} {'QUEUED':>6}  "
        f"{'SPENT (AGPT)':<14} {'LEFT (AGPT)':<14} {'ALERTS':<7} TYPE"
    )
    names = {e["name"]: e for e in executors}
    for s in sessions:
        executor = s["executor_name"] or (short(s["executor"]) if s["executor"] else "-")
        if s["state"] == "ACTIVE" and not s["held_by"] and names:
            executor += " (no lease)"
        elif s["held_by"] and s["held_by"] != s["executor_name"]:
            executor = f"{executor} -> {s['held_by']}"
        alerts = (
            f"{s['alerts_critical']}/{s['alerts_warning']}"
            if s["alerts_critical"] or s["alerts_warning"]
            else "-"
        )
        lines.append(
            f"{s['session_id']:<10} {s['state']:<10} {executor:<16} {s['lease_epoch']:>5} "
            f"{_cell(s['tasks_done']):>6} {_cell(s['tasks_queued']):>6}  "
            f"{agpt(s['budget_spent']):<14} {agpt(s['budget_left']):<14} {alerts:<7} {s['type']}"
        )
    if not sessions:
        lines.append(f"(no {shown}sessions{'' if shown == '' else '; --all shows ended ones too'})")
    if width:
        lines = [line[:width] for line in lines]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ command
def add_parser(sub: Any, common: argparse.ArgumentParser, default_workdir: str) -> None:
    """Register `agentgpt top`."""
    top = sub.add_parser(
        "top",
        parents=[common],
        help="a live view of the executors and sessions (refreshed every --interval s; --once, --json)",
        description="Every executor (pid, addresses, sessions held of its capacity, tasks finished since "
        "it started and tasks/s) and the sessions (state, executor, lease epoch, tasks done and queued, "
        "budget spent and left in AGPT), refreshed every --interval seconds, in place on a terminal; "
        "Ctrl-C stops it. Asks the local stack of --workdir, or --session-addr and --executor-addr.",
    )
    top.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="seconds between frames (default: %(default)s)",
    )
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--json", action="store_true", help="print one frame as JSON and exit")
    top.add_argument(
        "--all", action="store_true", help="also the sessions that ended (completed, terminated)"
    )
    top.add_argument(
        "--limit", type=int, default=50, help="at most this many sessions, newest first (1..500)"
    )
    top.add_argument(
        "--workdir",
        default=default_workdir,
        help=f"the local stack's work directory (default: {default_workdir})",
    )
    top.add_argument(
        "--session-addr",
        default="",
        metavar="HOST:PORT",
        help="session service address (default: $AGENTGPT_SESSION_ADDR, else the local stack's)",
    )
    top.add_argument(
        "--executor-addr",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="an executor's gRPC address (repeatable; default: the local stack's executors)",
    )
    top.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="the executors' /metrics port on their hosts, with --executor-addr (e.g. 9100 on Kubernetes)",
    )
    top.add_argument("--timeout", type=float, default=2.0, help="seconds per call (default: %(default)s)")


def _check(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.interval) and 0.1 <= args.interval <= 3600):
        raise UsageError(f"--interval {args.interval}: must be between 0.1 and 3600 seconds")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
    if not 1 <= args.limit <= 500:
        raise UsageError(f"--limit {args.limit}: must be between 1 and 500")


async def run(args: argparse.Namespace, failure: Callable[[Any, str], CommandFailed]) -> int:
    """`agentgpt top`; `failure(rpc_error, address)` words a session service that fails."""
    import json

    from agentgpt.errors import RpcError

    _check(args)
    src = sources(args)
    states = ALL_STATES if args.all else LIVE_STATES
    frame: dict[str, Any] | None = None
    live = not (args.once or args.json)
    tty = live and sys.stdout.isatty()
    if tty:
        sys.stdout.write(HIDE_CURSOR)
    try:
        while True:
            started = time.monotonic()
            try:
                frame = await collect(
                    src, states=states, limit=args.limit, timeout=args.timeout, previous=frame
                )
            except RpcError as exc:
                if frame is None:  # nothing to show yet: say why and stop
                    raise failure(exc, src.session_addr) from None
                message = str(failure(exc, src.session_addr))
                frame = {**frame, "error": f"{message} (showing the last frame; retrying)"}
            if args.json:
                print(json.dumps(frame, indent=2), flush=True)
                return 0
            width = shutil.get_terminal_size().columns if tty else None
            text = render(frame, interval=None if args.once else args.interval, width=width)
            if tty:
                sys.stdout.write(CLEAR + text + "\n")
                sys.stdout.flush()
            else:
                print(text + ("" if args.once else "\n"), flush=True)
            if args.once:
                return 0
            frame.pop("error", None)
            await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    finally:
        if tty:
            sys.stdout.write(SHOW_CURSOR)
            sys.stdout.flush()


def main(args: argparse.Namespace, failure: Callable[[Any, str], CommandFailed]) -> int:
    """Run `agentgpt top` to its end; Ctrl-C is how a live view ends, so it exits 0."""
    try:
        return asyncio.run(run(args, failure))
    except KeyboardInterrupt:
        return 0
