"""Validation at the boundary, through a running session service: payloads that would poison the executor
(lone surrogates, NaN, non-objects), decorators nothing would enforce, chains the deployment cannot anchor
on and specs stating a key twice are all refused with INVALID_ARGUMENT naming the field, and nothing of
the refused request is stored or sent to the chain."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.session.v1 import session_pb2 as pb
from services.session.memory import InMemorySessionChain
from services.session.model import canonical_json
from services.session.store import Change

from .conftest import MakeService
from .harness import SERVICE_MD, SPEC_YAML, Harness, Owner, new_key
from .test_lifecycle import EXECUTOR, expect_status

BAD_ARGS = [
    ('{"title":"\\ud800"}', "lone surrogate U+D800"),  # valid ASCII JSON; the string is not text
    ('{"\\udc00":"x"}', "lone surrogate U+DC00"),
    ('{"rate":NaN}', "NaN"),
    ('{"cap":Infinity}', "Infinity"),
    ('{"cap":1e999}', "too large for a float"),
    ("[" * 5000 + "]" * 5000, "more than 100 deep"),
    ('{"a":1,"a":2}', "twice"),
    ("[1, 2]", "must be a JSON object"),
    ('"weekly"', "must be a JSON object"),
    ("{", "not valid JSON"),
]


def _manifest(tmp_path: Path) -> str:
    path = tmp_path / "network.json"
    path.write_text(
        json.dumps(
            {
                "chains": [
                    {"name": "arbitrum", "chain_id": 31337, "rpc_url": "http://127.0.0.1:1"},
                    {"name": "polygon", "chain_id": 31338, "rpc_url": "http://127.0.0.1:2"},
                ]
            }
        )
    )
    return str(path)


async def _create_yaml(service: Harness, owner: Owner, spec_yaml: str) -> pb.Session:
    req = owner.sign(
        pb.CreateSessionRequest(idempotency_key=new_key(), spec_yaml=spec_yaml, initial_budget="10")
    )
    return (await service.stub.CreateSession(owner.chain_sign("create", None, req))).session


async def _tasks(service: Harness, session_id: str) -> list[pb.Task]:
    page = await service.stub.ListTasks(pb.ListTasksRequest(session_id=session_id), metadata=SERVICE_MD)
    return list(page.tasks)


async def test_submit_tasks_refuses_bad_args_and_queues_nothing(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    await service.activate(owner, s, EXECUTOR)

    def submit(*args_json: str) -> pb.SubmitTasksRequest:
        req = pb.SubmitTasksRequest(idempotency_key=new_key(), session_id=s.session_id)
        for a in args_json:
            req.tasks.add(kind="publish_report", args_json=a)
        return owner.sign(req)

    assert list((await service.stub.SubmitTasks(submit('{"title":"weekly"}'))).task_seqs) == [1]
    for bad, fragment in BAD_ARGS:
        details = await expect_status(
            service.stub.SubmitTasks(submit('{"title":"ok"}', bad)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tasks[1].args_json: ",
        )
        assert fragment in details, (bad, details)
    # nothing of the refused requests was queued: the next task is number 2
    assert [t.seq for t in await _tasks(service, s.session_id)] == [1]
    assert list((await service.stub.SubmitTasks(submit(""))).task_seqs) == [2]  # empty args are {}


async def test_json_params_are_checked_like_task_args(service: Harness, owner: Owner) -> None:
    s = await service.create(owner)
    for bad, fragment in BAD_ARGS:
        req = owner.sign(
            pb.EditParamsRequest(idempotency_key=new_key(), session_id=s.session_id, params_json=bad)
        )
        details = await expect_status(
            service.stub.EditParams(req), grpc.StatusCode.INVALID_ARGUMENT, "params_json: "
        )
        assert fragment in details, (bad, details)
    spec = pb.SessionSpec(type="t", chains=["a"], params_json='{"t":"\\ud800"}')
    req = owner.sign(pb.CreateSessionRequest(idempotency_key=new_key(), spec=spec, initial_budget="10"))
    await expect_status(
        service.stub.CreateSession(req), grpc.StatusCode.INVALID_ARGUMENT, "spec.params_json: "
    )
    bad_yaml = SPEC_YAML.replace("params:\n", 'params:\n  title: "\\ud800"\n  cap: .inf\n')
    await expect_status(
        _create_yaml(service, owner, bad_yaml), grpc.StatusCode.INVALID_ARGUMENT, "spec_yaml.params: "
    )
    assert (await service.get(owner, s.session_id)).version == s.version  # nothing changed
    assert service.control.chain.mints == 1  # type: ignore[attr-defined]


async def test_unknown_decorators_are_refused_at_create_attach_and_activate(
    service: Harness, owner: Owner
) -> None:
    chain = service.control.chain
    typo = SPEC_YAML.replace('"ofac_filter"', '"ofac_fliter"')
    details = await expect_status(
        _create_yaml(service, owner, typo), grpc.StatusCode.INVALID_ARGUMENT, "spec_yaml.decorators[1]: "
    )
    assert (
        "unknown decorator 'ofac_fliter' (did you mean 'ofac_filter'?); supported: kyc_tier1..kyc_tier5"
        in details
    )
    spec = pb.SessionSpec(type="t", chains=["a"], decorators=["kyc_tier9"])
    req = owner.sign(pb.CreateSessionRequest(idempotency_key=new_key(), spec=spec, initial_budget="10"))
    details = await expect_status(
        service.stub.CreateSession(owner.chain_sign("create", None, req)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "spec.decorators[0]: ",
    )
    assert "kyc_tier1..kyc_tier5" in details
    assert chain.mints == 0  # type: ignore[attr-defined]

    s = await service.create(owner)
    attach = owner.sign(
        pb.AttachDecoratorsRequest(
            idempotency_key=new_key(),
            session_id=s.session_id,
            decorators=["gas_optimizer_v3", "gas_optimizer3"],
        )
    )
    details = await expect_status(
        service.stub.AttachDecorators(attach), grpc.StatusCode.INVALID_ARGUMENT, "decorators[1]: "
    )
    assert "did you mean 'gas_optimizer_v3'?" in details
    assert list((await service.get(owner, s.session_id)).spec.decorators) == ["kyc_tier4", "ofac_filter"]

    # a draft naming a decorator the deployment no longer has (made before a plug-in was removed)
    rec = await service.control.db.require(s.session_id)
    stale = {**rec.spec, "decorators": [*rec.spec["decorators"], "tee_sealer"]}
    await service.control.db.commit(
        Change(s.session_id, rec.version, {"spec_json": canonical_json(stale)}, [])
    )
    await expect_status(
        service.activate(owner, s, EXECUTOR), grpc.StatusCode.INVALID_ARGUMENT, "spec.decorators[2]: "
    )
    assert (await service.get(owner, s.session_id)).state == common.SESSION_STATE_DRAFT
    assert chain.calls == ["create"]  # type: ignore[attr-defined]  # nothing sent to activate


async def test_chains_must_be_in_the_network_manifest(
    make_service: MakeService, owner: Owner, tmp_path: Path
) -> None:
    chain = InMemorySessionChain()
    unconfigured = await make_service(chain=chain)  # no manifest: any well-formed chain name
    draft = await _create_yaml(
        unconfigured, owner, SPEC_YAML.replace("[arbitrum, polygon]", "[arbitrum, ethereum]")
    )
    service = await make_service(chain=chain, network=_manifest(tmp_path))  # the same SessionDB, now with one

    details = await expect_status(
        _create_yaml(service, owner, SPEC_YAML.replace("[arbitrum, polygon]", "[arbitrum, ethereum]")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "spec_yaml.chains[1]: chain 'ethereum' is not in this deployment's network manifest",
    )
    assert "arbitrum (31337), polygon (31338)" in details
    spec = pb.SessionSpec(type="t", chains=["31337", "31339"])  # by chain id, as the executor maps them
    req = owner.sign(pb.CreateSessionRequest(idempotency_key=new_key(), spec=spec, initial_budget="10"))
    await expect_status(service.stub.CreateSession(req), grpc.StatusCode.INVALID_ARGUMENT, "spec.chains[1]: ")
    assert chain.mints == 1  # type: ignore[attr-defined]

    ok = await service.create(owner)  # [arbitrum, polygon]: both in the manifest
    spec = pb.SessionSpec(type="t", chains=["31337", "polygon"])
    req = owner.sign(pb.CreateSessionRequest(idempotency_key=new_key(), spec=spec, initial_budget="10"))
    assert (await service.stub.CreateSession(owner.chain_sign("create", None, req))).session.spec.chains == [
        "31337",
        "polygon",
    ]
    # the draft made before the manifest cannot be activated here; a good one can
    await expect_status(
        service.activate(owner, draft, EXECUTOR),
        grpc.StatusCode.INVALID_ARGUMENT,
        "spec.chains[1]: chain 'ethereum' is not in this deployment's network manifest",
    )
    assert (await service.activate(owner, ok, EXECUTOR)).session.state == common.SESSION_STATE_ACTIVE


@pytest.mark.parametrize("key", ["chains", "models"])
async def test_a_key_given_in_two_places_is_refused(service: Harness, owner: Owner, key: str) -> None:
    top = {"chains": "chains: [arbitrum]\n", "models": "models: {risk: m}\n"}[key]
    details = await expect_status(
        _create_yaml(service, owner, top + SPEC_YAML),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"spec_yaml.{key}: `{key}` is given both at the top level",
    )
    assert f"spec_yaml.params.{key}" in details
    value = {"chains": ["a"], "models": {"risk": "m"}}[key]
    spec = pb.SessionSpec(type="t", chains=["a"], params_json=json.dumps({key: value}))
    req = owner.sign(pb.CreateSessionRequest(idempotency_key=new_key(), spec=spec, initial_budget="10"))
    await expect_status(
        service.stub.CreateSession(req), grpc.StatusCode.INVALID_ARGUMENT, f"spec.params.{key}: "
    )
    assert service.control.chain.mints == 0  # type: ignore[attr-defined]

    # EditParams takes the seed's params form: the session's own chains/models may be repeated (and are
    # dropped), other values are refused, as they are fixed at create
    s = await service.create(owner)
    current = {"chains": list(s.spec.chains), "models": dict(s.spec.models)}[key]
    same = owner.sign(
        pb.EditParamsRequest(
            idempotency_key=new_key(),
            session_id=s.session_id,
            params_json=json.dumps({key: current, "cap": 5}),
        )
    )
    edited = (await service.stub.EditParams(same)).session
    assert json.loads(edited.spec.params_json) == {"cap": 5}
    other = owner.sign(
        pb.EditParamsRequest(
            idempotency_key=new_key(), session_id=s.session_id, params_json=json.dumps({key: value})
        )
    )
    await expect_status(
        service.stub.EditParams(other), grpc.StatusCode.INVALID_ARGUMENT, f"params_json.{key}: "
    )
