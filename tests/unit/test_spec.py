from __future__ import annotations

import pytest

from agentgpt.errors import InvalidArgument
from agentgpt.spec import SpecError, build_spec, parse_yaml

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


def test_a_proved_session_leaves_room_in_the_allowlist_for_its_marker() -> None:
    from agentgpt.zk import PROVED_MARKER

    entries = "".join(f"    - {{target: '0x{i + 1:040x}', selector: '0x095ea7b3'}}\n" for i in range(64))
    text = "type: t\nparams:\n  chains: [a]\n  allowlist:\n" + entries
    assert len(parse_yaml(text).allowlist()) == 64
    with pytest.raises(SpecError, match=r"at most 63 .*zk_batch_prover takes one"):
        parse_yaml(text + "decorators: [zk_batch_prover]\n")
    proved = parse_yaml(text.replace(entries, entries.split("\n", 1)[1]) + "decorators: [zk_batch_prover]\n")
    assert len(proved.allowlist()) == 64 and proved.allowlist()[-1] == PROVED_MARKER


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        # both places is an error even with equal values: one source of truth per key
        ("type: t\nchains: [a]\nparams: {chains: [a]}", "spec_yaml.chains", "spec_yaml.params.chains"),
        ("type: t\nchains: [a]\nparams: {chains: [b]}", "spec_yaml.chains", "give it in one place"),
        (
            "type: t\nmodels: {risk: m}\nparams: {chains: [a], models: {risk: n}}",
            "spec_yaml.models",
            "both at the top level (spec_yaml.models) and under params (spec_yaml.params.models)",
        ),
        ("type: t\nparams: {chains: [a], rate: .nan}", "spec_yaml.params", "the number at .rate is nan"),
        ("type: t\nparams: {chains: [a], cap: -.inf}", "spec_yaml.params", "must be finite"),
        ('type: t\nparams: {chains: [a], title: "\\ud800"}', "spec_yaml.params", "lone surrogate U+D800"),
        ("type: t\nparams: {chains: [a], when: 2024-01-01}", "spec_yaml.params", "is a date"),
        ('type: t\nparams: {chains: [a]}\nmodels: {risk: "m\\x00"}', "spec_yaml.models.risk", "NUL"),
        ('type: "t\\n"\nparams: {chains: [a]}', "spec_yaml.type", "must match"),
        ('type: t\nparams: {chains: ["a\\n"]}', "spec_yaml.chains[0]", "must be a chain name"),
    ],
)
def test_conflicting_and_non_json_specs_are_spec_errors(text: str, field: str, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml(text)
    assert err.value.field == field and fragment in str(err.value), str(err.value)
    assert isinstance(err.value, InvalidArgument)  # the services answer INVALID_ARGUMENT with it


def test_chains_and_models_under_params_or_at_top_level_give_the_same_spec() -> None:
    top = parse_yaml("type: t\nchains: [a, b]\nmodels: {risk: m}\nparams: {x: 1}")
    nested = parse_yaml("type: t\nparams: {chains: [a, b], models: {risk: m}, x: 1}")
    assert top == nested and top.params == {"x": 1}


def test_the_parsed_form_keeps_chains_and_models_out_of_params() -> None:
    with pytest.raises(SpecError) as err:
        build_spec(type="t", chains=["a"], params={"chains": ["a"]})
    assert err.value.field == "spec.params.chains" and "spec.chains" in str(err.value)
    with pytest.raises(SpecError, match=r"spec\.params\.models"):
        build_spec(type="t", chains=["a"], params={"models": {}})


SEED_RECOVERY = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
recovery:
  checkpoints:
    interval: "every 50 tasks"
    storage: "IPFS+Filecoin"
  penalties:
    data_loss: 5% AGPT burn
    false_recovery_claim: 15% AGPT slash
"""


def test_the_seeds_recovery_block_is_read_and_kept() -> None:
    spec = parse_yaml(SEED_RECOVERY.replace('"every 50 tasks"', '"every 25 tasks"'))
    assert spec.checkpoint_interval == 25
    assert spec.params["recovery"] == {
        "checkpoint_interval": 25,
        "storage": "IPFS+Filecoin",
        "penalties": {"data_loss": "5% AGPT burn", "false_recovery_claim": "15% AGPT slash"},
    }
    assert parse_yaml(SEED_RECOVERY.replace('"every 50 tasks"', "10")).checkpoint_interval == 10


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (
            ("data_loss: 5% AGPT burn", "data_loss: 10% AGPT burn"),
            "recovery.penalties.data_loss",
            "5% AGPT burn",
        ),
        (
            ("false_recovery_claim: 15% AGPT slash", "false_recovery_claim: 15% AGPT burn"),
            "recovery.penalties.false_recovery_claim",
            "15% AGPT slash",
        ),
        (("data_loss: 5% AGPT burn", "theft: 5% AGPT burn"), "recovery.penalties.theft", "not a penalty"),
        (('"every 50 tasks"', '"every week"'), "recovery.checkpoints.interval", "every N tasks"),
        (('"every 50 tasks"', '"every 0 tasks"'), "recovery.checkpoints.interval", "from 1 to 10000"),
        (('"IPFS+Filecoin"', "S3"), "recovery.checkpoints.storage", "one of IPFS, IPFS+Filecoin"),
        (("  penalties:", "  rewards: {}\n  penalties:"), "recovery", "unknown keys: rewards"),
        (
            ("type: treasury_management", "type: treasury_management\ncheckpoint_interval: 20"),
            "recovery.checkpoints.interval",
            "give one",
        ),
    ],
)
def test_a_recovery_block_that_asks_for_what_the_protocol_does_not_do_is_refused(
    change: tuple[str, str], field: str, says: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml(SEED_RECOVERY.replace(*change))
    assert err.value.field == f"spec_yaml.{field}" and says in err.value.message
