"""Executor throughput: off-chain tasks per second through the whole task pipeline, one executor.

Runs N off-chain tasks of one session with the built-in planner through the real engine (SessionRunner:
plan, decorators ofac_filter + kyc_tier4 + gas_optimizer_v3 (which pass off-chain plans through), budget
check, signed hash-chained log entry, the state update committed through the session port before the next
task, a checkpoint every 50 tasks to an embedded content store), against a baseline measured in the same
run: the bare planner call loop (`BuiltinPlanner.plan_sync`) on the same tasks. Prints absolute tasks/s and
the ratio (the machine is shared and noisy: compare ratios).

The session port here is in-memory (what the engine needs from the session service, without gRPC), so the
figure is the executor's own capacity; a run over gRPC is the component tests' business.

    .venv/bin/python bench/executor_tasks.py [--tasks 5000] [--checkpoint-cost 30] [--json PATH]

--checkpoint-cost N (default 30; 0 skips it) adds the executor's share of the checkpoint-cost question (the IPFS side alone is
bench/ipfs_checkpoint.py): on a real anvil + IPFS node, for N checkpoints of 50 signed log entries,
raw IPFS add of the encoded bytes (baseline) vs Checkpointer.make (encode + add + CID check), plaintext
and sealed (the default: the body under the session's key, wrapped to owner and executor), vs sealed make
+ SessionFactory.anchorCheckpoint mined (1 confirmation), interleaved; medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit
from benchkit import Figure

from agentgpt.common.v1 import common_pb2 as cpb
from agentgpt.ipfs import EmbeddedStore
from agentgpt.runtime.config import load
from agentgpt.session.v1 import session_pb2 as ss
from services.executor.app import build_parts
from services.executor.config import ExecutorConfig
from services.executor.plan import TaskRequest
from services.executor.planners import BuiltinPlanner, SessionView

KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
DONE = {ss.TASK_STATUS_SUCCEEDED, ss.TASK_STATUS_FAILED, ss.TASK_STATUS_REFUSED}


class MemoryPort:
    """The SessionPort contract in memory: one ACTIVE session, its queue, leases and reports."""

    def __init__(self, n_tasks: int) -> None:
        spec = ss.SessionSpec(
            type="bench", decorators=["ofac_filter", "kyc_tier4", "gas_optimizer_v3"], checkpoint_interval=50
        )
        self.record = ss.Session(
            session_id="1",
            owner="0x" + "11" * 20,
            state=cpb.SESSION_STATE_ACTIVE,
            spec=spec,
            budget=str(10**30),
            budget_spent="0",
        )
        self.queue = {
            i: ss.Task(
                session_id="1",
                seq=i,
                status=ss.TASK_STATUS_QUEUED,
                input=ss.TaskInput(kind="count", args_json=json.dumps({"i": i})),
            )
            for i in range(1, n_tasks + 1)
        }
        self.done = 0
        self.finished = asyncio.Event()
        self.checkpoints = 0

    async def claim(self, executor_id: str, session_id: str, ttl: int, address: str = "") -> ss.Lease | None:
        if self.record.lease_epoch:
            return None
        self.record.lease_epoch = 1
        return ss.Lease(session_id="1", executor_id=executor_id, epoch=1)

    async def renew(self, lease: ss.Lease, ttl: int) -> ss.Lease:
        return lease

    async def release(self, lease: ss.Lease) -> None:
        return None

    async def session(self, session_id: str) -> ss.Session:
        return self.record

    async def tasks(self, session_id: str, after_seq: int) -> list[ss.Task]:
        return [self.queue[s] for s in range(after_seq + 1, min(after_seq + 500, len(self.queue)) + 1)]

    async def report(self, lease: ss.Lease, task: ss.Task) -> None:
        stored = ss.Task()
        stored.CopyFrom(task)  # what a durable store does with the message
        self.queue[task.seq] = stored
        if task.status in DONE:
            self.done += 1
            if self.done == len(self.queue):
                self.finished.set()

    async def record_checkpoint(self, lease: ss.Lease, checkpoint: cpb.Checkpoint) -> None:
        self.checkpoints += 1


def baseline(n: int) -> float:
    planner = BuiltinPlanner()
    view = SessionView("1")
    tasks = [TaskRequest("1", i, "count", json.loads(json.dumps({"i": i}))) for i in range(1, n + 1)]
    start = time.perf_counter()
    for t in tasks:
        planner.plan_sync(t, view)
    return n / (time.perf_counter() - start)


async def engine_run(n: int, tmp: Path, port: Any = None) -> tuple[float, int]:
    port = port or MemoryPort(n)
    config = load(ExecutorConfig, env={}, executor_key=KEY, poll_interval=0.01, ipfs_embedded_dir=str(tmp))
    parts = build_parts(config, port, store=EmbeddedStore(tmp))
    start = time.perf_counter()
    job = asyncio.create_task(parts.engine.run())
    await asyncio.wait_for(port.finished.wait(), timeout=120)
    elapsed = time.perf_counter() - start
    job.cancel()
    await parts.engine.stop()
    return n / elapsed, port.checkpoints


async def checkpoint_cost(n: int) -> dict[str, Figure]:
    import statistics

    import aioipfs
    from web3 import Web3
    from web3.logs import DISCARD

    from agentgpt.chain.deploy import deploy_all
    from agentgpt.checkpoint_format import Domain, checkpoint_document
    from agentgpt.ipfs import CheckpointWriter, KuboStore, encode
    from agentgpt.network import ChainInfo, Network
    from agentgpt.sealing import Sealing, new_session_key
    from agentgpt.tasklog import ZERO_HASH, ExecutorKey, TaskLog
    from apps.localnet.anvil import DEV_PRIVATE_KEYS, AnvilNode
    from apps.localnet.ipfs import IpfsNode
    from services.executor.anchoring import AnchorQueue, _AnchorJob
    from services.executor.checkpoints import Checkpointer
    from services.executor.transactions import ChainSet

    with AnvilNode(chain_id=31337) as anvil, IpfsNode() as ipfs:
        dep = await deploy_all(anvil.rpc_url, DEV_PRIVATE_KEYS[0], min_bond=10**18)
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        admin, owner, executor = (w3.eth.accounts[i] for i in range(3))

        def c(name: str) -> Any:
            from agentgpt.contracts import load_artifact

            return w3.eth.contract(address=dep.contracts[name], abi=load_artifact(name).abi)

        def tx(fn: Any, sender: str) -> Any:
            r = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
            assert r["status"] == 1
            return r

        agpt, registry, factory = c("AGPT"), c("ExecutorRegistry"), c("SessionFactory")
        for who in (owner, executor):
            tx(agpt.functions.mint(who, 10**21), admin)
        tx(agpt.functions.approve(registry.address, 10**18), executor)
        tx(registry.functions.bond(10**18), executor)
        tx(agpt.functions.approve(factory.address, 10**20), owner)
        r = tx(factory.functions.createSession(b"\x11" * 32, 10**20), owner)
        sid = int(factory.events.SessionCreated().process_receipt(r, errors=DISCARD)[0]["args"]["sessionId"])
        tx(factory.functions.activate(sid, b"\x11" * 32, executor, [], b""), owner)

        network = Network((ChainInfo("home", 31337, anvil.rpc_url, contracts=dict(dep.contracts)),))
        chains = ChainSet(network, DEV_PRIVATE_KEYS[2])
        queue = AnchorQueue(chains, lambda *a: asyncio.sleep(0))
        store = KuboStore(ipfs.api, timeout=30)
        client = aioipfs.AsyncIPFS(maddr=ipfs.api)
        key = ExecutorKey(DEV_PRIVATE_KEYS[2])
        checkpointer = Checkpointer(CheckpointWriter(store), key)
        raw_t, make_t, sealed_t, full_t = [], [], [], []
        # sealed as executors seal by default: the session's data key, wrapped to the owner and the executor
        owner_pub = ExecutorKey(DEV_PRIVATE_KEYS[1]).public_key
        sealing = Sealing(new_session_key(1), (owner_pub, key.public_key))
        try:
            domain = Domain(31337, dep.contracts["SessionFactory"])
            log = TaskLog(str(sid), key)
            seq = 0
            for _ in range(n):
                docs = []
                for _ in range(2):  # one for "make", one for "make + anchor"
                    start, log_start = seq, log.head
                    for _ in range(50):
                        seq += 1
                        log.append(seq, "count", "succeeded", {"i": seq}, context_epoch=1)
                    results = dict(log.results)
                    docs.append(
                        checkpoint_document(
                            domain=domain,
                            session_id=str(sid),
                            seq=seq,
                            epoch=1,
                            prev_cid="",
                            prev_seq=start,
                            prev_root=ZERO_HASH,
                            log_start=log_start,
                            entries=log.take_pending(),
                            results=results,
                            key=key,
                            context=[],
                            budget={},
                            memory={},
                            chains=["home"],
                        )
                    )
                data = encode(docs[0])
                t0 = time.perf_counter()
                await client.core.add_bytes(
                    data, cid_version=1, raw_leaves=True, chunker="size-262144", pin=True
                )
                raw_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await checkpointer.make(docs[0])
                make_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await checkpointer.make(docs[0], sealing=sealing)
                sealed_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                made = await checkpointer.make(docs[1], sealing=sealing)
                await queue._anchor(
                    _AnchorJob(str(sid), made.seq, made.cid, made.state_root, "home", 31337), "home"
                )
                full_t.append(time.perf_counter() - t0)
            assert factory.functions.latestCheckpoint(sid).call()[0] == seq
        finally:
            await client.close()
            await store.close()
            await chains.close()
    med = {
        k: statistics.median(v) * 1e3
        for k, v in (
            ("raw add", raw_t),
            ("encode+add+check", make_t),
            ("encode+seal+add+check", sealed_t),
            ("encode+seal+add+anchor", full_t),
        )
    }
    print(f"checkpoint cost, {n} checkpoints (format v2) of 50 signed entries (~{len(data)} bytes), medians:")
    for k, v in med.items():
        print(f"  {k:<24} {v:8.2f} ms   ratio to raw add {v / med['raw add']:6.2f}")
    return {
        f"checkpoint {k} (median)": Figure(v, "ms", med["raw add"], better="lower")
        for k, v in med.items()
        if k != "raw add"
    }


async def measure(tasks: int, checkpoints: int, into: dict[str, Figure]) -> dict[str, Figure]:
    """The figures, added to `into` as each is measured (printing the readable text as it goes): the
    engine's rate, then the checkpoint costs (which need anvil and an IPFS node)."""
    n = tasks
    if n:
        with tempfile.TemporaryDirectory() as tmp:
            engine_rate, checkpoints_made = await engine_run(n, Path(tmp))
        base_rate = baseline(n)
        print(f"tasks: {n} off-chain, built-in planner, decorators ofac_filter+kyc_tier4+gas_optimizer_v3")
        print(f"baseline (planner call loop):     {base_rate:10.0f} tasks/s")
        print(
            f"executor engine (full pipeline):  {engine_rate:10.0f} tasks/s   ({checkpoints_made} checkpoints)"
        )
        print(f"ratio engine/baseline:            {engine_rate / base_rate:10.4f}")
        print(f"goal >= 1000 tasks/s per executor: {'MET' if engine_rate >= 1000 else 'NOT MET'}")
        into["engine vs planner call loop"] = Figure(engine_rate, "tasks/s", base_rate)
        into["engine tasks/s (absolute goal)"] = Figure(
            engine_rate, "tasks/s", goal=1000, note="per executor"
        )
    if checkpoints:
        into.update(await checkpoint_cost(checkpoints))
    return into


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=5000, help="off-chain tasks to run (0: skip)")
    parser.add_argument(
        "--checkpoint-cost",
        type=int,
        default=30,
        metavar="N",
        help="checkpoints to time on anvil + IPFS (0: skip)",
    )
    benchkit.add_json_option(parser)
    args = parser.parse_args()
    figures: dict[str, Figure] = {}
    try:
        await measure(args.tasks, args.checkpoint_cost, figures)
    finally:  # what was measured is kept even when a later part fails (no IPFS node, say)
        benchkit.write_json(args.json, figures)


if __name__ == "__main__":
    asyncio.run(main())
