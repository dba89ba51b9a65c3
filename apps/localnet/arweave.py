"""A real Arweave gateway (arlocal) on loopback, for tests and the `agentgpt up` stack launcher.

arlocal 1.1.66 (tools/arlocal, installed by `make setup`) serves the Arweave HTTP API and GraphQL from a
SQLite store and mines only when asked (GET /mine). `tools/arlocal/arlocal-node.js` runs it bound to
127.0.0.1 and keeps the store across restarts. Each `ArlocalNode` gets its own store directory, pidfile,
log and free loopback port, so several can run side by side, and is always stopped by stop()/__exit__
(also at interpreter exit), including when start-up fails half-way. Given a `base_dir`, the store survives
stop() and a later start() serves the same transactions (on a fresh port unless one is fixed); without
one, a temp dir is used and removed.

The kit directory is found relative to the repo root unless AGENTGPT_ARLOCAL_DIR points elsewhere; `node`
from PATH runs it unless AGENTGPT_NODE names another binary.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from apps.localnet.ipfs import pid_alive
from apps.localnet.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NODE_DIR = REPO_ROOT / "tools" / "arlocal"
ENV_NODE_DIR = "AGENTGPT_ARLOCAL_DIR"
ENV_NODE_BIN = "AGENTGPT_NODE"
LAUNCHER = "arlocal-node.js"


class ArlocalError(RuntimeError):
    """The arlocal kit is missing or the gateway did not come up."""


def node_dir() -> Path:
    """The kit: $AGENTGPT_ARLOCAL_DIR, else tools/arlocal in this repo (must be installed)."""
    path = Path(os.environ.get(ENV_NODE_DIR) or DEFAULT_NODE_DIR)
    if not (path / LAUNCHER).is_file():
        raise ArlocalError(f"{path / LAUNCHER} not found; set {ENV_NODE_DIR} to the arlocal kit directory")
    if not (path / "node_modules" / "arlocal" / "package.json").is_file():
        raise ArlocalError(
            f"arlocal is not installed in {path}; run `make setup` (or `bash {path / 'install.sh'}`)"
        )
    return path


class ArlocalNode:
    """One arlocal gateway process. Context manager, or start()/stop() (both idempotent)."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self._given_dir = Path(base_dir) if base_dir is not None else None
        self.base_dir: Path | None = None
        self.port = port
        self._fixed_port = port is not None
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False

    # ---------------------------------------------------------------- properties
    @property
    def url(self) -> str:
        """The gateway's base URL (what ArweaveClient and AGENTGPT_ARWEAVE_GATEWAY take)."""
        if not self._started or self.port is None:
            raise ArlocalError("arlocal is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_dir(self) -> Path:
        """Where arlocal keeps its SQLite store and data files."""
        return self._dir() / "db"

    @property
    def log_path(self) -> Path:
        return self._dir() / "arlocal.log"

    @property
    def pidfile(self) -> Path:
        return self._dir() / "arlocal.pid"

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError, ArlocalError):
            return None

    @property
    def running(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def _dir(self) -> Path:
        if self.base_dir is None:
            raise ArlocalError("arlocal is not started")
        return self.base_dir

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> ArlocalNode:
        if self._started:
            return self
        kit = node_dir()
        if self._given_dir is not None:
            self._given_dir.mkdir(parents=True, exist_ok=True)
            self.base_dir = self._given_dir
        else:
            self.base_dir = Path(tempfile.mkdtemp(prefix="agentgpt-arlocal-"))
        atexit.register(self.stop)
        self._clear_stale_state()
        attempts = 1 if self._fixed_port else 3  # a free port can be taken between probe and bind
        error: ArlocalError | None = None
        for _ in range(attempts):
            port = self.port if self._fixed_port and self.port is not None else free_port()
            try:
                self._launch(kit, port)
                self._wait_ready(port)
                self.port = port
                self._started = True
                return self
            except ArlocalError as exc:
                error = exc
                self._kill()
        self.stop()
        assert error is not None
        raise error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the gateway (SIGTERM, then SIGKILL) and remove a temp dir we created. Safe to repeat."""
        if self.base_dir is not None:
            self._kill(timeout)
            if self._given_dir is None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None
        self._started = False
        if not self._fixed_port:
            self.port = None
        atexit.unregister(self.stop)

    def __enter__(self) -> ArlocalNode:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals
    def _clear_stale_state(self) -> None:
        """A previous run killed with SIGKILL leaves its pidfile, and possibly its gateway (which outlives
        its parent), behind. A gateway still serving this store would keep it open under the new one:
        stop it if the pid really is arlocal on this store; otherwise the pidfile is just stale."""
        pid = self.pid
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        if pid_alive(pid) and self._is_ours(pid):
            self._signal_and_wait(pid, 10.0)
        self.pidfile.unlink(missing_ok=True)

    def _is_ours(self, pid: int) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        args = [a.decode(errors="replace") for a in argv]
        return any(a.endswith(LAUNCHER) for a in args) and str(self.db_dir) in args

    def _launch(self, kit: Path, port: int) -> None:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        node = os.environ.get(ENV_NODE_BIN) or "node"
        with self.log_path.open("ab") as log:
            log.write(
                f"--- starting arlocal on 127.0.0.1:{port} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode()
            )
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    [node, str(kit / LAUNCHER), "--port", str(port), "--db", str(self.db_dir)],
                    cwd=self._dir(),  # arlocal appends its request log to ./logs
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:
                raise ArlocalError(f"cannot run {node!r} ({exc.strerror}); is Node.js installed?") from None
        self.pidfile.write_text(f"{self._proc.pid}\n")

    def _wait_ready(self, port: int) -> None:
        """Until GET /info answers with arlocal's network info, the process exits, or the timeout passes."""
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://127.0.0.1:{port}/info"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ArlocalError(
                    f"arlocal exited with {code} before serving on port {port}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    info = json.loads(resp.read())
                if isinstance(info, dict) and "network" in info:
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        raise ArlocalError(
            f"arlocal did not answer {url} within {self.startup_timeout:g}s; log tail:\n{self._log_tail()}"
        )

    def _kill(self, timeout: float = 10.0) -> None:
        pid = self._proc.pid if self._proc is not None else self.pid
        if pid is not None:
            self._signal_and_wait(pid, timeout)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1.0)  # reap it
            self._proc = None
        if self.base_dir is not None:
            self.pidfile.unlink(missing_ok=True)

    def _signal_and_wait(self, pid: int, timeout: float) -> None:
        """SIGTERM (the launcher closes the store and exits), then SIGKILL if it does not."""
        if not pid_alive(pid):
            return
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.pid == pid:
                    if self._proc.poll() is not None:
                        return
                elif not pid_alive(pid):
                    return
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, ArlocalError):
            return ""
