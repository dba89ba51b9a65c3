"""The alert rules: promtool checks them and runs their unit tests; the PrometheusRule carries exactly
the same groups; every alert is unit-tested and has a runbook entry."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.manifests import (
    PROMETHEUS_RULE_FILE,
    PROMTOOL_MISSING,
    REPO,
    RULE_TESTS_FILE,
    RULES_FILE,
    prometheus_rule,
    tool,
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool", PROMTOOL_MISSING), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULES_FILE.parent,
        check=False,
    )


def _alerts() -> list[str]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


def test_promtool_check_rules() -> None:
    out = _promtool("check", "rules", RULES_FILE.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = _promtool("test", "rules", RULE_TESTS_FILE.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    # The unit tests bite: with one alert's threshold loosened, its test fails.
    work = tmp_path
    rules = RULES_FILE.read_text().replace(
        'max by (namespace, chain_id) (agentgpt_indexer_lag_blocks{job="agentgpt"}) > 100',
        'max by (namespace, chain_id) (agentgpt_indexer_lag_blocks{job="agentgpt"}) > 10',
    )
    assert rules != RULES_FILE.read_text()
    (work / RULES_FILE.name).write_text(rules)
    (work / RULE_TESTS_FILE.name).write_text(RULE_TESTS_FILE.read_text())
    out = subprocess.run(
        [tool("promtool", PROMTOOL_MISSING), "test", "rules", RULE_TESTS_FILE.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=work,
        check=False,
    )
    assert out.returncode != 0
    assert "AgentgptIndexerLagging" in out.stdout + out.stderr


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"]
    tested = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    assert set(_alerts()) == tested, f"alerts without a firing test: {set(_alerts()) - tested}"


def test_prometheusrule_matches_the_rule_file() -> None:
    on_disk = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text())
    assert on_disk == prometheus_rule(), (
        "k8s/monitoring/prometheusrule.yaml is stale: run "
        "`.venv/bin/python -m tests.deploy.manifests --write-prometheusrule`"
    )


def test_every_alert_has_a_severity_and_a_runbook_entry() -> None:
    docs = (REPO / "docs" / "operations.md").read_text()
    anchors = set(re.findall(r"^#+ .*?\b(Agentgpt\w+)\b", docs, flags=re.M))
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
        assert rule["alert"] in anchors, f"docs/operations.md has no section for {rule['alert']}"
