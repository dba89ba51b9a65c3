"""mTLS in the manifests: a cert-manager CA Issuer, one Certificate per service, each workload mounting its
own Secret where AGENTGPT_TLS_*_FILE point. cert-manager's kinds are not in kubernetes-validate's schemas
(test_schemas.py skips them), so their fields are checked here."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.manifests import K8S, container, env_of, objects, workloads

OVERLAYS = ["base", "dev", "prod"]
TLS_DIR = "/etc/agentgpt/tls"


def _shared_config(which: str) -> dict[str, str]:
    (cm,) = [c for n, c in objects(which, "ConfigMap").items() if n.startswith("agentgpt-config-")]
    return dict(cm["data"])


def _certificates(which: str) -> dict[str, dict[str, Any]]:
    return {n: c for n, c in objects(which, "Certificate").items() if c["apiVersion"] == "cert-manager.io/v1"}


@pytest.mark.parametrize("which", OVERLAYS)
def test_a_ca_issuer_from_the_agentgpt_ca_secret(which: str) -> None:
    (issuer,) = objects(which, "Issuer").values()
    assert issuer["apiVersion"] == "cert-manager.io/v1"
    assert issuer["metadata"]["name"] == "agentgpt-ca"
    assert issuer["spec"] == {"ca": {"secretName": "agentgpt-ca"}}


@pytest.mark.parametrize("which", OVERLAYS)
def test_one_certificate_per_service_named_as_its_identity(which: str) -> None:
    certs = _certificates(which)
    assert set(certs) == {f"agentgpt-tls-{name}" for name in workloads(which)}
    for name in workloads(which):
        spec = certs[f"agentgpt-tls-{name}"]["spec"]
        assert spec["secretName"] == f"agentgpt-tls-{name}"
        assert spec["commonName"] == name  # the identity the services authorise by
        assert spec["issuerRef"] == {"kind": "Issuer", "name": "agentgpt-ca"}
        # Both ends of every call present a certificate: server and client use.
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert name in spec["dnsNames"]  # the Service name its clients dial
        assert not [d for d in spec["dnsNames"] if "*" in d], "no wildcard names"
        assert spec["privateKey"]["rotationPolicy"] == "Always"
        assert set(spec) <= {
            "secretName", "commonName", "dnsNames", "duration", "renewBefore", "privateKey", "usages", "issuerRef",
        }  # fmt: skip


@pytest.mark.parametrize("which", OVERLAYS)
def test_the_executor_certificate_names_every_replica_the_oracle_dials(which: str) -> None:
    # The recovery oracle dials executor-N.executor:50051: each must be a name in the shared certificate,
    # and the HPA's whole range is listed there.
    oracle = env_of(container(workloads(which)["recovery-oracle"]))
    dialled = {a.rsplit(":", 1)[0] for a in oracle["AGENTGPT_EXECUTOR_ADDRS"]["value"].split(",")}
    names = set(_certificates(which)["agentgpt-tls-executor"]["spec"]["dnsNames"])
    assert dialled <= names, dialled - names
    most = objects(which, "HorizontalPodAutoscaler")["executor"]["spec"]["maxReplicas"]
    assert {f"executor-{i}.executor" for i in range(most)} <= names


@pytest.mark.parametrize("which", OVERLAYS)
def test_every_workload_mounts_its_own_tls_secret_where_the_config_points(which: str) -> None:
    shared = _shared_config(which)
    assert shared["AGENTGPT_TLS_CA_FILE"] == f"{TLS_DIR}/ca.crt"
    assert shared["AGENTGPT_TLS_CERT_FILE"] == f"{TLS_DIR}/tls.crt"
    assert shared["AGENTGPT_TLS_KEY_FILE"] == f"{TLS_DIR}/tls.key"
    for name, d in workloads(which).items():
        c = container(d)
        assert not {v for v in env_of(c) if v.startswith("AGENTGPT_TLS_")}, (
            f"{name}: TLS paths come from config"
        )
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts[TLS_DIR]["readOnly"] is True, name
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        secret = volumes[mounts[TLS_DIR]["name"]]["secret"]
        assert secret["secretName"] == f"agentgpt-tls-{name}", name
        assert "items" not in secret and not secret.get("optional"), (
            f"{name}: ca.crt, tls.crt and tls.key, required"
        )
        assert secret["defaultMode"] & 0o007 == 0, f"{name}: the key is not world-readable"
        # No other mount may hide the TLS directory or sit on top of it.
        assert not [
            p for p in mounts if p != TLS_DIR and (TLS_DIR.startswith(p + "/") or p.startswith(TLS_DIR))
        ]


def test_no_header_trust_in_the_shared_config_file() -> None:
    text = (K8S / "base" / "config.env").read_text()
    assert "TRUST_SERVICE_HEADER" not in text
