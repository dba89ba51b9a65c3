"""The seed's `agentgpt session inspect` dashboard, rendered from an InspectSessionResponse."""

from __future__ import annotations

import json
import time

from agentgpt.common.v1 import common_pb2
from agentgpt.policies import policies_of
from agentgpt.session.v1 import session_pb2
from agentgpt.timestamps import whole_seconds

AGPT_DECIMALS = 18
WEI_PER_ETH = 10**18


def _state(value: int) -> str:
    return common_pb2.SessionState.Name(common_pb2.SessionState.ValueType(value)).removeprefix(
        "SESSION_STATE_"
    )


def _units(amount: str, decimals: int = AGPT_DECIMALS) -> str:
    """A base-unit decimal string as a short human amount (4 significant decimals)."""
    n = int(amount or "0")
    whole, frac = divmod(n, 10**decimals)
    text = f"{whole}.{frac:0{decimals}d}"[: len(str(whole)) + 5].rstrip("0").rstrip(".")
    return text or "0"


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(4)]

    def line(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * w for w in widths) + right

    out = [line("┌", "┬", "┐")]
    out += [
        "│" + "│".join(f" {cell:<{w - 1}}" for cell, w in zip(r, widths, strict=True)) + "│" for r in rows
    ]
    out.append(line("└", "┴", "┘"))
    return out


def _ago(seconds: float) -> str:
    s = int(abs(seconds))
    h, rem = divmod(s, 3600)
    text = f"{h}h {rem // 60:02d}m" if h else f"{rem // 60}m {rem % 60:02d}s"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _policies(params_json: str) -> list[str]:
    """The account's action policies, one line each (as committed at activation from the spec)."""
    try:
        policies = policies_of(json.loads(params_json or "{}"))
    except (ValueError, TypeError, KeyError):  # (a stored spec was validated; say so rather than crash)
        return ["Action policies: unreadable in this spec"]
    if not policies:
        return []
    return ["Action policies:"] + [f"  {p.target} 0x{p.selector.hex()}: {p.describe()}" for p in policies]


def render(resp: session_pb2.InspectSessionResponse, now: float | None = None) -> str:
    s = resp.session
    now = time.time() if now is None else now
    lines = [f"SESSION {s.session_id} [{_state(s.state)}]  {s.spec.type}  owner {s.owner}"]
    spent, budget = _units(s.budget_spent), _units(s.budget)
    lines += _table(
        [
            ("Tasks", f"{resp.tasks_done}/{resp.tasks_total}", "AGPT Spent", f"{spent} / {budget}"),
            (
                "Gas Used",
                f"{_units(resp.gas_cost_wei)} ETH ({resp.gas_used:,} gas)",
                "Completion",
                f"{resp.completion * 100:.0f}%",
            ),
            (
                "Alerts",
                f"{resp.alerts_critical} Critical, {resp.alerts_warning} Warning",
                "Model Score",
                f"{resp.model_score:.2f}",
            ),
        ]
    )
    decorators = ", ".join(d.upper() for d in resp.decorators) or "none"
    lines.append(f"Attached Decorators: [{decorators}]")
    lines += _policies(s.spec.params_json)
    if resp.alerts:
        lines.append("Alerts:")
        lines += [f"  {a.severity.upper():<8} {a.code:<16} {a.message}" for a in resp.alerts]
    chains = list(s.spec.chains)
    if chains:
        lines.append("Chains: " + ", ".join([f"{chains[0]} (home)", *chains[1:]]))
    if s.executor:
        lines.append(f"Executor: {s.executor}  lease epoch {s.lease_epoch}  context epoch {s.context_epoch}")
    if s.state_reason:
        lines.append(f"State reason: {s.state_reason}")
    if s.HasField("deadline"):
        deadline = whole_seconds(s.deadline)
        lines.append(
            f"Timer: {_state(s.state).lower()} deadline "
            f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(deadline))} ({_ago(deadline - now)})"
        )
    if s.HasField("latest_checkpoint") and s.latest_checkpoint.cid:
        cp = s.latest_checkpoint
        anchored = ", ".join(str(a.chain_id) for a in cp.anchors) or "not yet"
        lines.append(f"Latest checkpoint: seq {cp.seq}  {cp.cid}  anchored on: {anchored}")
    if resp.recent_tasks:
        lines.append("Recent tasks:")
        for t in resp.recent_tasks:
            status = session_pb2.TaskStatus.Name(t.status).removeprefix("TASK_STATUS_")
            detail = t.error or t.result_json[:60]
            lines.append(f"  #{t.seq:<5} {t.input.kind:<18} {status:<10} {detail}")
    if resp.recent_events:
        lines.append("Recent events:")
        for e in resp.recent_events:
            at = time.strftime("%H:%M:%S", time.gmtime(whole_seconds(e.at)))
            lines.append(f"  {e.cursor:>5} {at} {e.type:<20} {e.data_json[:70]}")
    return "\n".join(lines)
