"""Typed configuration read once at start from AGENTGPT_* environment variables.

Each service declares a frozen dataclass whose fields carry a `doc` in their metadata; `load()`
fills it from the environment (AGENTGPT_<FIELD>, upper-cased) and `describe()` lists every
variable for the README and `agentgpt config`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

PREFIX = "AGENTGPT_"


class ConfigError(ValueError):
    """A configuration variable is set to something that cannot be used."""


def setting(default: Any, doc: str) -> Any:
    """A config field with its documentation (shown by `agentgpt config` and in the README)."""
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def _convert(name: str, raw: str, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw == "":
            return None
        return _convert(name, raw, args[0])
    try:
        if typ is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true/false")
        if typ is int:
            return int(raw, 0)
        if typ is float:
            return float(raw)
        if typ is str:
            return raw
        if origin is tuple or typ is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None
    raise ConfigError(f"{name}: unsupported type {typ!r}")


def load(cls: type[T], env: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build `cls` from defaults, then the environment, then explicit overrides (tests).

    Every setting can also be read from a file: `AGENTGPT_<NAME>_FILE` names it (the Docker and
    Kubernetes convention for secrets mounted as files; surrounding whitespace is dropped).
    """
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = PREFIX + f.name.upper()
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif var + "_FILE" in env:
            if var in env:
                raise ConfigError(f"{var} and {var}_FILE are both set; set one of them")
            values[f.name] = _convert(
                var, _read_setting_file(var + "_FILE", env[var + "_FILE"]), hints[f.name]
            )
        elif var in env:
            values[f.name] = _convert(var, env[var], hints[f.name])
    return cls(**values)


def _read_setting_file(var: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise ConfigError(f"{var}={path!r}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{var}={path!r}: not UTF-8 text") from None


def describe(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(variable, default, doc) for every field of `cls`."""
    rows = []
    for f in dataclasses.fields(cls):
        factory: Any = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else factory()
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        rows.append((PREFIX + f.name.upper(), str(default), f.metadata.get("doc", "")))
    return rows


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Settings every service process has."""

    host: str = setting("127.0.0.1", "Address the gRPC and metrics servers bind to")
    grpc_port: int = setting(0, "gRPC port (0 picks a free port; the chosen port is logged)")
    metrics_port: int = setting(0, "Prometheus /metrics port (0 picks a free port; -1 disables)")
    shutdown_grace: float = setting(5.0, "Seconds in-flight RPCs get to finish after SIGTERM")
    drain_delay: float = setting(0.5, "Seconds NOT_SERVING is reported before the server stops accepting")
    health_interval: float = setting(2.0, "Seconds between dependency probes feeding the health service")
    log_level: str = setting("INFO", "Log level: DEBUG, INFO, WARNING, ERROR")
    ready_file: str = setting("", "If set, the bound ports are written here as JSON once serving")
    tls_ca_file: str = setting(
        "",
        "PEM file of the CA that signs every service's certificate. With TLS_CERT_FILE and TLS_KEY_FILE: mTLS "
        "on (the server requires a client certificate from this CA; the caller's identity is its name)",
    )
    tls_cert_file: str = setting("", "PEM file of this service's certificate (its name is its identity)")
    tls_key_file: str = setting("", "PEM file of this service's private key. Secret: keep it 0600")
