"""A real anvil chain on loopback, for tests and for the `agentgpt up` stack launcher.

anvil ships inside the npm package `@foundry-rs/anvil-linux-amd64` (see package.json), so the binary is
found under the repo's node_modules unless AGENTGPT_ANVIL_BIN points elsewhere. The node listens on a free
loopback port, is ready once `eth_chainId` answers, and is stopped with SIGTERM (then SIGKILL).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from apps.localnet.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
ENV_BIN = "AGENTGPT_ANVIL_BIN"

#: anvil's default mnemonic ("test test ... junk"), accounts m/44'/60'/0'/0/0..9. Public knowledge: these
#: keys must never hold value on a real network.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


class AnvilError(RuntimeError):
    """anvil could not be found or did not come up."""


def anvil_binary() -> Path:
    """The anvil executable: $AGENTGPT_ANVIL_BIN, else the one in the repo's node_modules."""
    path = Path(os.environ.get(ENV_BIN) or DEFAULT_BIN)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise AnvilError(f"anvil binary not found at {path}; run `npm ci` or set {ENV_BIN}")
    return path


def rpc_call(url: str, method: str, params: list[Any]) -> Any:
    """One JSON-RPC call to the anvil at `url` (also one in a container); AnvilError when it answers an
    error."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise AnvilError(f"{method}({params}) failed: {answer['error']}")
    return answer.get("result")


class AnvilNode:
    """One anvil process. Use as a context manager, or call start()/stop() (idempotent)."""

    def __init__(
        self,
        chain_id: int = 31337,
        *,
        port: int | None = None,
        block_time: float | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
        log_path: Path | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.port = port
        self.block_time = block_time
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._log_file: Path | None = None

    # ---------------------------------------------------------------- properties
    @property
    def rpc_url(self) -> str:
        if self.port is None:
            raise AnvilError("anvil is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def private_keys(self) -> tuple[str, ...]:
        """The 10 funded dev accounts' private keys (10,000 ETH each at genesis)."""
        return DEV_PRIVATE_KEYS

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> AnvilNode:
        if self.running:
            return self
        binary = anvil_binary()
        attempts = 1 if self.port is not None else 3  # a free port can be taken between probe and bind
        last_error: AnvilError | None = None
        for _ in range(attempts):
            port = self.port if self.port is not None else free_port()
            try:
                self._spawn(binary, port)
                self.port = port
                atexit.register(self.stop)
                return self
            except AnvilError as exc:
                last_error = exc
                self._terminate()
        assert last_error is not None
        raise last_error

    def mine_every(self, seconds: int) -> None:
        """Mine a block every `seconds` s from now on (0: stop mining; transactions wait in the mempool).
        A stack deploys at once under automine, then switches to interval mining this way."""
        self.rpc("evm_setIntervalMining", [seconds])

    def set_balance(self, address: str, wei: int) -> None:
        """Give `address` `wei` of ETH (anvil_setBalance): a dev key outside the 10 funded accounts."""
        self.rpc("anvil_setBalance", [address, hex(wei)])

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call to this node (AnvilError when it answers an error)."""
        return rpc_call(self.rpc_url, method, params)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL. Safe to call more than once."""
        self._terminate(timeout)
        atexit.unregister(self.stop)

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals
    def _spawn(self, binary: Path, port: int) -> None:
        cmd = [
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--chain-id",
            str(self.chain_id),
            "--accounts",
            str(len(DEV_PRIVATE_KEYS)),
            "--mnemonic",
            DEV_MNEMONIC,
        ]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        cmd += list(self.extra_args)
        if self.log_path is not None:
            log = self.log_path
        else:
            fd, name = tempfile.mkstemp(prefix="anvil-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self._log_file = log
        with open(log, "ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._watch(self._proc.pid)
        self._wait_ready(port)

    def _watch(self, pid: int) -> None:
        """A watchdog that kills anvil once this process is gone: a parent killed with SIGKILL (a timed-out
        test, `kill -9` of `agentgpt up`) cannot stop its chains, which would otherwise run on, re-parented
        to init. It ends by itself with anvil."""
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; "
            f"kill -KILL {pid} 2>/dev/null"
        )
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # (a Ctrl-C to the terminal's process group leaves it watching)
        )

    def _wait_ready(self, port: int) -> None:
        url = f"http://127.0.0.1:{port}"
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise AnvilError(f"anvil exited during start-up:\n{self._log_tail()}")
            try:
                req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=1.0) as resp:
                    answer = json.loads(resp.read())
                if int(answer["result"], 16) != self.chain_id:
                    raise AnvilError(f"port {port} answers chain id {answer['result']}, not {self.chain_id}")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.05)
        raise AnvilError(f"anvil did not answer on {url} within {self.startup_timeout}s:\n{self._log_tail()}")

    def _terminate(self, timeout: float = 5.0) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None and self.log_path is None:
            self._log_file.unlink(missing_ok=True)
            self._log_file = None

    def _log_tail(self, lines: int = 20) -> str:
        if self._log_file is None or not self._log_file.exists():
            return ""
        return "\n".join(self._log_file.read_text(errors="replace").splitlines()[-lines:])
