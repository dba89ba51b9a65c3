"""Property-based tests of the spec parser (agentgpt.spec.parse_yaml): whatever text arrives (random
text, odd Unicode, lone surrogates, huge numbers, deep nesting, YAML-only values, mutated good specs,
JSON), it either parses into a spec that round-trips through its canonical form, or is refused with a
SpecError whose message starts with the field it names and says what is wrong. Never another exception."""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentgpt.spec import MAX_SPEC_BYTES, SessionSpec, SpecError, build_spec, parse_yaml

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

GOOD = """\
type: treasury_management
params:
  chains: [arbitrum, polygon]
  models: {risk: "gpt-4-enterprise-finance", execution: "web3-agent-v4"}
decorators: ["kyc_tier4", "ofac_filter", "gas_optimizer_v3"]
recovery:
  checkpoints: {interval: "every 50 tasks", storage: "IPFS"}
  penalties: {data_loss: 5% AGPT burn, false_recovery_claim: 15% AGPT slash}
"""

# every code point, lone surrogates included (what undecodable argv bytes or a bad proxy could hand us)
ANY_CHAR = st.characters(codec=None, categories=None)
ODD_TEXT = st.text(
    alphabet=st.one_of(
        ANY_CHAR, st.sampled_from(list("\ud800\udfff\x00\x85\u2028\ufeff\U0001f600:{}[]-&*!|>'\"#"))
    ),
    max_size=80,
)
HUGE = st.one_of(
    st.integers(),
    st.sampled_from([2**63, 2**64, 2**256, -(2**255)]),
    st.integers(4290, 4400).map(lambda digits: 10**digits),  # around int()'s digit limit
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), HUGE, ODD_TEXT.filter(lambda s: "\ud800" not in s))
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["type", "params", "chains", "models", "decorators", "checkpoint_interval", "recovery", "attestation"]
)
FIELD_VALUES = st.one_of(
    JSONISH,
    st.sampled_from(
        [
            "treasury_management",
            ["arbitrum", "polygon"],
            {"risk": "gpt-4"},
            ["kyc_tier4", "kyc_tier4"],
            {"checkpoints": {"interval": "every 10 tasks", "storage": "ipfs+filecoin"}},
            {"penalties": {"data_loss": "50% AGPT burn"}},
            {"require": True, "measurements": ["0x" + "ab" * 32], "tcb": ["uptodate"]},
            {"allowlist": [{"target": "0x" + "11" * 20, "selector": "0x38ed1739"}] * 2},
            {"chains": ["a"], "models": {"r": "m"}},
        ]
    ),
)
DOCS = st.dictionaries(KEYS, FIELD_VALUES, max_size=8)


def _check_outcome(text: str) -> SessionSpec | None:
    """The property every input must satisfy; returns the spec when it parsed."""
    try:
        spec = parse_yaml(text)
    except SpecError as exc:
        assert exc.field.startswith("spec_yaml"), exc.field
        assert exc.message.startswith(exc.field + ": "), exc.message
        problem = exc.message[len(exc.field) + 2 :]
        assert len(problem) >= 8, f"an unhelpful message: {exc.message!r}"
        assert "Traceback" not in problem and "set_int_max_str_digits" not in problem, problem
        return None
    # accepted: the spec is bounded and its canonical form rebuilds the very same spec
    encoded = spec.canonical()
    assert len(encoded) <= MAX_SPEC_BYTES
    doc = json.loads(encoded)
    assert build_spec(**doc) == spec
    assert spec.workflow_hash() == build_spec(**doc).workflow_hash()
    assert 1 <= len(spec.chains) <= 8 and 1 <= spec.checkpoint_interval <= 10000
    return spec


def _dump(doc: Any, as_json: bool) -> str:
    """`doc` as JSON or YAML text; integers beyond int()'s digit limit are written out in full (the
    limit is lifted while dumping only), so the parser meets them."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(doc) if as_json else yaml.safe_dump(doc, allow_unicode=True)
    finally:
        sys.set_int_max_str_digits(limit)


def test_the_good_spec_parses() -> None:
    spec = _check_outcome(GOOD)
    assert spec is not None and spec.chains == ("arbitrum", "polygon") and spec.checkpoint_interval == 50


@FUZZ
@given(text=ODD_TEXT)
@example("\ud800")  # a lone surrogate: not UTF-8
@example("type: x\nchains: [a]\ncheckpoint_interval: " + "9" * 5000)  # beyond int()'s digit limit
@example("type: x\nchains: [a]\nparams: {when: 2001-13-01}")  # looks like a date, is none
@example("[" * 400 + "]" * 400)  # nesting
@example("type: x\nchains: [a]\nparams: &p {self: *p}")  # a cycle through an alias
@example("{[a]: b}")  # an unhashable key
@example("\x00")
def test_random_text_parses_or_is_refused_with_a_spec_error(text: str) -> None:
    _check_outcome(text)


@FUZZ
@given(doc=DOCS, as_json=st.booleans())
def test_random_documents_parse_or_are_refused_with_a_spec_error(doc: dict[str, Any], as_json: bool) -> None:
    _check_outcome(_dump(doc, as_json))


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, len(GOOD)), st.integers(0, 6), ODD_TEXT), min_size=1, max_size=4)
)
def test_mutated_good_specs_parse_or_are_refused_with_a_spec_error(edits: list[tuple[int, int, str]]) -> None:
    text = GOOD
    for at, cut, insert in edits:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + cut :]
    _check_outcome(text)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(depth=st.integers(1, 600), opener=st.sampled_from(["[", "{a: ", "- "]))
def test_deep_nesting_is_refused_by_name(depth: int, opener: str) -> None:
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    if opener == "- ":
        body = "".join("  " * i + "- \n" for i in range(depth)) + "  " * depth + "x"
    else:
        body = opener * depth + "x" + closer * depth
    _check_outcome("type: x\nchains: [a]\nparams:\n  deep: " + body if opener != "- " else body)


def test_huge_integers_name_the_limit() -> None:
    digits = sys.get_int_max_str_digits() + 1
    try:
        parse_yaml("type: x\nchains: [a]\nparams: {n: " + "7" * digits + "}")
    except SpecError as exc:
        assert exc.field == "spec_yaml"
        assert "quoted string" in exc.message
    else:
        raise AssertionError("a number beyond the digit limit was accepted")
