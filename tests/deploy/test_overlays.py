"""What each overlay must bring: the one image name, dev's in-cluster chain, IPFS node, PostgreSQL and the
contract deployment Job, prod's endpoints and keys from Secrets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.manifests import K8S, all_workloads, container, env_of, objects, render, workloads

IMAGES = {
    # base names a neutral image that only an overlay's `images:` entry makes real
    "base": "agentgpt",
    # what `make image` tags and docs/operations.md loads into the cluster
    "dev": "localhost/agentgpt-sessions:dev",
    # the published image, named only by the prod overlay
    "prod": "ghcr.io/agentgpt/agentgpt-sessions:0.1.0",
}


def _images(which: str) -> set[str]:
    out = set()
    for w in workloads(which).values():
        out.add(container(w)["image"])
    job = objects(which, "Job").get("deploy-contracts")
    if job is not None:
        out |= {c["image"] for c in job["spec"]["template"]["spec"]["initContainers"]}
    return out


@pytest.mark.parametrize("which", ["base", "dev", "prod"])
def test_each_overlay_renders_its_image(which: str) -> None:
    assert _images(which) == {IMAGES[which]}


def test_the_image_name_is_the_one_the_docs_and_the_makefile_use() -> None:
    docs = (K8S.parent / "docs" / "operations.md").read_text()
    assert IMAGES["dev"] in docs and IMAGES["prod"].rsplit(":", 1)[0] in docs
    # Only the prod overlay names the published image.
    for path in K8S.rglob("*.yaml"):
        lines = [line.split("#", 1)[0] for line in path.read_text().splitlines()]
        if any("ghcr.io/agentgpt" in line for line in lines):
            assert path == K8S / "overlays" / "prod" / "kustomization.yaml", path


def _pod(w: dict[str, Any]) -> dict[str, Any]:
    return dict(w["spec"]["template"]["spec"])


def _service_port(name: str) -> int:
    (port,) = objects("dev", "Service")[name]["spec"]["ports"]
    return int(port["port"])


def test_dev_runs_anvil_ipfs_and_postgresql_where_the_services_look() -> None:
    infra = all_workloads("dev")
    assert {"Deployment/anvil", "Deployment/ipfs", "StatefulSet/postgresql"} <= set(infra)
    anvil = _pod(infra["Deployment/anvil"])["containers"][0]
    assert "--chain-id=31337" in anvil["args"] and "--host=0.0.0.0" in anvil["args"]
    assert _service_port("anvil") == 8545
    assert _service_port("ipfs") == 5001
    assert _service_port("postgresql") == 5432
    shared = next(c for n, c in objects("dev", "ConfigMap").items() if n.startswith("agentgpt-config-"))[
        "data"
    ]
    assert shared["AGENTGPT_IPFS_API"] == "http://ipfs:5001"
    postgres = _pod(infra["StatefulSet/postgresql"])["containers"][0]
    assert env_of(postgres)["POSTGRES_PASSWORD_FILE"]["value"].startswith("/var/run/secrets/")
    init = next(c for n, c in objects("dev", "ConfigMap").items() if n.startswith("postgresql-init-"))["data"]
    sql = init["init.sql"]
    assert all(f"CREATE DATABASE {db};" in sql for db in ("sessions", "indexer", "recoveries"))
    # Everything in dev runs as PodSecurity "restricted" allows (the namespace enforces it).
    for path, w in infra.items():
        pod = _pod(w)
        assert pod["securityContext"]["runAsNonRoot"] is True, path
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, path
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], path
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, path


def test_dev_deploys_the_contracts_and_publishes_the_network_configmap() -> None:
    job = objects("dev", "Job")["deploy-contracts"]
    pod = _pod(job)
    (deploy,) = pod["initContainers"]
    (publish,) = pod["containers"]
    argv = deploy["command"] + deploy["args"]
    assert argv[:3] == ["python", "-m", "agentgpt.chain.deploy"]
    args = dict(a.removeprefix("--").split("=", 1) for a in deploy["args"])
    assert args["rpc"] == "http://anvil:8545"
    assert args["configmap-name"] == "agentgpt-network"
    # The key is a file from a Secret, mounted read-only into the deploying container only.
    key_dir, _, key_leaf = args["key-file"].rpartition("/")
    mounts = {m["mountPath"]: m for m in deploy["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts[key_dir]["readOnly"] is True
    assert volumes[mounts[key_dir]["name"]]["secret"]["items"] == [{"key": "deployer-key", "path": key_leaf}]
    assert not [m for m in publish["volumeMounts"] if m["name"] == mounts[key_dir]["name"]]
    # The publisher applies exactly the ConfigMap the deploy step wrote, through the shared volume.
    out_dir = args["configmap-out"].rpartition("/")[0]
    assert publish["command"] == ["kubectl", "apply", f"--filename={args['configmap-out']}"]
    assert {m["mountPath"] for m in publish["volumeMounts"]} >= {out_dir}
    # The API token reaches the publisher alone.
    assert pod["automountServiceAccountToken"] is False
    assert not [m for m in deploy["volumeMounts"] if "serviceaccount" in m["mountPath"]]
    assert pod["serviceAccountName"] == "deploy-contracts"
    # RBAC: create ConfigMaps, read and patch only agentgpt-network; nothing else.
    (role,) = objects("dev", "Role").values()
    rules = sorted(role["rules"], key=lambda r: r["verbs"])
    assert rules == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["agentgpt-network"], "verbs": ["get", "patch"]},
    ]  # fmt: skip
    (binding,) = objects("dev", "RoleBinding").values()
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "deploy-contracts", "namespace": "agentgpt-dev"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # The services mount what the Job writes (the unhashed name) and wait for it (not optional).
    for name, w in workloads("dev").items():
        (vol,) = [v for v in _pod(w)["volumes"] if v["name"] == "network"]
        assert vol["configMap"] == {"name": "agentgpt-network"}, name


def test_prod_takes_rpc_urls_ipfs_api_database_urls_and_keys_from_secrets() -> None:
    shared = next(c for n, c in objects("prod", "ConfigMap").items() if n.startswith("agentgpt-config-"))[
        "data"
    ]
    assert "AGENTGPT_IPFS_API" not in shared, "the IPFS API is a Secret's in prod"
    assert not [o for o in render("prod") if o["kind"] == "Secret"]
    for name, w in workloads("prod").items():
        c = container(w)
        env = env_of(c)
        pod = _pod(w)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        # The RPC URLs: the network manifest itself is a Secret.
        assert volumes["network"]["secret"]["secretName"] == "agentgpt-network", name
        if "AGENTGPT_DATABASE_URL" in env:
            assert env["AGENTGPT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "agentgpt-db", name
        if name != "indexer":
            path = env["AGENTGPT_IPFS_API_FILE"]["value"]
            directory, _, leaf = path.rpartition("/")
            (mount,) = [m for m in mounts.values() if m["mountPath"] == directory]
            secret = volumes[mount["name"]]["secret"]
            assert secret["secretName"] == "agentgpt-endpoints" and secret["items"] == [
                {"key": "ipfs-api", "path": leaf}
            ]
        # Every secret value is a file of a Secret volume or a Secret's entry.
        for var, entry in env.items():
            assert "value" not in entry or not entry["value"].startswith(
                ("http://", "https://", "postgres")
            ), (name, var)
