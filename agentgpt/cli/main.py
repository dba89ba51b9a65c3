"""`agentgpt` — run the local stack, check its health, and look at sessions.

agentgpt up        start anvil, IPFS, the contracts and the four services; Ctrl-C stops everything
agentgpt status    health of every service of the running stack
agentgpt config    every AGENTGPT_* setting of every service, with defaults
agentgpt session inspect ID [--detail full]   the session dashboard (also: get, list, tasks, watch)
agentgpt session create SPEC.yaml --budget 100  as the owner: create, edit-params, attach, activate, submit,
                                                add-budget, pause, resume, complete, terminate (signed by the owner)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

DEFAULT_WORKDIR = Path(".agentgpt/stack")


def _print(msg: str) -> None:
    print(msg, flush=True)


async def _up(args: argparse.Namespace) -> int:
    from agentgpt.lifecycle import Durations
    from agentgpt.localnet.stack import LocalStack, StackOptions

    options = StackOptions(
        workdir=Path(args.workdir).resolve(),
        base_port=0 if args.ports == "auto" else int(args.ports),
        metrics_base=0 if args.ports == "auto" else args.metrics_base,
        ipfs=not args.no_ipfs,
        durations=Durations(args.draft_ttl, args.active_ttl, args.paused_ttl),
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
        _print(f"error: the stack did not come up: {exc}")
        return 1
    _print("\nall four services SERVING:")
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
    from agentgpt.cli.dashboard import render
    from agentgpt.demo.treasury import run_demo
    from agentgpt.localnet.stack import DEPLOYER_KEY, EXECUTOR_KEY, KYC_ISSUER_KEY, OWNER_KEY

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
        _print(f"demo failed: {exc}")
        return 1
    _print("\n" + render(dashboard))
    return 0


async def _status(args: argparse.Namespace) -> int:
    from agentgpt.clients import check_health
    from agentgpt.errors import RpcError
    from agentgpt.localnet.stack import SERVICE_NAMES, read_state

    try:
        state = read_state(Path(args.workdir))
    except FileNotFoundError as exc:
        _print(f"error: {exc}")
        return 1
    worst = 0
    rows = []
    for name, info in state["services"].items():
        try:
            status = await check_health(info["grpc"], SERVICE_NAMES.get(name, ""), timeout=args.timeout)
        except RpcError as exc:
            status = f"UNREACHABLE ({exc.code.name})"
        if status != "SERVING":
            worst = 1
        rows.append({"service": name, "status": status, **info})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print(f"{'SERVICE':<16} {'STATUS':<26} {'GRPC':<22} METRICS")
        for r in rows:
            _print(f"{r['service']:<16} {r['status']:<26} {r['grpc']:<22} :{r['metrics_port']}")
    return worst


def _session_addr(args: argparse.Namespace) -> str:
    import os

    from agentgpt.localnet.stack import read_state

    if args.session_addr:
        return str(args.session_addr)
    if os.environ.get("AGENTGPT_SESSION_ADDR"):
        return os.environ["AGENTGPT_SESSION_ADDR"]
    return str(read_state(Path(args.workdir))["services"]["session"]["grpc"])


def _session_id(text: str) -> str:
    """Session ids are decimal token ids; the seed's 0x form is accepted too."""
    return str(int(text, 16)) if text.lower().startswith("0x") else text


async def _session(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from agentgpt.cli import owner
    from agentgpt.cli.dashboard import render
    from agentgpt.clients import SessionClient
    from agentgpt.common.v1 import common_pb2
    from agentgpt.errors import RpcError
    from agentgpt.session.v1 import session_pb2

    try:
        target = _session_addr(args)
    except FileNotFoundError as exc:
        _print(f"error: {exc} (or pass --session-addr)")
        return 1
    if args.action in owner.ACTIONS:
        try:
            return await owner.run(args, target, _session_id)
        except owner.UsageError as exc:
            _print(f"error: {exc}")
            return 2
        except RpcError as exc:
            _print(f"error: {exc.code.name}: {exc.details}")
            return 1
    async with SessionClient(target, identity="cli") as client:
        try:
            if args.action == "inspect":
                resp = await client.inspect_session(_session_id(args.id), args.detail)
                print(json_format.MessageToJson(resp) if args.json else render(resp))
            elif args.action == "get":
                print(json_format.MessageToJson(await client.get_session(_session_id(args.id))))
            elif args.action == "list":
                req = session_pb2.ListSessionsRequest(
                    owner=args.owner or "",
                    states=[
                        common_pb2.SessionState.Value("SESSION_STATE_" + st.upper()) for st in args.state
                    ],
                    page=common_pb2.PageRequest(page_size=args.limit),
                )
                listed = await client.list_sessions(req)
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
                        session_id=_session_id(args.id),
                        after_seq=args.after,
                        statuses=[
                            session_pb2.TaskStatus.Value("TASK_STATUS_" + st.upper()) for st in args.status
                        ],
                        page_size=args.limit,
                    )
                )
                _print(
                    f"{'SEQ':>6} {'KIND':<20} {'STATUS':<10} {'GAS':>9} {'COST (AGPT base units)':<24} ERROR"
                )
                for t in page.tasks:
                    st = session_pb2.TaskStatus.Name(t.status).removeprefix("TASK_STATUS_")
                    _print(
                        f"{t.seq:>6} {t.input.kind:<20} {st:<10} {t.gas_used:>9} {t.cost:<24} {t.error[:60]}"
                    )
                if page.next_after_seq:
                    _print(f"(more: --after {page.next_after_seq})")
            elif args.action == "watch":
                async for item in client.watch_session(
                    _session_id(args.id), args.from_cursor, args.history_only
                ):
                    e = item.event
                    state = common_pb2.SessionState.Name(e.state).removeprefix("SESSION_STATE_")
                    _print(f"{e.cursor:>6} {state:<10} {e.type:<22} {e.data_json}")
        except RpcError as exc:
            _print(f"error: {exc.code.name}: {exc.details}")
            return 1
        except ValueError as exc:
            _print(f"error: {exc}")
            return 2
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentgpt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="start the local stack (and the demo session); Ctrl-C stops it",
        description="Start two anvil chains, an IPFS node, deploy the contracts, start the four "
        "services on loopback, wait until every one is SERVING, print the endpoints, "
        "run the demo session, and stop everything on Ctrl-C/SIGTERM.",
    )
    up.add_argument(
        "--workdir",
        default=str(DEFAULT_WORKDIR),
        help="where state, databases and logs go (default: %(default)s)",
    )
    up.add_argument(
        "--ports",
        default="50051",
        help="first gRPC port (session; then executor, recovery_oracle, indexer), or 'auto' for free ports (default: %(default)s)",
    )
    up.add_argument(
        "--metrics-base", type=int, default=9101, help="first /metrics port (default: %(default)s)"
    )
    up.add_argument(
        "--no-ipfs", action="store_true", help="use the embedded content store instead of an IPFS node"
    )
    up.add_argument("--no-demo", action="store_true", help="only start the stack")
    up.add_argument(
        "--exit-after-demo", action="store_true", help="stop the stack once the demo has finished"
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

    status = sub.add_parser("status", help="health of every service of the running local stack")
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
        help="look at sessions (inspect, get, list, tasks, watch) and, as their owner, drive them "
        "(create, edit-params, attach, activate, submit, add-budget, pause, resume, complete, terminate)",
    )
    target_options(session, None)
    ssub = session.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add_action(name: str, help: str) -> argparse.ArgumentParser:
        # the target options are accepted after the action too (`agentgpt session list --workdir X`)
        parser = ssub.add_parser(name, help=help)
        target_options(parser, argparse.SUPPRESS)
        return parser

    inspect = add_action("inspect", help="the session dashboard (seed section 7)")
    inspect.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
    inspect.add_argument(
        "--detail", choices=["summary", "full"], default="summary", help="full adds recent tasks and events"
    )
    inspect.add_argument("--json", action="store_true", help="the raw InspectSessionResponse as JSON")
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
    watch = add_action("watch", help="follow a session's events (Ctrl-C to stop)")
    watch.add_argument("id", help="session id: decimal token id, or 0x-prefixed hex")
    watch.add_argument("--from-cursor", type=int, default=0, help="resume after this event cursor")
    watch.add_argument("--history-only", action="store_true", help="stop after the recorded history")

    from agentgpt.cli import owner

    owner.add_actions(add_action)

    config = sub.add_parser("config", help="list every AGENTGPT_* setting with its default")
    config.add_argument("--markdown", action="store_true", help="as Markdown tables (for the README)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return asyncio.run(_up(args))
    if args.command == "status":
        return asyncio.run(_status(args))
    if args.command == "config":
        return _config(args)
    if args.command == "session":
        try:
            return asyncio.run(_session(args))
        except KeyboardInterrupt:
            return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
