"""`kubectl kustomize` renders base, dev, prod and monitoring, and each overlay says what it promises."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import SERVICES, container, env_of, objects, render, workloads


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
    assert set(objects(which, "Service")) == set(SERVICES)
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


def test_dev_keeps_sessiondb_on_sqlite_in_a_pvc() -> None:
    session = objects("dev", "Deployment")["session"]
    env = env_of(container(session))
    assert env["AGENTGPT_DATABASE_URL"]["value"].startswith("sqlite+aiosqlite:////var/lib/agentgpt/")
    volumes = {v["name"]: v for v in session["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "session-data"}}
    assert "session-data" in objects("dev", "PersistentVolumeClaim")
    assert objects("dev", "HorizontalPodAutoscaler")["executor"]["spec"]["minReplicas"] == 1


def test_dev_keeps_the_recovery_store_on_sqlite_in_a_pvc() -> None:
    # A restarted oracle must find the recoveries it left open (a session it paused is resumed by it).
    oracle = objects("dev", "Deployment")["recovery-oracle"]
    env = env_of(container(oracle))
    assert env["AGENTGPT_DATABASE_URL"]["value"] == "sqlite+aiosqlite:////var/lib/agentgpt/recoveries.db"
    volumes = {v["name"]: v for v in oracle["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "recovery-data"}}
    assert "recovery-data" in objects("dev", "PersistentVolumeClaim")
    assert env["AGENTGPT_EXECUTOR_ADDRS"]["value"] == "executor-0.executor:50051,executor-1.executor:50051"


def test_prod_reads_postgresql_urls_from_a_secret() -> None:
    for name, key in (
        ("session", "session-database-url"),
        ("indexer", "indexer-database-url"),
        ("recovery-oracle", "recovery-database-url"),
    ):
        env = env_of(container(objects("prod", "Deployment")[name]))["AGENTGPT_DATABASE_URL"]
        assert "value" not in env, f"{name}: the database URL must not be inline in prod"
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
            assert refs <= names, (which, refs - names)
            assert all(r.startswith(("agentgpt-config-", "agentgpt-network-")) for r in refs), refs
