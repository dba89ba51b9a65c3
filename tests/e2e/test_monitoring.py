"""The operator's view of a running local stack, with real processes and a real Prometheus:
`agentgpt up --monitoring` (LocalStack with monitoring=True) scrapes every service with the labels the
alert rules and the Grafana dashboard select on, and loads the clusters' rule file; `agentgpt top` shows
the executors and sessions. One stack for the whole file."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentgpt.session.v1 import session_pb2 as ss
from apps.cli.dashboard import _units as agpt
from apps.localnet.ipfs import pid_alive
from apps.localnet.prometheus import JOB, NAMESPACE, RULES_FILE
from apps.localnet.stack import LocalStack, StackOptions, service_kind, tls_identity
from tests.support import eventually
from tests.support.promql import Selector, selectors
from tests.support.recovery import tasks_of
from tests.support.stack import cli, session_cli, session_ok

pytestmark = [pytest.mark.e2e, pytest.mark.chain, pytest.mark.timeout(300)]

DASHBOARD_FILE = Path(__file__).resolve().parents[2] / "k8s/monitoring/dashboards/agentgpt-sessions.json"
SPEC = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
  models: {risk: gpt-4-enterprise-finance, execution: web3-agent-v4}
checkpoint_interval: 1
"""
TASKS = 2

# Selectors that a healthy stack cannot give a series, and why; each is (metric, a matcher it has).
# Everything else the rules and the dashboard select must have a series with the labels they select on.
NOT_HERE: dict[tuple[str, tuple[str, str, str] | None], str] = {
    # kube-state-metrics' series (AgentgptNotServing): a Kubernetes cluster's, not a process's
    ("kube_deployment_status_replicas_available", None): "kube-state-metrics only runs on Kubernetes",
    ("kube_deployment_spec_replicas", None): "kube-state-metrics only runs on Kubernetes",
    ("kube_statefulset_status_replicas_ready", None): "kube-state-metrics only runs on Kubernetes",
    ("kube_statefulset_replicas", None): "kube-state-metrics only runs on Kubernetes",
    # the server-side failure codes: the interceptor labels each code when a call first ends with it
    (
        "grpc_server_handled_total",
        ("grpc_code", "=~", "Unknown|Internal|Unavailable|DataLoss|DeadlineExceeded|Unimplemented"),
    ): "only after a server-side failure, which a healthy stack does not have",
}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    options = StackOptions(
        workdir=tmp_path_factory.mktemp("monitoring"),
        base_port=0,
        metrics_base=0,
        ipfs=False,
        arweave=False,
        monitoring=True,
        scrape_interval=1.0,
    )
    s = LocalStack(options)
    await s.start()
    assert s.prometheus is not None
    pid = s.prometheus.pid
    try:
        yield s
    finally:
        await s.stop()
    assert pid is not None and not pid_alive(pid), "Prometheus outlived the stack"


@pytest.fixture(scope="module")
async def session_id(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A session with TASKS tasks done on two chains (checkpointed and anchored after each), and one
    refused read: activity for every series the rules and the dashboard select on."""
    spec = tmp_path_factory.mktemp("spec") / "spec.yaml"
    spec.write_text(SPEC)
    sid = (await session_ok(stack, "create", str(spec), "--budget", "50")).split()[1]
    await session_ok(stack, "activate", sid)
    for i in range(TASKS):
        await session_ok(stack, "submit", sid, "publish_report", "--args", json.dumps({"title": f"r{i}"}))

    async def done() -> None:
        tasks = await tasks_of(stack, sid)
        assert [t.status for t in tasks] == [ss.TASK_STATUS_SUCCEEDED] * TASKS, tasks

    await eventually(done, timeout=90, interval=0.5)
    missing = await session_cli(stack, "get", "999999")  # NOT_FOUND: a non-OK code on the dashboard
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr, missing.stderr
    return sid


def api(stack: LocalStack, path: str, **params: str) -> Any:
    assert stack.prometheus is not None
    return stack.prometheus.api(path + ("?" + urllib.parse.urlencode(params) if params else ""))


def count(stack: LocalStack, promql: str) -> int:
    result = api(stack, "/api/v1/query", query=f"count({promql})")["result"]
    return int(float(result[0]["value"][1])) if result else 0


async def test_prometheus_scrapes_every_service_with_the_clusters_labels(stack: LocalStack) -> None:
    state = json.loads((stack.workdir / "stack.json").read_text())
    assert stack.prometheus is not None and state["prometheus_url"] == stack.prometheus.url
    expected = {
        tls_identity(name): (tls_identity(service_kind(name)), proc.metrics_port)
        for name, proc in stack.services.items()
    }
    assert len([p for p in expected if p.startswith("executor-")]) == stack.options.executors

    async def all_up() -> None:
        targets = api(stack, "/api/v1/targets")["activeTargets"]
        seen = {}
        for t in targets:
            labels = t["labels"]
            assert t["health"] == "up", (labels, t["lastError"])
            assert labels["job"] == JOB and labels["namespace"] == NAMESPACE, labels
            seen[labels["pod"]] = (labels["service"], int(labels["instance"].rsplit(":", 1)[1]))
        assert seen == expected

    await eventually(all_up, timeout=30, interval=0.5)
    # what the availability alerts count: every Service has an instance up
    for service in ("session", "executor", "indexer", "recovery-oracle"):
        assert count(stack, f'up{{job="{JOB}", service="{service}"}} == 1') >= 1, service


async def test_the_clusters_rule_file_loads_and_evaluates_without_errors(stack: LocalStack) -> None:
    wanted = {
        g["name"]: [r.get("alert") or r.get("record") for r in g["rules"]]
        for g in yaml.safe_load(RULES_FILE.read_text())["groups"]
    }

    async def evaluated() -> None:
        groups = api(stack, "/api/v1/rules")["groups"]
        assert {g["name"]: [r["name"] for r in g["rules"]] for g in groups} == wanted
        for g in groups:
            assert Path(g["file"]).samefile(RULES_FILE), g["file"]
            for r in g["rules"]:
                assert r["health"] == "ok" and not r.get("lastError"), (r["name"], r.get("lastError"))
                assert r["lastEvaluation"] != "0001-01-01T00:00:00Z", f"{r['name']} not evaluated yet"

    await eventually(evaluated, timeout=30, interval=0.5)


def _dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expression) of every panel query and every query variable of the dashboard."""
    d = json.loads(DASHBOARD_FILE.read_text())
    panels = [p for top in d["panels"] for p in (top, *top.get("panels", []))]
    out = [(f"panel {p['title']!r}", t["expr"]) for p in panels for t in p.get("targets", [])]
    out += [
        (f"variable ${v['name']}", v["query"]["query"])
        for v in d["templating"]["list"]
        if v["type"] == "query"
    ]
    return out


def _rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return [
        (f"rule {r.get('alert') or r.get('record')}", r["expr"]) for g in rules["groups"] for r in g["rules"]
    ]


def _wanted(expr: str) -> list[Selector]:
    """The selectors of a rule or dashboard expression. Grafana's `label_values(SELECTOR, LABEL)` is a
    query of SELECTOR whose series must carry LABEL; a matcher on a dashboard variable (`$namespace`)
    needs the label present (the variable's choices are its values)."""
    need: frozenset[str] = frozenset()
    values = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr.strip(), re.DOTALL)
    if values:
        expr, need = values.group(1), frozenset({values.group(2)})
    out = []
    for s in selectors(expr):
        variables = {label for label, _, value in s.matchers if "$" in value}
        out.append(
            Selector(
                s.metric,
                tuple(m for m in s.matchers if m[0] not in variables),
                s.grouping | need | variables,
            )
        )
    return out


def _exempt(s: Selector) -> bool:
    return (s.metric, None) in NOT_HERE or any((s.metric, m) in NOT_HERE for m in s.matchers)


async def test_every_series_the_rules_and_the_dashboard_select_exists(
    stack: LocalStack, session_id: str
) -> None:
    exprs = _dashboard_exprs() + _rule_exprs()
    wanted = [(where, s) for where, expr in exprs for s in _wanted(expr)]
    assert len({s.metric for _, s in wanted}) >= 40  # the parser found them (the files name ~45 metrics)
    for key in NOT_HERE:  # every exemption is still needed by some expression
        assert any(_exempt(s) and s.metric == key[0] for _, s in wanted), key

    def missing() -> list[str]:
        out = []
        for where, s in wanted:
            if _exempt(s):
                continue
            query = s.promql(tuple((label, "!=", "") for label in sorted(s.grouping)))
            if count(stack, query) == 0:
                out.append(f"{where}: no series {query}")
        return out

    async def none_missing() -> None:
        gaps = missing()
        assert not gaps, f"{len(gaps)} selectors without a series:\n" + "\n".join(gaps)

    await eventually(none_missing, timeout=60, interval=1.0)


async def test_top_shows_the_executors_and_the_session(stack: LocalStack, session_id: str) -> None:
    holder = await stack.holder_of(session_id)
    assert holder is not None
    proc = await cli(stack, "top", "--json")
    assert proc.returncode == 0, proc.stderr
    frame = json.loads(proc.stdout)
    executors = {e["name"]: e for e in frame["executors"]}
    assert set(executors) == {n for n in stack.services if n.startswith("executor-")}
    for name, e in executors.items():
        assert (
            e["answering"] and e["pid"] == stack.services[name].pid and e["grpc"] == stack.services[name].grpc
        )
    assert [s["session_id"] for s in executors[holder]["sessions"]] == [session_id]
    assert sum(e["tasks_done"] for e in executors.values()) == TASKS  # from the executors' /metrics
    (row,) = [s for s in frame["sessions"] if s["session_id"] == session_id]
    assert row["state"] == "ACTIVE" and row["executor_name"] == row["held_by"] == holder
    assert row["executor"] == stack.state()["executor_address"] and row["lease_epoch"] >= 1
    assert (row["tasks_done"], row["tasks_queued"]) == (TASKS, 0)
    assert row["budget_agpt"] == "50" and 0 < int(row["budget_spent"]) < 50 * 10**18
    assert int(row["budget_spent"]) + int(row["budget_left"]) == 50 * 10**18

    proc = await cli(stack, "top", "--once")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    (line,) = [ln for ln in lines if ln.startswith(f"{session_id} ")]
    assert line.split()[:6] == [session_id, "ACTIVE", holder, str(row["lease_epoch"]), str(TASKS), "0"]
    spent, left = agpt(row["budget_spent"]), agpt(row["budget_left"])
    assert "." in spent and f"  {spent} " in line and f" {left} " in line  # AGPT with decimals
    (held,) = [ln for ln in lines if ln.startswith(f"{holder} ")]
    assert str(stack.services[holder].pid) in held and held.rstrip().endswith(f"  {session_id}")
