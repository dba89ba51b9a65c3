"""Assembles a service process: grpc.aio server, every handler wrapped in the call pipeline (metrics, logs,
callers, errors, validation), health fed by dependency probes, reflection, Prometheus /metrics, graceful
SIGTERM. Used by every service's __main__ and by tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from agentgpt.runtime import tls
from agentgpt.runtime.config import ServerConfig
from agentgpt.runtime.interceptors import CallPipeline, ServerMetrics, Validator, WrappingServer

log = logging.getLogger("agentgpt.server")

Probe = Callable[[], Awaitable[object]]  # healthy when it returns; its value is ignored
"""A dependency probe: returns when the dependency works, raises when it does not."""

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS = "liveness"


@dataclass
class Servicer:
    """One gRPC service implementation and how to register it."""

    impl: Any
    add_to_server: Callable[[Any, aio.Server], None]
    descriptor: Any  # the proto ServiceDescriptor (for reflection, health names, validation coverage)


@dataclass
class ServiceDefinition:
    """Everything a service process serves; built by each service's `build(config, deps)`."""

    name: str
    servicers: Sequence[Servicer]
    validators: Mapping[str, Validator]
    probes: Mapping[str, Probe] = field(default_factory=dict)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    background: Sequence[Callable[[], Awaitable[None]]] = ()
    # Run first on SIGTERM, while the server still answers (an executor hands its sessions off here).
    on_drain: Sequence[Callable[[], Awaitable[None]]] = ()
    on_stop: Sequence[Callable[[], Awaitable[None]]] = ()


class MissingValidator(RuntimeError):
    pass


def _check_validators(definition: ServiceDefinition) -> None:
    missing = [
        f"/{s.descriptor.full_name}/{m.name}"
        for s in definition.servicers
        for m in s.descriptor.methods
        if f"/{s.descriptor.full_name}/{m.name}" not in definition.validators
    ]
    if missing:
        raise MissingValidator(f"{definition.name}: no request validator for {', '.join(missing)}")


def _process_metrics(registry: CollectorRegistry) -> None:
    """process_* (CPU, memory, open files, start time) and python_info on the service's /metrics, once per
    registry (a test may start a service twice on one)."""
    from prometheus_client import PlatformCollector, ProcessCollector

    if getattr(registry, "_agentgpt_process_metrics", False):
        return
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry._agentgpt_process_metrics = True  # type: ignore[attr-defined]


class RunningService:
    """A started service: ports, health, and an orderly stop."""

    def __init__(self, definition: ServiceDefinition, config: ServerConfig) -> None:
        _check_validators(definition)
        _process_metrics(definition.registry)
        self.definition = definition
        self.config = config
        self.health = health.aio.HealthServicer()
        self.tls = tls.files_from(config.tls_ca_file, config.tls_cert_file, config.tls_key_file)
        self.server = aio.server(
            options=[("grpc.max_receive_message_length", 8 * 1024 * 1024), ("grpc.so_reuseport", 0)],
        )
        pipeline = CallPipeline(
            ServerMetrics(definition.registry), definition.validators, enforce_callers=self.tls is not None
        )
        # every handler (health and reflection too) registered wrapped in the pipeline
        wrapping = WrappingServer(self.server, pipeline.wrap)
        for s in definition.servicers:
            s.add_to_server(s.impl, wrapping)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, wrapping)
        names = [s.descriptor.full_name for s in definition.servicers]
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer([*names, health.SERVICE_NAME, reflection.SERVICE_NAME]),
            wrapping,
        )
        self._service_names = names
        self.port = 0
        self.metrics_port = -1
        self._metrics_server: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.last_probe_failures: dict[str, str] = {}

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def start(self) -> None:
        listen = f"{self.config.host}:{self.config.grpc_port}"
        if self.tls is not None:
            self.port = self.server.add_secure_port(listen, tls.server_credentials(self.tls))
        else:
            self.port = self.server.add_insecure_port(listen)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC port {self.config.host}:{self.config.grpc_port}")
        if self.config.metrics_port >= 0:
            self._metrics_server, _ = start_http_server(
                self.config.metrics_port, addr=self.config.host, registry=self.definition.registry
            )
            self.metrics_port = self._metrics_server.server_port
        await self._set_all(NOT_SERVING)
        # "liveness" says only that the process works; dependency failures change readiness ("" and
        # the service names), so an orchestrator does not restart a healthy process for a dead dependency.
        await self.health.set(LIVENESS, SERVING)
        await self.server.start()
        await self.probe_once()
        self._tasks.append(asyncio.create_task(self._probe_loop(), name=f"{self.definition.name}-health"))
        for job in self.definition.background:
            self._tasks.append(asyncio.create_task(self._supervise(job), name=f"{self.definition.name}-bg"))
        log.info(
            "%s serving",
            self.definition.name,
            extra={
                "grpc": self.address,
                "metrics_port": self.metrics_port,
                "services": self._service_names,
                "mtls": self.tls is not None,
            },
        )
        if self.config.ready_file:
            Path(self.config.ready_file).write_text(
                json.dumps({"grpc": self.address, "metrics_port": self.metrics_port})
            )

    async def _supervise(self, job: Callable[[], Awaitable[None]]) -> None:
        # A background loop that dies is logged and restarted: a bug must not silently stop the service.
        while not self._stopping:
            try:
                await job()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background job of %s failed; restarting in 1 s", self.definition.name)
                await asyncio.sleep(1.0)

    async def _set_all(self, status: int) -> None:
        for name in ["", *self._service_names]:
            await self.health.set(name, status)

    async def probe_once(self) -> bool:
        failures: dict[str, str] = {}
        for name, probe in self.definition.probes.items():
            try:
                await asyncio.wait_for(probe(), timeout=max(1.0, self.config.health_interval))
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"[:300]
        if failures != self.last_probe_failures:
            if failures:
                log.warning("dependencies failing: %s", failures, extra={"failing": failures})
            elif self.last_probe_failures:
                log.info("dependencies healthy again")
        self.last_probe_failures = failures
        if not self._stopping:
            await self._set_all(NOT_SERVING if failures else SERVING)
            # Each dependency also has its own health name, e.g.
            # "agentgpt.indexer.v1.IndexerService/chain:arbitrum", so operators can see which one failed.
            for name in self.definition.probes:
                status = NOT_SERVING if name in failures else SERVING
                for service in self._service_names:
                    await self.health.set(f"{service}/{name}", status)
        return not failures

    async def _probe_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.health_interval)
            await self.probe_once()

    async def stop(self) -> None:
        """NOT_SERVING first (load balancers drain), then stop with a grace period, then close deps."""
        if self._stopping:
            return
        self._stopping = True
        await self.health.enter_graceful_shutdown()
        log.info("%s shutting down", self.definition.name, extra={"grace_s": self.config.shutdown_grace})
        for drain in self.definition.on_drain:
            try:
                await asyncio.wait_for(drain(), timeout=max(1.0, self.config.shutdown_grace))
            except Exception:
                log.exception("error while draining %s", self.definition.name)
        await asyncio.sleep(self.config.drain_delay)
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            # a loop that ignores its cancellation must not hold the shutdown forever
            done, stuck = await asyncio.wait(self._tasks, timeout=max(5.0, self.config.shutdown_grace))
            for t in done:
                if not t.cancelled():
                    t.exception()  # retrieved: a loop that failed as it stopped was logged by _supervise
            for t in stuck:
                log.error(
                    "%s: background task %s did not stop when cancelled", self.definition.name, t.get_name()
                )
        await self.server.stop(self.config.shutdown_grace)
        for close in self.definition.on_stop:
            try:
                await close()
            except Exception:
                log.exception("error while closing a dependency of %s", self.definition.name)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        log.info("%s stopped", self.definition.name)


async def serve(definition: ServiceDefinition, config: ServerConfig) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully. The body of every service's __main__."""
    service = RunningService(definition, config)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()


def run(build: Callable[[], Awaitable[ServiceDefinition]], config: ServerConfig) -> None:
    async def main() -> None:
        definition = await build()
        await serve(definition, config)

    asyncio.run(main())


def service_main(
    name: str,
    config_cls: type[Any],
    build: Callable[[Any], Awaitable[ServiceDefinition]],
    commands: str = "",
) -> None:
    """The whole `python -m services.<name>`: --help lists every setting; config read once; serve."""
    import sys

    from agentgpt.runtime import config as cfg
    from agentgpt.runtime import logs

    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(
            f"usage: python -m services.{name}\n\nThe {name} service. Configured by environment variables:\n"
        )
        for var, default, doc in cfg.describe(cfg.ServerConfig) + cfg.describe(config_cls):
            print(f"  {var:<34} {doc} (default: {default or '(empty)'})")
        if commands:
            print(f"\nOperator commands (run with the service stopped):\n{commands}")
        return
    try:
        server_config = cfg.load(cfg.ServerConfig)
        service_config = cfg.load(config_cls)
        files = tls.files_from(
            server_config.tls_ca_file, server_config.tls_cert_file, server_config.tls_key_file
        )
        tls.check_header_trust(
            bool(getattr(service_config, "trust_service_header", False)), server_config.host
        )
        tls.use_client_tls(files)  # this service's clients present its certificate
    except cfg.ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(name, server_config.log_level)
    run(lambda: build(service_config), server_config)
