"""A local Prometheus for `agentgpt up --monitoring`: scrapes every service of the local stack and
evaluates the same alert rules as the clusters (k8s/monitoring/rules/agentgpt.rules.yml).

The rules and the Grafana dashboard select on the labels the Kubernetes ServiceMonitor gives every series
(job="agentgpt", service=<Service name>, namespace, pod), so each local target carries the same ones:
`service` is the Kubernetes Service the process stands for (`session`, `indexer`, `recovery-oracle`,
`executor`: every executor process is one pod of the one `executor` Service), `pod` the process's stack
name (`executor-2`), and `namespace` NAMESPACE. The rules and dashboard queries then work unchanged.

Prometheus is Debian's `prometheus` package (`make setup` installs it with promtool), found on PATH, or
$AGENTGPT_PROMETHEUS names the binary. Its config, log and TSDB live in one directory of the stack's work
directory. It listens on loopback only.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from apps.localnet.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = REPO_ROOT / "k8s" / "monitoring" / "rules" / "agentgpt.rules.yml"
ENV_BINARY = "AGENTGPT_PROMETHEUS"
#: What the rules and the dashboard select on: the ServiceMonitor's job label (the Services' part-of).
JOB = "agentgpt"
#: The namespace label of every local series (the clusters' are `agentgpt-dev`, `agentgpt`, ...).
NAMESPACE = "agentgpt-local"
DEFAULT_PORT = 9090
CONFIG = "prometheus.yml"


class PrometheusError(RuntimeError):
    """Prometheus is not installed or did not come up; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """One /metrics endpoint and the labels its series get."""

    pod: str  # the process's name in the stack: session, recovery-oracle, executor-1, ...
    service: str  # the Kubernetes Service it stands for: session, indexer, recovery-oracle, executor
    address: str  # host:port of its /metrics


def binary() -> str:
    """The prometheus binary: $AGENTGPT_PROMETHEUS, else `prometheus` on PATH."""
    name = os.environ.get(ENV_BINARY) or "prometheus"
    found = shutil.which(name)
    if found is None:
        where = f"${ENV_BINARY} names {name!r}, which" if os.environ.get(ENV_BINARY) else "`prometheus`"
        raise PrometheusError(
            f"{where} is not an executable on PATH; run `make setup` (it installs Debian's `prometheus` "
            "package with promtool), or start the stack without --monitoring"
        )
    return found


def config(targets: Sequence[Target], scrape_interval: float, rule_files: Sequence[Path]) -> dict[str, Any]:
    """The prometheus.yml for `targets`: one `agentgpt` job, each target with its own labels."""
    interval = f"{max(1, round(scrape_interval))}s"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,  # (at most the interval; a loopback scrape takes milliseconds)
            "evaluation_interval": interval,
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        "targets": [t.address],
                        "labels": {"service": t.service, "pod": t.pod, "namespace": NAMESPACE},
                    }
                    for t in targets
                ],
            }
        ],
    }


class PrometheusNode:
    """One Prometheus process on loopback with its config and TSDB in `directory`. start()/stop() (both
    idempotent) or a context manager; stopped at interpreter exit too."""

    def __init__(
        self,
        directory: Path,
        targets: Sequence[Target],
        *,
        port: int = 0,
        scrape_interval: float = 5.0,
        rule_files: Sequence[Path] = (RULES_FILE,),
        startup_timeout: float = 30.0,
    ) -> None:
        self.directory = directory
        self.targets = tuple(targets)
        self.port = port  # 0: a free port, chosen at start
        self._fixed_port = port != 0
        self.scrape_interval = scrape_interval
        self.rule_files = tuple(rule_files)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The web UI and HTTP API (`/api/v1/...`); "" when not running."""
        return f"http://127.0.0.1:{self.port}" if self._proc is not None else ""

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> PrometheusNode:
        if self._proc is not None:
            return self
        exe = binary()
        for rules in self.rule_files:
            if not rules.is_file():
                raise PrometheusError(f"rule file {rules} not found (run from a checkout of the repository)")
        self.directory.mkdir(parents=True, exist_ok=True)
        config_path = self.directory / CONFIG
        config_path.write_text(
            yaml.safe_dump(config(self.targets, self.scrape_interval, self.rule_files), sort_keys=False)
        )
        attempts = 1 if self._fixed_port else 3  # a free port can be taken between probe and bind
        error: PrometheusError | None = None
        for _ in range(attempts):
            port = self.port if self._fixed_port else free_port()
            try:
                self._launch(exe, config_path, port)
                self.port = port
                self._wait_ready()
                return self
            except PrometheusError as exc:
                error = exc
                self.stop()
        assert error is not None
        raise error

    def _launch(self, exe: str, config_path: Path, port: int) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- starting prometheus on 127.0.0.1:{port} at {time.strftime('%FT%T')}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    [
                        exe,
                        f"--config.file={config_path}",
                        f"--storage.tsdb.path={self.directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        # a local stack's history is one run's: a day is plenty
                        "--storage.tsdb.retention.time=1d",
                    ],
                    cwd=self.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:
                raise PrometheusError(f"cannot run {exe} ({exc.strerror or exc})") from None
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        """Until /-/ready answers (the TSDB is open, the config and the rule files loaded), the process
        exits (a bad config or rule file, the port taken), or the timeout passes."""
        deadline = time.monotonic() + self.startup_timeout
        ready = f"{self.url}/-/ready"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise PrometheusError(
                    f"prometheus exited with {code} before serving on port {self.port}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(ready, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise PrometheusError(
            f"prometheus did not answer {ready} within {self.startup_timeout:g}s; log tail:\n{self._log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Prometheus flushes its head block and exits), then SIGKILL. Safe to repeat."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not self._fixed_port and proc is not None:
            self.port = 0
        atexit.unregister(self.stop)

    def __enter__(self) -> PrometheusNode:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def api(self, path: str, timeout: float = 5.0) -> object:
        """GET `path` of the HTTP API (e.g. `/api/v1/targets`): its `data`, or PrometheusError."""
        if not self.url:
            raise PrometheusError("prometheus is not running")
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                body = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PrometheusError(f"GET {self.url}{path} failed: {exc}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PrometheusError(f"GET {self.url}{path}: {body}")
        return body.get("data")

    def _log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""
