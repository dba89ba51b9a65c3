from __future__ import annotations

import pytest

from agentgpt.errors import InvalidArgument
from agentgpt.spec import parse_yaml

SEED = """
type: "treasury_management"
params:
  chains: [arbitrum, polygon]
  models:
    risk: "gpt-4-enterprise-finance"
    execution: "web3-agent-v4"
decorators:
  - "kyc_tier4"
  - "ofac_filter"
  - "gas_optimizer_v3"
"""


def test_the_seed_spec_parses() -> None:
    spec = parse_yaml(SEED)
    assert spec.type == "treasury_management"
    assert spec.chains == ("arbitrum", "polygon")
    assert spec.models["risk"] == "gpt-4-enterprise-finance"
    assert spec.decorators == ("kyc_tier4", "ofac_filter", "gas_optimizer_v3")
    assert spec.checkpoint_interval == 50
    assert len(spec.workflow_hash()) == 32
    assert parse_yaml(SEED).workflow_hash() == spec.workflow_hash()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("type: Treasury!\nparams: {chains: [a]}", "spec_yaml.type"),
        ("type: t\nparams: {}", "spec_yaml.params.chains"),
        ("type: t\nparams: {chains: []}", "spec_yaml.chains"),
        ("type: t\nparams: {chains: [a, a]}", "spec_yaml.chains"),
        ("type: t\nparams: {chains: [a]}\ndecorators: [OFAC]", "spec_yaml.decorators[0]"),
        ("type: t\nparams: {chains: [a]}\ncheckpoint_interval: 0.5", "spec_yaml.checkpoint_interval"),
        ("type: t\nparams: {chains: [a]}\nbogus: 1", "spec_yaml"),
        ("[1, 2", "spec_yaml"),
        ("- just a list", "spec_yaml"),
        ("type: t\nparams: {chains: [a], allowlist: {}}", "spec_yaml.params.allowlist"),
        ("type: t\nparams: {chains: [a], allowlist: [{target: '0x12'}]}", "spec_yaml.params.allowlist[0]"),
        (
            "type: t\nparams: {chains: [a], allowlist: [{target: '0x12', selector: '0x38ed1739'}]}",
            "spec_yaml.params.allowlist[0].target",
        ),
        (
            f"type: t\nparams: {{chains: [a], allowlist: [{{target: '0x{'ab' * 20}', selector: swap}}]}}",
            "spec_yaml.params.allowlist[0].selector",
        ),
        (
            "type: t\nparams: {chains: [a], allowlist: ["
            + ", ".join([f"{{target: '0x{'ab' * 20}', selector: '0x38ed1739'}}"] * 65)
            + "]}",
            "spec_yaml.params.allowlist",
        ),
    ],
)
def test_bad_specs_name_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_yaml(text)
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_allowlist_is_read_in_order() -> None:
    router, token = "0x" + "ab" * 20, "0x" + "cd" * 20
    spec = parse_yaml(
        "type: t\nparams:\n  chains: [a]\n  allowlist:\n"
        f"    - {{target: '{router}', selector: '0x38ed1739'}}\n"
        f"    - {{target: '{token}', selector: '0x095ea7b3'}}\n"
    )
    assert spec.allowlist() == [(router, bytes.fromhex("38ed1739")), (token, bytes.fromhex("095ea7b3"))]
    assert parse_yaml(SEED).allowlist() == []
