"""services.session.validation of the new request fields: each error names the offending field."""

from __future__ import annotations

import time

import pytest

from agentgpt.errors import InvalidArgument
from agentgpt.network import ChainInfo, Network
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.spec import parse_yaml
from services.session import validation

PREFIX = validation.PREFIX
GOOD_AUTH = {"signer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "signature": b"\x01" * 65}


def field_of(method: str, req: object) -> str:
    with pytest.raises(InvalidArgument) as info:
        validation.VALIDATORS[PREFIX + method](req)
    return str(info.value.field)  # type: ignore[attr-defined]


def test_chain_signature_is_empty_or_65_bytes_on_every_on_chain_action() -> None:
    auth = {**GOOD_AUTH, "deadline": int(time.time()) + 60}
    reqs = {
        "CreateSession": pb.CreateSessionRequest(
            idempotency_key="k", spec_yaml="type: t\nparams: {chains: [a]}\n", initial_budget="1"
        ),
        "ActivateSession": pb.ActivateSessionRequest(idempotency_key="k", session_id="1"),
        "UpdateBudget": pb.UpdateBudgetRequest(idempotency_key="k", session_id="1", add_amount="1"),
        "CompleteSession": pb.CompleteSessionRequest(idempotency_key="k", session_id="1"),
    }
    for method, req in reqs.items():
        req.auth.MergeFrom(pb.CompleteSessionRequest(auth=auth).auth)  # type: ignore[attr-defined]
        validation.VALIDATORS[PREFIX + method](req)  # empty: the service decides whether it needs one
        req.chain_signature = b"\x01" * 65  # type: ignore[attr-defined]
        validation.VALIDATORS[PREFIX + method](req)
        req.chain_signature = b"\x01" * 64  # type: ignore[attr-defined]
        assert field_of(method, req) == "chain_signature", method


def test_read_auth_is_optional_but_checked_when_present() -> None:
    for method, cls in (
        ("GetSession", pb.GetSessionRequest),
        ("ListSessions", pb.ListSessionsRequest),
        ("WatchSession", pb.WatchSessionRequest),
        ("InspectSession", pb.InspectSessionRequest),
    ):
        req = cls(session_id="1") if method != "ListSessions" else cls()
        validation.VALIDATORS[PREFIX + method](req)  # no auth: a service identity may read
        req.auth.signer = GOOD_AUTH["signer"]  # type: ignore[union-attr]
        req.auth.signature = b"\x01" * 64  # type: ignore[union-attr]
        assert field_of(method, req) == "auth.signature", method
        req.auth.signature = b"\x01" * 65  # type: ignore[union-attr]
        assert field_of(method, req) == "auth.deadline", method  # missing deadline
        req.auth.deadline = int(time.time()) + 10 * 3600  # type: ignore[union-attr]
        assert field_of(method, req) == "auth.deadline", method  # too far ahead
        req.auth.deadline = int(time.time()) + 60  # type: ignore[union-attr]
        validation.VALIDATORS[PREFIX + method](req)


def _network() -> Network:
    return Network(
        chains=(
            ChainInfo(name="arbitrum", chain_id=31337, rpc_url="http://127.0.0.1:1"),
            ChainInfo(name="polygon", chain_id=31338, rpc_url="http://127.0.0.1:2"),
        )
    )


def _create(spec_yaml: str) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(idempotency_key="k", spec_yaml=spec_yaml, initial_budget="1")


def test_spec_chains_are_checked_against_the_manifest_by_name_or_id() -> None:
    checks = validation.validators(validation.Deployment(network=_network()))
    with pytest.raises(InvalidArgument) as info:
        checks[PREFIX + "CreateSession"](_create("type: t\nparams: {chains: [arbitrum, ethereum]}"))
    assert info.value.field == "spec_yaml.chains[1]"
    assert "'ethereum' is not in this deployment's network manifest" in info.value.message
    assert "arbitrum (31337), polygon (31338)" in info.value.message
    spec = pb.SessionSpec(type="t", chains=["31338", "base"])
    with pytest.raises(InvalidArgument) as info:
        checks[PREFIX + "CreateSession"](
            pb.CreateSessionRequest(idempotency_key="k", spec=spec, initial_budget="1")
        )
    assert info.value.field == "spec.chains[1]"  # the chain id 31338 (polygon) was fine
    # without a manifest, any well-formed name
    validation.Deployment().check_chains(["ethereum"], lambda i: f"chains[{i}]")


def test_unknown_decorators_are_refused_at_create_and_attach_naming_the_field() -> None:
    checks = validation.validators()
    with pytest.raises(InvalidArgument) as info:
        checks[PREFIX + "CreateSession"](
            _create("type: t\nparams: {chains: [a]}\ndecorators: [kyc_tier4, ofac_fliter]")
        )
    assert info.value.field == "spec_yaml.decorators[1]"
    assert "unknown decorator 'ofac_fliter' (did you mean 'ofac_filter'?); supported: kyc_tier1" in str(
        info.value
    )
    attach = pb.AttachDecoratorsRequest(
        idempotency_key="k",
        session_id="1",
        decorators=["ofac_filter", "kyc_tier9"],
        auth={**GOOD_AUTH, "deadline": int(time.time()) + 60},
    )
    assert field_of("AttachDecorators", attach) == "decorators[1]"


def test_json_payloads_and_text_fields_are_checked() -> None:
    auth = {**GOOD_AUTH, "deadline": int(time.time()) + 60}
    submit = pb.SubmitTasksRequest(idempotency_key="k", session_id="1", auth=auth)
    submit.tasks.add(kind="a", args_json='{"title":"weekly"}')
    submit.tasks.add(kind="b", args_json='{"title":"\\ud800"}')
    assert field_of("SubmitTasks", submit) == "tasks[1].args_json"
    edit = pb.EditParamsRequest(idempotency_key="k", session_id="1", params_json='{"cap": NaN}', auth=auth)
    assert field_of("EditParams", edit) == "params_json"
    pause = pb.PauseSessionRequest(idempotency_key="k", session_id="1", reason="market\x00closed")
    assert field_of("PauseSession", pause) == "reason"
    resume = pb.ResumeSessionRequest(idempotency_key="k", session_id="1", reason="x\x00")
    assert field_of("ResumeSession", resume) == "reason"
    assert field_of("ClaimLease", pb.ClaimLeaseRequest(executor_id="ex\n")) == "executor_id"
    assert field_of("GetSession", pb.GetSessionRequest(session_id="1\n")) == "session_id"
    report = pb.ReportTaskRequest(session_id="1", executor_id="ex", epoch=1)
    report.task.seq, report.task.status, report.task.result_json = 1, pb.TASK_STATUS_FAILED, '{"s":NaN}'
    assert field_of("ReportTask", report) == "task.result_json"


def test_edited_params_may_repeat_the_sessions_chains_and_models_but_not_change_them() -> None:
    stored = {"chains": ["arbitrum"], "models": {"risk": "m"}, "params": {}}
    same = validation.edited_params('{"chains": ["arbitrum"], "models": {"risk": "m"}, "cap": 5}', stored)
    assert same == {"cap": 5}
    with pytest.raises(InvalidArgument) as info:
        validation.edited_params('{"chains": ["polygon"], "cap": 5}', stored)
    assert info.value.field == "params_json.chains" and "spec.chains is ['arbitrum']" in info.value.message


def test_recovery_storage_must_be_one_this_deployment_keeps() -> None:
    yaml_spec = "type: t\nparams: {chains: [arbitrum]}\nrecovery: {checkpoints: {storage: %s}}"
    here = validation.Deployment()
    here.check_spec(parse_yaml(yaml_spec % "IPFS"), "spec_yaml")
    with pytest.raises(InvalidArgument) as info:
        validation.validators(here)[PREFIX + "CreateSession"](_create(yaml_spec % "IPFS+Filecoin"))
    assert info.value.field == "spec_yaml.recovery.checkpoints.storage"
    assert "no Filecoin pinning is configured" in info.value.message
    filecoin = validation.Deployment(storage=("IPFS", "IPFS+Filecoin"))
    filecoin.check_spec(parse_yaml(yaml_spec % "IPFS+Filecoin"), "spec_yaml")
