"""The chaos run (`make chaos`): the full local stack on PostgreSQL under load while a seeded schedule of
faults hits it, then the invariants the product promises, checked from the records and from the chain.

    .venv/bin/python load/chaos.py [--seed N] [--duration 90] [--sessions 8] [--json FILE]

Faults, one at a time, every 1.5-4 s (the schedule is drawn from `--seed` before the run; the same seed
replays the same schedule):

- `kill`: SIGKILL of a service (session, indexer, recovery_oracle or an executor), restarted 0.5-3 s later
  (an executor 0.5-8 s later: past its 3 s lease about half the time, so the recovery oracle moves it);
- `stop`: SIGSTOP of a service for 1-5 s, then SIGCONT (its leases lapse while it is frozen);
- `ipfs`: the IPFS node killed and started again on the same repo and ports;
- `reorg`: the last 1-4 blocks of a chain replaced (anvil_reorg) by new blocks holding the same
  transactions, so every effect survives and every block hash changes (within the finality window).

Load: every session gets a stream of owner-signed tasks, alternating an off-chain report and an on-chain
`approve` through the session account whose amount is unique to the task; a submission whose answer is
lost, or that finds the session PAUSED by a recovery, is sent again with the same idempotency key.

Then, with every process back and the faults over, the invariants:

1. no acknowledged task lost: every acknowledged seq recorded once, SUCCEEDED, and succeeded once in the
   session's event log;
2. no on-chain effect twice, read from the chain: each session's budget charges tile its seqs (none paid
   twice, none skipped), and each approve's unique amount appears in exactly one Approval event;
3. the indexer's state equals a rebuild from the chain (a fresh follower into an empty database);
4. every session is ACTIVE with an executor running it, PAUSED with a recovery in progress, or final.

Last, a reorg past the finality window on the second chain: the indexer must halt that chain (and say
why) rather than serve a history it can no longer vouch for.

Exit 1 when an invariant fails; the report names the seed to replay with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_abi.abi import encode
from eth_account import Account
from prometheus_client import CollectorRegistry
from web3 import Web3

from agentgpt.clients import RecoveryClient, SessionClient
from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.contracts import load_artifact
from agentgpt.errors import RpcError
from agentgpt.network import ChainInfo, load_network
from agentgpt.owner import SessionOwner
from agentgpt.recovery.v1 import recovery_pb2 as rc
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.postgres import PostgresServer
from apps.localnet.stack import EXECUTOR_KEYS, OWNER_KEY, LocalStack, StackOptions
from load.run import DATABASES, FINAL, create_databases
from services.indexer.follower import ChainFollower, FollowerTuning
from services.indexer.metrics import IndexerMetrics
from services.indexer.rpc import ChainRpc
from services.indexer.store import IndexerStore

APPROVE = bytes.fromhex("095ea7b3")  # approve(address,uint256)
SPENDER = "0x" + "5a" * 20
SERVICES = ("session", "indexer", "recovery_oracle", "executor-1", "executor-2")
FAULTS = ("kill", "stop", "ipfs", "reorg")
LEASE_TTL = 3
REORG_KEY = EXECUTOR_KEYS[-1]  # the last executor's key: a stack of 2 executors never uses it
BUDGET = 50 * 10**18
OPEN_RECOVERY = {
    rc.RECOVERY_STATUS_DETECTED,
    rc.RECOVERY_STATUS_PAUSED,
    rc.RECOVERY_STATUS_VERIFYING,
    rc.RECOVERY_STATUS_REHYDRATING,
    rc.RECOVERY_STATUS_REASSIGNING,
}
FINAL_STATES = {cpb.SESSION_STATE_COMPLETED, cpb.SESSION_STATE_TERMINATED}
RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "FAILED_PRECONDITION", "INTERNAL", "UNKNOWN", "ABORTED"}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the load starts
    kind: str  # one of FAULTS
    target: str  # a service name, "ipfs" or a chain name
    hold: float  # seconds stopped / dead before coming back; blocks for a reorg


def schedule(seed: int, duration: float, chains: tuple[str, ...]) -> list[Fault]:
    """The faults of a run, from its seed alone."""
    rnd = random.Random(seed)
    faults: list[Fault] = []
    at = rnd.uniform(2.0, 4.0)
    while at < duration:
        kind = rnd.choices(FAULTS, weights=(4, 3, 1, 2))[0]
        if kind == "kill":
            target = rnd.choice(SERVICES)
            # an executor stays dead past its lease (3 s) about half the time, so recoveries run
            hold = rnd.uniform(0.5, 8.0) if target.startswith("executor") else rnd.uniform(0.5, 3.0)
            faults.append(Fault(round(at, 2), kind, target, round(hold, 2)))
        elif kind == "stop":
            faults.append(Fault(round(at, 2), kind, rnd.choice(SERVICES), round(rnd.uniform(1.0, 5.0), 2)))
        elif kind == "ipfs":
            faults.append(Fault(round(at, 2), kind, "ipfs", round(rnd.uniform(0.5, 2.0), 2)))
        else:
            faults.append(Fault(round(at, 2), kind, rnd.choice(chains), float(rnd.randint(1, 4))))
        at += faults[-1].hold + rnd.uniform(1.5, 4.0)
    return faults


def progress(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def spec_yaml(agpt: str) -> str:
    return (
        "type: treasury_management\n"
        "params:\n"
        "  chains: [arbitrum, polygon]\n"
        "  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}\n"
        f"  allowlist: [{{target: '{agpt}', selector: '0x{APPROVE.hex()}'}}]\n"
        "checkpoint_interval: 3\n"
    )


@dataclass
class Acked:
    seq: int
    kind: str
    amount: int = 0  # the approve's unique amount; 0 for a report


@dataclass
class Run:
    seed: int
    stack: LocalStack
    client: SessionClient
    owner: SessionOwner
    agpt: str
    acked: dict[str, list[Acked]] = field(default_factory=dict)
    submit_retries: int = 0
    submit_errors: list[str] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)


# ---------------------------------------------------------------------------------------------- faults


async def restart(run: Run, name: str) -> None:
    proc = run.stack.services[name]
    if proc.alive():
        return
    proc.start()
    await asyncio.to_thread(proc.wait_ready, 90)


def signal_service(run: Run, name: str, sig: signal.Signals) -> bool:
    proc = run.stack.services[name]
    if proc.pid is None or not proc.alive():
        return False
    os.kill(proc.pid, sig)
    return True


@contextlib.contextmanager
def frozen(node: Any) -> Iterator[None]:
    """No block is mined on `node` but those asked for (what is sent meanwhile waits in the mempool)."""
    node.rpc("evm_setAutomine", [False])
    try:
        yield
    finally:
        node.rpc("evm_setAutomine", [True])
        node.rpc("evm_mine", [])  # whatever was sent meanwhile


def replace_blocks(node: Any, depth: int) -> dict[str, Any]:
    """Replace the last `depth` blocks with new ones holding the same transactions, in the same order
    (call it frozen: a block mined between reading the blocks and replacing them would be lost)."""
    head = int(node.rpc("eth_blockNumber", []), 16)
    depth = min(depth, head - 1)
    # A transaction of a dev account the stack does not use goes first: without it, empty blocks re-mined
    # in the same second come out with the same hashes, and nothing would have changed.
    marker = Account.from_key(REORG_KEY)
    nonce = int(node.rpc("eth_getTransactionCount", [marker.address, hex(head - depth)]), 16)
    tx = {
        "to": marker.address,
        "value": 0,
        "gas": 21_000,
        "maxFeePerGas": 200 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "nonce": nonce,
        "chainId": int(node.rpc("eth_chainId", []), 16),
    }
    raw: list[list[Any]] = [["0x" + bytes(marker.sign_transaction(tx).raw_transaction).hex(), 0]]
    for number in range(head - depth + 1, head + 1):
        block = node.rpc("eth_getBlockByNumber", [hex(number), False])
        for tx_hash in block["transactions"]:
            raw.append([node.rpc("eth_getRawTransactionByHash", [tx_hash]), 0])
    node.rpc("anvil_reorg", [depth, raw])
    return {"head": head, "depth": depth, "transactions": len(raw) - 1}


def reorg(node: Any, depth: int) -> dict[str, Any]:
    with frozen(node):
        return replace_blocks(node, depth)


async def apply(run: Run, fault: Fault) -> None:
    stack = run.stack
    entry: dict[str, Any] = asdict(fault)
    if fault.kind == "kill":
        entry["done"] = signal_service(run, fault.target, signal.SIGKILL)
        if entry["done"]:
            await asyncio.to_thread(stack.services[fault.target].wait, 10)
        await asyncio.sleep(fault.hold)
        await restart(run, fault.target)
    elif fault.kind == "stop":
        entry["done"] = signal_service(run, fault.target, signal.SIGSTOP)
        if entry["done"]:
            run.stopped.add(fault.target)
            await asyncio.sleep(fault.hold)
            signal_service(run, fault.target, signal.SIGCONT)
            run.stopped.discard(fault.target)
    elif fault.kind == "ipfs":
        pid = stack.ipfs.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(fault.hold)
        await asyncio.to_thread(stack.ipfs.stop)
        await asyncio.to_thread(stack.ipfs.start)
        entry["done"] = True
    else:
        names = [name for name, _ in stack.options.chains]
        node = stack.anvils[names.index(fault.target)]
        entry.update(await asyncio.to_thread(reorg, node, int(fault.hold)))
        entry["done"] = True
    run.applied.append(entry)
    progress(
        f"{fault.kind} {fault.target} ({fault.hold}): {'done' if entry['done'] else 'not running, skipped'}"
    )


async def inject(run: Run, faults: list[Fault], t0: float) -> None:
    for fault in faults:
        await asyncio.sleep(max(0.0, t0 + fault.at - time.monotonic()))
        try:
            await apply(run, fault)
        except Exception as exc:  # a fault that could not be applied is reported, not fatal
            run.applied.append({**asdict(fault), "error": repr(exc)})
            progress(f"{fault.kind} {fault.target}: could not be applied: {exc!r}")


async def heal(run: Run) -> None:
    """Every process running again, nothing frozen."""
    for name in list(run.stopped):
        signal_service(run, name, signal.SIGCONT)
    run.stopped.clear()
    for name in SERVICES:
        await restart(run, name)
    if not run.stack.ipfs.running:
        await asyncio.to_thread(run.stack.ipfs.stop)
        await asyncio.to_thread(run.stack.ipfs.start)
    await run.stack.wait_serving(90)


# ------------------------------------------------------------------------------------------------ load


async def submit_one(run: Run, sid: str, k: int) -> None:
    """Task k of session sid: a report when k is even, an approve of a unique amount when odd."""
    if k % 2:
        amount = int(sid) * 1_000_000 + k
        data = APPROVE + encode(["address", "uint256"], [SPENDER, amount])
        task: tuple[str, dict[str, Any]] = (
            "call",
            {"chain": "arbitrum", "target": run.agpt, "value": 0, "data": "0x" + data.hex()},
        )
    else:
        amount = 0
        task = ("publish_report", {"title": f"chaos {run.seed} report {k}"})
    key = f"chaos-{run.seed}-{sid}-{k}"
    deadline = time.monotonic() + 120
    while True:
        try:
            resp = await run.owner.submit(sid, [task], idempotency_key=key)
        except RpcError as exc:
            if exc.code.name in RETRYABLE and time.monotonic() < deadline:
                run.submit_retries += 1
                await asyncio.sleep(0.3)
                continue
            run.submit_errors.append(f"submit {sid}/{k}: {exc}")
            return
        for seq in resp.task_seqs:
            run.acked.setdefault(sid, []).append(Acked(seq, task[0], amount))
        return


async def load(run: Run, sid: str, until: float, rnd: random.Random) -> None:
    k = 0
    while time.monotonic() < until:
        await submit_one(run, sid, k)
        k += 1
        await asyncio.sleep(rnd.uniform(0.2, 1.0))


# ------------------------------------------------------------------------------------------ invariants


async def all_tasks(run: Run, sid: str) -> list[ss.Task]:
    resp = await run.client.list_tasks(ss.ListTasksRequest(session_id=sid, page_size=1000))
    return list(resp.tasks)


async def wait_final(run: Run, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = 0
        for sid, acked in run.acked.items():
            try:
                statuses = {t.seq: t.status for t in await all_tasks(run, sid)}
            except RpcError:
                pending += 1
                continue
            pending += sum(1 for a in acked if statuses.get(a.seq) not in FINAL)
        progress(f"waiting for the acknowledged tasks to finish: {pending} not final")
        if not pending:
            return
        await asyncio.sleep(3)


async def check_tasks(run: Run) -> list[str]:
    broken: list[str] = []
    for sid, acked in run.acked.items():
        tasks = await all_tasks(run, sid)
        seqs = [t.seq for t in tasks]
        if len(seqs) != len(set(seqs)):
            broken.append(f"session {sid}: a seq recorded twice")
        by_seq = {t.seq: t for t in tasks}
        for a in acked:
            t = by_seq.get(a.seq)
            if t is None:
                broken.append(f"session {sid}: acknowledged task {a.seq} is not recorded")
            elif t.status != ss.TASK_STATUS_SUCCEEDED:
                broken.append(f"session {sid}: task {a.seq} {ss.TaskStatus.Name(t.status)}: {t.error}")
        req = ss.WatchSessionRequest(session_id=sid, history_only=True)
        succeeded = [
            json.loads(r.event.data_json)["seq"]
            async for r in run.client.stream("WatchSession", req, timeout=30)
            if r.event.type == "task_succeeded"
        ]
        if sorted(succeeded) != sorted(set(succeeded)):
            broken.append(f"session {sid}: a task succeeded twice in the event log")
    return broken


async def check_chain(run: Run, home: ChainInfo) -> list[str]:
    broken: list[str] = []
    w3 = Web3(Web3.HTTPProvider(home.rpc_url, request_kwargs={"timeout": 30}))
    factory = w3.eth.contract(
        address=Web3.to_checksum_address(home.contracts["SessionFactory"]),
        abi=load_artifact("SessionFactory").abi,
    )
    token = w3.eth.contract(address=Web3.to_checksum_address(run.agpt), abi=load_artifact("AGPT").abi)
    for sid, acked in run.acked.items():
        count = max((a.seq for a in acked), default=0)
        for _ in range(90):  # the charges trail the records by a settlement
            if factory.functions.budgetOf(int(sid)).call()[2] >= count:
                break
            await asyncio.sleep(1)
        charges = factory.events.BudgetCharged().get_logs(
            from_block=0, argument_filters={"sessionId": int(sid)}
        )
        ranges = sorted((int(c["args"]["fromSeq"]), int(c["args"]["throughSeq"])) for c in charges)
        covered = [seq for lo, hi in ranges for seq in range(lo + 1, hi + 1)]
        if covered != list(range(1, len(covered) + 1)) or len(covered) < count:
            broken.append(f"session {sid}: budget charges {ranges} do not tile seqs 1..{count}")
        account = factory.functions.accountOf(int(sid)).call()
        approvals = token.events.Approval().get_logs(from_block=0, argument_filters={"owner": account})
        seen = sorted(int(a["args"]["value"]) for a in approvals)
        wanted = sorted(a.amount for a in acked if a.kind == "call")
        if seen != wanted:
            broken.append(
                f"session {sid}: approvals on chain {seen} != one per acknowledged approve {wanted}"
            )
    return broken


async def rebuilt(chain: ChainInfo, up_to: int) -> list[tuple[Any, ...]]:
    """The chain indexed from its start into a new database by a follower of its own."""
    store = await IndexerStore.open(f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='chaos-rebuild-')}/ix.db")
    rpc = ChainRpc(chain.rpc_url, timeout=10.0)
    try:
        follower = ChainFollower(chain, store, rpc, IndexerMetrics(CollectorRegistry()), FollowerTuning())
        await follower.load()
        await follower.catch_up()
        return await store.canonical_snapshot(chain.chain_id, up_to)
    finally:
        await rpc.close()
        await store.close()


async def check_index(indexer_url: str, chains: tuple[ChainInfo, ...]) -> tuple[list[str], dict[str, Any]]:
    broken: list[str] = []
    figures: dict[str, Any] = {}
    store = await IndexerStore.open(indexer_url)
    try:
        for chain in chains:
            w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
            head = int(w3.eth.block_number)
            deadline = time.monotonic() + 90
            cursor = await store.cursor(chain.chain_id, chain.deploy_block)
            while cursor.next_block <= head and time.monotonic() < deadline and not cursor.halted:
                await asyncio.sleep(1)
                cursor = await store.cursor(chain.chain_id, chain.deploy_block)
            if cursor.halted:
                broken.append(f"{chain.name}: the indexer halted: {cursor.halt_reason}")
                continue
            if cursor.next_block <= head:
                broken.append(
                    f"{chain.name}: the indexer is at block {cursor.next_block - 1}, the chain at {head}"
                )
                continue
            served = await store.canonical_snapshot(chain.chain_id, head)
            fresh = await rebuilt(chain, head)
            figures[chain.name] = {"events": len(served), "reorgs_seen": cursor.reorgs_total, "head": head}
            if served != fresh:
                only_served = sorted(set(served) - set(fresh))[:3]
                only_fresh = sorted(set(fresh) - set(served))[:3]
                broken.append(
                    f"{chain.name}: indexed state ({len(served)} events) != rebuild from the chain "
                    f"({len(fresh)}): only indexed {only_served}, only rebuilt {only_fresh}"
                )
    finally:
        await store.close()
    return broken, figures


async def check_states(run: Run) -> tuple[list[str], dict[str, int]]:
    broken: list[str] = []
    states: dict[str, int] = {}
    async with RecoveryClient(run.stack.services["recovery_oracle"].grpc) as oracle:
        for sid in run.acked:
            deadline = time.monotonic() + 60
            while True:
                session = await run.owner.get(sid)
                name = cpb.SessionState.Name(session.state)
                if session.state == cpb.SESSION_STATE_ACTIVE:
                    ok = await run.stack.holder_of(sid) is not None
                    why = "ACTIVE but no executor runs it"
                elif session.state == cpb.SESSION_STATE_PAUSED:
                    recs = await oracle.list_recoveries(rc.ListRecoveriesRequest(session_id=sid))
                    ok = any(r.status in OPEN_RECOVERY for r in recs.recoveries)
                    why = f"PAUSED ({session.state_reason}) with no recovery in progress"
                else:
                    ok = session.state in FINAL_STATES
                    why = f"in state {name}"
                if ok or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            states[name] = states.get(name, 0) + 1
            if not ok:
                broken.append(f"session {sid}: {why}")
    return broken, states


async def deep_reorg(indexer_url: str, stack: LocalStack, chain: ChainInfo) -> list[str]:
    """A reorg deeper than the finality window on `chain` (its transactions kept, every block hash
    changed): the indexer must halt the chain, saying why. The chain is frozen meanwhile, so the reorg
    replaces exactly the blocks the indexer holds."""
    names = [name for name, _ in stack.options.chains]
    node = stack.anvils[names.index(chain.name)]
    depth = chain.finality_window + 3
    store = await IndexerStore.open(indexer_url)
    try:
        with frozen(node):
            await asyncio.to_thread(node.rpc, "anvil_mine", [hex(depth + 2)])
            head = int(await asyncio.to_thread(node.rpc, "eth_blockNumber", []), 16)
            for _ in range(120):
                if (await store.cursor(chain.chain_id, chain.deploy_block)).next_block > head:
                    break
                await asyncio.sleep(0.5)
            else:
                return [f"{chain.name}: the indexer did not reach block {head} before the deep reorg"]
            await asyncio.to_thread(replace_blocks, node, depth)
        for _ in range(120):
            cursor = await store.cursor(chain.chain_id, chain.deploy_block)
            if cursor.halted:
                progress(
                    f"reorg of {depth} blocks on {chain.name}: the indexer halted it ({cursor.halt_reason})"
                )
                return []
            await asyncio.sleep(0.5)
        return [
            f"{chain.name}: a reorg of {depth} blocks (window {chain.finality_window}) did not halt the indexer"
        ]
    finally:
        await store.close()


# ------------------------------------------------------------------------------------------------- run


async def chaos(pg: PostgresServer, seed: int, duration: float, sessions: int) -> dict[str, Any]:
    assert pg.port is not None
    await create_databases(pg.port)
    base = pg.url.rsplit("/", 1)[0]
    urls = {svc: f"{base}/{name}" for svc, name in DATABASES.items()}
    env: dict[str, dict[str, str]] = {svc: {"AGENTGPT_DATABASE_URL": url} for svc, url in urls.items()}
    env["executor"] = {
        "AGENTGPT_CAPACITY": str(sessions),
        "AGENTGPT_POLL_INTERVAL": "0.2",
        "AGENTGPT_LEASE_TTL": str(LEASE_TTL),
    }
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    stack = LocalStack(
        StackOptions(workdir=workdir, base_port=0, metrics_base=0, executors=2, arweave=False, extra_env=env),
        progress=progress,
    )
    await stack.start()
    network = load_network(str(workdir / "network.json"))
    home = network.home
    client = SessionClient(stack.services["session"].grpc, identity="chaos")
    owner = SessionOwner(OWNER_KEY, home, client)
    run = Run(seed, stack, client, owner, home.contracts["AGPT"])
    rnd = random.Random(seed ^ 0x5EED)
    try:
        executors = [Account.from_key(k).address for k in EXECUTOR_KEYS[:2]]
        for i in range(sessions):
            s = await owner.create(spec_yaml(run.agpt), BUDGET, idempotency_key=f"chaos-{seed}-create-{i}")
            await owner.activate(s.session_id, executors[i % 2])
            run.acked[s.session_id] = []
        progress(f"{sessions} sessions active; load and faults for {duration:.0f} s (seed {seed})")
        faults = schedule(seed, duration, tuple(name for name, _ in stack.options.chains))
        t0 = time.monotonic()
        until = t0 + duration
        await asyncio.gather(
            inject(run, faults, t0), *(load(run, sid, until, rnd) for sid in list(run.acked))
        )
        acked = sum(len(v) for v in run.acked.values())
        progress(f"faults over: {len(run.applied)} applied, {acked} tasks acknowledged; healing")
        await heal(run)
        await wait_final(run, timeout=240)
        t_checks = time.monotonic()
        invariants: dict[str, list[str]] = {}
        invariants["no_acknowledged_task_lost"] = await check_tasks(run)
        invariants["no_onchain_effect_twice"] = await check_chain(run, home)
        index_broken, index_figures = await check_index(urls["indexer"], network.chains)
        invariants["index_equals_rebuild"] = index_broken
        state_broken, states = await check_states(run)
        invariants["sessions_active_paused_or_final"] = state_broken
        invariants["deep_reorg_halts_the_indexer"] = await deep_reorg(
            urls["indexer"], stack, network.chains[1]
        )
        async with RecoveryClient(stack.services["recovery_oracle"].grpc) as oracle:
            recoveries = [
                r
                for sid in run.acked
                for r in (await oracle.list_recoveries(rc.ListRecoveriesRequest(session_id=sid))).recoveries
            ]
        return {
            "seed": seed,
            "replay": f"make chaos CHAOS_ARGS='--seed {seed} --duration {duration:g} --sessions {sessions}'",
            "duration_s": duration,
            "sessions": sessions,
            "tasks_acknowledged": acked,
            "tasks_by_kind": {
                kind: sum(1 for v in run.acked.values() for a in v if a.kind == kind)
                for kind in ("publish_report", "call")
            },
            "submit_retries": run.submit_retries,
            "submit_errors": run.submit_errors[:10],
            "faults": run.applied,
            "faults_by_kind": {k: sum(1 for f in run.applied if f["kind"] == k) for k in FAULTS},
            "recoveries": {
                rc.RecoveryStatus.Name(s): sum(1 for r in recoveries if r.status == s)
                for s in sorted({r.status for r in recoveries})
            },
            "session_states": states,
            "index": index_figures,
            "checks_s": round(time.monotonic() - t_checks, 1),
            "invariants": {name: {"ok": not v, "violations": v[:10]} for name, v in invariants.items()},
            "ok": not any(invariants.values()) and not run.submit_errors,
        }
    finally:
        for name in list(run.stopped):
            signal_service(run, name, signal.SIGCONT)
        await owner.close()
        await client.close()
        await stack.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, help="the fault schedule's seed (default: a new one, printed)")
    p.add_argument("--duration", type=float, default=90.0, help="seconds of load and faults (default 90)")
    p.add_argument("--sessions", type=int, default=8, help="concurrent sessions (default 8)")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--schedule", action="store_true", help="print the seed's fault schedule and exit")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    if args.schedule:
        for f in schedule(seed, args.duration, ("arbitrum", "polygon")):
            print(json.dumps(asdict(f)))
        return 0
    progress(f"seed {seed} (replay with --seed {seed})")
    with PostgresServer() as pg:
        report = asyncio.run(chaos(pg, seed, args.duration, args.sessions))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    held = [name for name, v in report["invariants"].items() if v["ok"]]
    failed = [name for name, v in report["invariants"].items() if not v["ok"]]
    print(
        f"seed {seed}: {len(report['faults'])} faults, {report['tasks_acknowledged']} tasks; invariants held: "
        f"{', '.join(held) or 'none'}; broken: {', '.join(failed) or 'none'}"
        + (f"; {len(report['submit_errors'])} submissions failed" if report["submit_errors"] else "")
        + f": {'OK' if report['ok'] else 'FAILED (replay: ' + report['replay'] + ')'}",
        file=sys.stderr,
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
