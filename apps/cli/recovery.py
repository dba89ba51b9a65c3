"""`agentgpt recovery list|show`: the recovery oracle's recoveries, and the "Recoveries" part of
`agentgpt session inspect`.

The oracle's address comes from --recovery-addr, else $AGENTGPT_RECOVERY_ADDR, else the local stack's
(`<workdir>/stack.json`). Executors are shown by their local stack name (`executor-1`) when the stack
knows their address. The formatting functions take the protobuf messages and touch no network.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from apps.cli.owner import CommandFailed, UsageError, session_id, stack_state

ENV_ADDR = "AGENTGPT_RECOVERY_ADDR"
MAX_RECOVERY_ID = 256  # characters


# ------------------------------------------------------------------------------------ where to ask
def oracle_addr(args: argparse.Namespace) -> str:
    """--recovery-addr, else $AGENTGPT_RECOVERY_ADDR, else the local stack's recovery oracle."""
    if getattr(args, "recovery_addr", ""):
        return str(args.recovery_addr)
    if os.environ.get(ENV_ADDR):
        return os.environ[ENV_ADDR]
    path = Path(args.workdir) / "stack.json"
    state = stack_state(args.workdir)
    if not state:
        raise CommandFailed(
            f"no running stack found ({path} does not exist); start one with `agentgpt up` "
            f"(or pass --workdir DIR, or --recovery-addr HOST:PORT, or set {ENV_ADDR})"
        )
    services = state.get("services")
    oracle = services.get("recovery_oracle") if isinstance(services, dict) else None
    if not isinstance(oracle, dict) or not isinstance(oracle.get("grpc"), str):
        raise UsageError(
            f"--workdir: {path} names no recovery oracle; pass --recovery-addr HOST:PORT "
            "or restart the stack with `agentgpt up`"
        )
    return str(oracle["grpc"])


def executor_names(workdir: str) -> dict[str, str]:
    """The local stack's executors by lower-case address (`{"0x70997970...": "executor-1"}`); {} without
    a stack (or with an unreadable state file: the names only decorate the output)."""
    try:
        state = stack_state(workdir)
    except UsageError:
        return {}
    names: dict[str, str] = {}
    for entry in state.get("executors") or ():
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("address"), str)
            and isinstance(entry.get("id"), str)
        ):
            names[entry["address"].lower()] = entry["id"]
    return names


# ------------------------------------------------------------------------------------- formatting
def _seconds(ts: Any) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


def duration(seconds: float) -> str:
    """`0.4 s`, `12.0 s`, `3 min 5 s`, `2 h 10 min`."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def when(ts: Any) -> str:
    """A Timestamp as UTC, to the millisecond."""
    moment = datetime.datetime.fromtimestamp(_seconds(ts), tz=datetime.UTC)
    return moment.isoformat(sep=" ", timespec="milliseconds").replace("+00:00", " UTC")


def took(msg: Any, now: float | None = None) -> str:
    """How long a Recovery or RecoveryStep ran: finished - started, or `N s so far` while it runs."""
    if not msg.HasField("started_at"):
        return "-"
    if msg.HasField("finished_at"):
        return duration(_seconds(msg.finished_at) - _seconds(msg.started_at))
    return duration((time.time() if now is None else now) - _seconds(msg.started_at)) + " so far"


def status_name(recovery: Any) -> str:
    from agentgpt.recovery.v1 import recovery_pb2 as rc

    try:
        name = rc.RecoveryStatus.Name(recovery.status).removeprefix("RECOVERY_STATUS_")
    except ValueError:  # a status newer than this CLI
        name = str(recovery.status)
    return f"{name} (handoff)" if recovery.handoff else name


def short(address: str) -> str:
    """`0x7099…79C8` for a 20-byte address; anything else as it is."""
    if len(address) == 42 and address.startswith("0x"):
        return f"{address[:6]}…{address[-4:]}"
    return address


def executor_label(address: str, names: Mapping[str, str], full: bool = False) -> str:
    """An executor as the local stack names it (`executor-1`), else its (shortened) address."""
    if not address:
        return "-"
    name = names.get(address.lower())
    if full:
        return f"{address} ({name})" if name else address
    return name or short(address)


def checkpoint_seq(recovery: Any) -> str:
    return f"seq {recovery.checkpoint.seq}" if recovery.HasField("checkpoint") else "-"


HEADER = ("RECOVERY", "SESSION", "STATUS", "EXECUTOR (OLD → NEW)", "CHECKPOINT", "DURATION")


def list_rows(
    recoveries: Sequence[Any], names: Mapping[str, str], now: float | None = None
) -> list[tuple[str, ...]]:
    return [
        (
            r.recovery_id,
            r.session_id,
            status_name(r),
            f"{executor_label(r.failed_executor, names)} → {executor_label(r.new_executor, names)}",
            checkpoint_seq(r),
            took(r, now),
        )
        for r in recoveries
    ]


def list_lines(
    recoveries: Sequence[Any], names: Mapping[str, str] | None = None, now: float | None = None
) -> list[str]:
    """`agentgpt recovery list`: a header and one line per recovery (no header when there are none)."""
    rows = list_rows(recoveries, names or {}, now)
    if not rows:
        return []
    table = [HEADER, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER) - 1)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in table
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# the Recovery fields show_lines prints by name; any other one is printed as it is
SHOWN = frozenset(
    {
        "recovery_id",
        "session_id",
        "status",
        "failed_executor",
        "new_executor",
        "checkpoint",
        "reason",
        "started_at",
        "finished_at",
        "steps",
        "rejected",
        "holder",
        "fence",
        "handoff",
        "resume_from_seq",
    }
)


def show_lines(recovery: Any, names: Mapping[str, str] | None = None, now: float | None = None) -> list[str]:
    """`agentgpt recovery show`: every field of one recovery, its steps and its rejected checkpoints."""
    names = names or {}
    r = recovery
    out = [f"RECOVERY {r.recovery_id}  session {r.session_id}  {status_name(r)}"]

    def field(label: str, value: str) -> None:
        out.append(f"  {label:<17} {value or '-'}")

    field(
        "kind",
        "handoff (the executor released the session gracefully: no pause)"
        if r.handoff
        else "failure (the session is paused while it moves to another executor)",
    )
    field("reason", _one_line(r.reason))
    field("failed executor", executor_label(r.failed_executor, names, full=True))
    field("new executor", executor_label(r.new_executor, names, full=True))
    if r.HasField("checkpoint"):
        cp = r.checkpoint
        field("checkpoint", f"seq {cp.seq}  {cp.cid}".rstrip())
        field("state root", "0x" + cp.state_root.hex() if cp.state_root else "")
        field("anchored on", ", ".join(f"chain {a.chain_id} block {a.number}" for a in cp.anchors))
    else:
        field("checkpoint", "(none yet)")
    field("resumes at", f"task seq {r.resume_from_seq}" if r.resume_from_seq else "")
    field("started", when(r.started_at) if r.HasField("started_at") else "")
    field(
        "finished",
        f"{when(r.finished_at)} (took {took(r)})"
        if r.HasField("finished_at")
        else (f"running ({took(r, now)})" if r.HasField("started_at") else ""),
    )
    field(
        "oracle replica",
        f"{r.holder}, fence {r.fence}" if r.holder else (f"fence {r.fence}" if r.fence else ""),
    )
    # fields newer than this list (an oracle ahead of the CLI), by their names
    for desc in r.DESCRIPTOR.fields:
        value = getattr(r, desc.name)
        if desc.name not in SHOWN and isinstance(value, str | int | float) and value:
            field(desc.name.replace("_", " "), str(value))

    out.append("Steps")
    if r.steps:
        rows = [("STEP", "ATTEMPTS", "DURATION", "DETAIL")] + [
            (s.name, str(s.attempts), took(s, now), _one_line(s.detail)) for s in r.steps
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            out.append(
                (
                    "  " + "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
                ).rstrip()
            )
    else:
        out.append("  (none recorded)")
    out.append("Rejected checkpoints")
    if r.rejected:
        for rej in r.rejected:
            cp = rej.checkpoint
            out.append(f"  seq {cp.seq}  {cp.cid or '-'}: {_one_line(rej.reason) or '(no reason given)'}")
    else:
        out.append("  (none)")
    return out


# --------------------------------------------------------------------------------------- commands
def add_parser(sub: Any, common: argparse.ArgumentParser, default_workdir: str) -> None:
    """Register `agentgpt recovery list|show`."""
    recovery = sub.add_parser(
        "recovery",
        parents=[common],
        help="the recovery oracle's recoveries: list them, show one with its steps",
        description="Recoveries the recovery oracle ran or is running: a session moved from an executor\n"
        "that stopped (or handed it off) to another, resumed from its last verified checkpoint.\n\n"
        "  agentgpt recovery list [--session ID]   one line per recovery\n"
        "  agentgpt recovery show RECOVERY_ID      every field, the steps, the rejected checkpoints\n\n"
        f"The oracle: --recovery-addr, else ${ENV_ADDR}, else the local stack's (--workdir).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def target_options(parser: argparse.ArgumentParser, default: Any) -> None:
        parser.add_argument(
            "--recovery-addr",
            default="" if default is None else default,
            metavar="HOST:PORT",
            help=f"recovery oracle address (default: ${ENV_ADDR}, else the local stack's)",
        )
        parser.add_argument(
            "--workdir",
            default=default_workdir if default is None else default,
            help=f"the local stack's work directory (default: {default_workdir})",
        )

    target_options(recovery, None)
    rsub = recovery.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = rsub.add_parser(
        "list",
        parents=[common],
        help="one line per recovery: id, session, status, old → new executor, checkpoint, duration",
    )
    target_options(listing, argparse.SUPPRESS)
    listing.add_argument(
        "--session",
        default="",
        metavar="ID",
        help="only this session's recoveries (decimal token id, or 0x-prefixed hex)",
    )
    listing.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most this many (1..500, default: %(default)s)"
    )
    listing.add_argument("--json", action="store_true", help="the raw ListRecoveriesResponse as JSON")
    show = rsub.add_parser(
        "show",
        parents=[common],
        help="one recovery: every field, each step (attempts, duration, detail), rejected checkpoints",
    )
    target_options(show, argparse.SUPPRESS)
    show.add_argument(
        "recovery_id", metavar="RECOVERY_ID", help="the recovery's id, as `agentgpt recovery list` prints it"
    )
    show.add_argument("--json", action="store_true", help="the Recovery message as JSON")


def unimplemented(exc: Any) -> bool:
    import grpc

    return bool(exc.code == grpc.StatusCode.UNIMPLEMENTED)


UNIMPLEMENTED = "the recovery oracle does not list recoveries (UNIMPLEMENTED)"


async def run(args: argparse.Namespace, failure: Callable[[Any, str], CommandFailed]) -> int:
    """`agentgpt recovery list|show`; `failure(rpc_error, address)` words a failed call."""
    # every value checked before the oracle is looked for
    sid = session_id(args.session) if getattr(args, "session", "") else ""
    if args.action == "list" and not 1 <= args.limit <= 500:
        raise UsageError(f"--limit {args.limit}: must be between 1 and 500")
    rid = ""
    if args.action == "show":
        rid = args.recovery_id.strip()
        if not rid:
            raise UsageError("RECOVERY_ID: is empty; pass an id `agentgpt recovery list` prints")
        if len(rid) > MAX_RECOVERY_ID:
            raise UsageError(
                f"RECOVERY_ID: is {len(rid)} characters; recovery ids are at most {MAX_RECOVERY_ID}"
            )
    addr = oracle_addr(args)

    from google.protobuf import json_format

    from agentgpt.clients import RecoveryClient
    from agentgpt.common.v1 import common_pb2
    from agentgpt.errors import RpcError
    from agentgpt.recovery.v1 import recovery_pb2 as rc

    names = executor_names(args.workdir)
    req = rc.ListRecoveriesRequest(
        session_id=sid,
        recovery_id=rid,
        page=common_pb2.PageRequest(page_size=args.limit if args.action == "list" else 1),
    )
    try:
        async with RecoveryClient(addr, identity="cli") as client:
            resp = await client.list_recoveries(req)
    except RpcError as exc:
        if unimplemented(exc):
            raise CommandFailed(f"{UNIMPLEMENTED} at {addr}") from None
        raise failure(exc, addr) from None
    if args.action == "list":
        if args.json:
            print(json_format.MessageToJson(resp), flush=True)
            return 0
        lines = list_lines(resp.recoveries, names)
        for line in lines or [f"no recoveries{f' of session {sid}' if sid else ''}"]:
            print(line, flush=True)
        if resp.page.next_page_token:
            print(f"(more than {args.limit}: pass a larger --limit)", flush=True)
        return 0
    found = [r for r in resp.recoveries if r.recovery_id == rid]
    if not found:
        raise CommandFailed(f"NOT_FOUND: the recovery oracle at {addr} has no recovery {rid!r}")
    if args.json:
        print(json_format.MessageToJson(found[0]), flush=True)
    else:
        for line in show_lines(found[0], names):
            print(line, flush=True)
    return 0


async def session_recoveries(args: argparse.Namespace, sid: str, timeout: float = 5.0) -> list[str]:
    """The "Recoveries" part of `agentgpt session inspect`: best effort, never raises for an oracle
    that cannot be found, reached or asked (one line says which)."""
    out = ["", "Recoveries"]
    try:
        addr = oracle_addr(args)
    except (UsageError, CommandFailed):
        return [
            *out,
            f"  not looked up: no recovery oracle address (pass --recovery-addr HOST:PORT or set {ENV_ADDR})",
        ]
    from agentgpt.clients import ChannelOptions, RecoveryClient
    from agentgpt.errors import RpcError
    from agentgpt.recovery.v1 import recovery_pb2 as rc

    try:
        async with RecoveryClient(
            addr, options=ChannelOptions(timeout=timeout, attempts=2), identity="cli"
        ) as client:
            resp = await client.list_recoveries(rc.ListRecoveriesRequest(session_id=sid))
    except RpcError as exc:
        if unimplemented(exc):
            return [*out, f"  {UNIMPLEMENTED}"]
        return [
            *out,
            f"  the recovery oracle at {addr} did not answer ({exc.code.name}: {_one_line(exc.details)})",
        ]
    mine = [r for r in resp.recoveries if r.session_id == sid]
    lines = list_lines(mine, executor_names(args.workdir))
    return [*out, *(f"  {line}" for line in lines or ["none"])]
