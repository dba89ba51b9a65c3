"""A throwaway PostgreSQL server for tests and local runs: initdb + postgres in a temp dir on a free
loopback port, run as an unprivileged user (initdb refuses root), always stopped and removed.

    with PostgresServer() as pg:
        url = pg.url            # postgresql+asyncpg://agentgpt@127.0.0.1:<port>/agentgpt

Binaries come from AGENTGPT_PG_BIN (a directory) or PATH (/usr/local/bin has initdb, pg_ctl, postgres here).
When running as root the server runs as the system user `agentgpt-pg` (created with `useradd -r` if absent).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from apps.localnet.ports import free_port

PG_USER = "agentgpt-pg"
DB_NAME = "agentgpt"
DB_ROLE = "agentgpt"


class PostgresError(RuntimeError):
    """The server binaries are missing or the server did not come up."""


def _binary(name: str) -> str:
    base = os.environ.get("AGENTGPT_PG_BIN")
    path = str(Path(base) / name) if base else shutil.which(name) or f"/usr/local/bin/{name}"
    if not os.access(path, os.X_OK):
        raise PostgresError(f"{name} not found (set AGENTGPT_PG_BIN to the PostgreSQL bin directory)")
    return path


class PostgresServer:
    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise PostgresError("PostgreSQL is not started")
        return f"postgresql+asyncpg://{DB_ROLE}@127.0.0.1:{self.port}/{DB_NAME}"

    def _as_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", self._user, "--", *cmd] if self._user else cmd

    def _ensure_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", PG_USER], check=True, capture_output=True
            )
        self._user = PG_USER

    def start(self) -> PostgresServer:
        if self._proc is not None:
            return self
        self._ensure_user()
        self.dir = Path(tempfile.mkdtemp(prefix="agentgpt-pg-"))
        data, sock = self.dir / "data", self.dir / "sock"
        sock.mkdir()
        if self._user:
            pw = pwd.getpwnam(self._user)
            for p in (self.dir, sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        atexit.register(self.stop)
        try:
            init = subprocess.run(
                self._as_user(
                    [
                        _binary("initdb"),
                        "-D",
                        str(data),
                        "-U",
                        DB_ROLE,
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--no-sync",
                    ]
                ),
                capture_output=True,
            )
            if init.returncode != 0:
                raise PostgresError(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")
            last = ""
            for _ in range(3):  # a free port can be taken between probe and bind
                self.port = free_port()
                log = open(self.dir / "postgres.log", "ab")
                self._proc = subprocess.Popen(
                    self._as_user(
                        [
                            _binary("postgres"),
                            "-D",
                            str(data),
                            "-p",
                            str(self.port),
                            "-h",
                            "127.0.0.1",
                            "-k",
                            str(sock),
                            "-c",
                            "fsync=off",
                            "-c",
                            "synchronous_commit=off",
                            "-c",
                            "full_page_writes=off",
                            "-c",
                            "max_connections=100",
                        ]
                    ),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
                log.close()
                if self._wait_ready():
                    self._createdb()
                    return self
                last = self._log_tail()
                self._terminate()
            raise PostgresError(f"postgres did not start:\n{last}")
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> bool:
        """The port accepts connections (the database itself is then created with retries)."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port or 0), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def _createdb(self) -> None:
        import asyncio

        import asyncpg

        async def create() -> None:
            for _ in range(50):
                try:
                    conn = await asyncpg.connect(
                        host="127.0.0.1", port=self.port, user=DB_ROLE, database="postgres"
                    )
                    break
                except (OSError, asyncpg.PostgresError):
                    await asyncio.sleep(0.1)
            else:
                raise PostgresError("cannot connect to the new server")
            try:
                await conn.execute(f"CREATE DATABASE {DB_NAME}")
            finally:
                await conn.close()

        # A thread of its own: start() may be called from code already running an event loop.
        import threading

        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(create())
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=run, name="agentgpt-pg-createdb")
        t.start()
        t.join()
        if errors:
            raise errors[0]

    def _log_tail(self) -> str:
        if self.dir is None or not (self.dir / "postgres.log").exists():
            return ""
        return "\n".join((self.dir / "postgres.log").read_text(errors="replace").splitlines()[-20:])

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: smart shutdown; SIGINT would be "fast"
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Stop the server and delete its directory. Safe to call more than once."""
        self._terminate()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
