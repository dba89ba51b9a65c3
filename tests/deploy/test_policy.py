"""Policy over the rendered manifests: how every pod must run, whatever the overlay."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import yaml

from agentgpt.runtime.config import PREFIX, ServerConfig
from services.executor.config import ExecutorConfig
from services.indexer.config import IndexerConfig
from services.recovery_oracle.config import RecoveryConfig
from services.session.config import SessionConfig
from tests.deploy.manifests import (
    GRPC_PORT,
    METRICS_PORT,
    all_workloads,
    container,
    env_of,
    objects,
    render,
    workloads,
)

OVERLAYS = ["base", "dev", "prod"]
CONFIG_OF = {
    "session": SessionConfig,
    "executor": ExecutorConfig,
    "indexer": IndexerConfig,
    "recovery-oracle": RecoveryConfig,
}
SECRET_SETTINGS = {
    "AGENTGPT_RELAYER_KEY",
    "AGENTGPT_EXECUTOR_KEY",
    "AGENTGPT_ORACLE_KEY",
    "AGENTGPT_CHECKPOINT_KEY",
    "AGENTGPT_MODEL_API_KEY",
}
# Set in the manifests ahead of the code: remove from here once the setting exists (the test says when).
PENDING_SETTINGS: dict[str, set[str]] = {}


def _settings(cls: type[Any]) -> set[str]:
    return {PREFIX + f.name.upper() for f in dataclasses.fields(cls)}


def _shared_config(which: str) -> dict[str, str]:
    (cm,) = [c for n, c in objects(which, "ConfigMap").items() if n.startswith("agentgpt-config-")]
    return dict(cm["data"])


def _deployments(which: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(n, d, container(d)) for n, d in workloads(which).items()]


@pytest.mark.parametrize("which", OVERLAYS)
def test_pods_run_non_root_read_only_without_capabilities(which: str) -> None:
    for name, d, c in _deployments(which):
        pod = d["spec"]["template"]["spec"]
        psc, csc = pod["securityContext"], c["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert csc["readOnlyRootFilesystem"] is True, name
        assert csc["allowPrivilegeEscalation"] is False, name
        assert csc["capabilities"]["drop"] == ["ALL"] and "add" not in csc["capabilities"], name
        assert pod["automountServiceAccountToken"] is False, name
        # Read-only root: everything written goes to a mounted volume (/tmp, the data directory).
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/tmp", "/var/lib/agentgpt"} <= mounts, name


@pytest.mark.parametrize("which", OVERLAYS)
def test_containers_have_requests_and_limits(which: str) -> None:
    for name, _, c in _deployments(which):
        res = c["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res[kind]), f"{name}: {kind}"


@pytest.mark.parametrize("which", OVERLAYS)
def test_native_grpc_probes_on_the_grpc_port(which: str) -> None:
    shared = _shared_config(which)
    assert shared["AGENTGPT_HOST"] == "0.0.0.0"  # 127.0.0.1 (the default) is unreachable for the kubelet
    assert int(shared["AGENTGPT_GRPC_PORT"]) == GRPC_PORT
    assert int(shared["AGENTGPT_METRICS_PORT"]) == METRICS_PORT
    for name, d, c in _deployments(which):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == GRPC_PORT, f"{name}: {probe}"
            assert "httpGet" not in c[probe] and "tcpSocket" not in c[probe]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT}, name
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == METRICS_PORT
        service = objects(which, "Service")[name]
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports


@pytest.mark.parametrize("which", OVERLAYS)
def test_termination_grace_covers_shutdown_grace_and_drain(which: str) -> None:
    defaults = ServerConfig()
    for name, d, c in _deployments(which):
        env = env_of(c)
        grace = (
            float(env["AGENTGPT_SHUTDOWN_GRACE"]["value"])
            if "AGENTGPT_SHUTDOWN_GRACE" in env
            else defaults.shutdown_grace
        )
        drain = (
            float(env["AGENTGPT_DRAIN_DELAY"]["value"])
            if "AGENTGPT_DRAIN_DELAY" in env
            else defaults.drain_delay
        )
        tgps = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        # Drain, then in-flight RPCs, then 5 s to close clients and stores before SIGKILL.
        assert tgps >= grace + drain + 5, f"{name}: {tgps} s < {grace} + {drain} + 5"


@pytest.mark.parametrize("which", OVERLAYS)
def test_executor_grace_leaves_time_for_the_handoff(which: str) -> None:
    # On SIGTERM each session finishes its current task and releases its lease (at most LEASE_TTL / 2),
    # then the executor calls the oracle's RecoverSession(handoff); only then the drain and the close.
    executor = workloads(which)["executor"]
    env = env_of(container(executor))
    ttl = (
        float(env["AGENTGPT_LEASE_TTL"]["value"])
        if "AGENTGPT_LEASE_TTL" in env
        else ExecutorConfig().lease_ttl
    )
    drain = (
        float(env["AGENTGPT_DRAIN_DELAY"]["value"])
        if "AGENTGPT_DRAIN_DELAY" in env
        else ServerConfig().drain_delay
    )
    tgps = executor["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert tgps >= 30 and tgps >= ttl / 2 + drain + 10, (tgps, ttl, drain)
    assert "AGENTGPT_ORACLE_ADDR" in _shared_config(which) or "AGENTGPT_ORACLE_ADDR" in env


@pytest.mark.parametrize("which", OVERLAYS)
def test_the_oracle_and_the_executors_find_each_other(which: str) -> None:
    oracle_env = env_of(container(workloads(which)["recovery-oracle"]))
    # Every executor the HPA may start, by its stable name under the headless Service.
    executor = workloads(which)["executor"]
    service = objects(which, "Service")[executor["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"
    # Not-ready executors keep their DNS names: the oracle's probes, not readiness, decide who is dead.
    assert service["spec"]["publishNotReadyAddresses"] is True
    grpc_port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
    most = objects(which, "HorizontalPodAutoscaler")["executor"]["spec"]["maxReplicas"]
    expected = [
        f"{executor['metadata']['name']}-{i}.{service['metadata']['name']}:{grpc_port}" for i in range(most)
    ]
    assert oracle_env["AGENTGPT_EXECUTOR_ADDRS"]["value"].split(",") == expected
    # Each replica holds recoveries under its own pod name.
    assert oracle_env["AGENTGPT_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The executors reach the oracle's Service for the handoff.
    oracle_service = objects(which, "Service")["recovery-oracle"]
    oracle_port = {p["name"]: p["port"] for p in oracle_service["spec"]["ports"]}["grpc"]
    executor_env = env_of(container(executor))
    addr = (
        executor_env["AGENTGPT_ORACLE_ADDR"]["value"]
        if "AGENTGPT_ORACLE_ADDR" in executor_env
        else _shared_config(which)["AGENTGPT_ORACLE_ADDR"]
    )
    assert addr == f"recovery-oracle:{oracle_port}"


@pytest.mark.parametrize("which", OVERLAYS)
def test_databases_are_files_on_volumes_or_reachable_servers(which: str) -> None:
    # A SQLite file must be on a writable mounted volume (the root filesystem is read-only); a server URL
    # (from a Secret) needs egress to PostgreSQL.
    for name, _, c in _deployments(which):
        env = env_of(c).get("AGENTGPT_DATABASE_URL")
        if env is None:
            continue
        if "value" in env:
            path = env["value"].removeprefix("sqlite+aiosqlite:///")
            assert path != env["value"] and path.startswith("/"), (name, env["value"])
            writable = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
            assert any(path.startswith(m.rstrip("/") + "/") for m in writable), (name, path)
        else:
            assert env["valueFrom"]["secretKeyRef"]["name"] == "agentgpt-db", name
            assert _egress_open(which, name, 5432), f"{name}: no egress to PostgreSQL (5432)"


KEYS_DIR = "/var/run/secrets/agentgpt/keys"
KEY_FILES = {
    "session": {"AGENTGPT_RELAYER_KEY": "relayer-key"},
    "executor": {"AGENTGPT_CHECKPOINT_KEY": "checkpoint-key", "AGENTGPT_MODEL_API_KEY": "model-api-key"},
    "recovery-oracle": {"AGENTGPT_ORACLE_KEY": "oracle-key", "AGENTGPT_CHECKPOINT_KEY": "checkpoint-key"},
    "indexer": {},
}
"""Per service: each key setting it reads -> its entry in the Secret agentgpt-keys, mounted as a file."""


@pytest.mark.parametrize("which", OVERLAYS)
def test_every_key_is_a_file_from_a_secret_never_an_env_value(which: str) -> None:
    rendered = render(which)
    assert not [o for o in rendered if o["kind"] == "Secret"], "no Secret objects: operators create them"
    for name, d, c in _deployments(which):
        env = env_of(c)
        # No key travels as an environment value, inline or from a Secret: only its file's path does.
        assert not SECRET_SETTINGS & set(env), (name, SECRET_SETTINGS & set(env))
        settings = _settings(CONFIG_OF[name])
        assert {v for v in settings if v.endswith("_KEY")} <= set(KEY_FILES[name]) | {
            "AGENTGPT_EXECUTOR_KEY"
        }, f"{name}: a key setting without its file here"
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        for var, key in KEY_FILES[name].items():
            assert var in settings, (name, var)
            assert env[var + "_FILE"]["value"] == f"{KEYS_DIR}/{key}", (name, var)
            mount = mounts[KEYS_DIR]
            assert mount["readOnly"] is True, name
            secret = volumes[mount["name"]]["secret"]
            assert secret["secretName"] == "agentgpt-keys", name
            assert {"key": key, "path": key} in secret["items"], (name, key)
            assert secret["defaultMode"] & 0o007 == 0, f"{name}: keys are not world-readable"
        if KEY_FILES[name]:
            # Only the keys this service reads are in its pod.
            keys_volume = volumes[mounts[KEYS_DIR]["name"]]["secret"]
            assert {i["key"] for i in keys_volume["items"]} == set(KEY_FILES[name].values()), name
        url = env.get("AGENTGPT_DATABASE_URL", {}).get("value")
        assert url is None or url.startswith("sqlite"), f"{name}: a server database URL carries a password"
    assert not SECRET_SETTINGS & set(_shared_config(which))
    text = yaml.safe_dump_all(rendered)
    assert not re.search(r"\b(0x)?[0-9a-fA-F]{64}\b", text), (
        "something that looks like a private key is inline"
    )
    assert not re.search(r"postgres(ql)?(\+\w+)?://[^\s'\"]*:[^\s'\"]*@", text), (
        "a database password is inline"
    )


@pytest.mark.parametrize("which", OVERLAYS)
def test_no_key_is_ever_on_a_command_line(which: str) -> None:
    # argv is readable by every user of the node (ps, /proc/PID/cmdline): keys are files only.
    for path, w in all_workloads(which).items():
        pod = w["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            argv = [*c.get("command", []), *c.get("args", [])]
            assert not [a for a in argv if a == "--key" or a.startswith("--key=")], (path, argv)
            assert not [a for a in argv if re.search(r"\b(0x)?[0-9a-fA-F]{64}\b", a)], (path, argv)
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                # A Secret's entry as an env value: only the database URLs (the drivers take a URL).
                assert ref is None or (
                    ref["name"] == "agentgpt-db" and e["name"] == "AGENTGPT_DATABASE_URL"
                ), (
                    path,
                    e["name"],
                )


@pytest.mark.parametrize("which", OVERLAYS)
def test_no_manifest_trusts_a_service_header(which: str) -> None:
    # The caller's identity is its mTLS certificate's name; a header anyone can set proves nothing.
    text = yaml.safe_dump_all(render(which))
    assert "TRUST_SERVICE_HEADER" not in text


@pytest.mark.parametrize("which", OVERLAYS)
def test_every_variable_set_is_a_real_setting(which: str) -> None:
    # A typo in a variable name would silently leave the default in force.
    shared = set(_shared_config(which))
    known = _settings(ServerConfig).union(*(_settings(c) for c in CONFIG_OF.values()))
    assert shared <= known, shared - known
    for name, _, c in _deployments(which):
        own = _settings(ServerConfig) | _settings(CONFIG_OF[name])
        own |= {var + "_FILE" for var in own}  # any setting may be read from a file
        pending = PENDING_SETTINGS.get(name, set())
        assert not pending & own, f"{name}: {pending & own} exist now: drop them from PENDING_SETTINGS"
        assert set(env_of(c)) <= own | pending, (name, set(env_of(c)) - own - pending)


@pytest.mark.parametrize("which", OVERLAYS)
def test_network_manifest_is_mounted_where_the_config_points(which: str) -> None:
    # base and dev: the ConfigMap agentgpt-network (dev: the deploy-contracts Job writes it); prod: the
    # Secret agentgpt-network (its RPC URLs carry the providers' keys). Never generated from a file here:
    # only a deployment knows the contracts' addresses.
    path = _shared_config(which)["AGENTGPT_NETWORK"]
    directory, _, leaf = path.rpartition("/")
    assert leaf == "network.json", path
    assert not [n for n in objects(which, "ConfigMap") if n.startswith("agentgpt-network")]
    for name, d, c in _deployments(which):
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        mount = mounts[directory]
        assert mount["readOnly"] is True, name
        volume = volumes[mount["name"]]
        if which == "prod":
            assert "configMap" not in volume and volume["secret"]["secretName"] == "agentgpt-network", name
        else:
            assert "secret" not in volume and volume["configMap"] == {"name": "agentgpt-network"}, name


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return wanted.items() <= labels.items()


def _allowed(which: str, src: str, dst: str, port: int) -> bool:
    """Whether the rendered NetworkPolicies let pod `src` reach pod `dst` on `port` (both directions)."""
    pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in workloads(which).items()}
    policies = list(objects(which, "NetworkPolicy").values())

    def peer_ok(peers: list[dict[str, Any]] | None, labels: dict[str, str]) -> bool:
        if peers is None:
            return True
        return any(
            "podSelector" in p and "namespaceSelector" not in p and _selects(p["podSelector"], labels)
            for p in peers
        )

    def port_ok(ports: list[dict[str, Any]] | None) -> bool:
        return ports is None or any(p.get("port") == port for p in ports)

    egress = any(
        _selects(p["spec"]["podSelector"], pods[src])
        and port_ok(r.get("ports"))
        and peer_ok(r.get("to"), pods[dst])
        for p in policies
        if "Egress" in p["spec"]["policyTypes"]
        for r in p["spec"].get("egress", [])
    )
    ingress = any(
        _selects(p["spec"]["podSelector"], pods[dst])
        and port_ok(r.get("ports"))
        and peer_ok(r.get("from"), pods[src])
        for p in policies
        if "Ingress" in p["spec"]["policyTypes"]
        for r in p["spec"].get("ingress", [])
    )
    return egress and ingress


def _egress_open(which: str, src: str, port: int) -> bool:
    """Whether pod `src` may open connections to `port` on any address (the external endpoints)."""
    labels = workloads(which)[src]["spec"]["template"]["metadata"]["labels"]
    return any(
        _selects(p["spec"]["podSelector"], labels)
        and "to" not in r
        and any(x.get("port") == port for x in r.get("ports", []))
        for p in objects(which, "NetworkPolicy").values()
        if "Egress" in p["spec"]["policyTypes"]
        for r in p["spec"].get("egress", [])
    )


@pytest.mark.parametrize("which", OVERLAYS)
def test_network_policies_deny_by_default_and_allow_the_service_flows(which: str) -> None:
    deny = objects(which, "NetworkPolicy")["agentgpt-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in workloads(which).items()}
    assert all(_selects(deny["podSelector"], labels) for labels in pods.values())
    flows = {
        ("executor", "session"),
        ("executor", "recovery-oracle"),  # the graceful handoff on SIGTERM
        ("recovery-oracle", "session"),
        ("recovery-oracle", "indexer"),
        ("recovery-oracle", "executor"),
    }
    for src in pods:
        for dst in pods:
            if src != dst:
                assert _allowed(which, src, dst, GRPC_PORT) == ((src, dst) in flows), (src, dst)


@pytest.mark.parametrize("which", OVERLAYS)
def test_each_executor_replica_signs_with_its_own_key(which: str) -> None:
    executor = workloads(which)["executor"]
    assert executor["kind"] == "StatefulSet", "stable replica names are what pick each replica's key"
    env = env_of(container(executor))
    assert "AGENTGPT_EXECUTOR_KEY" not in env, "one key for every replica would share one nonce sequence"
    assert env["AGENTGPT_EXECUTOR_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    key_file = env["AGENTGPT_EXECUTOR_KEY_FILE"]["value"]
    # Kubernetes expands $(VAR) from variables defined earlier in the list.
    names = [e["name"] for e in container(executor)["env"]]
    assert names.index("AGENTGPT_EXECUTOR_ID") < names.index("AGENTGPT_EXECUTOR_KEY_FILE")
    directory, _, leaf = key_file.rpartition("/")
    assert leaf == "$(AGENTGPT_EXECUTOR_ID)", key_file
    mounts = {m["mountPath"]: m for m in container(executor)["volumeMounts"]}
    volumes = {v["name"]: v for v in executor["spec"]["template"]["spec"]["volumes"]}
    mount = mounts[directory]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "agentgpt-executor-keys"
    assert secret["defaultMode"] & 0o007 == 0, "the keys are not world-readable"


ARCHIVING = ("session", "executor")  # the services that post to Arweave


@pytest.mark.parametrize("which", OVERLAYS)
def test_arweave_gateway_from_config_and_wallet_a_secret_file_never_an_env_value(which: str) -> None:
    shared = _shared_config(which)
    gateway = shared["AGENTGPT_ARWEAVE_GATEWAY"]
    # dev runs without Arweave (IPFS only); base and prod post to a real gateway over TLS
    assert gateway == "" if which == "dev" else gateway.startswith("https://"), gateway
    assert not {k for k in shared if k.startswith("AGENTGPT_ARWEAVE_WALLET")}, "the wallet is per pod, a file"
    rendered = yaml.safe_dump_all(render(which))
    assert '"kty"' not in rendered and "kty:" not in rendered, "a JWK is inline"
    for name, d, c in _deployments(which):
        env = env_of(c)
        # no form of the wallet travels as an environment value
        for var, entry in env.items():
            ref = entry.get("valueFrom", {}).get("secretKeyRef", {})
            assert ref.get("key") != "arweave-wallet", (name, var)
        assert not {v for v in env if v.startswith("AGENTGPT_ARWEAVE_WALLET") and v.endswith("_FILE")}, name
        assert "AGENTGPT_ARWEAVE_GATEWAY" not in env, f"{name}: the gateway comes from the shared config"
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        wallet_volumes = [
            n
            for n, v in volumes.items()
            if any(i.get("key") == "arweave-wallet" for i in v.get("secret", {}).get("items", []))
        ]
        if name not in ARCHIVING:
            assert "AGENTGPT_ARWEAVE_WALLET_PATH" not in env and not wallet_volumes, name
            continue
        path = env["AGENTGPT_ARWEAVE_WALLET_PATH"]["value"]
        directory, _, leaf = path.rpartition("/")
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        mount = mounts[directory]
        assert mount["readOnly"] is True and [mount["name"]] == wallet_volumes, name
        secret = volumes[mount["name"]]["secret"]
        assert secret["secretName"] == "agentgpt-keys", name
        assert secret["items"] == [{"key": "arweave-wallet", "path": leaf}], name
        assert secret["defaultMode"] & 0o007 == 0, f"{name}: the wallet is not world-readable"
