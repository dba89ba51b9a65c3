"""Every rendered object validates against the Kubernetes OpenAPI schemas (PyPI kubernetes-validate,
strict: unknown fields are errors). The Prometheus Operator's and cert-manager's CRDs are not in those
schemas; their fields that matter are checked by hand (here and in test_tls.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.manifests import METRICS_PORT, objects, render

# The oldest Kubernetes we support (native gRPC probes are GA since 1.27) and the newest schemas.
K8S_VERSIONS = ("1.29.0", "1.37.0")
# Custom resources: kubernetes-validate bundles only the built-in kinds' schemas, so these are skipped
# here and checked field by field instead (ServiceMonitor, PrometheusRule below; Issuer and Certificate in
# test_tls.py).
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "Issuer", "Certificate"}


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        raise AssertionError(
            "the PyPI package kubernetes-validate (1.37.0) is missing from the venv: add it to requirements.lock"
        ) from None
    return kubernetes_validate


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("which", ["base", "dev", "prod", "monitoring"])
def test_objects_validate_against_kubernetes_schemas(which: str, version: str) -> None:
    kv = _kubernetes_validate()
    errors = []
    checked = 0
    for obj in render(which):
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kv.validate(obj, version, strict=True)
            checked += 1
        except kv.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)
    assert checked > 0


def test_validation_catches_a_broken_object() -> None:
    # The validator really is strict: a typo in a probe field is an error, not ignored.
    kv = _kubernetes_validate()
    deployment = dict(objects("base", "Deployment")["session"])
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "one"}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSIONS[0], strict=True)


def test_servicemonitor_selects_the_services_metrics_port() -> None:
    monitor = objects("prod", "ServiceMonitor")["agentgpt"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = objects("prod", "Service")
    selected = {n for n, s in services.items() if selector.items() <= s["metadata"]["labels"].items()}
    assert selected == set(services)
    (endpoint,) = monitor["spec"]["endpoints"]
    for s in services.values():
        ports = {p["name"]: p["port"] for p in s["spec"]["ports"]}
        assert ports[endpoint["port"]] == METRICS_PORT
        # jobLabel names the Service label whose value becomes job="agentgpt" (what the rules select).
        assert s["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "agentgpt"


def test_prometheusrule_has_the_operator_shape() -> None:
    (rule,) = [o for o in render("monitoring") if o["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}


def test_dashboard_configmap_is_picked_up_by_the_grafana_sidecar() -> None:
    cm = objects("monitoring", "ConfigMap")["agentgpt-grafana-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "agentgpt-sessions.json" in cm["data"]
