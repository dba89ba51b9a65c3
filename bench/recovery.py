"""How long from `kill -9` of the executor holding a session to its next task SUCCEEDED elsewhere?

Starts the local stack (two anvil chains, the IPFS node, the four services, two executors) with a 2 s
lease, creates one session, then `--kills` times: finds the executor running the session, SIGKILLs it,
submits one task at once, and times until that task is SUCCEEDED on the other executor (the recovery:
detection, pause, reassign on chain, verify, resume, rehydrate, the task itself); then restarts the
killed executor. `--handoffs` times the same with SIGTERM (graceful handoff, no pause).

Baselines measured in the same run: the lease TTL (the floor of lease-based detection) and the time the
same one-task submission takes to SUCCEED with nothing killed. Prints p50/p99 and both ratios.

    .venv/bin/python bench/recovery.py [--kills 20] [--handoffs 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit
from benchkit import Figure

from agentgpt.clients import SessionClient
from agentgpt.network import load_network
from agentgpt.owner import SessionOwner
from agentgpt.session.v1 import session_pb2 as ss
from apps.localnet.stack import OWNER_KEY, LocalStack, StackOptions

LEASE_TTL = 2
SPEC = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
checkpoint_interval: 5
"""


async def wait_holder(stack: LocalStack, session_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        name = await stack.holder_of(session_id)
        if name is not None:
            return name
        if time.monotonic() > deadline:
            raise RuntimeError(f"no executor runs session {session_id}")
        await asyncio.sleep(0.1)


async def one_task(owner: SessionOwner, client: SessionClient, session_id: str, title: str) -> float:
    """Submit one task; seconds until it is SUCCEEDED (measured from the call)."""
    t0 = time.perf_counter()
    seq = (await owner.submit(session_id, [("publish_report", {"title": title})])).task_seqs[0]
    while True:
        resp = await client.list_tasks(
            ss.ListTasksRequest(session_id=session_id, after_seq=seq - 1, page_size=1)
        )
        if resp.tasks and resp.tasks[0].status == ss.TASK_STATUS_SUCCEEDED:
            return time.perf_counter() - t0
        if resp.tasks and resp.tasks[0].status in (ss.TASK_STATUS_FAILED, ss.TASK_STATUS_REFUSED):
            raise RuntimeError(
                f"task {seq} ended {ss.TaskStatus.Name(resp.tasks[0].status)}: {resp.tasks[0].error}"
            )
        await asyncio.sleep(0.01)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(kills: int, handoffs: int) -> dict[str, Figure]:
    """The figures (printing the readable text): recovery and handoff times against the lease TTL and the
    task with nothing killed."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    stack = LocalStack(
        StackOptions(
            workdir=workdir,
            base_port=0,
            metrics_base=0,
            executors=2,
            extra_env={"executor": {"AGENTGPT_LEASE_TTL": str(LEASE_TTL), "AGENTGPT_POLL_INTERVAL": "0.1"}},
        ),
        progress=lambda m: print(m, file=sys.stderr),
    )
    await stack.start()
    client = SessionClient(stack.services["session"].grpc, identity="bench")
    owner = SessionOwner(OWNER_KEY, load_network(str(workdir / "network.json")).home, client)
    try:
        session = await owner.create(SPEC, 50 * 10**18)
        sid = session.session_id
        await owner.activate(sid, stack.state()["executor_address"])
        baseline = [await one_task(owner, client, sid, f"warm-up {i}") for i in range(10)]

        async def hurt(sig: signal.Signals, label: str, i: int) -> float:
            victim = await wait_holder(stack, sid)
            proc = stack.services[victim]
            assert proc.proc is not None
            t0 = time.perf_counter()
            proc.proc.send_signal(sig)
            await one_task(owner, client, sid, f"{label} {i}")
            took = time.perf_counter() - t0
            proc.wait(30)
            proc.start()
            await asyncio.to_thread(proc.wait_ready, 60)
            await asyncio.sleep(1.5)  # the oracle's probes see it alive again before the next round
            print(
                f"{label} {i + 1}: {victim} -> {await wait_holder(stack, sid)} in {took:.2f} s",
                file=sys.stderr,
            )
            return took

        recovered = [await hurt(signal.SIGKILL, "kill", i) for i in range(kills)]
        handed = [await hurt(signal.SIGTERM, "handoff", i) for i in range(handoffs)]
    finally:
        await owner.close()
        await client.close()
        await stack.stop()

    base = statistics.median(baseline)
    print(f"task SUCCEEDED with nothing killed (baseline): p50 {base * 1000:.0f} ms over {len(baseline)}")
    print(f"lease TTL (detection floor of a lapsed lease): {LEASE_TTL} s")
    p50, p99 = statistics.median(recovered), pct(recovered, 0.99)
    print(
        f"SIGKILL -> next task SUCCEEDED on the other executor, {len(recovered)} kills: "
        f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(recovered):.2f} s"
    )
    print(
        f"  ratio to the lease TTL: p50 {p50 / LEASE_TTL:.2f}x, p99 {p99 / LEASE_TTL:.2f}x (goal: p50 < 3 s, p99 < 5 s)"
    )
    print(f"  ratio to the baseline task: p50 {p50 / base:.1f}x")
    figures = {
        # goals p50 < 3 s and p99 < 5 s, as ratios to the 2 s lease TTL
        "SIGKILL -> next task p50 vs lease TTL": Figure(
            p50, "s", LEASE_TTL, goal=3 / LEASE_TTL, better="lower"
        ),
        "SIGKILL -> next task p99 vs lease TTL": Figure(
            p99, "s", LEASE_TTL, goal=5 / LEASE_TTL, better="lower"
        ),
        "SIGKILL -> next task p50 vs baseline task": Figure(p50, "s", base, better="lower"),
    }
    if handed:
        h50 = statistics.median(handed)
        print(
            f"SIGTERM handoff -> next task SUCCEEDED, {len(handed)} handoffs: p50 {h50:.2f} s, "
            f"p99 {pct(handed, 0.99):.2f} s (goal: under 0.5 s over the baseline task); "
            f"ratio to the baseline task: {h50 / base:.1f}x"
        )
        figures["SIGTERM handoff -> next task p50 vs baseline task"] = Figure(h50, "s", base, better="lower")
        figures["SIGTERM handoff p50 over the baseline task"] = Figure(
            h50 - base, "s", goal=0.5, better="lower", note="goal: under 0.5 s over the baseline task"
        )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--handoffs", type=int, default=10)
    benchkit.add_json_option(parser)
    args = parser.parse_args()
    benchkit.write_json(args.json, asyncio.run(measure(args.kills, args.handoffs)))
