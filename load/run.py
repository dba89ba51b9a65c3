"""The load run (`make load`): many concurrent sessions with tasks through the full local stack on
PostgreSQL, then what was acknowledged checked against what was recorded.

    .venv/bin/python load/run.py [--sessions 1000] [--tasks 3] [--concurrency 64] [--json FILE]

Starts PostgreSQL (one database per service), the local stack (two anvil chains, the IPFS node, the four
services, two executors with room for every session) and one owner; creates and activates `--sessions`
sessions (relayed, owner-signed, on chain), then submits `--tasks` off-chain tasks to every session at
once (`--concurrency` requests in flight) and waits until every task is final. Reports:

- completed == recorded: every acknowledged task is in SessionDB, SUCCEEDED, exactly once (by seq);
- errors (RPC failures, tasks FAILED or REFUSED) and p50 / p99 of create+activate, SubmitTasks and
  submit-to-SUCCEEDED;
- growth of SessionDB and of the indexer's store per task (pg_database_size before and after the tasks).

Exit 1 if anything acknowledged is missing or any error occurred.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from eth_account import Account
from web3 import Web3

from agentgpt.clients import SessionClient
from agentgpt.contracts import load_artifact
from agentgpt.errors import RpcError
from agentgpt.network import load_network
from agentgpt.owner import SessionOwner
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.postgres import DB_ROLE, PostgresServer
from apps.localnet.stack import EXECUTOR_KEYS, OWNER_KEY, LocalStack, StackOptions

SPEC = """\
type: load_test
params:
  chains: [arbitrum, polygon]
  models: {execution: web3-agent-v4}
checkpoint_interval: 50
"""
FINAL = frozenset({ss.TASK_STATUS_SUCCEEDED, ss.TASK_STATUS_FAILED, ss.TASK_STATUS_REFUSED})
OWNERS = 8
RETRIES = 8
BUDGET = 10**18
DATABASES = {"session": "load_sessions", "indexer": "load_indexer", "recovery_oracle": "load_recoveries"}


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": pct(values, 0.5) * 1e3, "p99_ms": pct(values, 0.99) * 1e3}


async def db_sizes(port: int) -> dict[str, int]:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=DB_ROLE, database="postgres")
    try:
        return {
            svc: int(await conn.fetchval("SELECT pg_database_size($1)", name))
            for svc, name in DATABASES.items()
        }
    finally:
        await conn.close()


async def create_databases(port: int) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=DB_ROLE, database="postgres")
    try:
        for name in DATABASES.values():
            await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


def fund_owners(rpc_url: str, agpt: str, keys: list[str], amount: int) -> None:
    """AGPT for the extra owners, sent by the demo owner (a dev account with ETH) itself."""
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    token = w3.eth.contract(address=Web3.to_checksum_address(agpt), abi=load_artifact("AGPT").abi)
    payer = Account.from_key(OWNER_KEY)
    for key in keys:
        fn = token.functions.transfer(Account.from_key(key).address, amount)
        tx = fn.build_transaction(
            {"from": payer.address, "nonce": w3.eth.get_transaction_count(payer.address)}
        )
        sent = w3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
        assert w3.eth.wait_for_transaction_receipt(sent)["status"] == 1


def progress(msg: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def run(pg: PostgresServer, sessions: int, tasks: int, concurrency: int) -> dict[str, Any]:
    assert pg.port is not None
    await create_databases(pg.port)
    base = pg.url.rsplit("/", 1)[0]
    env = {svc: {"AGENTGPT_DATABASE_URL": f"{base}/{name}"} for svc, name in DATABASES.items()}
    # An idle runner reads its session's queue every poll interval (two reads): at 0.2 s, 1,000 sessions
    # would ask the session service 10,000 times a second. One read per session every sessions/250 s.
    poll = max(0.2, sessions / 250)
    env["executor"] = {"AGENTGPT_CAPACITY": str(sessions), "AGENTGPT_POLL_INTERVAL": f"{poll:g}"}
    workdir = Path(tempfile.mkdtemp(prefix="load-"))
    stack = LocalStack(
        StackOptions(workdir=workdir, base_port=0, metrics_base=0, executors=2, arweave=False, extra_env=env),
        progress=progress,
    )
    await stack.start()
    client = SessionClient(stack.services["session"].grpc, identity="load")
    home = load_network(str(workdir / "network.json")).home
    # One owner's signatures use consecutive nonces, so each owner creates one session at a time: OWNERS
    # owners (the demo owner and fresh keys it pays AGPT to, in transactions of its own) create in parallel.
    keys = [OWNER_KEY] + ["0x" + secrets.token_hex(32) for _ in range(OWNERS - 1)]
    await asyncio.to_thread(
        fund_owners, home.rpc_url, home.contracts["AGPT"], keys[1:], BUDGET * (sessions // OWNERS + 1)
    )
    owners = [SessionOwner(k, home, client) for k in keys]
    errors: list[str] = []
    try:
        executors = [
            Account.from_key(k).address for k in EXECUTOR_KEYS[:2]
        ]  # the sessions split between them
        by_session: dict[str, SessionOwner] = {}
        setup_s: list[float] = []
        t_setup = time.perf_counter()

        async def create_as(who: SessionOwner, count: int) -> None:
            for _ in range(count):
                t0 = time.perf_counter()
                try:
                    s = await who.create(SPEC, BUDGET)
                    await who.activate(s.session_id, executors[int(s.session_id) % 2])
                    by_session[s.session_id] = who
                    setup_s.append(time.perf_counter() - t0)
                except Exception as exc:
                    errors.append(f"create/activate: {exc}")
                    continue
                if len(by_session) % 100 == 0:
                    progress(
                        f"{len(by_session)}/{sessions} sessions active ({time.perf_counter() - t_setup:.0f} s)"
                    )

        share = [sessions // OWNERS + (1 if i < sessions % OWNERS else 0) for i in range(OWNERS)]
        await asyncio.gather(*(create_as(o, n) for o, n in zip(owners, share, strict=True)))
        created = list(by_session)
        before = await db_sizes(pg.port)
        gate = asyncio.Semaphore(concurrency)
        submitted: dict[str, list[int]] = {}
        submit_s: list[float] = []
        acked_at: dict[tuple[str, int], float] = {}

        retries: list[str] = []

        async def submit(sid: str, k: int) -> None:
            # as a client should: a submission whose answer was lost is sent again with the same
            # idempotency key (backing off, outside the gate), and must then be recorded once
            key = f"load-{sid}-{k}"
            for attempt in range(RETRIES):
                async with gate:
                    t0 = time.perf_counter()
                    try:
                        resp = await by_session[sid].submit(
                            sid, [("load_note", {"n": k})], idempotency_key=key
                        )
                    except RpcError as exc:
                        if (
                            exc.code.name not in ("DEADLINE_EXCEEDED", "UNAVAILABLE")
                            or attempt + 1 == RETRIES
                        ):
                            errors.append(f"submit {sid}/{k}: {exc}")
                            return
                        retries.append(f"{sid}/{k}: {exc.code.name}")
                        resp = None
                    else:
                        submit_s.append(time.perf_counter() - t0)
                if resp is None:
                    await asyncio.sleep(min(5.0, 0.25 * 2**attempt))
                    continue
                for seq in resp.task_seqs:
                    submitted.setdefault(sid, []).append(seq)
                    acked_at[(sid, seq)] = time.perf_counter()
                return

        t_load = time.perf_counter()
        await asyncio.gather(*(submit(sid, k) for k in range(tasks) for sid in created))
        acked = sum(len(v) for v in submitted.values())
        progress(
            f"{acked} tasks acknowledged in {time.perf_counter() - t_load:.1f} s; waiting for them to run"
        )
        done_s: list[float] = []
        read_errors: list[str] = []
        pending = dict(submitted)
        recorded = 0
        deadline = time.monotonic() + max(300.0, 0.5 * acked)
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(1.0)

            async def read(sid: str) -> tuple[str, ss.ListTasksResponse | None]:
                async with gate:
                    try:
                        return sid, await client.list_tasks(
                            ss.ListTasksRequest(session_id=sid, page_size=1000)
                        )
                    except RpcError as exc:  # a busy service: this session is read again next round
                        read_errors.append(f"{sid}: {exc.code.name}")
                        return sid, None

            # every pending session read at once (`concurrency` in flight): one by one, a pass over 1,000
            # sessions of a saturated service took longer than the tasks
            for sid, resp in await asyncio.gather(*(read(sid) for sid in list(pending))):
                if resp is None:
                    continue
                statuses = {t.seq: t for t in resp.tasks}
                if all(q in statuses and statuses[q].status in FINAL for q in pending[sid]):
                    now = time.perf_counter()
                    for q in pending[sid]:
                        t = statuses[q]
                        if t.status == ss.TASK_STATUS_SUCCEEDED:
                            recorded += 1
                            done_s.append(now - acked_at[(sid, q)])
                        else:
                            errors.append(f"task {sid}/{q} {ss.TaskStatus.Name(t.status)}: {t.error}")
                    if len(resp.tasks) != len(set(statuses)):
                        errors.append(f"session {sid}: a seq recorded twice")
                    del pending[sid]
            progress(f"{acked - sum(len(v) for v in pending.values())}/{acked} tasks final")
        elapsed = time.perf_counter() - t_load
        after = await db_sizes(pg.port)
        lost = sum(len(v) for v in pending.values())
        if lost:
            errors.append(f"{lost} acknowledged tasks not final before the deadline")
        total = sum(len(v) for v in submitted.values())
        if total != len({(sid, q) for sid, seqs in submitted.items() for q in seqs}):
            errors.append("a task seq was acknowledged twice")
        return {
            "sessions": len(created),
            "executor_poll_interval_s": poll,
            "tasks_acknowledged": acked,
            "tasks_completed": recorded,
            "completed_equals_recorded": recorded == acked and not lost,
            "errors": len(errors),
            "submit_retries": len(retries),
            "status_read_retries": len(read_errors),
            "error_samples": errors[:10],
            "tasks_per_s": recorded / elapsed if elapsed else 0.0,
            "create_activate": spread(setup_s),
            "submit_rpc": spread(submit_s),
            "submit_to_succeeded": spread(done_s),
            "db_bytes_per_task": {k: (after[k] - before[k]) / max(1, acked) for k in DATABASES},
            "db_bytes": after,
        }
    finally:
        for o in owners:
            await o.close()
        await client.close()
        await stack.stop()


def _stop_on_sigterm(*_: object) -> None:
    raise KeyboardInterrupt  # as Ctrl-C: the run's `finally` stops the stack and PostgreSQL


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=1000, help="concurrent sessions (default 1000)")
    p.add_argument("--tasks", type=int, default=3, help="tasks per session (default 3)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args()
    with PostgresServer() as pg:
        report = asyncio.run(run(pg, args.sessions, args.tasks, args.concurrency))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = report["completed_equals_recorded"] and report["errors"] == 0
    print(
        f"{report['tasks_completed']}/{report['tasks_acknowledged']} tasks of {report['sessions']} sessions "
        f"completed and recorded; {report['errors']} errors; submit p99 {report['submit_rpc']['p99_ms']:.0f} ms; "
        f"SessionDB {report['db_bytes_per_task']['session']:.0f} B/task, indexer "
        f"{report['db_bytes_per_task']['indexer']:.0f} B/task: {'OK' if ok else 'FAILED'}",
        file=sys.stderr,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
