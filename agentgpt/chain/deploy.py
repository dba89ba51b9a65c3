"""Deploy the AgentGPT contracts to any EVM JSON-RPC endpoint and write a deployment manifest.

Transactions are signed locally with the deployer key (so this works against real networks, not just
anvil's unlocked accounts) and sent one after another with explicit nonces. The manifest records what a
service needs to find the contracts again: chain id, addresses, the block to index from, the deployer,
the compiler version and the lifecycle durations baked into the factory.

    python -m agentgpt.chain.deploy --rpc http://127.0.0.1:8545 --key-file deployer.key --out deployment.json \
        [--oracle 0x...] [--durations 3600,259200,86400] [--min-bond WEI] [--unbonding-delay SECONDS] \
        [--network-out network.json] [--configmap-out configmap.json] [--chain-name home] [--service-rpc URL]

The deployer key is read from a file (--key-file), never taken on the command line, where every user of the
machine can read it in the process list. --network-out also writes the network manifest the services read
(AGENTGPT_NETWORK), and --configmap-out the same manifest as a Kubernetes ConfigMap (`kubectl apply -f`
it: the dev overlay's deploy-contracts Job does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import AsyncWeb3
from web3.types import TxParams

from agentgpt.chain.rpc import connect
from agentgpt.contracts import Artifact, load_artifact
from agentgpt.lifecycle import Durations
from agentgpt.network import ChainInfo, Network
from agentgpt.zk.batch import verifier_artifact

ORACLE_ROLE = keccak(text="ORACLE_ROLE")
ZERO_ADDRESS = "0x" + "00" * 20
DEFAULT_MIN_BOND = 100 * 10**18
DEFAULT_UNBONDING_DELAY = 7 * 24 * 3600


class DeployError(RuntimeError):
    """A deployment transaction failed or the endpoint misbehaved."""


@dataclass(frozen=True)
class Deployment:
    """The manifest: everything needed to talk to (and index) a deployment."""

    chain_id: int
    deploy_block: int
    deployer: str
    oracle: str
    compiler_version: str
    source_hash: str
    contracts: dict[str, str]  # name -> address; "SessionAccount" is the clone implementation
    durations: dict[str, int]
    min_bond: int
    unbonding_delay: int
    transactions: dict[str, str] = field(default_factory=dict)  # step -> tx hash

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["min_bond"] = str(self.min_bond)  # JSON numbers lose precision past 2**53 in many readers
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        return cls(**{**data, "min_bond": int(data["min_bond"])})

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def address(self, name: str) -> str:
        return self.contracts[name]


def load_manifest(path: Path | str) -> Deployment:
    return Deployment.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


class _Sender:
    """Signs and sends transactions from one key with locally tracked nonces; waits for each receipt."""

    def __init__(self, w3: AsyncWeb3[Any], account: LocalAccount, chain_id: int, nonce: int) -> None:
        self.w3, self.account, self.chain_id, self.nonce = w3, account, chain_id, nonce

    async def send(self, label: str, tx: dict[str, Any], wait_s: float) -> dict[str, Any]:
        signed = self.account.sign_transaction(tx)
        tx_hash = await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        self.nonce += 1
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=wait_s, poll_latency=0.1)
        if receipt["status"] != 1:
            raise DeployError(f"{label}: transaction {tx_hash.hex()} reverted")
        return dict(receipt)

    def base(self) -> TxParams:
        return cast(TxParams, {"from": self.account.address, "nonce": self.nonce, "chainId": self.chain_id})


async def deploy_all(
    rpc_url: str,
    deployer_key: str,
    *,
    oracle: str | None = None,
    also_oracle: Sequence[str] = (),
    durations: Durations | None = None,
    min_bond: int = DEFAULT_MIN_BOND,
    unbonding_delay: int = DEFAULT_UNBONDING_DELAY,
    out: Path | None = None,
    receipt_timeout: float = 120.0,
    batch_verifier: bool = True,
) -> Deployment:
    """Deploy AGPT, ExecutorRegistry, SessionAccount (implementation), SessionFactory, AnchorRegistry.

    The deployer becomes admin of every contract (and AGPT minter); `oracle` (default: the deployer)
    gets ORACLE_ROLE on the registry, the factory and the anchor registry, and so does each address in
    `also_oracle` (e.g. the session service's relayer, when the oracle has a key of its own).
    With `batch_verifier` and a zk setup on this machine (agentgpt.zk.batch.verifier_artifact), the setup's
    BatchVerifier too, which the factory calls for proved anchors; without one the factory anchors no
    zk_batch_prover session (its verifier is the zero address).
    """
    durations = durations or Durations()
    w3 = connect(rpc_url)
    account: LocalAccount = Account.from_key(deployer_key)
    oracle_addr = to_checksum_address(oracle or account.address)
    chain_id = await w3.eth.chain_id
    nonce = await w3.eth.get_transaction_count(account.address, "pending")
    sender = _Sender(w3, account, chain_id, nonce)
    addresses: dict[str, str] = {}
    txs: dict[str, str] = {}
    deploy_block: int | None = None

    async def deploy(name: str, *args: Any, artifact: Artifact | None = None) -> str:
        nonlocal deploy_block
        art = artifact or load_artifact(name)
        contract = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        tx = dict(await contract.constructor(*args).build_transaction(sender.base()))
        receipt = await sender.send(f"deploy {name}", tx, receipt_timeout)
        address = to_checksum_address(receipt["contractAddress"])
        addresses[name] = address
        txs[f"deploy {name}"] = "0x" + bytes(receipt["transactionHash"]).hex()
        if deploy_block is None:
            deploy_block = int(receipt["blockNumber"])
        return address

    async def grant_oracle(name: str) -> None:
        art = load_artifact(name)
        contract = w3.eth.contract(address=to_checksum_address(addresses[name]), abi=art.abi)
        for who in dict.fromkeys([oracle_addr, *(to_checksum_address(a) for a in also_oracle)]):
            tx = dict(await contract.functions.grantRole(ORACLE_ROLE, who).build_transaction(sender.base()))
            what = f"grant ORACLE_ROLE on {name}" + ("" if who == oracle_addr else f" to {who}")
            receipt = await sender.send(what, tx, receipt_timeout)
            txs[what] = "0x" + bytes(receipt["transactionHash"]).hex()

    try:
        agpt = await deploy("AGPT", account.address)
        registry = await deploy("ExecutorRegistry", agpt, min_bond, unbonding_delay, account.address)
        implementation = await deploy("SessionAccount")
        verifier_art = verifier_artifact() if batch_verifier else None
        verifier = ZERO_ADDRESS
        if verifier_art is not None:
            verifier = await deploy("BatchVerifier", artifact=verifier_art)
        await deploy(
            "SessionFactory",
            agpt,
            registry,
            implementation,
            durations.draft,
            durations.active,
            durations.paused,
            account.address,
            verifier,
        )
        await deploy("AnchorRegistry", account.address)
        for name in ("ExecutorRegistry", "SessionFactory", "AnchorRegistry"):
            await grant_oracle(name)
    finally:
        await w3.provider.disconnect()

    factory_art = load_artifact("SessionFactory")
    assert deploy_block is not None
    deployment = Deployment(
        chain_id=chain_id,
        deploy_block=deploy_block,
        deployer=account.address,
        oracle=oracle_addr,
        compiler_version=factory_art.compiler_version,
        source_hash=factory_art.source_hash,
        contracts=addresses,
        durations={"draft": durations.draft, "active": durations.active, "paused": durations.paused},
        min_bond=min_bond,
        unbonding_delay=unbonding_delay,
        transactions=txs,
    )
    if out is not None:
        deployment.write(out)
    return deployment


def _parse_durations(text: str) -> Durations:
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError("--durations takes three positive seconds: draft,active,paused")
    return Durations(draft=parts[0], active=parts[1], paused=parts[2])


def network_of(deployment: Deployment, *, name: str, rpc_url: str) -> Network:
    """The network manifest (one chain) the services read for this deployment, reached at `rpc_url`."""
    return Network(
        chains=(
            ChainInfo(
                name=name,
                chain_id=deployment.chain_id,
                rpc_url=rpc_url,
                deploy_block=deployment.deploy_block,
                contracts=dict(deployment.contracts),
            ),
        )
    )


def configmap_of(network: Network, *, name: str, namespace: str = "") -> dict[str, Any]:
    """A Kubernetes ConfigMap holding the network manifest as `network.json` (what the pods mount)."""
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/name": "agentgpt", "app.kubernetes.io/component": "network"},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"network.json": json.dumps(network.to_json(), indent=2)},
    }


def _read_key_file(path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DeployError(f"--key-file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DeployError(f"--key-file {path}: not a text file holding a hex private key") from None
    if not key:
        raise DeployError(f"--key-file {path} is empty: it must hold the deployer's hex private key")
    return key


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agentgpt.chain.deploy", description=__doc__.splitlines()[0])
    p.add_argument("--rpc", required=True, help="JSON-RPC endpoint URL")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key-file", type=Path, help="file holding the deployer private key (hex)")
    # Deprecated: a key in argv is visible to every user of the machine (ps, /proc/PID/cmdline).
    keys.add_argument("--key", help=argparse.SUPPRESS)
    p.add_argument("--out", required=True, type=Path, help="where to write the deployment manifest JSON")
    p.add_argument("--oracle", help="address granted ORACLE_ROLE (default: the deployer)")
    p.add_argument(
        "--durations", type=_parse_durations, default=Durations(), help="draft,active,paused seconds"
    )
    p.add_argument("--min-bond", type=int, default=DEFAULT_MIN_BOND, help="executor minimum bond (AGPT wei)")
    p.add_argument("--unbonding-delay", type=int, default=DEFAULT_UNBONDING_DELAY, help="seconds")
    p.add_argument(
        "--network-out", type=Path, help="also write the services' network manifest (AGENTGPT_NETWORK)"
    )
    p.add_argument(
        "--configmap-out", type=Path, help="also write the network manifest as a Kubernetes ConfigMap (JSON)"
    )
    p.add_argument("--configmap-name", default="agentgpt-network", help="the ConfigMap's name")
    p.add_argument("--configmap-namespace", default="", help="the ConfigMap's namespace (default: kubectl's)")
    p.add_argument("--chain-name", default="home", help="the chain's name in the network manifest")
    p.add_argument(
        "--service-rpc", help="the RPC URL the services use, in the network manifest (default: --rpc)"
    )
    a = p.parse_args(argv)
    if a.key is not None:
        print(
            "warning: --key puts the private key in the process list; use --key-file (--key will be removed)",
            file=sys.stderr,
        )
    try:
        key = a.key if a.key is not None else _read_key_file(a.key_file)
        dep = asyncio.run(
            deploy_all(
                a.rpc,
                key,
                oracle=a.oracle,
                durations=a.durations,
                min_bond=a.min_bond,
                unbonding_delay=a.unbonding_delay,
                out=a.out,
            )
        )
        network = network_of(dep, name=a.chain_name, rpc_url=a.service_rpc or a.rpc)
        if a.network_out is not None:
            a.network_out.write_text(json.dumps(network.to_json(), indent=2) + "\n")
        if a.configmap_out is not None:
            cm = configmap_of(network, name=a.configmap_name, namespace=a.configmap_namespace)
            a.configmap_out.write_text(json.dumps(cm, indent=2) + "\n")
    except (DeployError, OSError, ValueError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dep.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
