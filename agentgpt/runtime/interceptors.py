"""gRPC server interceptors, one per concern: metrics, request context + logging, caller identity, errors,
validation.

Each wraps unary and streaming handlers alike. Order (outermost first): metrics, request context,
callers, errors, validation — so metrics see the final status code, a refused caller is logged, and
validation errors are mapped like any other domain error.

grpc.aio asks every interceptor for the handler of every call; each builds its wrapper once per method
and answers the same one after (`_PerMethod`): nothing a wrapper closes over depends on the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

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


class _PerMethod:
    """The wrapped handler of each method, built once: grpc.aio hands an interceptor the same inner
    handler for every call of a method, so the wrapper made for it the first time serves them all."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler | None]] = {}

    def get(
        self,
        method: str,
        handler: grpc.RpcMethodHandler | None,
        build: Callable[[grpc.RpcMethodHandler], grpc.RpcMethodHandler | None],
    ) -> grpc.RpcMethodHandler | None:
        if handler is None:
            return None
        hit = self._built.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = build(handler)
        self._built[method] = (handler, wrapped)
        return wrapped


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


class MetricsInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: ServerMetrics) -> None:
        self.m = metrics
        self._handlers = _PerMethod()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        return self._handlers.get(details.method, handler, lambda h: self._build(details.method, h))

    def _build(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        service, method = _split(full_method)
        labels = (_rpc_type(handler), service, method)
        m = self.m
        # the label children of this method, resolved once (handled: one per status code seen)
        started, received, sent = (c.labels(*labels) for c in (m.started, m.received, m.sent))
        seconds = m.seconds.labels(*labels)
        handled: dict[grpc.StatusCode, Any] = {}
        counts_received = not handler.request_streaming

        def finish(context: aio.ServicerContext, exc: BaseException | None, start: float) -> None:
            code = status_of(context, exc)
            child = handled.get(code)
            if child is None:
                child = handled[code] = m.handled.labels(*labels, go_code_name(code))
            child.inc()
            seconds.observe(time.perf_counter() - start)

        def unary(fn: UnaryBehavior) -> UnaryBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> Any:
                started.inc()
                if counts_received:
                    received.inc()
                start, exc = time.perf_counter(), None
                try:
                    response = await fn(request, context)
                    sent.inc()
                    return response
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    finish(context, exc, start)

            return call

        def stream(fn: StreamBehavior) -> StreamBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                started.inc()
                received.inc()
                start, exc = time.perf_counter(), None
                try:
                    async for item in fn(request, context):
                        sent.inc()
                        yield item
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    finish(context, exc, start)

            return call

        return _wrap(handler, unary, stream)


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


class RequestContextInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Gives each call a request id (the caller's `x-request-id` or a new one) and logs its outcome: a
    failed call at WARNING, with its code and duration; a call that succeeded (or that its client
    cancelled) only at DEBUG, so the access log is off the hot path at the default level."""

    def __init__(self) -> None:
        self.ids = RequestIds()
        self._handlers = _PerMethod()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        return self._handlers.get(details.method, handler, lambda h: self._build(details.method, h))

    def _build(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        ids = self.ids

        def done(context: aio.ServicerContext, exc: BaseException | None, start: float) -> None:
            code = status_of(context, exc)
            level = (
                logging.DEBUG if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else logging.WARNING
            )
            if not log.isEnabledFor(level):
                return
            log.log(
                level,
                "rpc %s %s",
                method,
                code.name,
                extra={
                    "method": method,
                    "code": code.name,
                    "ms": round((time.perf_counter() - start) * 1000, 2),
                },
            )

        def unary(fn: UnaryBehavior) -> UnaryBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> Any:
                token = request_id.set(_request_id_of(context) or ids.new())
                start, exc = time.perf_counter(), None
                try:
                    return await fn(request, context)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    done(context, exc, start)
                    request_id.reset(token)

            return call

        def stream(fn: StreamBehavior) -> StreamBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                token = request_id.set(_request_id_of(context) or ids.new())
                start, exc = time.perf_counter(), None
                try:
                    async for item in fn(request, context):
                        yield item
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    done(context, exc, start)
                    # a cancelled stream's generator may be closed later from another context
                    with contextlib.suppress(ValueError):
                        request_id.reset(token)

            return call

        return _wrap(handler, unary, stream)


class CallerInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """With mTLS on (`enforce`), each RPC is open only to the identities `agentgpt.auth.RPC_CALLERS` lists
    for it: the caller's identity is its verified client certificate's name; a certificate of another
    identity gets PERMISSION_DENIED naming the RPC and the identity. Without TLS it does nothing (the
    loopback header-trust mode decides in the services)."""

    def __init__(self, *, enforce: bool) -> None:
        self.enforce = enforce
        self._handlers = _PerMethod()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if not self.enforce:
            return handler
        return self._handlers.get(details.method, handler, lambda h: self._build(details.method, h))

    def _build(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:

        async def admit(context: aio.ServicerContext) -> None:
            identity = tls.peer_identity(context)
            if identity is None:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{method}: a client certificate signed by the CA is required",
                )
                return
            refusal = auth.caller_refusal(method, identity)
            if refusal is not None:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)

        def unary(fn: UnaryBehavior) -> UnaryBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> Any:
                await admit(context)
                return await fn(request, context)

            return call

        def stream(fn: StreamBehavior) -> StreamBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                await admit(context)
                async for item in fn(request, context):
                    yield item

            return call

        return _wrap(handler, unary, stream)


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


class ErrorInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Domain errors become their status; anything unexpected becomes INTERNAL and is logged with a
    traceback — the service never dies of a request."""

    def __init__(self) -> None:
        self._handlers = _PerMethod()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        return self._handlers.get(details.method, handler, lambda h: self._build(details.method, h))

    def _build(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        async def fail(context: aio.ServicerContext, exc: Exception) -> None:
            if isinstance(exc, ServiceError):
                await context.abort(exc.code, exc.message)
            if isinstance(exc, RpcError):
                code = _DEPENDENCY_STATUS.get(exc.code)
                if code is not None:
                    log.warning("%s: %s", method, exc)
                    await context.abort(code, f"{exc.service}: {exc.details}")
            if isinstance(exc, NotImplementedError):
                await context.abort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{method} is not implemented by this server version",
                )
            log.exception("unhandled error in %s", method)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error (request id {request_id.get() or 'unknown'})"
            )

        def unary(fn: UnaryBehavior) -> UnaryBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> Any:
                try:
                    return await fn(request, context)
                except aio.AbortError:
                    raise
                except Exception as exc:
                    await fail(context, exc)

            return call

        def stream(fn: StreamBehavior) -> StreamBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for item in fn(request, context):
                        yield item
                except aio.AbortError:
                    raise
                except Exception as exc:
                    await fail(context, exc)

            return call

        return _wrap(handler, unary, stream)


class _Unparsable:
    def __init__(self, problem: str) -> None:
        self.problem = problem


class ValidationInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """The one validation layer: runs the method's validator on each request before the servicer.

    `validators` maps full method names ("/agentgpt.session.v1.SessionService/CreateSession") to a
    function that raises InvalidArgument naming the field. Every method of a service must have one
    (build_server checks), so nothing reaches a servicer unchecked.
    """

    def __init__(self, validators: Mapping[str, Validator]) -> None:
        self.validators = dict(validators)
        self._handlers = _PerMethod()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        validator = self.validators.get(details.method)
        if handler is None or validator is None or handler.request_streaming:
            return handler
        return self._handlers.get(
            details.method, handler, lambda h: self._build(details.method, h, validator)
        )

    def _build(
        self, method: str, handler: grpc.RpcMethodHandler, validator: Validator
    ) -> grpc.RpcMethodHandler | None:

        parse = handler.request_deserializer

        def lenient(data: bytes) -> Any:
            # A request that does not parse must get INVALID_ARGUMENT like any other bad input, not
            # the UNKNOWN that grpc answers when a deserializer raises.
            try:
                return parse(data) if parse else data
            except Exception as exc:
                return _Unparsable(f"is not a valid request message for {method}: {exc}")

        def check(request: Any) -> None:
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
                check(request)
                return await fn(request, context)

            return call

        def stream(fn: StreamBehavior) -> StreamBehavior:
            async def call(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                check(request)
                async for item in fn(request, context):
                    yield item

            return call

        return _wrap(handler, unary, stream, deserializer=lenient)
