"""What every RPC of a service goes through, one concern after another: metrics, request context + logging,
caller identity, errors, validation.

Order (outermost first): metrics, request context, callers, errors, validation — so metrics see the final
status code, a refused caller is logged, and validation errors are mapped like any other domain error.

The concerns are not grpc.aio interceptors: grpc.aio runs each interceptor's `intercept_service` (a
coroutine, and a continuation for the next) on every call, and each wrapped layer adds a coroutine of
its own. Nothing here depends on the call until it starts, so `CallPipeline.wrap` builds one wrapper per
method when the service registers its handlers, and a call pays for one coroutine around the servicer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import grpc
from grpc import aio
from prometheus_client import CollectorRegistry, Counter, Histogram

from agentgpt import auth
from agentgpt.errors import InvalidArgument, RpcError, ServiceError
from agentgpt.runtime import tls
from agentgpt.runtime.logs import request_id

log = logging.getLogger("agentgpt.rpc")

UnaryBehavior = Callable[[Any, aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, aio.ServicerContext], AsyncIterator[Any]]
Validator = Callable[[Any], None]


def _split(method: str) -> tuple[str, str]:
    _, service, name = method.split("/", 2)
    return service, name


def _rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _wrap(
    handler: grpc.RpcMethodHandler | None,
    unary: Callable[[UnaryBehavior], UnaryBehavior],
    stream: Callable[[StreamBehavior], StreamBehavior],
    deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler | None:
    """Rebuild `handler` with its behaviour wrapped, keeping its serializer (and its deserializer
    unless another is given)."""
    if handler is None:
        return None
    ser = {
        "request_deserializer": deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **ser)
    return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **ser)


# go-grpc-prometheus labels grpc_code with Go's codes.Code.String() ("InvalidArgument", "Canceled"),
# so dashboards and alerts written for Go services work unchanged for ours.
_GO_CODE_NAMES = {
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.OK: "OK",
}


def go_code_name(code: grpc.StatusCode) -> str:
    """The go-grpc-prometheus spelling of a status code: NOT_FOUND -> NotFound."""
    return _GO_CODE_NAMES.get(code) or "".join(part.capitalize() for part in code.name.split("_"))


def status_of(context: aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    """The status a finished call ended with."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if exc is None:
        return grpc.StatusCode.OK
    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED  # the client went away (or cancelled) mid-call
    return grpc.StatusCode.UNKNOWN


class ServerMetrics:
    """gRPC server metrics under the go-grpc-prometheus names, in the service's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started", "Total number of RPCs started on the server.", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            labels,
            registry=registry,
        )
        self.sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            labels,
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            labels,
            registry=registry,
        )


class RequestIds:
    """New request ids: 16 hex digits, a random prefix of this process and a counter (unique across the
    services' processes like a random id, without drawing one per call)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFF:08x}"


def _request_id_of(context: aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and value:
            return str(value)
    return ""


# How a failed call to another service reaches our caller. Answers about the caller's request
# (not found, wrong state, concurrent update) pass through; an unreachable or slow dependency is
# UNAVAILABLE, so the caller retries. Anything else (INTERNAL, UNAUTHENTICATED between services) is
# our fault and stays INTERNAL, logged with a traceback.
_DEPENDENCY_STATUS = {
    grpc.StatusCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: grpc.StatusCode.ABORTED,
    grpc.StatusCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: grpc.StatusCode.UNAVAILABLE,
    # a dependency of another version (or another server at its address): this call cannot be served now
    grpc.StatusCode.UNIMPLEMENTED: grpc.StatusCode.UNAVAILABLE,
}


class _Unparsable:
    def __init__(self, problem: str) -> None:
        self.problem = problem


class CallPipeline:
    """The wrapper of every method of a server (`wrap`), built once per method at registration.

    - metrics: the go-grpc-prometheus counters and latency histogram (`ServerMetrics`);
    - request context: the caller's `x-request-id` or a new one (`agentgpt.runtime.logs.request_id`); a
      failed call logged at WARNING with its code and duration, one that succeeded (or that its client
      cancelled) only at DEBUG, so the access log is off the hot path at the default level;
    - callers: with mTLS on (`enforce_callers`), each RPC is open only to the identities
      `agentgpt.auth.RPC_CALLERS` lists for it (the identity is the verified client certificate's name);
      without TLS the loopback header-trust mode decides in the services;
    - errors: domain errors become their status; a dependency's failure passes through where it is about
      the caller's request, else UNAVAILABLE; anything unexpected becomes INTERNAL and is logged with a
      traceback — the service never dies of a request;
    - validation: the method's validator (`validators`, by full method name) runs on each request before
      the servicer, and a request that does not parse is INVALID_ARGUMENT, not grpc's UNKNOWN.
    """

    def __init__(
        self, metrics: ServerMetrics, validators: Mapping[str, Validator], *, enforce_callers: bool
    ) -> None:
        self.m = metrics
        self.validators = dict(validators)
        self.enforce_callers = enforce_callers
        self.ids = RequestIds()

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        service, method = _split(full_method)
        labels = (_rpc_type(handler), service, method)
        m, ids, enforce = self.m, self.ids, self.enforce_callers
        started, received, sent = (c.labels(*labels) for c in (m.started, m.received, m.sent))
        seconds = m.seconds.labels(*labels)
        handled: dict[grpc.StatusCode, Any] = {}  # label children by status code, made when first seen
        counts_received = not handler.request_streaming
        validator = None if handler.request_streaming else self.validators.get(full_method)
        parse = handler.request_deserializer

        def finish(context: aio.ServicerContext, exc: BaseException | None, start: float) -> None:
            code = status_of(context, exc)
            child = handled.get(code)
            if child is None:
                child = handled[code] = m.handled.labels(*labels, go_code_name(code))
            child.inc()
            elapsed = time.perf_counter() - start
            seconds.observe(elapsed)
            level = (
                logging.DEBUG if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else logging.WARNING
            )
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "rpc %s %s",
                    full_method,
                    code.name,
                    extra={"method": full_method, "code": code.name, "ms": round(elapsed * 1000, 2)},
                )

        async def admit(context: aio.ServicerContext) -> None:
            identity = tls.peer_identity(context)
            if identity is None:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{full_method}: a client certificate signed by the CA is required",
                )
                return
            refusal = auth.caller_refusal(full_method, identity)
            if refusal is not None:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)

        async def fail(context: aio.ServicerContext, exc: Exception) -> None:
            if isinstance(exc, ServiceError):
                await context.abort(exc.code, exc.message)
            if isinstance(exc, RpcError):
                code = _DEPENDENCY_STATUS.get(exc.code)
                if code is not None:
                    log.warning("%s: %s", full_method, exc)
                    await context.abort(code, f"{exc.service}: {exc.details}")
            if isinstance(exc, NotImplementedError):
                await context.abort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{full_method} is not implemented by this server version",
                )
            log.exception("unhandled error in %s", full_method)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error (request id {request_id.get() or 'unknown'})"
            )

        def lenient(data: bytes) -> Any:
            # A request that does not parse must get INVALID_ARGUMENT like any other bad input, not
            # the UNKNOWN that grpc answers when a deserializer raises.
            try:
                return parse(data) if parse else data
            except Exception as exc:
                return _Unparsable(f"is not a valid request message for {full_method}: {exc}")

        def check(request: Any) -> None:
            if validator is None:
                return
            if isinstance(request, _Unparsable):
                raise InvalidArgument("request", request.problem)
            try:
                validator(request)
            except InvalidArgument:
                raise
            except (ValueError, TypeError, OverflowError) as exc:
                raise InvalidArgument("request", str(exc)) from exc

        def unary(fn: UnaryBehavior) -> UnaryBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> Any:
                started.inc()
                if counts_received:
                    received.inc()
                token = request_id.set(_request_id_of(context) or ids.new())
                start, exc = time.perf_counter(), None
                try:
                    if enforce:
                        await admit(context)
                    try:
                        check(request)
                        response = await fn(request, context)
                    except aio.AbortError:
                        raise
                    except Exception as e:
                        await fail(context, e)
                        raise  # (fail aborts: not reached)
                    sent.inc()
                    return response
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    finish(context, exc, start)
                    request_id.reset(token)

            return call

        def stream(fn: StreamBehavior) -> StreamBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                started.inc()
                received.inc()
                token = request_id.set(_request_id_of(context) or ids.new())
                start, exc = time.perf_counter(), None
                try:
                    if enforce:
                        await admit(context)
                    try:
                        check(request)
                        async for item in fn(request, context):
                            sent.inc()
                            yield item
                    except aio.AbortError:
                        raise
                    except Exception as e:
                        await fail(context, e)
                        raise  # (fail aborts: not reached)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    finish(context, exc, start)
                    # a cancelled stream's generator may be closed later from another context
                    with contextlib.suppress(ValueError):
                        request_id.reset(token)

            return call

        return _wrap(handler, unary, stream, deserializer=lenient if validator is not None else None)


class _WrappedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A generic handler whose method handlers come wrapped (each wrapper built once, then looked up)."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Callable[[str, grpc.RpcMethodHandler], Any]):
        self.inner = inner
        self.wrap = wrap
        self._built: dict[str, tuple[grpc.RpcMethodHandler, Any]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self.inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        hit = self._built.get(method)
        if hit is None or hit[0] is not handler:
            hit = self._built[method] = (handler, self.wrap(method, handler))
        return cast(grpc.RpcMethodHandler, hit[1])


class WrappingServer:
    """What the generated `add_*Servicer_to_server` functions call on a server, registering every method
    handler wrapped by `wrap` (`CallPipeline.wrap`) on the real `server`."""

    def __init__(self, server: aio.Server, wrap: Callable[[str, grpc.RpcMethodHandler], Any]) -> None:
        self.server = server
        self.wrap = wrap

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers([_WrappedGeneric(h, self.wrap) for h in handlers])

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self.server.add_registered_method_handlers(
            service, {name: self.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        )
