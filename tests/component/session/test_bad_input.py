"""Hypothesis throws random and malformed requests at every RPC of a running session service: every answer
is a proper gRPC status, the service stays up and SERVING, and SessionDB's invariants hold afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentgpt.session.v1 import session_pb2 as pb
from apps.localnet.anvil import DEV_PRIVATE_KEYS
from services.session.model import verify_chain

from .harness import SERVICE_MD, Harness, Owner

OWNER = Owner(DEV_PRIVATE_KEYS[1], 31337)

SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"]
METHODS = [(m.name, m.input_type, m.server_streaming) for m in SERVICE.methods]
ALLOWED = {c for c in grpc.StatusCode} - {grpc.StatusCode.UNKNOWN}

_scalars: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: st.one_of(
        st.text(max_size=40), st.sampled_from(["1", "2", "0", "-1", "{}", "0x" + "ab" * 20, "9" * 90])
    ),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=70),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.one_of(st.integers(0, 5), st.integers(0, 2**64 - 1)),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_ENUM: st.integers(-3, 8),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True),
}


def message_strategy(desc: Any, depth: int = 0) -> st.SearchStrategy[bytes]:
    """Serialized messages of type `desc` with random values in a random subset of fields."""
    cls = pb.__dict__.get(desc.name)

    @st.composite
    def build(draw: Any) -> bytes:
        from google.protobuf import message_factory

        msg_cls = cls or message_factory.GetMessageClass(desc)
        msg = msg_cls()
        for f in desc.fields:
            if not draw(st.booleans()):
                continue
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if depth > 2 or f.message_type.GetOptions().map_entry:
                    continue
                sub = draw(message_strategy(f.message_type, depth + 1))
                if f.is_repeated:
                    getattr(msg, f.name).add().MergeFromString(sub)
                else:
                    getattr(msg, f.name).MergeFromString(sub)
                continue
            value = draw(_scalars.get(f.type, st.none()))
            if value is None:
                continue
            if f.is_repeated:
                getattr(msg, f.name).append(value)
            else:
                setattr(msg, f.name, value)
        return bytes(msg.SerializeToString())

    return build()


# Near-valid requests reach past validation into the domain: a valid base with random fields overwritten.
BASES: dict[str, dict[str, Any]] = {
    "CreateSession": {"spec_yaml": "type: t\nparams: {chains: [a]}\n", "initial_budget": "5"},
    "GetSession": {},
    "ListSessions": {},
    "EditParams": {"params_json": "{}"},
    "AttachDecorators": {"decorators": ["kyc_tier4"]},
    "ActivateSession": {"executor": "0x" + "ab" * 20},
    "UpdateBudget": {"add_amount": "5"},
    "PauseSession": {"reason": "r"},
    "ResumeSession": {"reason": "r"},
    "CompleteSession": {},
    "TerminateSession": {"reason": "r"},
    "SubmitTasks": {"tasks": [{"kind": "analyze_market"}]},
    "ClaimLease": {"executor_id": "ex"},
    "RenewLease": {"executor_id": "ex", "epoch": 1},
    "ReleaseLease": {"executor_id": "ex", "epoch": 1},
    "ReportTask": {"executor_id": "ex", "epoch": 1, "task": {"seq": 1, "status": 3}},
    "RecordCheckpoint": {
        "executor_id": "ex",
        "epoch": 1,
        "checkpoint": {"seq": 1, "cid": "bafk", "state_root": "AA" * 32},
    },
    "WatchSession": {"history_only": True},
    "InspectSession": {"detail": "full"},
    "ListTasks": {"page_size": 10},
    "ReassignExecutor": {"executor": "0x" + "cd" * 20, "reason": "node_failure"},
    "RestoreSession": {},
    # a real secp256k1 public key (dev account 2's), base64 as proto JSON writes bytes
    "GetSessionKeys": {
        "public_key": "nZAx6X3Xj/jBWqhpOd6bHnkQZqAiTjMbyWKiCZp7HwRkuLuv4VNfIwHHLCyzU1sXLaMLAmhqsDk9NIYU8Vf72w=="
    },
}


@st.composite
def near_valid(draw: Any, method: str, desc: Any) -> bytes:
    from google.protobuf import json_format

    msg = pb.__dict__[desc.name]()
    base = dict(BASES[method])
    if "session_id" in desc.fields_by_name:
        base["session_id"] = draw(st.sampled_from(["1", "2", "3"]))
    if "idempotency_key" in desc.fields_by_name:
        base["idempotency_key"] = draw(st.sampled_from(["k1", "k2", "k3"]))
    if "checkpoint" in base:
        base["checkpoint"] = {
            **base["checkpoint"],
            "session_id": base.get("session_id", "1"),
            "state_root": "q" * 43 + "=",
        }
    json_format.ParseDict(base, msg)
    noise = pb.__dict__[desc.name].FromString(draw(message_strategy(desc)))
    for f in desc.fields:
        if f.name == "auth" or draw(st.integers(0, 4)) != 0:
            continue
        if f.is_repeated:
            msg.ClearField(f.name)
            getattr(msg, f.name).extend(getattr(noise, f.name))
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(msg, f.name).CopyFrom(getattr(noise, f.name))
        else:
            setattr(msg, f.name, getattr(noise, f.name))
    if "auth" in desc.fields_by_name and draw(st.booleans()):
        OWNER.sign(msg, nonce=draw(st.integers(0, 2**64 - 1)))
    return bytes(msg.SerializeToString())


def requests_for(m: tuple[str, Any, bool]) -> st.SearchStrategy[tuple[bytes, bool]]:
    payload = st.one_of(
        message_strategy(m[1]), st.binary(max_size=200), near_valid(m[0], m[1]), near_valid(m[0], m[1])
    )
    return st.tuples(payload, st.booleans())


async def call(
    channel: aio.Channel, method: str, streaming: bool, payload: bytes, as_service: bool
) -> grpc.StatusCode:
    path = f"/{SERVICE.full_name}/{method}"
    md = SERVICE_MD if as_service else ()
    try:
        if streaming:
            stream = channel.unary_stream(path)(payload, metadata=md, timeout=5)
            async for _ in stream:
                break
            stream.cancel()
            return grpc.StatusCode.OK
        await channel.unary_unary(path)(payload, metadata=md, timeout=5)
        return grpc.StatusCode.OK
    except aio.AioRpcError as exc:
        return exc.code()


async def test_random_requests_get_statuses_and_leave_store_consistent(
    service: Harness, owner: Owner
) -> None:
    from tests.component.session.test_lifecycle import EXECUTOR

    s = await service.create(owner)  # something real to hit: ids "1" and "2"
    s2 = await service.create(owner)
    await service.activate(owner, s2, EXECUTOR)
    loop = asyncio.get_running_loop()
    seen: dict[str, set[grpc.StatusCode]] = {}
    channel = aio.insecure_channel(service.service.address)

    for m in METHODS:  # every RPC gets its own share of examples

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.tuples(st.just(m), requests_for(m)))
        def run(item: tuple[tuple[str, Any, bool], tuple[bytes, bool]]) -> None:
            (method, _desc, streaming), (payload, as_service) = item
            code = asyncio.run_coroutine_threadsafe(
                call(channel, method, streaming, payload, as_service), loop
            ).result(30)
            assert code in ALLOWED, f"{method} answered {code}"
            assert code != grpc.StatusCode.INTERNAL, f"{method} crashed on {payload!r}"
            seen.setdefault(method, set()).add(code)

        await asyncio.to_thread(run)
    health = health_pb2_grpc.HealthStub(channel)
    status = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    await channel.close()
    assert len(seen) == len(METHODS), (
        f"not every RPC was exercised: {set(m for m, *_ in METHODS) - set(seen)}"
    )
    # invariants: the sessions are the ones minted, each log is an unbroken hash chain, counters are sane
    db = service.control.db
    rows, _ = await db.list_sessions(owner=None, states=[], type=None, page_token="", limit=500)
    assert {r.session_id for r in rows} == {s.session_id, s2.session_id}
    assert service.control.chain.mints == 2  # type: ignore[attr-defined]
    for r in rows:
        evs = await db.events_after(r.session_id, 0)
        assert verify_chain(evs) and len(evs) == r.event_cursor and r.version >= 1
        assert 1 <= r.state <= 5 and int(r.budget_spent) >= 0 and r.next_task_seq >= 1
    assert (await service.get(owner, s.session_id)).state in (1, 5)
