"""Loopback ports for the local processes (anvil, IPFS, PostgreSQL, the services)."""

from __future__ import annotations

import socket
from collections.abc import Iterable


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports_in_use(ports: Iterable[int], host: str = "127.0.0.1") -> list[int]:
    """Those of `ports` that cannot be bound on `host` (another process listens on them)."""
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                busy.append(port)
    return busy
