"""`kubectl kustomize` renders base, dev, prod and monitoring, and each overlay says what it promises."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import SERVICES, container, env_of, objects, ours, render, workloads


@pytest.mark.parametrize("which", ["base", "dev", "prod", "monitoring"])
def test_renders(which: str) -> None:
    kinds = {o["kind"] for o in render(which)}
    expected = (
        {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
        if which == "monitoring"
        else {
            "Deployment",
            "StatefulSet",
            "Service",
            "ConfigMap",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
        }
    )
    assert expected <= kinds, f"{which} lacks {expected - kinds}"


@pytest.mark.parametrize("which", ["base", "dev", "prod"])
def test_every_service_has_deployment_service_and_pdb(which: str) -> None:
    assert set(workloads(which)) == set(SERVICES)
    assert set(ours(which, "Service")) == set(SERVICES)
    for name, pdb in objects(which, "PodDisruptionBudget").items():
        deployment = workloads(which)[name]
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert set(objects(which, "PodDisruptionBudget")) == set(SERVICES)


@pytest.mark.parametrize("which", ["base", "dev", "prod"])
def test_command_selects_the_service_module(which: str) -> None:
    for name, module in SERVICES.items():
        c = container(workloads(which)[name])
        assert c["command"] == ["python", "-m", f"services.{module}"]


@pytest.mark.parametrize("which", ["base", "dev", "prod"])
def test_hpa_scales_the_executors_only(which: str) -> None:
    hpas = objects(which, "HorizontalPodAutoscaler")
    assert list(hpas) == ["executor"]
    ref = hpas["executor"]["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("StatefulSet", "executor")
    # The HPA owns the count; a fixed replicas field would fight it on every apply.
    executor = objects(which, "StatefulSet")["executor"]
    assert "replicas" not in executor["spec"]
    # The governing Service is headless: each replica gets its own DNS name (executor-0.executor).
    assert executor["spec"]["serviceName"] == "executor"
    assert objects(which, "Service")["executor"]["spec"]["clusterIP"] == "None"


def test_singletons_stay_single_and_stop_before_they_start() -> None:
    for which in ("base", "dev", "prod"):
        for name in ("session", "indexer", "recovery-oracle"):
            d = objects(which, "Deployment")[name]
            assert d["spec"]["replicas"] == 1, (which, name)
            assert d["spec"]["strategy"]["type"] == "Recreate", (which, name)


def test_namespaces() -> None:
    for which, ns in (("dev", "agentgpt-dev"), ("prod", "agentgpt")):
        assert {o["metadata"].get("namespace") for o in render(which) if o["kind"] != "Namespace"} == {ns}
        assert set(objects(which, "Namespace")) == {ns}


@pytest.mark.parametrize("which", ["dev", "prod"])
def test_overlays_read_postgresql_urls_from_a_secret(which: str) -> None:
    # dev: the in-cluster PostgreSQL; prod: yours. Either way the URL (with its password) is a Secret's.
    for name, key in (
        ("session", "session-database-url"),
        ("indexer", "indexer-database-url"),
        ("recovery-oracle", "recovery-database-url"),
    ):
        env = env_of(container(objects(which, "Deployment")[name]))["AGENTGPT_DATABASE_URL"]
        assert "value" not in env, f"{name}: the database URL must not be inline in {which}"
        assert env["valueFrom"]["secretKeyRef"] == {"name": "agentgpt-db", "key": key}


def test_prod_includes_monitoring_and_scales_wider() -> None:
    kinds = {o["kind"] for o in render("prod")}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    hpa = objects("prod", "HorizontalPodAutoscaler")["executor"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    executor = container(objects("prod", "StatefulSet")["executor"])
    assert executor["resources"]["limits"]["memory"] == "1Gi"


def test_configmaps_are_hashed_and_referenced() -> None:
    # configMapGenerator suffixes the names with a content hash, so a config change rolls the pods.
    for which in ("base", "dev", "prod"):
        names = set(objects(which, "ConfigMap"))
        for d in workloads(which).values():
            pod = d["spec"]["template"]["spec"]
            refs = {e["configMapRef"]["name"] for e in container(d)["envFrom"]}
            refs |= {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
            # The network manifest is not generated: the deploy-contracts Job (dev) or you (base) write
            # the ConfigMap agentgpt-network, and prod reads it from a Secret.
            refs.discard("agentgpt-network")
            assert refs <= names, (which, refs - names)
            assert all(r.startswith("agentgpt-config-") for r in refs), refs
