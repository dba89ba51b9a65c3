"""The contract deployment CLI as the dev overlay's deploy-contracts Job runs it: the deployer key from a
file (never argv), the network manifest and its ConfigMap written for the services, on a real anvil."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from agentgpt.network import load_network
from apps.localnet.anvil import AnvilNode
from tests.deploy.manifests import REPO


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    node = AnvilNode(log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
    node.start()
    try:
        yield node
    finally:
        node.stop()


def _deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentgpt.chain.deploy", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_deploys_with_a_key_file_and_writes_the_network_manifest_and_configmap(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    key = anvil.private_keys[3]
    key_file = tmp_path / "deployer.key"
    key_file.write_text(key + "\n")
    network_out, configmap_out = tmp_path / "network.json", tmp_path / "configmap.json"
    proc = _deploy(
        "--rpc", anvil.rpc_url,
        "--key-file", str(key_file),
        "--out", str(tmp_path / "deployment.json"),
        "--network-out", str(network_out),
        "--configmap-out", str(configmap_out),
        "--chain-name", "anvil",
        "--service-rpc", "http://anvil:8545",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    deployment = json.loads((tmp_path / "deployment.json").read_text())
    assert deployment["deployer"] == Account.from_key(key).address
    # The services' manifest: the chain reached as the pods reach it, the contracts really deployed.
    network = load_network(str(network_out))
    (chain,) = network.chains
    assert (chain.name, chain.rpc_url, chain.deploy_block) == (
        "anvil",
        "http://anvil:8545",
        deployment["deploy_block"],
    )
    assert chain.contracts == deployment["contracts"]
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    assert chain.chain_id == w3.eth.chain_id
    for name in ("AGPT", "ExecutorRegistry", "SessionFactory", "AnchorRegistry"):
        assert len(w3.eth.get_code(Web3.to_checksum_address(chain.contracts[name]))) > 0, name
    # The ConfigMap the Job applies carries exactly that manifest under the key the pods mount.
    cm = json.loads(configmap_out.read_text())
    assert (cm["apiVersion"], cm["kind"], cm["metadata"]["name"]) == ("v1", "ConfigMap", "agentgpt-network")
    assert list(cm["data"]) == ["network.json"]
    assert json.loads(cm["data"]["network.json"]) == json.loads(network_out.read_text())


def test_a_key_is_required_and_a_missing_key_file_is_named(tmp_path: Path) -> None:
    proc = _deploy("--rpc", "http://127.0.0.1:1", "--out", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "--key-file" in proc.stderr
    missing = tmp_path / "absent.key"
    proc = _deploy(
        "--rpc", "http://127.0.0.1:1", "--key-file", str(missing), "--out", str(tmp_path / "x.json")
    )
    assert proc.returncode == 1 and str(missing) in proc.stderr and "cannot read" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_help_offers_only_the_key_file() -> None:
    proc = _deploy("--help")
    assert proc.returncode == 0 and "--key-file" in proc.stdout
    assert "--key KEY" not in proc.stdout and "--key " not in proc.stdout.replace("--key-file", "")
