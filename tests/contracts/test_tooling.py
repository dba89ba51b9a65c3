"""Build script, artifacts, the anvil launcher and the deploy CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from eth_account import Account

from agentgpt.chain import eip712
from agentgpt.chain.deploy import load_manifest
from agentgpt.contracts import CONTRACT_NAMES, load_artifact
from apps.localnet.anvil import DEV_MNEMONIC, DEV_PRIVATE_KEYS, AnvilNode

from .chain import Chain

ROOT = Path(__file__).resolve().parents[2]


def test_load_artifact() -> None:
    for name in CONTRACT_NAMES:
        art = load_artifact(name)
        assert art.contract_name == name
        assert art.bytecode.startswith("0x") and len(art.bytecode) > 100
        assert art.compiler_version.startswith("0.8.37")
        assert art.compiler_settings["optimizer"] == {"enabled": True, "runs": 200}
    runtime = (len(load_artifact("SessionFactory").deployed_bytecode) - 2) // 2
    assert runtime <= 24_576  # EIP-170


def test_dev_keys_are_anvils_mnemonic_accounts(chain: Chain) -> None:
    Account.enable_unaudited_hdwallet_features()
    derived = [
        Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex() for i in range(10)
    ]
    assert [k.removeprefix("0x") for k in DEV_PRIVATE_KEYS] == [d.removeprefix("0x") for d in derived]
    assert list(chain.w3.eth.accounts) == [Account.from_key(k).address for k in DEV_PRIVATE_KEYS]


def test_anvil_node_starts_and_stops() -> None:
    node = AnvilNode(chain_id=777)
    with node:
        assert node.running
        import urllib.request

        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        req = urllib.request.Request(node.rpc_url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert int(json.loads(resp.read())["result"], 16) == 777
        proc_pid = node.pid
        assert proc_pid is not None
    assert not node.running
    try:
        os.kill(proc_pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"anvil pid {proc_pid} still exists after stop()")
    node.stop()  # idempotent


def test_deploy_cli_writes_manifest(chain: Chain, eth_rpc: str, tmp_path: Path) -> None:
    out = tmp_path / "deployment.json"
    oracle = chain.actors.stranger
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentgpt.chain.deploy",
            "--rpc",
            eth_rpc,
            "--key",
            DEV_PRIVATE_KEYS[7],
            "--out",
            str(out),
            "--oracle",
            oracle,
            "--durations",
            "60,600,120",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    dep = load_manifest(out)
    assert dep.chain_id == chain.chain_id
    assert dep.deployer == Account.from_key(DEV_PRIVATE_KEYS[7]).address
    assert dep.durations == {"draft": 60, "active": 600, "paused": 120}
    assert dep.compiler_version == load_artifact("SessionFactory").compiler_version
    assert dep.deploy_block <= chain.w3.eth.block_number
    factory = chain.contract("SessionFactory", dep.contracts["SessionFactory"])
    f = factory.functions
    assert (f.draftDuration().call(), f.activeDuration().call(), f.pausedDuration().call()) == (60, 600, 120)
    assert f.hasRole(f.ORACLE_ROLE().call(), oracle).call()
    assert f.agpt().call() == dep.contracts["AGPT"]
    assert f.accountImplementation().call() == dep.contracts["SessionAccount"]
    for name in ("ExecutorRegistry", "AnchorRegistry"):
        c = chain.contract(name, dep.contracts[name])
        assert c.functions.hasRole(c.functions.ORACLE_ROLE().call(), oracle).call()


def test_deploy_cli_rejects_bad_durations(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentgpt.chain.deploy",
            "--rpc",
            "http://127.0.0.1:1",
            "--key",
            DEV_PRIVATE_KEYS[0],
            "--out",
            str(tmp_path / "x.json"),
            "--durations",
            "1,2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2 and "--durations" in proc.stderr


def test_eip712_signatures_recover_to_signer(chain: Chain) -> None:
    key = DEV_PRIVATE_KEYS[3]
    msg = eip712.factory_message(
        "Complete", {"sessionId": 1, "nonce": 0, "deadline": 10}, chain_id=1, factory=chain.factory.address
    )
    sig = eip712.sign_message(key, msg)
    assert eip712.recover_signer(msg, sig) == Account.from_key(key).address
    assert len(sig) == 65
