"""zk_batch_prover costs, each against its baseline in the same run:

- proving a checkpoint's tasks (44 = one batch, 50 = two) with the snarkjs worker, against writing the
  same checkpoint to IPFS without a proof (encode + sign + add);
- on-chain verification: anchorCheckpointProved's gas (one and two batches) against anchorCheckpoint's;
- metadata: setTokenURI's gas per transition against the transition's own gas (pause, resume).

    .venv/bin/python bench/zk_prover.py [--runs 3]

Starts its own IPFS node and anvil; needs `make setup` (the circuit's setup). Prints a table and one
JSON line ({"bench": "zk_prover", ...}) with min / median / max over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchkit
from eth_account import Account
from eth_utils.address import to_checksum_address
from web3 import Web3

from agentgpt.chain.deploy import deploy_all
from agentgpt.checkpoint_format import Domain, checkpoint_document, entry_digest, sign
from agentgpt.contracts import load_artifact
from agentgpt.ipfs import CheckpointWriter, KuboStore
from agentgpt.tasklog import ExecutorKey, LogEntry, TaskLog
from agentgpt.zk import PROVED_MARKER
from agentgpt.zk.batch import Groth16Worker, Proof, Statement, witnesses
from apps.localnet.anvil import AnvilNode
from apps.localnet.ipfs import IpfsNode

E18 = 10**18
FEE = 10**15
KEY = ExecutorKey("0x" + "11" * 32)


def spread(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def entries(n: int, domain: Domain) -> tuple[list[LogEntry], dict[int, Any]]:
    log = TaskLog(
        "7", KEY, b"\x00" * 32, 0, sign_entry=lambda s, h: sign(KEY, entry_digest(domain, "7", s, h))
    )
    for seq in range(1, n + 1):
        log.append(
            seq, "rebalance", "succeeded", {"outputs": [{"tx": os.urandom(32).hex()}]}, context_epoch=1
        )
    return list(log.pending), dict(log.results)


def document(n: int, domain: Domain, zk: dict[str, Any] | None = None) -> dict[str, Any]:
    es, results = entries(n, domain)
    return checkpoint_document(
        domain=domain,
        session_id="7",
        seq=n,
        epoch=1,
        prev_cid="",
        prev_seq=0,
        prev_root=b"\x00" * 32,
        log_start=b"\x00" * 32,
        entries=es,
        results=results,
        key=KEY,
        context=[],
        budget={"budget": str(100 * E18), "spent": str(n * FEE)},
        memory={},
        chains=["home"],
        zk=zk,
    )


async def proving(api: str, runs: int) -> tuple[dict[str, Any], list[tuple[Statement, Proof]]]:
    domain = Domain(31337, "0x" + "22" * 20)
    worker = Groth16Worker()
    why = worker.available()
    if why is not None:
        raise SystemExit(f"zk_prover: {why}")
    store = KuboStore(api, timeout=30)
    writer = CheckpointWriter(store)
    out: dict[str, Any] = {}
    proofs: list[tuple[Statement, Proof]] = []
    try:
        w0 = witnesses(0, 0, [os.urandom(32)], [FEE])[0]
        await worker.prove(w0)  # start Node and load the key once (a long-lived worker pays this once)
        for tasks in (44, 50):
            write_s, witness_s, prove_s = [], [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                await writer.write(document(tasks, domain))
                write_s.append(time.perf_counter() - t0)
                es, _ = entries(tasks, domain)
                t0 = time.perf_counter()
                ws = witnesses(0, 0, [e.hash for e in es], [FEE] * tasks)
                witness_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                batch = [(w.statement, await worker.prove(w)) for w in ws]
                prove_s.append(time.perf_counter() - t0)
                if tasks == 50:
                    proofs = batch
            total = [a + b + c for a, b, c in zip(write_s, witness_s, prove_s, strict=True)]
            out[f"checkpoint_{tasks}_tasks"] = {
                "batches": len(ws),
                "write_without_proof_s": spread(write_s),
                "witness_s": spread(witness_s),
                "prove_s": spread(prove_s),
                "ratio_with_proof_vs_without": spread([t / w for t, w in zip(total, write_s, strict=True)]),
            }
    finally:
        await worker.close()
        await store.close()
    return out, proofs


def gas(proofs: list[tuple[Statement, Proof]]) -> dict[str, Any]:
    cid = bytes.fromhex("01711220") + bytes(range(32))
    with AnvilNode() as node:
        dep = asyncio.run(deploy_all(node.rpc_url, node.private_keys[0], min_bond=100 * E18))
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        admin, owner, executor = (Account.from_key(k).address for k in node.private_keys[:3])

        def c(name: str) -> Any:
            return w3.eth.contract(
                address=to_checksum_address(dep.contracts[name]), abi=load_artifact(name).abi
            )

        agpt, registry, factory = c("AGPT"), c("ExecutorRegistry"), c("SessionFactory")

        def send(fn: Any, sender: str, gas_limit: int | None = None) -> int:
            params: dict[str, Any] = {"from": sender}
            if gas_limit:
                params["gas"] = gas_limit
            receipt = w3.eth.wait_for_transaction_receipt(fn.transact(params))
            assert receipt["status"] == 1
            return int(receipt["gasUsed"])

        send(agpt.functions.mint(owner, 1_000 * E18), admin)
        send(agpt.functions.mint(executor, 1_000 * E18), admin)
        send(agpt.functions.approve(registry.address, 100 * E18), executor)
        send(registry.functions.bond(100 * E18), executor)
        send(agpt.functions.approve(factory.address, 1_000 * E18), owner)

        def session(allow: list[Any]) -> int:
            send(factory.functions.createSession(b"\x01" * 32, 10 * E18), owner)
            sid = int(factory.functions.lastSessionId().call())
            send(factory.functions.activate(sid, b"\x02" * 32, executor, allow, b""), owner)
            return sid

        session([])  # warm the counters
        plain = session([])
        plain_gas = send(factory.functions.anchorCheckpoint(plain, 1, cid, b"\x03" * 32), executor)
        one, two = session([PROVED_MARKER]), session([PROVED_MARKER])

        def proved(sid: int, seq: int, batches: list[tuple[Statement, Proof]]) -> int:
            fn = factory.functions.anchorCheckpointProved(
                sid,
                seq,
                cid,
                b"\x03" * 32,
                [s.public_signals() for s, _ in batches],
                [list(p.words) for _, p in batches],
            )
            return send(fn, executor, 150_000 + 330_000 * len(batches))

        one_gas = proved(one, proofs[0][0].count, proofs[:1])
        two_gas = proved(two, sum(s.count for s, _ in proofs), proofs)
        pause_gas = send(factory.functions.pause(plain), admin)
        uri_gas = send(
            factory.functions.setTokenURI(
                plain, "ipfs://bafyreigdyrztmiv6sf3ihw6o2f5jb3yerrsq5ermyvxeevu2iu5g3pjxye"
            ),
            admin,
        )
        resume_gas = send(factory.functions.resume(plain), admin)
    return {
        "anchor_plain_gas": plain_gas,
        "anchor_proved_1_batch_gas": one_gas,
        "anchor_proved_2_batches_gas": two_gas,
        "ratio_proved_1_vs_plain": one_gas / plain_gas,
        "verify_gas_per_batch": two_gas - one_gas,
        "set_token_uri_gas": uri_gas,
        "transition_gas": {"pause": pause_gas, "resume": resume_gas},
        "ratio_token_uri_vs_transition": uri_gas / statistics.mean([pause_gas, resume_gas]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="proving runs per size (default 3)")
    benchkit.add_json_option(parser)
    args = parser.parse_args()
    with IpfsNode() as ipfs:
        prove, proofs = asyncio.run(proving(ipfs.api, args.runs))
    chain = gas(proofs)
    print(f"{'zk_batch_prover':<34}{'min':>9}{'median':>9}{'max':>9}")
    for tasks in (44, 50):
        row = prove[f"checkpoint_{tasks}_tasks"]
        for name in ("write_without_proof_s", "witness_s", "prove_s", "ratio_with_proof_vs_without"):
            v = row[name]
            print(f"{tasks} tasks {name:<25}{v['min']:>9.3f}{v['median']:>9.3f}{v['max']:>9.3f}")
    print(
        f"gas: anchorCheckpoint {chain['anchor_plain_gas']:,}; proved, 1 batch {chain['anchor_proved_1_batch_gas']:,} "
        f"({chain['ratio_proved_1_vs_plain']:.1f}x), 2 batches {chain['anchor_proved_2_batches_gas']:,} "
        f"(+{chain['verify_gas_per_batch']:,} per batch)"
    )
    print(
        f"gas: setTokenURI {chain['set_token_uri_gas']:,} per transition, {chain['ratio_token_uri_vs_transition']:.2f}x "
        f"the transition itself (pause {chain['transition_gas']['pause']:,}, resume {chain['transition_gas']['resume']:,})"
    )
    print(json.dumps({"bench": "zk_prover", "proving": prove, "gas": chain}))
    figures: dict[str, benchkit.Figure] = {}
    for tasks in (44, 50):
        row = prove[f"checkpoint_{tasks}_tasks"]
        write = row["write_without_proof_s"]["median"]
        prove_s = row["prove_s"]["median"] + row["witness_s"]["median"]
        figures[f"checkpoint {tasks} tasks with proofs"] = benchkit.Figure(
            write + prove_s,
            "s",
            baseline=write,
            better="lower",
            note=f"{row['batches']} batch(es); vs the write alone",
        )
    figures["anchor with 1 proof"] = benchkit.Figure(
        chain["anchor_proved_1_batch_gas"],
        "gas",
        baseline=chain["anchor_plain_gas"],
        better="lower",
        note="anchorCheckpointProved vs anchorCheckpoint",
    )
    figures["setTokenURI per transition"] = benchkit.Figure(
        chain["set_token_uri_gas"],
        "gas",
        baseline=chain["transition_gas"]["pause"],
        better="lower",
        note="first URI of a session vs the pause transition itself",
    )
    benchkit.write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
