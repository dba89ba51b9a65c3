"""The local Prometheus's config (`agentgpt up --monitoring`): the labels the alert rules and the dashboard
select on, on every target; a config promtool accepts; a missing binary said with what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from apps.localnet.prometheus import JOB, NAMESPACE, RULES_FILE, PrometheusError, Target, binary, config
from tests.deploy.manifests import PROMTOOL_MISSING, tool

TARGETS = [
    Target(pod="session", service="session", address="127.0.0.1:9101"),
    Target(pod="executor-1", service="executor", address="127.0.0.1:9102"),
    Target(pod="recovery-oracle", service="recovery-oracle", address="127.0.0.1:9103"),
    Target(pod="executor-2", service="executor", address="127.0.0.1:9105"),
]


def test_every_target_carries_the_servicemonitors_labels() -> None:
    cfg = config(TARGETS, 2.0, [RULES_FILE])
    (job,) = cfg["scrape_configs"]
    assert job["job_name"] == JOB == "agentgpt" and job["metrics_path"] == "/metrics"
    assert [(c["targets"], c["labels"]) for c in job["static_configs"]] == [
        ([t.address], {"service": t.service, "pod": t.pod, "namespace": NAMESPACE}) for t in TARGETS
    ]
    assert cfg["global"] == {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"}
    assert cfg["rule_files"] == [str(RULES_FILE)]


def test_promtool_accepts_the_config_and_its_rule_file(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config(TARGETS, 5.0, [RULES_FILE])))
    done = subprocess.run(
        [tool("promtool", PROMTOOL_MISSING), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_a_missing_binary_says_to_run_make_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTGPT_PROMETHEUS", "no-such-prometheus-binary")
    with pytest.raises(PrometheusError, match=r"no-such-prometheus-binary.*run `make setup`"):
        binary()
