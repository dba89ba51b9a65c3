"""Service processes for the local stack and end-to-end tests: start with a ready file, stop with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class ProcessError(RuntimeError):
    """A service process failed to start; the message carries the tail of its log."""


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class ServiceProcess:
    """`python -m services.<module>` (default: `name`) with its own log and ready file under `workdir`,
    both named after `name` (`executor-2.log` for the second of several executors)."""

    def __init__(self, name: str, workdir: Path, env: Mapping[str, str], module: str = "") -> None:
        self.name = name
        self.module = module or name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.ready_path = workdir / f"{name}.ready.json"
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.grpc = ""
        self.metrics_port = -1

    def start(self) -> ServiceProcess:
        self.ready_path.unlink(missing_ok=True)
        env = {**os.environ, **self.env, "AGENTGPT_READY_FILE": str(self.ready_path)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.module}"],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise ProcessError(
                    f"{self.name} exited with {code} before serving:\n{log_tail(self.log_path)}"
                )
            if self.ready_path.exists():
                try:
                    info = json.loads(self.ready_path.read_text())
                except ValueError:
                    info = None  # being written
                if info:
                    self.grpc, self.metrics_port = info["grpc"], int(info["metrics_port"])
                    return
            time.sleep(0.05)
        raise ProcessError(
            f"{self.name} did not start serving within {timeout:.0f} s:\n{log_tail(self.log_path)}"
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait for the graceful exit, SIGKILL if it does not come."""
        if self.proc is None:
            return None
        self.terminate()
        code = self.wait(timeout)
        if code is None:
            self.proc.kill()
            code = self.proc.wait()
        return code
