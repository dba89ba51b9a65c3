"""The local stack behind `agentgpt up`: anvil chains, an IPFS node, an Arweave gateway (arlocal), the
contracts deployed, and the four services as separate processes on loopback, each checked SERVING before
it counts as up. The executor runs as N processes (`executor-1` .. `executor-N`, default 2), each with its
own bonded key, so killing the one holding a session shows the recovery oracle moving it to another. The
session service and the executors archive to arlocal with a wallet made for the run.

The services call each other over mTLS (on by default): at start the stack issues one certificate per
service (`session`, `indexer`, `recovery-oracle`, `executor-N`) and one `operator` certificate (for the CLI,
the stack's own health checks and tests) under `<workdir>/tls`, all signed by a throwaway CA (keys 0600).
`StackOptions(tls=False)` (`agentgpt up --no-tls`) runs plaintext on loopback with the services trusting
the `x-agentgpt-service` header instead.

Everything it starts lives under one work directory and is stopped in reverse order by `stop()`.
`stack.json` in that directory tells `agentgpt status` (and the demo) where everything is.

The chains are new on every start, so everything in the work directory that describes chain state
(SessionDB, the indexer's store, the network manifest and deployments, the IPFS repo, arlocal's store and
the wallet, the logs) is moved to `<workdir>/previous` first (replacing the one before): a run never meets
the stores of another run's chains, also after a run was killed half-way. One stack at a time holds
`<workdir>/stack.lock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak

from agentgpt.arweave import ArweaveClient, Wallet
from agentgpt.chain.deploy import deploy_all
from agentgpt.chain.devnet import fund_and_bond
from agentgpt.clients import ExecutorClient, check_health
from agentgpt.errors import RpcError
from agentgpt.lifecycle import Durations
from agentgpt.network import ChainInfo, Network, write_network
from agentgpt.runtime import tls
from apps.localnet.anvil import DEV_PRIVATE_KEYS, AnvilNode
from apps.localnet.arweave import ArlocalError, ArlocalNode
from apps.localnet.ports import free_port, ports_in_use
from apps.localnet.processes import ServiceProcess
from apps.localnet.prometheus import PrometheusError, PrometheusNode, Target
from apps.localnet.prometheus import binary as prometheus_binary

# Dev accounts (anvil's public test keys) and their roles in the local stack.
DEPLOYER_KEY = DEV_PRIVATE_KEYS[0]  # deploys, holds ORACLE_ROLE, relays owner requests
# The recovery oracle's own key (ORACLE_ROLE too, ETH set at start): not the relayer's, so the two services
# never race for one account's nonces. Derived from a fixed phrase: local chains only.
ORACLE_KEY = "0x" + keccak(text="agentgpt local stack: recovery oracle").hex()
OWNER_KEY = DEV_PRIVATE_KEYS[2]  # the demo session's owner
KYC_ISSUER_KEY = DEV_PRIVATE_KEYS[9]  # signs the demo owner's KYC attestation; the executors trust it
# executor-i signs with EXECUTOR_KEYS[i - 1]: the dev accounts no other role uses, in order.
EXECUTOR_KEYS = tuple(DEV_PRIVATE_KEYS[i] for i in (1, 3, 4, 5, 6, 7, 8))
EXECUTOR_KEY = EXECUTOR_KEYS[0]  # executor-1's: the demo session's executor
MAX_EXECUTORS = len(EXECUTOR_KEYS)
DEFAULT_EXECUTORS = 2
ORACLE_ETH = 1_000 * 10**18  # the oracle pays gas for pause, reassign, resume and penalties
# arlocal's store and the wallet that signs and pays for the archive copies (made for each run, 0600).
ARWEAVE_DIR = "arweave"
ARWEAVE_WALLET = "arweave-wallet.json"
#: Winston minted to the stack's wallet on arlocal: about 15 GB of archive copies at arlocal's prices.
ARWEAVE_FUNDING = 10**15
# The stack's CA, its services' certificates and the operator's (see the module doc).
TLS_DIR = "tls"
#: The identity of the CLI, the stack's supervisor and tests: reads every session, restores one.
OPERATOR_IDENTITY = "operator"

# The service kinds (`python -m services.<kind>`); a stack runs one process of each, and N executors.
SERVICES = ("session", "indexer", "executor", "recovery_oracle")
SERVICE_NAMES = {
    "session": "agentgpt.session.v1.SessionService",
    "indexer": "agentgpt.indexer.v1.IndexerService",
    "executor": "agentgpt.executor.v1.ExecutorService",
    "recovery_oracle": "agentgpt.recovery.v1.RecoveryService",
}
# gRPC (and metrics) port offsets from the base port; executor-2.. follow at 4, 5, ...
PORT_OFFSETS = {"session": 0, "executor-1": 1, "recovery_oracle": 2, "indexer": 3}


def executor_name(i: int) -> str:
    """The service name of the i-th executor (1-based): `executor-1`, `executor-2`, ..."""
    return f"executor-{i}"


def service_kind(name: str) -> str:
    """What a service of the stack runs: `executor` for `executor-N`, else the name itself."""
    return "executor" if name.startswith("executor-") else name


def port_offset(name: str) -> int:
    """The offset of `name`'s gRPC and metrics ports from the stack's base ports."""
    if name in PORT_OFFSETS:
        return PORT_OFFSETS[name]
    number = name.removeprefix("executor-")
    if service_kind(name) == "executor" and number.isdigit() and int(number) >= 2:
        return len(PORT_OFFSETS) + int(number) - 2
    raise KeyError(f"no service {name!r} in the local stack")


def service_names(executors: int) -> tuple[str, ...]:
    """Every service of a stack running `executors` executors, in start order."""
    return ("session", "indexer", "recovery_oracle", *(executor_name(i) for i in range(1, executors + 1)))


# What a run writes to its work directory (all of it about that run's chains). `reset_workdir` moves these,
# and only these, aside: a work directory may hold other things.
RUN_STATE = (
    "stack.json",
    "network.json",
    "owner.key",
    "deployment-*.json",
    "anvil-*.log",
    "sessions.db*",  # with SQLite's -wal / -shm / -journal files
    "indexer.db*",
    "recoveries.db*",  # the recovery oracle's store
    "*.ready.json",
    *(f"{name}.log" for name in SERVICES),  # (executor.log: a run from before executors were numbered)
    "executor-*.log",
    "ipfs",  # the IPFS node's repo (content of the old chains' sessions)
    ARWEAVE_DIR,  # arlocal's store, pidfile and log (archive copies of the old chains' sessions)
    ARWEAVE_WALLET,
    TLS_DIR,  # the run's CA and certificates
    "blocks",  # the embedded content store (--no-ipfs)
    "prometheus",  # --monitoring: its config, log and TSDB (the old chains' metrics)
)
PREVIOUS = "previous"
LOCK = "stack.lock"


class StackError(RuntimeError):
    """The local stack cannot start; the message says why and what to do."""


async def _finish_in_thread(start: Callable[[], object]) -> None:
    """Run a blocking start-up step in a thread; if cancelled (Ctrl-C), let the step finish before the
    cancellation goes on, so stop() sees (and stops) the process it launched instead of racing it and
    leaving it running. Each step is bounded by its own start-up timeout."""
    step = asyncio.ensure_future(asyncio.to_thread(start))
    try:
        await asyncio.shield(step)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await step
        raise


def reset_workdir(workdir: Path) -> list[str]:
    """Move the previous run's state (`RUN_STATE`) to `<workdir>/previous`, replacing an older one.

    Returns the names moved (empty: nothing to move). Safe after a run killed at any point, this one
    included: the move goes through `previous.new`, and a leftover one is discarded first."""
    staging = workdir / f"{PREVIOUS}.new"
    shutil.rmtree(staging, ignore_errors=True)  # a move cut short: what it holds is stale either way
    found = sorted({p.name for pattern in RUN_STATE for p in workdir.glob(pattern)})
    if not found:
        return []
    staging.mkdir()
    for name in found:
        os.replace(workdir / name, staging / name)
    previous = workdir / PREVIOUS
    shutil.rmtree(previous, ignore_errors=True)
    os.replace(staging, previous)
    return found


@dataclass
class StackOptions:
    workdir: Path
    # gRPC ports are base_port + 0..3 (session, executor-1, recovery_oracle, indexer), then + 4.. for
    # executor-2..N; metrics ports likewise from metrics_base. 0 picks free ports for everything (tests,
    # several stacks on one machine).
    base_port: int = 50051
    metrics_base: int = 9101
    # The local chains simulate the seed's two-chain treasury spec with anvil instances.
    chains: tuple[tuple[str, int], ...] = (("arbitrum", 31337), ("polygon", 31338))
    ipfs: bool = True
    # An Arweave gateway (arlocal) the session service and the executors archive to; False: IPFS only.
    arweave: bool = True
    durations: Durations = field(default_factory=Durations)
    # Extra environment by service: "executor" applies to every executor, "executor-2" (etc.) to one, after.
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    ready_timeout: float = 90.0
    # Seconds between blocks (whole seconds) once the contracts are deployed; None mines each transaction at
    # once (anvil's automine). Tests that kill an executor between broadcast and receipt set it, so
    # transactions wait in the mempool for a block.
    block_time: float | None = None
    # Executor processes, each with its own key bonded on every chain: 1..MAX_EXECUTORS.
    executors: int = DEFAULT_EXECUTORS
    # mTLS between everything (certificates under <workdir>/tls); False: plaintext, header trust, loopback.
    tls: bool = True
    # A local Prometheus (apps.localnet.prometheus) scraping every service with the labels the alert rules
    # and the dashboard select on, evaluating k8s/monitoring/rules/agentgpt.rules.yml. Its port is
    # prometheus_port, or a free one when base_port is 0 (or prometheus_port is).
    monitoring: bool = False
    prometheus_port: int = 9090
    scrape_interval: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.executors <= MAX_EXECUTORS:
            raise ValueError(f"executors {self.executors}: must be between 1 and {MAX_EXECUTORS}")


class LocalStack:
    def __init__(self, options: StackOptions, progress: Callable[[str], None] = lambda _: None) -> None:
        self.options = options
        self.workdir = options.workdir
        self._progress = progress
        self._t0 = time.monotonic()
        self.anvils: list[AnvilNode] = []
        self.ipfs: Any = None
        self.arweave: ArlocalNode | None = None
        self.arweave_wallet: Wallet | None = None
        self.network: Network | None = None
        self.services: dict[str, ServiceProcess] = {}
        self.prometheus: PrometheusNode | None = None
        # executor name -> its private key, executor-1 first
        self.executor_keys = {executor_name(i): EXECUTOR_KEYS[i - 1] for i in range(1, options.executors + 1)}
        self._lock: int | None = None  # fd of <workdir>/stack.lock while this stack owns the work dir
        # what this process's clients presented before this stack's operator certificate (given back at stop)
        self._previous_tls = tls.client_tls()
        self._tls_set = False

    def say(self, msg: str) -> None:
        self._progress(f"[{time.monotonic() - self._t0:6.1f}s] {msg}")

    def _port(self, index: int, metrics: bool = False) -> str:
        base = self.options.metrics_base if metrics else self.options.base_port
        return str(base + index) if self.options.base_port and base > 0 else "0"  # 0: a free port

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._take_workdir()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    def _take_workdir(self) -> None:
        """Hold `<workdir>/stack.lock` until stop() (the OS drops it if this process dies)."""
        path = self.workdir / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StackError(
                f"another `agentgpt up` is using {self.workdir} (it holds {path}). Stop it (Ctrl-C in its "
                "terminal), or start this one with another `--workdir`."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def _release_workdir(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the lock
            self._lock = None

    def check_ports(self) -> None:
        """Fail before starting anything if a fixed service port is taken (say which, and what to do)."""
        if not self.options.base_port:
            return
        names = sorted(service_names(self.options.executors), key=port_offset)
        wanted = {int(self._port(port_offset(n))): f"{n} gRPC" for n in names}
        if self.options.metrics_base > 0:
            wanted |= {int(self._port(port_offset(n), metrics=True)): f"{n} metrics" for n in names}
        if self.options.monitoring and self.options.prometheus_port:
            wanted[self.options.prometheus_port] = "prometheus"
        busy = ports_in_use(wanted)
        if busy:
            taken = ", ".join(f"{p} ({wanted[p]})" for p in busy)
            raise StackError(
                f"{'port' if len(busy) == 1 else 'ports'} {taken} already in use. Is another "
                "`agentgpt up` running? Stop it (Ctrl-C in its terminal), or start this one with "
                "`--ports auto`."
            )

    async def _start(self) -> None:
        self.check_ports()
        if self.options.monitoring:
            try:  # before anything starts: a missing binary is said at once, not after the chains
                prometheus_binary()
            except PrometheusError as exc:
                raise StackError(f"--monitoring: {exc}") from None
        moved = reset_workdir(self.workdir)
        if moved:
            logs = [n for n in moved if n.endswith((".log", ".ready.json"))]
            named = [n for n in moved if n not in logs] + (
                [f"{len(logs)} log and ready files"] if logs else []
            )
            self.say(
                f"fresh chains: the previous stack's state ({', '.join(named)}) moved to {self.workdir / PREVIOUS}"
            )
        # The IPFS node and the Arweave gateway start while the chains are deployed (none needs another).
        # Both run to their end whatever happens to the other, so stop() stops everything they started.
        backends = asyncio.ensure_future(
            asyncio.gather(self._start_ipfs(), self._start_arweave(), return_exceptions=True)
        )
        try:
            chains = await self._start_chains()
        except BaseException:
            with contextlib.suppress(BaseException):
                await backends
            raise
        ipfs_api, archive_env = await backends
        for failed in (ipfs_api, archive_env):
            if isinstance(failed, BaseException):
                raise failed
        assert isinstance(ipfs_api, str) and isinstance(archive_env, dict)
        self.network = Network(tuple(chains))
        network_path = self.workdir / "network.json"
        write_network(self.network, network_path)
        owner_key = self.workdir / "owner.key"  # anvil's well-known dev key: local chains only
        owner_key.write_text(OWNER_KEY + "\n")
        owner_key.chmod(0o600)

        identities = self._issue_certificates() if self.options.tls else {}
        common = {
            "AGENTGPT_NETWORK": str(network_path),
            "AGENTGPT_IPFS_API": ipfs_api,
            "AGENTGPT_IPFS_EMBEDDED_DIR": str(self.workdir / "blocks"),
            "AGENTGPT_HEALTH_INTERVAL": "1.0",
            # without TLS, the loopback-only header trust (refused by the services on any other address)
            **({} if self.options.tls else {"AGENTGPT_TRUST_SERVICE_HEADER": "true"}),
            "AGENTGPT_DRAFT_TTL": str(self.options.durations.draft),
            "AGENTGPT_ACTIVE_TTL": str(self.options.durations.active),
            "AGENTGPT_PAUSED_TTL": str(self.options.durations.paused),
        }
        own = {
            "session": {
                **archive_env,
                "AGENTGPT_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'sessions.db'}",
                "AGENTGPT_RELAYER_KEY": DEPLOYER_KEY,
                # writer grants and the budget audit react within seconds on a laptop
                "AGENTGPT_CHAIN_SYNC_INTERVAL": "3",
            },
            "indexer": {"AGENTGPT_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'indexer.db'}"},
            "executor": {**archive_env, "AGENTGPT_KYC_ISSUERS": Account.from_key(KYC_ISSUER_KEY).address},
            "recovery_oracle": {
                "AGENTGPT_ORACLE_KEY": ORACLE_KEY,
                "AGENTGPT_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'recoveries.db'}",
                # one stable replica name: a restarted oracle resumes its own open recoveries at once
                "AGENTGPT_REPLICA_ID": "recovery-oracle-1",
            },
        }
        grpc_ports = {name: self._port(port_offset(name)) for name in service_names(self.options.executors)}
        if not self.options.base_port:
            # The oracle starts first and is told every executor's address: pick every port now (a
            # service restarted by a test comes back at the address the others know).
            for name in grpc_ports:
                grpc_ports[name] = str(free_port())
        executor_addrs = [f"127.0.0.1:{grpc_ports[name]}" for name in self.executor_keys]
        metrics_ports = {name: self._port(port_offset(name), metrics=True) for name in grpc_ports}
        if self.options.monitoring:
            # Prometheus is told every metrics port once: a service restarted (by a test) must come back
            # on the one it scrapes, so free ports are picked now too.
            for name, port in metrics_ports.items():
                if port == "0":
                    metrics_ports[name] = str(free_port())

        def launch(name: str, env: dict[str, str]) -> ServiceProcess:
            kind = service_kind(name)
            proc = ServiceProcess(
                name,
                self.workdir,
                {
                    **common,
                    **own[kind],
                    **identities.get(name, {}),
                    **env,
                    "AGENTGPT_GRPC_PORT": grpc_ports[name],
                    "AGENTGPT_METRICS_PORT": metrics_ports[name],
                    **self.options.extra_env.get(kind, {}),
                    **(self.options.extra_env.get(name, {}) if name != kind else {}),
                },
                module=kind,
            )
            self.services[name] = proc
            return proc.start()

        async def ready(names: list[str]) -> None:
            for name in names:
                await asyncio.to_thread(self.services[name].wait_ready, self.options.ready_timeout)

        # Session and indexer first: the others need their addresses. Then the oracle, told where every
        # executor will be; then the executors, told where the oracle is.
        for name in ("session", "indexer"):
            launch(name, {})
        await ready(["session", "indexer"])
        deps = {
            "AGENTGPT_SESSION_ADDR": self.services["session"].grpc,
            "AGENTGPT_INDEXER_ADDR": self.services["indexer"].grpc,
        }
        launch("recovery_oracle", {**deps, "AGENTGPT_EXECUTOR_ADDRS": ",".join(executor_addrs)})
        await ready(["recovery_oracle"])
        for name, key in self.executor_keys.items():
            launch(
                name,
                {
                    **deps,
                    "AGENTGPT_ORACLE_ADDR": self.services["recovery_oracle"].grpc,
                    "AGENTGPT_EXECUTOR_ID": name,
                    "AGENTGPT_EXECUTOR_KEY": key,
                },
            )
        await ready(list(self.executor_keys))
        await self.wait_serving(self.options.ready_timeout)
        if self.options.monitoring:
            await self._start_prometheus()
        self.write_state()

    async def _start_prometheus(self) -> None:
        """Prometheus scraping every service's /metrics (all executors too) as the clusters' ServiceMonitor
        would: see apps.localnet.prometheus for the labels."""
        targets = [
            Target(
                pod=tls_identity(name),
                service=tls_identity(service_kind(name)),
                address=f"{proc.grpc.rsplit(':', 1)[0]}:{proc.metrics_port}",
            )
            for name, proc in self.services.items()
        ]
        port = self.options.prometheus_port if self.options.base_port else 0
        self.prometheus = PrometheusNode(
            self.workdir / "prometheus", targets, port=port, scrape_interval=self.options.scrape_interval
        )
        try:
            await _finish_in_thread(self.prometheus.start)
        except PrometheusError as exc:
            raise StackError(f"--monitoring: {exc}") from None
        self.say(
            f"Prometheus at {self.prometheus.url}, scraping {len(targets)} services every "
            f"{self.options.scrape_interval:g} s (rules: {self.prometheus.rule_files[0].name})"
        )

    def _issue_certificates(self) -> dict[str, dict[str, str]]:
        """A certificate for every service and the operator, signed by this process's throwaway CA, under
        <workdir>/tls; this process's clients present the operator's from now on. The settings that give
        each service its own, by service name."""
        directory = self.workdir / TLS_DIR
        ca = _process_ca(directory)
        env: dict[str, dict[str, str]] = {}
        for name in service_names(self.options.executors):
            files = tls.issue(ca, tls_identity(name), directory)
            env[name] = {
                "AGENTGPT_TLS_CA_FILE": str(files.ca),
                "AGENTGPT_TLS_CERT_FILE": str(files.cert),
                "AGENTGPT_TLS_KEY_FILE": str(files.key),
            }
        self._previous_tls = tls.client_tls()
        tls.use_client_tls(tls.issue(ca, OPERATOR_IDENTITY, directory))
        self._tls_set = True
        self.say(f"mTLS on: certificates in {directory} (CA {ca.path.name})")
        return env

    @property
    def arweave_url(self) -> str:
        """The stack's Arweave gateway (arlocal), or "" when it runs none."""
        try:
            return self.arweave.url if self.arweave is not None else ""
        except ArlocalError:  # not started (yet)
            return ""

    async def _start_chains(self) -> list[ChainInfo]:
        """Each chain's anvil with the contracts deployed, the executors bonded and the owner funded."""
        chains: list[ChainInfo] = []
        for name, chain_id in self.options.chains:
            # (deployed under automine, at once; then a block every `block_time` s when one is asked for)
            node = AnvilNode(chain_id=chain_id, log_path=self.workdir / f"anvil-{name}.log")
            self.anvils.append(node)
            await _finish_in_thread(node.start)
            self.say(f"anvil '{name}' (chain {chain_id}) at {node.rpc_url}")
            oracle = Account.from_key(ORACLE_KEY).address
            await asyncio.to_thread(node.set_balance, oracle, ORACLE_ETH)
            dep = await deploy_all(
                node.rpc_url,
                DEPLOYER_KEY,
                oracle=oracle,
                also_oracle=[Account.from_key(DEPLOYER_KEY).address],  # the session service's relayer
                durations=self.options.durations,
                out=self.workdir / f"deployment-{name}.json",
            )
            await fund_and_bond(
                node.rpc_url,
                dep,
                DEPLOYER_KEY,
                executor_keys=list(self.executor_keys.values()),
                owners=[Account.from_key(OWNER_KEY).address],
            )
            if self.options.block_time:
                await asyncio.to_thread(node.mine_every, max(1, round(self.options.block_time)))
            self.say(
                f"contracts deployed on '{name}' at block {dep.deploy_block} "
                f"({len(self.executor_keys)} {'executor' if len(self.executor_keys) == 1 else 'executors'} "
                "bonded, owner funded): "
                + ", ".join(f"{k}={v}" for k, v in dep.contracts.items() if k != "SessionAccount")
            )
            chains.append(
                ChainInfo(
                    name=name,
                    chain_id=chain_id,
                    rpc_url=node.rpc_url,
                    deploy_block=dep.deploy_block,
                    contracts=dep.contracts,
                )
            )
        return chains

    async def _start_ipfs(self) -> str:
        """The IPFS node (its API address), or "" when the stack runs none."""
        if not self.options.ipfs:
            return ""
        from apps.localnet.ipfs import IpfsNode

        self.ipfs = IpfsNode(self.workdir / "ipfs")
        await _finish_in_thread(self.ipfs.start)
        self.say(f"IPFS node at {self.ipfs.api}")
        return str(self.ipfs.api)

    async def _start_arweave(self) -> dict[str, str]:
        """arlocal on a free port, and a new wallet for this run saved in the work dir (0600) and funded on
        it; the settings that point the session service and the executors at both. arlocal mines only when
        asked, so they are told to mine after each post (AGENTGPT_ARWEAVE_MINE). Nothing when the stack
        runs no gateway."""
        if not self.options.arweave:
            return {}
        self.arweave = ArlocalNode(self.workdir / ARWEAVE_DIR)
        await _finish_in_thread(self.arweave.start)
        wallet = await asyncio.to_thread(Wallet.generate)  # an RSA-4096 key: about a second of CPU
        path = wallet.save(self.workdir / ARWEAVE_WALLET)
        async with ArweaveClient(self.arweave.url, wallet) as client:
            await client.fund(ARWEAVE_FUNDING)
        self.arweave_wallet = wallet
        self.say(f"Arweave gateway (arlocal) at {self.arweave.url}, wallet {wallet.address} funded ({path})")
        return {
            "AGENTGPT_ARWEAVE_GATEWAY": self.arweave.url,
            "AGENTGPT_ARWEAVE_WALLET_PATH": str(path),
            "AGENTGPT_ARWEAVE_MINE": "true",
        }

    async def wait_serving(self, timeout: float) -> None:
        """Poll every service's health until all report SERVING."""
        deadline = time.monotonic() + timeout
        pending = set(self.services)
        while pending:
            for name in sorted(pending):
                proc = self.services[name]
                try:
                    if await check_health(proc.grpc) == "SERVING":
                        pending.discard(name)
                        self.say(
                            f"{name:<16} SERVING  grpc {proc.grpc}  metrics :{proc.metrics_port}  pid {proc.pid}"
                        )
                except RpcError:
                    pass
                if not proc.alive():
                    raise RuntimeError(f"{name} exited; see {proc.log_path}")
            if pending and time.monotonic() > deadline:
                raise TimeoutError(
                    f"not SERVING after {timeout:.0f} s: {', '.join(sorted(pending))} "
                    f"(logs in {self.workdir})"
                )
            if pending:
                await asyncio.sleep(0.2)

    async def holder_of(self, session_id: str) -> str | None:
        """The name of the executor process running `session_id` now (asked over GetExecutorStatus), None
        when no live executor says it does."""
        for name in self.executor_keys:
            proc = self.services.get(name)
            if proc is None or not proc.alive():
                continue
            async with ExecutorClient(proc.grpc) as client:
                try:
                    status = await client.get_status(timeout=2, retry=False)
                except RpcError:
                    continue
            if any(s.session_id == session_id for s in status.sessions):
                return name
        return None

    def state(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "network": str(self.workdir / "network.json"),
            "ipfs_api": self.ipfs.api if self.ipfs else "",
            # where the archive copies are (empty: no gateway), and the wallet that signs them
            "arweave_gateway": self.arweave_url,
            "arweave_wallet": str(self.workdir / ARWEAVE_WALLET) if self.arweave_wallet is not None else "",
            # the local Prometheus (empty: started without --monitoring)
            "prometheus_url": self.prometheus.url if self.prometheus is not None else "",
            # The dev owner and executor-1 of the local chains, for `agentgpt session create|activate`.
            "owner_key_file": str(self.workdir / "owner.key"),
            # the CA and the operator's certificate the CLI presents (empty: plaintext, --no-tls)
            "tls_dir": str(self.workdir / TLS_DIR) if self.options.tls else "",
            "executor_address": Account.from_key(EXECUTOR_KEY).address,
            "executors": [
                {
                    "id": name,
                    "address": Account.from_key(key).address,
                    "grpc": proc.grpc,
                    "pid": proc.pid,
                    "log": str(proc.log_path),
                }
                for name, key in self.executor_keys.items()
                if (proc := self.services.get(name)) is not None
            ],
            "chains": [
                {"name": c.name, "chain_id": c.chain_id, "rpc_url": c.rpc_url}
                for c in (self.network.chains if self.network else ())
            ],
            "services": {
                n: {"grpc": p.grpc, "metrics_port": p.metrics_port, "pid": p.pid, "log": str(p.log_path)}
                for n, p in self.services.items()
            },
        }

    def write_state(self) -> None:
        (self.workdir / "stack.json").write_text(json.dumps(self.state(), indent=2))

    async def stop(self) -> None:
        """Prometheus first (it only watches), then the services (SIGTERM, graceful): the executors all at
        once, so none is handed another's sessions, and once they are gone the other services together.
        Then the Arweave gateway, IPFS and the chains, together."""

        async def stop_services(names: list[str]) -> None:
            for name in names:
                self.services[name].terminate()
            codes = await asyncio.gather(*(asyncio.to_thread(self.services[n].stop) for n in names))
            for name, code in zip(names, codes, strict=True):
                self.say(f"{name} stopped (exit {code})")

        if self.prometheus is not None:
            await asyncio.to_thread(self.prometheus.stop)
            self.prometheus = None
            self.say("Prometheus stopped")
        names = list(reversed(list(self.services)))
        await stop_services([n for n in names if service_kind(n) == "executor"])
        await stop_services([n for n in names if service_kind(n) != "executor"])
        self.services.clear()
        backends: list[Any] = [b for b in (*self.anvils, self.ipfs, self.arweave) if b is not None]
        await asyncio.gather(*(asyncio.to_thread(b.stop) for b in backends))
        if self.arweave is not None:
            self.say("Arweave gateway stopped")
        if self.ipfs is not None:
            self.say("IPFS node stopped")
        if self.anvils:
            self.say("anvil stopped")
        self.arweave = None
        self.ipfs = None
        self.anvils.clear()
        if self._lock is not None:  # only the stack that owns the work dir removes its state file
            (self.workdir / "stack.json").unlink(missing_ok=True)
        self._release_workdir()
        if self._tls_set:
            tls.use_client_tls(self._previous_tls)
            self._tls_set = False


def tls_identity(name: str) -> str:
    """A stack service's certificate name: `recovery_oracle` is `recovery-oracle`, the others their own."""
    return name.replace("_", "-")


_ca: tls.Ca | None = None


def _process_ca(directory: Path) -> tls.Ca:
    """The CA of every stack this process starts (one, so that the certificate this process's clients
    present is good for each of them), written to `directory` as well (ca.pem, ca.key 0600)."""
    global _ca
    if _ca is None:
        _ca = tls.make_ca(directory)
        return _ca
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(_ca.cert_pem)
    tls.write_private(directory / "ca.key", _ca.key_pem)
    _ca = tls.Ca(cert_pem=_ca.cert_pem, key_pem=_ca.key_pem, path=directory / "ca.pem")
    return _ca


def read_state(workdir: Path) -> dict[str, Any]:
    path = workdir / "stack.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no running stack found ({path} does not exist); start one with `agentgpt up`"
        )
    data: dict[str, Any] = json.loads(path.read_text())
    return data
