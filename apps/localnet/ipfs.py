"""A real IPFS node (Kubo-compatible RPC) on loopback, for tests and for the `agentgpt up` stack launcher.

Kubo cannot be installed here (its npm package downloads a binary), so the node is js-ipfs 0.66.1 run
offline by tools/ipfs-node/jsipfs-node.sh (see TOOLING.md and that script). Each `IpfsNode` gets its own
repo, pidfile, log and free loopback API/gateway ports, so several can run side by side, and is always
stopped by stop()/__exit__ (also at interpreter exit), including when start-up fails half-way. Given a
`base_dir`, the repo survives stop() and a later start() serves the same content (on fresh ports);
without one, a temp dir is used and removed.

The kit directory is found relative to the repo root unless AGENTGPT_IPFS_NODE_DIR points elsewhere.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from apps.localnet.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NODE_DIR = REPO_ROOT / "tools" / "ipfs-node"
ENV_NODE_DIR = "AGENTGPT_IPFS_NODE_DIR"
SCRIPT = "jsipfs-node.sh"


class IpfsNodeError(RuntimeError):
    """The node kit is missing or the node did not come up."""


def node_dir() -> Path:
    """The node kit: $AGENTGPT_IPFS_NODE_DIR, else tools/ipfs-node in this repo (must be `install`ed)."""
    path = Path(os.environ.get(ENV_NODE_DIR) or DEFAULT_NODE_DIR)
    if not (path / SCRIPT).is_file():
        raise IpfsNodeError(f"{path / SCRIPT} not found; set {ENV_NODE_DIR} to the ipfs-node kit directory")
    if not (path / "node_modules" / ".bin" / "jsipfs").exists():
        raise IpfsNodeError(f"js-ipfs is not installed in {path}; run `{path / SCRIPT} install` (needs npm)")
    return path


def pid_alive(pid: int) -> bool:
    """Whether process `pid` is running (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else
        return True
    try:  # a zombie (exited, not yet reaped by whoever adopted it) counts as stopped
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return True


class IpfsNode:
    """One js-ipfs daemon. Context manager, or start()/stop() (both idempotent)."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        api_port: int | None = None,
        gateway_port: int | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self._given_dir = Path(base_dir) if base_dir is not None else None
        self.base_dir: Path | None = None
        self.api_port = api_port
        self.gateway_port = gateway_port
        self.startup_timeout = startup_timeout
        self._started = False

    # ---------------------------------------------------------------- properties
    @property
    def api(self) -> str:
        """The RPC API as a multiaddr, the form AGENTGPT_IPFS_API and aioipfs take."""
        return f"/ip4/127.0.0.1/tcp/{self._port()}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._port()}"

    @property
    def gateway_url(self) -> str:
        if self.gateway_port is None:
            raise IpfsNodeError("IPFS node is not started")
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def repo(self) -> Path:
        return self._dir() / "repo"

    @property
    def log_path(self) -> Path:
        return self._dir() / "jsipfs.log"

    @property
    def pidfile(self) -> Path:
        return self._dir() / "jsipfs.pid"

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError, IpfsNodeError):
            return None

    @property
    def running(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def _port(self) -> int:
        if not self._started or self.api_port is None:
            raise IpfsNodeError("IPFS node is not started")
        return self.api_port

    def _dir(self) -> Path:
        if self.base_dir is None:
            raise IpfsNodeError("IPFS node is not started")
        return self.base_dir

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> IpfsNode:
        if self._started:
            return self
        kit = node_dir()
        if self._given_dir is not None:
            self._given_dir.mkdir(parents=True, exist_ok=True)
            self.base_dir = self._given_dir
        else:
            self.base_dir = Path(tempfile.mkdtemp(prefix="agentgpt-ipfs-"))
        atexit.register(self.stop)
        self._clear_stale_lock()
        fixed = self.api_port is not None and self.gateway_port is not None
        attempts = 1 if fixed else 3  # a free port can be taken between probe and bind
        error: IpfsNodeError | None = None
        for _ in range(attempts):
            api_port = self.api_port if self.api_port is not None else free_port()
            gw_port = self.gateway_port if self.gateway_port is not None else free_port()
            try:
                self._set_ports(api_port, gw_port)
                self._run_script(kit, "start", api_port, gw_port, timeout=self.startup_timeout)
                self.api_port, self.gateway_port = api_port, gw_port
                self._started = True
                return self
            except IpfsNodeError as exc:
                error = exc
                self._kill()
                # The repo config records the ports: start the next attempt from a fresh repo.
                shutil.rmtree(self.repo, ignore_errors=True)
        self.stop()
        assert error is not None
        raise error

    def _clear_stale_lock(self) -> None:
        """A daemon killed with SIGKILL leaves its repo lock behind (a file or a directory); with no daemon
        running on this repo it is stale, and would stop the next start."""
        lock = self.repo / "repo.lock"
        if not (lock.exists() or lock.is_symlink()) or self.running:
            return
        if lock.is_dir():
            shutil.rmtree(lock, ignore_errors=True)
        else:
            lock.unlink(missing_ok=True)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL) and remove a temp dir we created. Safe to repeat."""
        if self.base_dir is not None:
            try:
                kit = node_dir()
                if self.pidfile.exists():
                    self._run_script(kit, "stop", self.api_port or 0, self.gateway_port or 0, timeout=timeout)
            except (IpfsNodeError, OSError):
                pass
            self._kill()  # belt and braces: the script may be missing or have timed out
            if self._given_dir is None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None
        self._started = False
        atexit.unregister(self.stop)

    def __enter__(self) -> IpfsNode:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals
    def _env(self, api_port: int, gw_port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            IPFS_PATH=str(self.repo),
            IPFS_API_PORT=str(api_port),
            IPFS_GW_PORT=str(gw_port),
            JSIPFS_PIDFILE=str(self.pidfile),
            JSIPFS_LOG=str(self.log_path),
            JSIPFS_LOCAL_ONLY="1",  # missing blocks fail fast instead of waiting on the (empty) network
        )
        env.pop("JSIPFS_DIR", None)  # the script must use the kit it lives in
        return env

    def _set_ports(self, api_port: int, gw_port: int) -> None:
        """Point an existing repo (a restart on the same directory) at this start's ports; the script only
        writes them when it initialises a new repo. Content and pins are kept."""
        config = self.repo / "config"
        if not config.is_file():
            return
        try:
            data = json.loads(config.read_text())
            data.setdefault("Addresses", {})
            data["Addresses"]["API"] = f"/ip4/127.0.0.1/tcp/{api_port}"
            data["Addresses"]["Gateway"] = f"/ip4/127.0.0.1/tcp/{gw_port}"
            config.write_text(json.dumps(data, indent=2))
        except (OSError, ValueError) as exc:
            raise IpfsNodeError(f"cannot update ports in {config}: {exc}") from None

    def _run_script(self, kit: Path, action: str, api_port: int, gw_port: int, *, timeout: float) -> None:
        try:
            proc = subprocess.run(
                ["bash", str(kit / SCRIPT), action],
                env=self._env(api_port, gw_port),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise IpfsNodeError(
                f"`{SCRIPT} {action}` did not finish within {timeout:g}s; log tail:\n{self._log_tail()}"
            ) from None
        if proc.returncode != 0:
            raise IpfsNodeError(
                f"`{SCRIPT} {action}` failed (exit {proc.returncode}) on API port {api_port}:\n"
                f"{(proc.stdout + proc.stderr)[-2000:]}\nlog tail:\n{self._log_tail()}"
            )

    def _kill(self, timeout: float = 5.0) -> None:
        pid = self.pid
        if pid is not None and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.base_dir is not None:
            self.pidfile.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, IpfsNodeError):
            return ""
