"""What a model adapter proposes for one task: a Plan of typed Actions, validated strictly.

A plan is data, not code: the executor only ever runs the action kinds listed in ACTION_KINDS, and a
plan from a remote model is parsed with `plan_from_json`, which refuses anything malformed with a
PlanRejected naming the offending field (the task is then recorded as REFUSED, the session goes on).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HEX = re.compile(r"^0x([0-9a-fA-F]{2})*$")
_KIND = re.compile(r"^[a-z0-9_]{1,64}$")

MAX_ACTIONS = 16

#: Action kinds the executor knows how to run, with the parameters each requires.
ACTION_KINDS: dict[str, tuple[str, ...]] = {
    "note": (),  # off-chain bookkeeping: records its params as the result
    "read_market": ("chain", "pair"),  # reads a Uniswap V2 pair's reserves
    "swap_exact_eth_for_tokens": ("chain", "router", "path", "fraction_bps", "slippage_bps"),
    "transfer": ("chain", "to", "value"),  # ETH from the session account
    "call": ("chain", "target", "data"),  # any allowlisted call through the session account
    "publish_report": ("title",),  # a JSON report of the session's results, added to IPFS
}

#: Parameters whose values are addresses (checked by ofac_filter and validated here).
ADDRESS_PARAMS = ("pair", "router", "to", "target", "recipient")


class PlanRejected(Exception):
    """A plan or task is refused (malformed, unsafe, over budget). Recorded; never crashes a session."""

    def __init__(self, reason: str, *, by: str = "executor") -> None:
        super().__init__(f"{by}: {reason}")
        self.reason = reason
        self.by = by


class PlanDeferred(Exception):
    """A plan cannot run now (e.g. the base fee is over the session's cap); retry after `retry_after` s."""

    def __init__(self, reason: str, *, by: str, retry_after: float) -> None:
        super().__init__(f"{by}: {reason}")
        self.reason = reason
        self.by = by
        self.retry_after = retry_after


@dataclass(frozen=True)
class TaskRequest:
    """One queued task as the executor sees it."""

    session_id: str
    seq: int
    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fees:
    """EIP-1559 fees chosen for a plan's transactions (wei)."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    base_fee: int


@dataclass(frozen=True)
class Action:
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def addresses(self) -> list[str]:
        """Every address this action touches (targets, recipients, swap path tokens)."""
        out = [str(self.params[p]) for p in ADDRESS_PARAMS if isinstance(self.params.get(p), str)]
        path = self.params.get("path")
        if isinstance(path, list | tuple):
            out.extend(str(a) for a in path)
        return out

    @property
    def on_chain(self) -> bool:
        return self.kind in ("swap_exact_eth_for_tokens", "transfer", "call")


@dataclass(frozen=True)
class Plan:
    """A task's plan. `score` is the model's confidence (0..1), shown as the dashboard's model score."""

    task_kind: str
    actions: tuple[Action, ...]
    score: float = 1.0
    rationale: str = ""
    est_gas: int = 0
    fees: Fees | None = None
    # Which decorators passed it, in order (recorded with the task result).
    checked_by: tuple[str, ...] = ()

    @property
    def on_chain(self) -> bool:
        return any(a.on_chain for a in self.actions)

    def addresses(self) -> list[str]:
        return [a for action in self.actions for a in action.addresses()]

    def to_json(self) -> dict[str, Any]:
        return {
            "task_kind": self.task_kind,
            "actions": [{"kind": a.kind, "params": dict(a.params)} for a in self.actions],
            "score": self.score,
            "rationale": self.rationale,
            "est_gas": self.est_gas,
            "checked_by": list(self.checked_by),
            **(
                {
                    "fees": {
                        "max_fee_per_gas": self.fees.max_fee_per_gas,
                        "max_priority_fee_per_gas": self.fees.max_priority_fee_per_gas,
                        "base_fee": self.fees.base_fee,
                    }
                }
                if self.fees
                else {}
            ),
        }


def _reject(where: str, problem: str) -> PlanRejected:
    return PlanRejected(f"malformed plan: {where}: {problem}", by="plan")


def _check_action(i: int, raw: Any) -> Action:
    where = f"actions[{i}]"
    if not isinstance(raw, dict):
        raise _reject(where, "must be an object with kind and params")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in ACTION_KINDS:
        raise _reject(
            f"{where}.kind", f"unknown action kind {str(kind)[:64]!r}; known: {', '.join(ACTION_KINDS)}"
        )
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise _reject(f"{where}.params", "must be an object")
    missing = [p for p in ACTION_KINDS[kind] if p not in params]
    if missing:
        raise _reject(f"{where}.params", f"{kind} needs {', '.join(missing)}")
    for p in ADDRESS_PARAMS:
        if p in params and not (isinstance(params[p], str) and _ADDRESS.match(params[p])):
            raise _reject(f"{where}.params.{p}", "must be a 0x-prefixed 20-byte hex address")
    if "path" in params:
        path = params["path"]
        if not (
            isinstance(path, list)
            and 2 <= len(path) <= 4
            and all(isinstance(a, str) and _ADDRESS.match(a) for a in path)
        ):
            raise _reject(f"{where}.params.path", "must list 2 to 4 token addresses")
    for p in ("fraction_bps", "slippage_bps"):
        if p in params and not (
            isinstance(params[p], int) and not isinstance(params[p], bool) and 0 < params[p] <= 10_000
        ):
            raise _reject(f"{where}.params.{p}", "must be an integer from 1 to 10000 (basis points)")
    if "value" in params and not (
        isinstance(params["value"], int) and not isinstance(params["value"], bool) and params["value"] >= 0
    ):
        raise _reject(f"{where}.params.value", "must be a non-negative integer (wei)")
    if "data" in params and not (isinstance(params["data"], str) and _HEX.match(params["data"])):
        raise _reject(f"{where}.params.data", "must be 0x-prefixed hex bytes")
    return Action(kind, dict(params))


def plan_from_json(task: TaskRequest, raw: Any) -> Plan:
    """Validate a model's answer into a Plan; raise PlanRejected naming the first problem."""
    if not isinstance(raw, dict):
        raise _reject("plan", "must be a JSON object with actions")
    actions = raw.get("actions")
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_ACTIONS:
        raise _reject("actions", f"must list 1 to {MAX_ACTIONS} actions")
    score = raw.get("score", 1.0)
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0.0 <= float(score) <= 1.0:
        raise _reject("score", "must be a number from 0 to 1")
    rationale = raw.get("rationale", "")
    if not isinstance(rationale, str):
        raise _reject("rationale", "must be a string")
    est_gas = raw.get("est_gas", 0)
    if not isinstance(est_gas, int) or isinstance(est_gas, bool) or not 0 <= est_gas <= 30_000_000:
        raise _reject("est_gas", "must be an integer from 0 to 30000000")
    return Plan(
        task_kind=task.kind,
        actions=tuple(_check_action(i, a) for i, a in enumerate(actions)),
        score=float(score),
        rationale=rationale[:2000],
        est_gas=est_gas,
    )


def valid_kind(kind: str) -> bool:
    return bool(_KIND.match(kind))
