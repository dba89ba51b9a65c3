"""`agentgpt` — run the local stack, check its health, and look at sessions.

agentgpt up        start anvil, IPFS, the contracts and the four services (N executors); Ctrl-C stops everything
                   (--monitoring: and a local Prometheus with the clusters' alert rules)
agentgpt status    health of every service of the running stack, and the sessions each executor holds
agentgpt top       a live view of the executors and sessions, refreshed every 2 s (--once, --json)
agentgpt recovery list [--session ID]   the recovery oracle's recoveries (also: show RECOVERY_ID)
agentgpt config    every AGENTGPT_* setting of every service, with defaults
agentgpt session inspect ID [--detail full]   the session dashboard (also: get, list, tasks, watch)
agentgpt session create SPEC.yaml --budget 100  as the owner: create, edit-params, attach, activate, submit,
                                                add-budget, pause, resume, complete, terminate (signed by the owner)

Bad input prints one `error: ...` line naming the option or file and exits 2; a refusal from a service,
or a service that cannot be reached, exits 1. --debug (or AGENTGPT_DEBUG=1) adds the traceback of an
internal error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from apps.cli.owner import INT64_MAX, CommandFailed, UsageError, shown

DEFAULT_WORKDIR = Path(".agentgpt/stack")
DEBUG_ENV = "AGENTGPT_DEBUG"
# 128 + SIGPIPE: what a shell reports for a command whose reader went away (`agentgpt ... | head`)
EXIT_BROKEN_PIPE = 128 + int(getattr(signal, "SIGPIPE", 13))
# Executors `agentgpt up` can run: one per spare dev key (apps.localnet.stack.MAX_EXECUTORS; the CLI
# does not import the development stack, which the image does not carry).
MAX_EXECUTORS = 7
DEFAULT_EXECUTORS = 2


def _executor_count(text: str) -> int:
    """argparse type of `agentgpt up --executors`."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_EXECUTORS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: pass a whole number of executors from 1 to {MAX_EXECUTORS} "
            f"(one per spare dev key; default {DEFAULT_EXECUTORS})"
        )
    return int(value)


def _is_executor(name: str) -> bool:
    """`executor-1`, `executor-2`, ... (and `executor`, in the state file of an older stack)."""
    return name == "executor" or name.startswith("executor-")


def _highest_port_offset(executors: int) -> int:
    """session +0, executor-1 +1, recovery_oracle +2, indexer +3, executor-2..N +4.."""
    return max(3, executors + 2)


def _print(msg: str) -> None:
    print(msg, flush=True)


def _error(msg: str) -> None:
    """One `error: ...` line on stderr."""
    print("error: " + " ".join(msg.splitlines()), file=sys.stderr, flush=True)


async def _up(args: argparse.Namespace) -> int:
    base_port = 0
    if args.ports != "auto":
        if not (args.ports.isascii() and args.ports.isdigit()):
            raise UsageError(f"--ports {args.ports!r}: pass the first gRPC port (e.g. 50051) or 'auto'")
        top = _highest_port_offset(args.executors)
        base_port = _in_range(int(args.ports), "--ports", 1, 65535 - top)
        _in_range(args.metrics_base, "--metrics-base", 0, 65535 - top)
        _in_range(args.prometheus_port, "--prometheus-port", 0, 65535)
    if not (math.isfinite(args.scrape_interval) and 1 <= args.scrape_interval <= 300):
        raise UsageError(f"--scrape-interval {args.scrape_interval}: must be between 1 and 300 seconds")
    for option, value in (
        ("--draft-ttl", args.draft_ttl),
        ("--active-ttl", args.active_ttl),
        ("--paused-ttl", args.paused_ttl),
    ):
        _in_range(value, option, 1, 10 * 365 * 24 * 3600)

    from agentgpt.lifecycle import Durations

    try:
        from apps.localnet.stack import LocalStack, StackOptions
    except ImportError:  # the image carries the CLI but not the development stack
        raise CommandFailed(
            "`agentgpt up` starts the development stack, which this installation does not include; "
            "run it from a checkout of the repository (`make up`)"
        ) from None

    options = StackOptions(
        workdir=Path(args.workdir).resolve(),
        base_port=base_port,
        metrics_base=0 if args.ports == "auto" else args.metrics_base,
        ipfs=not args.no_ipfs,
        durations=Durations(args.draft_ttl, args.active_ttl, args.paused_ttl),
        executors=args.executors,
        tls=not args.no_tls,
        monitoring=args.monitoring,
        prometheus_port=args.prometheus_port,
        scrape_interval=args.scrape_interval,
    )
    stack = LocalStack(options, progress=_print)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _print(f"starting the local stack in {options.workdir} ...")
    starting = asyncio.create_task(stack.start())
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({starting, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if starting not in done:
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        await stack.stop()
        return 130
    waiter.cancel()
    try:
        starting.result()
    except Exception as exc:
        _error(f"the stack did not come up: {exc}")
        return 1
    executors = "1 executor" if args.executors == 1 else f"{args.executors} executors"
    _print(f"\nall four services SERVING ({executors}):")
    for name, info in stack.state()["services"].items():
        _print(
            f"  {name:<16} grpc {info['grpc']:<22} metrics http://127.0.0.1:{info['metrics_port']}/metrics"
        )
    _print(
        f"  {'chains':<16} "
        + ", ".join(f"{c.name}={c.rpc_url} (id {c.chain_id})" for c in stack.network.chains)
        if stack.network
        else ""
    )
    if stack.ipfs:
        _print(f"  {'ipfs':<16} {stack.ipfs.api}")
    if stack.prometheus is not None:
        _print(
            f"  {'prometheus':<16} {stack.prometheus.url}  (alerts: {stack.prometheus.url}/alerts; "
            "the dashboard's queries work unchanged against it)"
        )
    _print(f"state: {options.workdir / 'stack.json'}; logs: {options.workdir}/*.log")
    code = 0
    if not args.no_demo:
        code = await _demo(stack, stop)
    if args.exit_after_demo:
        stop.set()
    else:
        _print("\npress Ctrl-C to stop")
    await stop.wait()
    _print("\nstopping ...")
    await stack.stop()
    return code


async def _demo(stack: Any, stop: asyncio.Event) -> int:
    from apps.cli.dashboard import render
    from apps.demo.treasury import run_demo
    from apps.localnet.stack import DEPLOYER_KEY, EXECUTOR_KEY, KYC_ISSUER_KEY, OWNER_KEY

    _print("\nrunning the seed's treasury session demo ...")
    state = stack.state()
    demo = asyncio.create_task(
        run_demo(
            state["network"],
            state["services"]["session"]["grpc"],
            owner_key=OWNER_KEY,
            deployer_key=DEPLOYER_KEY,
            executor_key=EXECUTOR_KEY,
            issuer_key=KYC_ISSUER_KEY,
            progress=_print,
        )
    )
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({demo, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if demo not in done:
        demo.cancel()
        return 130
    waiter.cancel()
    try:
        dashboard = demo.result()
    except Exception as exc:
        _error(f"demo failed: {exc}")
        return 1
    _print("\n" + render(dashboard))
    return 0


async def _status(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
    state = _stack_state(args.workdir)
    services = _services_of(state, args.workdir)

    from agentgpt.clients import ExecutorClient, IndexerClient, RecoveryClient, SessionClient, check_health
    from agentgpt.errors import RpcError

    names = {
        "session": SessionClient.service,
        "indexer": IndexerClient.service,
        "executor": ExecutorClient.service,
        "recovery_oracle": RecoveryClient.service,
    }

    async def health(name: str, info: dict[str, Any]) -> str:
        kind = "executor" if _is_executor(name) else name
        try:
            return await check_health(info["grpc"], names.get(kind, ""), timeout=args.timeout)
        except RpcError as exc:
            return f"UNREACHABLE ({exc.code.name})"

    executors = [name for name in services if _is_executor(name)]
    statuses = await asyncio.gather(*(health(n, i) for n, i in services.items()))
    held = await asyncio.gather(*(_executor_status(services[n]["grpc"], args.timeout) for n in executors))
    by_executor = dict(zip(executors, held, strict=True))
    worst = 0
    rows = []
    for (name, info), status in zip(services.items(), statuses, strict=True):
        if status != "SERVING":
            worst = 1
        row = {"service": name, "status": status, **info}
        if name in by_executor:
            row["executor"] = by_executor[name]
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return worst
    _print(f"{'SERVICE':<16} {'STATUS':<26} {'GRPC':<22} {'METRICS':<8} PID")
    for r in rows:
        pid = r.get("pid") or "-"
        _print(
            f"{r['service']:<16} {r['status']:<26} {r['grpc']:<22} {':' + str(r['metrics_port']):<8} {pid}"
        )
    if executors:
        _print("")
        for line in executor_lines(rows, state):
            _print(line)
    return worst


async def _executor_status(addr: str, timeout: float) -> dict[str, Any]:
    """An executor's GetExecutorStatus as JSON-able data; {"answering": False, "error": ...} when it does
    not answer (stopped, killed, or not serving yet)."""
    from agentgpt.attestation import describe_quote
    from agentgpt.clients import ChannelOptions, ExecutorClient
    from agentgpt.errors import RpcError

    try:
        async with ExecutorClient(
            addr, options=ChannelOptions(timeout=timeout, attempts=1), identity="cli"
        ) as ex:
            resp = await ex.get_status()
    except RpcError as exc:
        return {"answering": False, "code": exc.code.name, "error": " ".join(exc.details.split())}
    return {
        "answering": True,
        "executor_id": resp.executor_id,
        "address": resp.address,
        "capacity": resp.capacity,
        "draining": resp.draining,
        # what the executor's DCAP quote claims; verified by the recovery oracle, not here
        "attestation": describe_quote(resp.attestation_quote),
        "sessions": [
            {
                "session_id": s.session_id,
                "epoch": s.epoch,
                "last_task_seq": s.last_task_seq,
                "last_checkpoint_seq": s.last_checkpoint_seq,
            }
            for s in resp.sessions
        ],
    }


def executor_lines(rows: list[dict[str, Any]], state: dict[str, Any]) -> list[str]:
    """`agentgpt status`'s executor table: each executor's pid and the sessions it holds."""
    addresses = {
        str(e.get("id")): str(e.get("address", ""))
        for e in state.get("executors") or ()
        if isinstance(e, dict)
    }
    out = [f"{'EXECUTOR':<16} {'PID':<8} {'ADDRESS':<42}  SESSIONS HELD"]
    for r in rows:
        status = r.get("executor")
        if status is None:
            continue
        address = addresses.get(r["service"], "")
        if not status["answering"]:
            held = f"not answering ({status['code']})"  # the details are in --json
        else:
            address = status["address"] or address
            sessions = [
                f"{s['session_id']} (epoch {s['epoch']}, last task {s['last_task_seq']}, "
                f"checkpoint {s['last_checkpoint_seq']})"
                for s in status["sessions"]
            ]
            held = ", ".join(sessions) or "none"
            if status["draining"]:
                held += " [draining]"
            if status.get("attestation"):
                held += f" [quote: {status['attestation']}]"
        out.append(f"{r['service']:<16} {r.get('pid') or '-'!s:<8} {address or '-':<42}  {held}")
    return out


def _stack_state(workdir: str, hint: str = "--session-addr HOST:PORT") -> dict[str, Any]:
    """The local stack started in `workdir` (its stack.json); CommandFailed when there is none."""
    from apps.cli.owner import stack_state

    path = Path(workdir) / "stack.json"
    state = stack_state(workdir)
    if not state:
        raise CommandFailed(
            f"no running stack found ({path} does not exist); start one with `agentgpt up` "
            f"(or pass --workdir DIR, or {hint})"
        )
    return state


def _services_of(state: dict[str, Any], workdir: str) -> dict[str, dict[str, Any]]:
    path = Path(workdir) / "stack.json"
    services = state.get("services")
    if not isinstance(services, dict) or not all(
        isinstance(info, dict) and isinstance(info.get("grpc"), str) for info in services.values()
    ):
        raise UsageError(f"--workdir: {path} is not a stack state file; restart the stack with `agentgpt up`")
    return services


def _stack_services(workdir: str) -> dict[str, dict[str, Any]]:
    """The services of the local stack started in `workdir`; CommandFailed when there is none."""
    return _services_of(_stack_state(workdir), workdir)


def _session_addr(args: argparse.Namespace) -> str:
    if args.session_addr:
        return str(args.session_addr)
    if os.environ.get("AGENTGPT_SESSION_ADDR"):
        return os.environ["AGENTGPT_SESSION_ADDR"]
    services = _stack_services(args.workdir)
    if "session" not in services:
        raise UsageError(f"--workdir: {Path(args.workdir) / 'stack.json'} names no session service")
    return str(services["session"]["grpc"])


def _in_range(value: int, option: str, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise UsageError(f"{option} {value}: must be between {lo} and {hi}")
    return value


def _rpc_failure(
    exc: Any, target: str, what: str = "the session service", option: str = "--session-addr"
) -> CommandFailed:
    """A service's refusal as `STATUS: details`; a service that cannot be reached, with its address."""
    import grpc

    code = exc.code
    details = exc.details or ""
    if code == grpc.StatusCode.UNAVAILABLE and any(
        marker in details.lower() for marker in ("connect", "dns", "resolv", "socket", "address")
    ):
        return CommandFailed(
            f"UNAVAILABLE: cannot reach {what} at {target} ({details}); is it running? "
            f"(`agentgpt status`, or pass {option} HOST:PORT)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CommandFailed(f"DEADLINE_EXCEEDED: {what} at {target} did not answer in time")
    return CommandFailed(f"{code.name}: {details}")


async def _recovery(args: argparse.Namespace) -> int:
    from apps.cli import recovery

    def failure(exc: Any, target: str) -> CommandFailed:
        return _rpc_failure(exc, target, "the recovery oracle", "--recovery-addr")

    return await recovery.run(args, failure)


async def _session(args: argparse.Namespace) -> int:
    from apps.cli import owner

    target = ""

    def resolve() -> str:
        nonlocal target
        target = _session_addr(args)
        return target

    try:
        if args.action in owner.ACTIONS:
            return await owner.run(args, resolve)
        if args.action == "export":
            from apps.cli import export

            return await export.run(args)
        return await _read(args, resolve)
    except Exception as exc:
        errors = sys.modules.get("agentgpt.errors")
        if errors is not None and isinstance(exc, errors.RpcError):
            raise _rpc_failure(exc, target) from None
        raise


async def _read(args: argparse.Namespace, resolve: Any) -> int:
    """inspect, get, list, tasks, watch: the session service's reads (as the CLI's identity)."""
    from google.protobuf import json_format

    from agentgpt.clients import SessionClient
    from agentgpt.common.v1 import common_pb2
    from agentgpt.session.v1 import session_pb2
    from apps.cli.dashboard import render
    from apps.cli.owner import address, session_id

    # every value checked before the service is looked for
    sid = session_id(args.id) if getattr(args, "id", None) is not None else ""
    if args.action == "list":
        if args.owner:
            address(args.owner, "--owner")
        _in_range(args.limit, "--limit", 1, 500)
    elif args.action == "tasks":
        _in_range(args.after, "--after", 0, INT64_MAX)
        _in_range(args.limit, "--limit", 1, 1000)
    elif args.action == "watch":
        _in_range(args.from_cursor, "--from-cursor", 0, INT64_MAX)
    async with SessionClient(resolve(), identity="cli") as client:
        if args.action == "inspect":
            resp = await client.inspect_session(sid, args.detail)
            if args.json:
                _print(json_format.MessageToJson(resp))
            else:
                _print(render(resp))
                from apps.cli.recovery import session_recoveries

                for line in await session_recoveries(args, resp.session.session_id or sid):
                    _print(line)
        elif args.action == "get":
            _print(json_format.MessageToJson(await client.get_session(sid)))
        elif args.action == "list":
            req = session_pb2.ListSessionsRequest(
                owner=args.owner or "",
                states=[common_pb2.SessionState.Value("SESSION_STATE_" + st.upper()) for st in args.state],
                page=common_pb2.PageRequest(page_size=args.limit),
            )
            listed = await client.list_sessions(req)
            if args.json:
                _print(json_format.MessageToJson(listed))
                return 0
            _print(f"{'ID':<8} {'STATE':<11} {'TYPE':<24} {'SPENT/BUDGET (AGPT base units)':<40} OWNER")
            for sess in listed.sessions:
                state = common_pb2.SessionState.Name(sess.state).removeprefix("SESSION_STATE_")
                _print(
                    f"{sess.session_id:<8} {state:<11} {sess.spec.type:<24} "
                    f"{sess.budget_spent + '/' + sess.budget:<40} {sess.owner}"
                )
        elif args.action == "tasks":
            page = await client.list_tasks(
                session_pb2.ListTasksRequest(
                    session_id=sid,
                    after_seq=args.after,
                    statuses=[
                        session_pb2.TaskStatus.Value("TASK_STATUS_" + st.upper()) for st in args.status
                    ],
                    page_size=args.limit,
                )
            )
            if args.json:
                _print(json_format.MessageToJson(page))
                return 0
            _print(f"{'SEQ':>6} {'KIND':<20} {'STATUS':<10} {'GAS':>9} {'COST (AGPT base units)':<24} ERROR")
            for t in page.tasks:
                st = session_pb2.TaskStatus.Name(t.status).removeprefix("TASK_STATUS_")
                _print(f"{t.seq:>6} {t.input.kind:<20} {st:<10} {t.gas_used:>9} {t.cost:<24} {t.error[:60]}")
            if page.next_after_seq:
                _print(f"(more: --after {page.next_after_seq})")
        elif args.action == "watch":
            async for item in client.watch_session(sid, args.from_cursor, args.history_only):
                e = item.event
                if args.json:  # JSON Lines: one event per line, as it arrives
                    _print(json_format.MessageToJson(e, indent=None))
                    continue
                state = common_pb2.SessionState.Name(e.state).removeprefix("SESSION_STATE_")
                _print(f"{e.cursor:>6} {state:<10} {e.type:<22} {e.data_json}")
        elif args.action == "restore":
            restored = (await client.restore_session(sid)).session
            cp = restored.latest_checkpoint
            state = common_pb2.SessionState.Name(restored.state).removeprefix("SESSION_STATE_")
            _print(
                f"session {restored.session_id} restored from chain + IPFS: {state}, executor "
                f"{restored.executor}, at checkpoint {cp.seq} ({cp.cid}); its next task is {cp.seq + 1}"
            )
            _print("tasks after that checkpoint were never anchored and are not restored")
    return 0


def _config(args: argparse.Namespace) -> int:
    from agentgpt.runtime.config import ServerConfig, describe
    from services.executor.config import ExecutorConfig
    from services.indexer.config import IndexerConfig
    from services.recovery_oracle.config import RecoveryConfig
    from services.session.config import SessionConfig

    sections: list[tuple[str, type[Any]]] = [
        ("every service", ServerConfig),
        ("session", SessionConfig),
        ("executor", ExecutorConfig),
        ("recovery_oracle", RecoveryConfig),
        ("indexer", IndexerConfig),
    ]
    if args.json:
        _print(
            json.dumps(
                [
                    {"service": title, "variable": var, "default": default, "meaning": doc}
                    for title, cls in sections
                    for var, default, doc in describe(cls)
                ],
                indent=2,
            )
        )
        return 0
    for title, cls in sections:
        rows = describe(cls)
        if args.markdown:
            _print(f"\n**{title}**\n\n| variable | default | meaning |\n|---|---|---|")
            for var, default, doc in rows:
                _print(f"| `{var}` | `{default}` | {doc} |")
        else:
            _print(f"\n{title}:")
            for var, default, doc in rows:
                _print(f"  {var:<34} {doc} (default: {default or '(empty)'})")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentgpt-sessions")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentgpt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    debug_help = f"print the traceback of an internal error (also: {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    parser.add_argument("--version", action="version", version=f"agentgpt {_version()}")
    # accepted after the command too (`agentgpt session list --debug`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        parents=[common],
        help="start the local stack (and the demo session); Ctrl-C stops it",
        description="Start two anvil chains, an IPFS node, deploy the contracts, start the four "
        "services on loopback (the executor as N processes, executor-1..executor-N, each with its own "
        "bonded key), wait until every one is SERVING, print the endpoints, run the demo session, and "
        "stop everything on Ctrl-C/SIGTERM. Kill the executor holding a session (`agentgpt status` shows "
        "its pid) to watch the recovery oracle move the session to another.",
    )
    up.add_argument(
        "--workdir",
        default=str(DEFAULT_WORKDIR),
        help="where state, databases and logs go (default: %(default)s)",
    )
    up.add_argument(
        "--ports",
        default="50051",
        help="first gRPC port (session; then executor-1, recovery_oracle, indexer, executor-2..N), "
        "or 'auto' for free ports (default: %(default)s)",
    )
    up.add_argument(
        "--executors",
        type=_executor_count,
        default=DEFAULT_EXECUTORS,
        metavar="N",
        help=f"executor processes to run, each with its own bonded dev key: 1..{MAX_EXECUTORS} "
        "(default: %(default)s)",
    )
    up.add_argument(
        "--metrics-base", type=int, default=9101, help="first /metrics port (default: %(default)s)"
    )
    up.add_argument(
        "--no-ipfs", action="store_true", help="use the embedded content store instead of an IPFS node"
    )
    up.add_argument("--no-demo", action="store_true", help="only start the stack")
    up.add_argument(
        "--no-tls",
        action="store_true",
        help="run the services without mTLS (plaintext on loopback, trusting the x-agentgpt-service header)",
    )
    up.add_argument(
        "--exit-after-demo", action="store_true", help="stop the stack once the demo has finished"
    )
    up.add_argument(
        "--monitoring",
        action="store_true",
        help="also run a local Prometheus (the `prometheus` binary, `make setup` installs it) scraping "
        "every service, with k8s/monitoring/rules/agentgpt.rules.yml loaded; stopped with the stack",
    )
    up.add_argument(
        "--prometheus-port",
        type=int,
        default=9090,
        help="Prometheus's port with --monitoring (default: %(default)s; a free one with --ports auto)",
    )
    up.add_argument(
        "--scrape-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how often Prometheus scrapes and evaluates the rules with --monitoring (default: %(default)s)",
    )
    up.add_argument(
        "--draft-ttl", type=int, default=3600, help="DRAFT limit in seconds (default: %(default)s)"
    )
    up.add_argument(
        "--active-ttl", type=int, default=72 * 3600, help="ACTIVE limit in seconds (default: %(default)s)"
    )
    up.add_argument(
        "--paused-ttl", type=int, default=24 * 3600, help="PAUSED limit in seconds (default: %(default)s)"
    )

    status = sub.add_parser(
        "status",
        parents=[common],
        help="health of every service of the running local stack, and the sessions each executor holds",
        description="Health of every service of the local stack, with its pid; then each executor's pid, "
        "address and the sessions it holds (GetExecutorStatus), or `not answering`.",
    )
    status.add_argument(
        "--workdir", default=str(DEFAULT_WORKDIR), help="the stack's work directory (default: %(default)s)"
    )
    status.add_argument(
        "--timeout", type=float, default=2.0, help="seconds per health check (default: %(default)s)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")

    def target_options(parser: argparse.ArgumentParser, default: Any) -> None:
        parser.add_argument(
            "--session-addr",
            default="" if default is None else default,
            help="session service address (default: $AGENTGPT_SESSION_ADDR, else the local stack's)",
        )
        parser.add_argument(
            "--workdir",
            default=str(DEFAULT_WORKDIR) if default is None else default,
            help="the local stack's work directory (default: .agentgpt/stack)",
        )

    session = sub.add_parser(
        "session",
        parents=[common],
        help="look at sessions (inspect, get, list, tasks, watch, restore) and, as their owner, drive them "
        "(create, edit-params, attach, activate, submit, add-budget, pause, resume, complete, terminate)",
    )
    target_options(session, None)
    ssub = session.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add_action(name: str, help: str) -> argparse.ArgumentParser:
        # the target options are accepted after the action too (`agentgpt session list --workdir X`)
        parser = ssub.add_parser(name, help=help, parents=[common])
        target_options(parser, argparse.SUPPRESS)
        return parser

    inspect = add_action("inspect", help="the session dashboard (docs/design.md §6) and its recoveries")
    inspect.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
    inspect.add_argument(
        "--detail", choices=["summary", "full"], default="summary", help="full adds recent tasks and events"
    )
    inspect.add_argument(
        "--json", action="store_true", help="the raw InspectSessionResponse as JSON (without recoveries)"
    )
    inspect.add_argument(
        "--recovery-addr",
        default="",
        metavar="HOST:PORT",
        help="recovery oracle asked for the session's recoveries (default: $AGENTGPT_RECOVERY_ADDR, "
        "else the local stack's; none found: the dashboard says so)",
    )
    get = add_action("get", help="one session as JSON")
    get.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
    listing = add_action("list", help="sessions, newest first")
    listing.add_argument("--owner", default="", help="only this owner's sessions")
    listing.add_argument(
        "--state",
        action="append",
        default=[],
        choices=["draft", "active", "paused", "completed", "terminated"],
        help="repeatable",
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1..500)")
    listing.add_argument("--json", action="store_true", help="the ListSessions answer as JSON")
    tasks = add_action("tasks", help="a session's tasks in order, with status, gas and error")
    tasks.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
    tasks.add_argument("--after", type=int, default=0, help="only tasks after this seq")
    tasks.add_argument(
        "--status",
        action="append",
        default=[],
        choices=["queued", "running", "succeeded", "failed", "refused"],
        help="only tasks in this status (repeatable)",
    )
    tasks.add_argument("--limit", type=int, default=100, help="at most this many (1..1000)")
    tasks.add_argument("--json", action="store_true", help="the ListTasks answer as JSON")
    watch = add_action("watch", help="follow a session's events (Ctrl-C to stop)")
    watch.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
    watch.add_argument("--from-cursor", type=int, default=0, help="resume after this event cursor")
    watch.add_argument("--history-only", action="store_true", help="stop after the recorded history")
    watch.add_argument("--json", action="store_true", help="one JSON object per event (JSON Lines)")
    restore = add_action(
        "restore",
        help="operators: rebuild a session SessionDB lost, from its home chain and its newest anchored "
        "checkpoint on IPFS (refused when SessionDB still has it)",
    )
    restore.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")

    from apps.cli import owner

    owner.add_actions(add_action)

    from apps.cli import export

    export.add_action(add_action)

    from apps.cli import recovery

    recovery.add_parser(sub, common, str(DEFAULT_WORKDIR))

    from apps.cli import verify

    verify.add_parser(sub, common, str(DEFAULT_WORKDIR))

    from apps.cli import top

    top.add_parser(sub, common, str(DEFAULT_WORKDIR))

    config = sub.add_parser("config", parents=[common], help="list every AGENTGPT_* setting with its default")
    config.add_argument("--markdown", action="store_true", help="as Markdown tables (for the README)")
    config.add_argument(
        "--json",
        action="store_true",
        help="every setting as a JSON list (service, variable, default, meaning)",
    )
    return parser


# Options whose values are paths: any bytes the file system takes are fine there.
_PATH_OPTIONS = frozenset({"spec", "owner_key_file", "network", "workdir", "key_file", "out"})
_POSITIONALS = frozenset({"id", "kind", "decorators", "params", "spec", "recovery_id"})


def _check_text_options(args: argparse.Namespace) -> None:
    """Every text option must be valid Unicode: bytes the locale cannot decode arrive from argv as
    lone surrogates, which no request can carry."""
    for dest, value in vars(args).items():
        if dest in _PATH_OPTIONS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or (dest in ("params", "args") and item.startswith("@")):
                continue
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                option = dest.upper() if dest in _POSITIONALS else "--" + dest.replace("_", "-")
                raise UsageError(
                    f"{option}: is not valid UTF-8 text ({shown(item)}); pass it as UTF-8"
                ) from None


def _client_tls(args: argparse.Namespace) -> None:
    """The client certificate this CLI presents, when the services run mTLS: the AGENTGPT_TLS_CA_FILE /
    _CERT_FILE / _KEY_FILE settings if set (a deployment's CA and the certificate it gave you), else the
    local stack's `operator` certificate (`<workdir>/tls`, named in its stack.json). None of them: plaintext
    (a `--no-tls` stack). Owner commands are authorised by the owner's signature whatever the certificate."""
    from agentgpt.runtime import tls
    from agentgpt.runtime.config import ConfigError
    from apps.cli.owner import stack_state

    env = os.environ
    try:
        files = tls.files_from(
            env.get("AGENTGPT_TLS_CA_FILE", ""),
            env.get("AGENTGPT_TLS_CERT_FILE", ""),
            env.get("AGENTGPT_TLS_KEY_FILE", ""),
        )
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if files is None and getattr(args, "workdir", None):
        tls_dir = str(stack_state(args.workdir).get("tls_dir") or "")
        files = tls.local_files(Path(tls_dir), "operator") if tls_dir else None
    tls.use_client_tls(files)


def _run(args: argparse.Namespace) -> int:
    _check_text_options(args)
    if args.command in ("status", "session", "recovery", "top"):
        _client_tls(args)
    if args.command == "up":
        return asyncio.run(_up(args))
    if args.command == "status":
        return asyncio.run(_status(args))
    if args.command == "config":
        return _config(args)
    if args.command == "session":
        return asyncio.run(_session(args))
    if args.command == "recovery":
        return asyncio.run(_recovery(args))
    if args.command == "verify":
        from apps.cli import verify

        return asyncio.run(verify.run(args))
    if args.command == "top":
        from apps.cli import top

        return top.main(args, _rpc_failure)
    return 2


def _debug(args: argparse.Namespace | None) -> bool:
    flag = os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(getattr(args, "debug", False))


def _rpc_refusal(exc: Exception) -> str | None:
    """`STATUS: details` when `exc` is a gRPC error (agentgpt's RpcError, or grpc's own)."""
    # Only once grpc is loaded can `exc` be one of its errors: bad input fails without loading it.
    errors, grpc = sys.modules.get("agentgpt.errors"), sys.modules.get("grpc")
    if errors is not None and isinstance(exc, errors.RpcError):
        return f"{exc.code.name}: {exc.details}"
    if grpc is not None and isinstance(exc, grpc.RpcError):  # grpc.aio.AioRpcError, the sync API's
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        return f"{getattr(code, 'name', 'UNKNOWN')}: {details}"
    return None


def _handled(argv: list[str] | None) -> int:
    """Parse and run; every failure becomes one `error:` line and an exit code (2 for bad input,
    1 for a service's refusal or an unreachable service, 1 for an internal error)."""
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        _error(str(exc))
        return 2
    except CommandFailed as exc:
        _error(str(exc))
        return 1
    except Exception as exc:
        refusal = _rpc_refusal(exc)
        if refusal is not None:
            _error(refusal)
            return 1
        if _debug(args):
            traceback.print_exc()
        _error(
            f"internal error: {type(exc).__name__}: {exc} "
            f"(run with --debug or {DEBUG_ENV}=1 for the traceback)"
        )
        return 1


def main(argv: list[str] | None = None) -> int:
    """The `agentgpt` entry point. No input ends in a traceback (unless --debug asks for one)."""
    try:
        try:
            code = _handled(argv)
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                _error(exc.code)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`agentgpt session list | head -1`): stop quietly. Python's recipe
        # (docs: signal, "Note on SIGPIPE"): point stdout at devnull so the final flush at exit
        # cannot fail again; exit as a command stopped by SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
