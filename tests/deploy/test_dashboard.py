"""The Grafana dashboard: valid JSON, data source chosen by a variable, and every metric its PromQL names
is one the services really export — learned by scraping real in-process services' /metrics."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agentgpt.indexer.v1 import indexer_pb2, indexer_pb2_grpc
from agentgpt.network import ChainInfo, Network, write_network
from agentgpt.runtime.config import ServerConfig, load
from agentgpt.runtime.interceptors import go_code_name
from agentgpt.runtime.server import RunningService
from services.executor.app import build as build_executor
from services.executor.config import ExecutorConfig
from services.indexer.app import build as build_indexer
from services.indexer.config import IndexerConfig
from services.recovery_oracle.app import build as build_oracle
from services.recovery_oracle.config import RecoveryConfig
from services.session.app import build as build_session
from services.session.config import SessionConfig
from tests.deploy.manifests import DASHBOARD_FILE, RULES_FILE

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "rate", "irate", "increase", "delta", "changes", "histogram_quantile", "absent", "label_values",
    "and", "or", "unless", "le", "offset", "bool", "topk", "bottomk", "humanize", "label_replace",
}  # fmt: skip
# Metrics of other exporters the rules may use (kube-state-metrics, Prometheus itself); never the dashboard.
FOREIGN = {
    "up",
    "kube_deployment_status_replicas_available",
    "kube_deployment_spec_replicas",
    "kube_statefulset_status_replicas_ready",
    "kube_statefulset_replicas",
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


@pytest_asyncio.fixture(scope="module")
async def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Metric sample names -> type, from the real indexer and session services' /metrics, after one
    RPC each so the gRPC series carry real label values (grpc_code spelling)."""
    tmp: Path = tmp_path_factory.mktemp("scrape")
    server = ServerConfig(host="127.0.0.1", grpc_port=0, metrics_port=0, drain_delay=0.0, shutdown_grace=1.0)
    # A chain whose RPC is down: the per-chain series exist (created at 0) without an anvil.
    network = Network(
        chains=(ChainInfo(name="home", chain_id=31337, rpc_url=f"http://127.0.0.1:{_closed_port()}"),)
    )
    indexer = RunningService(
        await build_indexer(
            load(
                IndexerConfig, env={}, database_url=f"sqlite+aiosqlite:///{tmp}/indexer.db", rpc_timeout=0.5
            ),
            network=network,
        ),
        server,
    )
    # The session service with a two-chain manifest, so its chain-sync series (writer grants on the
    # secondary chain, budget audits) are exported too.
    contracts = {n: "0x" + f"{i + 1:02x}" * 20 for i, n in enumerate(("SessionFactory", "AnchorRegistry"))}
    two_chains = Network(
        chains=(
            ChainInfo(name="home", chain_id=31337, rpc_url=network.chains[0].rpc_url, contracts=contracts),
            ChainInfo(name="other", chain_id=31338, rpc_url=network.chains[0].rpc_url, contracts=contracts),
        )
    )
    write_network(two_chains, tmp / "network.json")
    session = RunningService(
        await build_session(
            load(
                SessionConfig,
                env={},
                database_url=f"sqlite+aiosqlite:///{tmp}/sessions.db",
                ipfs_embedded_dir=str(tmp / "ipfs"),
                network=str(tmp / "network.json"),
                relayer_key="0x" + "11" * 32,
            )
        ),
        server,
    )
    executor = RunningService(
        await build_executor(
            load(
                ExecutorConfig,
                env={},
                session_addr=f"127.0.0.1:{_closed_port()}",
                ipfs_embedded_dir=str(tmp / "executor-ipfs"),
                claim_sessions=False,
            )
        ),
        server,
    )
    oracle = RunningService(
        await build_oracle(
            load(
                RecoveryConfig,
                env={},
                session_addr=f"127.0.0.1:{_closed_port()}",
                indexer_addr=f"127.0.0.1:{_closed_port()}",
                ipfs_embedded_dir=str(tmp / "oracle-ipfs"),
                database_url=f"sqlite+aiosqlite:///{tmp}/recoveries.db",
            )
        ),
        server,
    )
    started: list[RunningService] = []
    try:
        for s in (indexer, session, executor, oracle):
            await s.start()
            started.append(s)
        async with grpc.aio.insecure_channel(indexer.address) as channel:
            stub = indexer_pb2_grpc.IndexerServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetLatestAnchor(indexer_pb2.GetLatestAnchorRequest(session_id=""), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await session.probe_once()
        text = "".join(_scrape(s.metrics_port) for s in (indexer, session, executor, oracle))
    finally:
        for s in reversed(started):
            await s.stop()
    names: dict[str, str] = {}
    codes: set[str] = set()
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.type
        for sample in family.samples:
            if sample.name == "grpc_server_handled_total":
                codes.add(sample.labels["grpc_code"])
    names["__grpc_codes__"] = ",".join(sorted(codes))
    return names


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_FILE.read_text()))


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _exprs(d: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(d) for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in d["templating"]["list"] if v["type"] == "query"]
    return exprs


def _metric_names(expr: str) -> set[str]:
    """Identifiers in metric position: not inside {...} or "...", not functions, keywords or labels after by/on."""
    stripped = re.sub(r'"[^"]*"', "", expr)
    stripped = re.sub(r"\{[^}]*\}", "{}", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    stripped = re.sub(r",\s*[a-z_]+\s*\)", ")", stripped)  # label_values(metric, label)
    tokens = set(re.findall(r"(?<![$\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()", stripped))
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"\d.*|e\d+", t)}


def test_dashboard_parses_and_has_panels() -> None:
    d = _dashboard()
    assert d["uid"] == "agentgpt-sessions" and d["title"]
    assert len([p for p in _panels(d) if p["type"] != "row"]) >= 10
    ids = [p["id"] for p in _panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_datasource_is_a_variable() -> None:
    d = _dashboard()
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p in _panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]
    assert "${datasource}" not in json.dumps(d["templating"]["list"][0])


def test_dashboard_covers_rate_errors_and_latency_per_method() -> None:
    exprs = _exprs(_dashboard())
    assert any("rate(grpc_server_handled_total" in e and "grpc_method" in e for e in exprs)
    assert any("grpc_code=~" in e and "/" in e for e in exprs)
    for q in ("0.5", "0.99"):
        assert any(
            f"histogram_quantile({q}," in e and "grpc_server_handling_seconds_bucket" in e for e in exprs
        )
    assert any(e.count("agentgpt_indexer_") for e in exprs)


def test_dashboard_has_a_recovery_row() -> None:
    # The recovery oracle's panels sit under their own row: outcomes, durations, steps, the gauges, claims.
    d = _dashboard()
    rows = [p for p in d["panels"] if p["type"] == "row"]
    (row,) = [r for r in rows if r["title"] == "Recovery"]
    below = [r["gridPos"]["y"] for r in rows if r["gridPos"]["y"] > row["gridPos"]["y"]]
    end = min(below, default=float("inf"))
    under = [p for p in d["panels"] if p["type"] != "row" and row["gridPos"]["y"] < p["gridPos"]["y"] < end]
    used = set().union(*(_metric_names(t["expr"]) for p in under for t in p["targets"]))
    assert {
        "agentgpt_recoveries_total",
        "agentgpt_recovery_seconds_bucket",
        "agentgpt_recovery_step_seconds_bucket",
        "agentgpt_sessions_without_lease",
        "agentgpt_recoveries_open",
        "agentgpt_executors_live",
        "agentgpt_recovery_claims_total",
    } <= used, used
    exprs = [t["expr"] for p in under for t in p["targets"]]
    for q, label in (("0.5", "kind"), ("0.99", "kind"), ("0.99", "step")):
        assert any(f"histogram_quantile({q}," in e and f"by ({label}, le)" in e for e in exprs), (q, label)


def test_metric_name_extraction() -> None:
    # The extractor the next test relies on finds names and skips labels, functions and variables.
    expr = 'histogram_quantile(0.99, sum by (grpc_service, le) (rate(foo_bucket{job="x", a=~"$v"}[$__rate_interval]))) / bar_total'
    assert _metric_names(expr) == {"foo_bucket", "bar_total"}
    assert _metric_names('label_values(baz{job="agentgpt"}, namespace)') == {"baz"}


def test_every_dashboard_metric_is_exported(exported: dict[str, str]) -> None:
    used = set().union(*(_metric_names(e) for e in _exprs(_dashboard())))
    assert used, "no metric names found"
    missing = used - set(exported)
    assert not missing, f"the dashboard queries metrics no service exports: {sorted(missing)}"
    assert {
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "agentgpt_indexer_lag_blocks",
    } <= used


def test_every_alert_metric_is_exported(exported: dict[str, str]) -> None:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    used = set().union(*(_metric_names(r["expr"]) for g in groups for r in g["rules"]))
    missing = used - set(exported) - FOREIGN
    assert not missing, f"the alert rules use metrics no service exports: {sorted(missing)}"


def test_status_codes_are_spelled_as_the_services_spell_them(exported: dict[str, str]) -> None:
    # The interceptor labels grpc_code with go-grpc-prometheus's spelling (InvalidArgument), so the
    # error-ratio selectors must use that spelling, and every code they name must be a real one.
    codes = set(exported["__grpc_codes__"].split(","))
    assert "InvalidArgument" in codes
    go_names = {go_code_name(c) for c in grpc.StatusCode}
    selectors = re.findall(r'grpc_code=~"([^"]+)"', DASHBOARD_FILE.read_text() + RULES_FILE.read_text())
    assert selectors
    for alternatives in selectors:
        for code in alternatives.split("|"):
            assert code in go_names, code
