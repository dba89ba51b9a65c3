"""The AgentGPT Sessions stack as containers on one Docker network, started from Python with
testcontainers: two anvil chains, the IPFS node and PostgreSQL (the backends image), then the session
service, the indexer, the recovery oracle and two executors (the project image, one container each).

The contracts are deployed from the host through anvil's published port; the network manifest the
containers read names the chains by their container hostnames (`anvil-arbitrum:8545`), the host's copy by
their published ports. Each service counts as up when its standard gRPC health check answers SERVING
(`wait_serving`). `Cluster.workdir` holds a `stack.json` in the local stack's format, so the owner's CLI
(`agentgpt session ... --workdir`) drives the containers from the host exactly as it drives `agentgpt up`.

The images come from tools/containers/build.sh (cached by content hash); the Docker engine and the base
image from scripts/docker-engine.sh (`make docker`). `docker_unavailable()` says why the suite cannot run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account

from agentgpt.chain.deploy import deploy_all
from agentgpt.chain.devnet import fund_and_bond
from agentgpt.clients import ExecutorClient, check_health
from agentgpt.errors import RpcError
from agentgpt.network import ChainInfo, Network, write_network
from apps.localnet.anvil import rpc_call
from apps.localnet.stack import DEPLOYER_KEY, EXECUTOR_KEYS, KYC_ISSUER_KEY, ORACLE_ETH, ORACLE_KEY, OWNER_KEY

ROOT = Path(__file__).resolve().parents[2]
GRPC_PORT = 50051
CHAINS = (("arbitrum", 31337), ("polygon", 31338))
EXECUTORS = ("executor-1", "executor-2")
# container hostname on the suite's network (also the service's mTLS identity) -> `python -m services.X`
SERVICES = {"session": "session", "indexer": "indexer", "recovery-oracle": "recovery_oracle"} | {
    name: "executor" for name in EXECUTORS
}
LEASE_TTL = 2  # seconds: a killed executor's lease lapses within the test
# The image's user (Dockerfile): the mounted keys are handed to it.
IMAGE_UID = 10001

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk's image cannot be pulled here
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")  # this host may itself be a container


def docker_unavailable() -> str:
    """Why the Docker engine cannot run containers here ("" when it can): scripts/docker-engine.sh's
    reason when it gave one, else what `docker info` says."""
    reason_file = ROOT / ".agentgpt" / "docker-unavailable"
    if reason_file.is_file():
        return reason_file.read_text().strip() or "scripts/docker-engine.sh could not start a Docker engine"
    if shutil.which("docker") is None:
        return "no docker client installed (run `make docker`)"
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"`docker info` failed: {(proc.stderr or proc.stdout).strip()[-300:]} (run `make docker`)"
    return ""


def build_image(which: str) -> str:
    """The image reference tools/containers/build.sh built or found for `which` (project | backends)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "containers" / "build.sh"), which],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the {which} image failed:\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


@dataclass
class Cluster:
    """The containers of one run, by hostname, and the host's view of them."""

    workdir: Path
    containers: dict[str, Any] = field(default_factory=dict)  # hostname -> DockerContainer
    network: Any = None  # testcontainers Network
    host_network: Network | None = None  # the manifest with the published RPC ports
    tls_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def grpc(self, name: str) -> str:
        """The host address of a service's published gRPC port."""
        c = self.containers[name]
        return f"127.0.0.1:{c.get_exposed_port(GRPC_PORT)}"

    def logs(self) -> dict[str, str]:
        """Every container's output (stdout and stderr), for a failure report."""
        out: dict[str, str] = {}
        for name, c in self.containers.items():
            try:
                stdout, stderr = c.get_logs()
                out[name] = (stdout + stderr).decode(errors="replace")
            except Exception as exc:  # a removed container: say so instead of hiding the others
                out[name] = f"(no logs: {exc})"
        return out

    def kill(self, name: str) -> None:
        """`docker kill` (SIGKILL): the node is gone, nothing shuts down cleanly."""
        self.containers[name].get_wrapped_container().kill()

    def running(self, name: str) -> bool:
        c = self.containers[name].get_wrapped_container()
        c.reload()
        return bool(c.status == "running")

    async def holder_of(self, session_id: str) -> str | None:
        """The executor container running `session_id` now (asked over GetExecutorStatus)."""
        for name in EXECUTORS:
            if not self.running(name):
                continue
            async with ExecutorClient(self.grpc(name)) as client:
                try:
                    status = await client.get_status(timeout=2, retry=False)
                except RpcError:
                    continue
            if any(s.session_id == session_id for s in status.sessions):
                return name
        return None

    def write_state(self) -> None:
        """`stack.json` for the CLI: the published addresses, the host's manifest, the dev owner's key."""
        owner_key = self.workdir / "owner.key"
        owner_key.write_text(OWNER_KEY + "\n")
        owner_key.chmod(0o600)
        ipfs = self.containers["ipfs"].get_exposed_port(5001)
        state = {
            "workdir": str(self.workdir),
            "network": str(self.workdir / "network.json"),
            "ipfs_api": f"/ip4/127.0.0.1/tcp/{ipfs}",
            "arweave_gateway": "",
            "arweave_wallet": "",
            "owner_key_file": str(owner_key),
            "executor_address": Account.from_key(EXECUTOR_KEYS[0]).address,
            "executors": [
                {"id": n, "address": Account.from_key(EXECUTOR_KEYS[i]).address, "grpc": self.grpc(n)}
                for i, n in enumerate(EXECUTORS)
            ],
            "chains": [
                {"name": c.name, "chain_id": c.chain_id, "rpc_url": c.rpc_url}
                for c in (self.host_network.chains if self.host_network else ())
            ],
            "services": {
                ("recovery_oracle" if n == "recovery-oracle" else n): {"grpc": self.grpc(n)} for n in SERVICES
            },
        }
        (self.workdir / "stack.json").write_text(json.dumps(state, indent=2))


_saved_client_tls: list[Any] = []


def _restore_client_tls() -> None:
    """Give the process back the client credentials it had before the cluster (the other suites' stacks
    run their own CA in this same process)."""
    if _saved_client_tls:
        from agentgpt.runtime import tls

        tls.use_client_tls(_saved_client_tls.pop())


def _tls_identities(workdir: Path) -> dict[str, dict[str, str]]:
    """mTLS between the containers when the services speak it (agentgpt.runtime.tls): a throwaway CA, one
    certificate per service hostname and the host's `operator` one, under `workdir`/tls (the local stack's
    layout, so the CLI finds them). Empty when the services have no mTLS: they then trust the header."""
    try:
        from agentgpt.runtime import tls
    except ImportError:
        return {}
    directory = workdir / "tls"
    ca = tls.make_ca(directory)
    env: dict[str, dict[str, str]] = {}
    for name in (*SERVICES, "operator"):
        files = tls.issue(ca, name, directory)
        if name == "operator":
            _saved_client_tls.append(tls.client_tls())
            tls.use_client_tls(files)
            continue
        own = workdir / "tls-mounts" / name  # each container sees its own key only, owned by the image's user
        own.mkdir(parents=True)
        for src, dst in ((files.ca, "ca.pem"), (files.cert, "cert.pem"), (files.key, "key.pem")):
            shutil.copy(src, own / dst)
            if os.geteuid() == 0:
                os.chown(own / dst, IMAGE_UID, IMAGE_UID)
        env[name] = {
            "AGENTGPT_TLS_CA_FILE": f"/etc/agentgpt/tls/{name}/ca.pem",
            "AGENTGPT_TLS_CERT_FILE": f"/etc/agentgpt/tls/{name}/cert.pem",
            "AGENTGPT_TLS_KEY_FILE": f"/etc/agentgpt/tls/{name}/key.pem",
        }
    return env


async def wait_serving(cluster: Cluster, name: str, timeout: float = 90.0) -> None:
    """The wait strategy of the service containers: the standard gRPC health check (grpc.health.v1) at the
    published port answers SERVING. Fails at once, with the container's logs, when the container exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        if not cluster.running(name):
            raise RuntimeError(f"container {name} exited before SERVING:\n{cluster.logs()[name][-4000:]}")
        try:
            status = await check_health(cluster.grpc(name), timeout=2)
            if status == "SERVING":
                return
            last = status
        except RpcError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{name} not SERVING after {timeout:.0f} s (last: {last}):\n{cluster.logs()[name][-4000:]}"
            )
        await asyncio.sleep(0.3)


def _wait_port_open(container: Any, port: int, what: str, timeout: float = 60.0) -> None:
    """A backend container's published port accepts connections (and the container still runs)."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        w = container.get_wrapped_container()
        w.reload()
        if w.status != "running":
            out, err = container.get_logs()
            raise RuntimeError(f"{what} exited:\n{(out + err).decode(errors='replace')[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", container.get_exposed_port(port)), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: port {port} closed after {timeout:.0f} s") from None
            time.sleep(0.2)


@contextlib.contextmanager
def _network() -> Iterator[Any]:
    from testcontainers.core.network import Network as DockerNetwork

    net = DockerNetwork().create()
    try:
        yield net
    finally:
        with contextlib.suppress(Exception):
            net.remove()


@contextlib.asynccontextmanager
async def container_cluster(workdir: Path) -> AsyncIterator[Cluster]:
    """Every container started and SERVING (see the module doc); all stopped and removed after."""
    from testcontainers.core.container import DockerContainer

    project, backends = await asyncio.gather(
        asyncio.to_thread(build_image, "project"), asyncio.to_thread(build_image, "backends")
    )
    cluster = Cluster(workdir=workdir)
    with _network() as net:
        cluster.network = net

        def start(
            name: str,
            image: str,
            *,
            ports: tuple[int, ...],
            command: list[str] | None = None,
            env: dict[str, str] | None = None,
            volumes: tuple[tuple[Path, str], ...] = (),
        ) -> Any:
            c = (
                DockerContainer(image)
                .with_network(net)
                .with_network_aliases(name)
                .with_name(f"agentgpt-{net.name[-12:]}-{name}")
            )
            c = c.with_exposed_ports(*ports).with_kwargs(hostname=name)
            if command is not None:
                c = c.with_command(command)
            for k, v in (env or {}).items():
                c = c.with_env(k, v)
            for host, inside in volumes:
                c = c.with_volume_mapping(str(host), inside, "ro")
            cluster.containers[name] = c
            return c.start()

        try:
            # the backends
            for chain, chain_id in CHAINS:
                start(
                    f"anvil-{chain}", backends, ports=(8545,), command=["anvil", "--chain-id", str(chain_id)]
                )
            start("ipfs", backends, ports=(5001,), command=["ipfs"])
            start("postgres", backends, ports=(5432,), command=["postgres"])
            for chain, _ in CHAINS:
                await asyncio.to_thread(_wait_port_open, cluster.containers[f"anvil-{chain}"], 8545, chain)

            # the contracts, from the host through the published ports
            host_chains, inner_chains = [], []
            for chain, chain_id in CHAINS:
                rpc = f"http://127.0.0.1:{cluster.containers[f'anvil-{chain}'].get_exposed_port(8545)}"
                oracle = Account.from_key(ORACLE_KEY).address  # its own key, as in the local stack
                await asyncio.to_thread(rpc_call, rpc, "anvil_setBalance", [oracle, hex(ORACLE_ETH)])
                dep = await deploy_all(
                    rpc,
                    DEPLOYER_KEY,
                    oracle=oracle,
                    also_oracle=[Account.from_key(DEPLOYER_KEY).address],  # the session service's relayer
                    out=workdir / f"deployment-{chain}.json",
                )
                await fund_and_bond(
                    rpc,
                    dep,
                    DEPLOYER_KEY,
                    executor_keys=list(EXECUTOR_KEYS[: len(EXECUTORS)]),
                    owners=[Account.from_key(OWNER_KEY).address],
                )
                for chains, url in ((host_chains, rpc), (inner_chains, f"http://anvil-{chain}:8545")):
                    chains.append(
                        ChainInfo(
                            name=chain,
                            chain_id=chain_id,
                            rpc_url=url,
                            deploy_block=dep.deploy_block,
                            contracts=dep.contracts,
                        )
                    )
            cluster.host_network = Network(tuple(host_chains))
            write_network(cluster.host_network, workdir / "network.json")
            config = workdir / "container-config"
            config.mkdir()
            write_network(Network(tuple(inner_chains)), config / "network.json")
            await asyncio.to_thread(_wait_port_open, cluster.containers["ipfs"], 5001, "ipfs", 90)
            await asyncio.to_thread(_wait_port_open, cluster.containers["postgres"], 5432, "postgres")

            # the services
            tls_env = _tls_identities(workdir)
            volumes: tuple[tuple[Path, str], ...] = ((config, "/etc/agentgpt/config"),)
            if tls_env:
                volumes += ((workdir / "tls-mounts", "/etc/agentgpt/tls"),)
            common = {
                "AGENTGPT_NETWORK": "/etc/agentgpt/config/network.json",
                "AGENTGPT_IPFS_API": "/dns4/ipfs/tcp/5001",
                "AGENTGPT_HEALTH_INTERVAL": "1.0",
                **({} if tls_env else {"AGENTGPT_TRUST_SERVICE_HEADER": "true"}),
            }
            deps = {
                "AGENTGPT_SESSION_ADDR": f"session:{GRPC_PORT}",
                "AGENTGPT_INDEXER_ADDR": f"indexer:{GRPC_PORT}",
            }
            own = {
                "session": {
                    "AGENTGPT_DATABASE_URL": "postgresql+asyncpg://agentgpt@postgres:5432/agentgpt",
                    "AGENTGPT_RELAYER_KEY": DEPLOYER_KEY,
                    "AGENTGPT_CHAIN_SYNC_INTERVAL": "3",
                },
                "indexer": {"AGENTGPT_DATABASE_URL": "sqlite+aiosqlite:////var/lib/agentgpt/indexer.db"},
                "recovery-oracle": {
                    **deps,
                    "AGENTGPT_ORACLE_KEY": ORACLE_KEY,
                    "AGENTGPT_DATABASE_URL": "sqlite+aiosqlite:////var/lib/agentgpt/recoveries.db",
                    "AGENTGPT_REPLICA_ID": "recovery-oracle-1",
                    "AGENTGPT_EXECUTOR_ADDRS": ",".join(f"{n}:{GRPC_PORT}" for n in EXECUTORS),
                },
            } | {
                name: {
                    **deps,
                    "AGENTGPT_ORACLE_ADDR": f"recovery-oracle:{GRPC_PORT}",
                    "AGENTGPT_EXECUTOR_ID": name,
                    "AGENTGPT_EXECUTOR_KEY": EXECUTOR_KEYS[i],
                    "AGENTGPT_KYC_ISSUERS": Account.from_key(KYC_ISSUER_KEY).address,
                    "AGENTGPT_LEASE_TTL": str(LEASE_TTL),
                    "AGENTGPT_POLL_INTERVAL": "0.2",
                }
                for i, name in enumerate(EXECUTORS)
            }
            # the order the local stack starts them in: session and indexer, the oracle, the executors
            for group in (("session", "indexer"), ("recovery-oracle",), EXECUTORS):
                for name in group:
                    start(
                        name,
                        project,
                        ports=(GRPC_PORT,),
                        command=["python", "-m", f"services.{SERVICES[name]}"],
                        env={**common, **own[name], **tls_env.get(name, {})},
                        volumes=volumes,
                    )
                await asyncio.gather(*(wait_serving(cluster, name) for name in group))
            cluster.write_state()
            yield cluster
        finally:
            for c in reversed(list(cluster.containers.values())):
                with contextlib.suppress(Exception):
                    c.stop()
            _restore_client_tls()
