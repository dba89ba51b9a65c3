"""Action policies in a spec: parsed and validated with the field named, checked off chain by the executor
the way SessionAccount checks them on chain (the stateless rules), and encoded as the account reads them."""

from __future__ import annotations

import pytest
from eth_abi.abi import decode, encode

from agentgpt.errors import InvalidArgument
from agentgpt.policies import (
    NO_ARG,
    POLICY_TUPLE,
    UINT256_MAX,
    ZERO_ADDRESS,
    encode_policies,
    parse_policy,
    policies_of,
    policy_hash,
)
from agentgpt.spec import parse_yaml

TOKEN = "0x" + "12" * 20
ACCOUNT = "0x" + "ac" * 20
ALICE = "0x" + "a1" * 20
TRANSFER = bytes.fromhex("a9059cbb")


def call(to: str, amount: int) -> bytes:
    return TRANSFER + encode(["address", "uint256"], [to, amount])


def test_each_stateless_rule_refuses_what_breaks_it() -> None:
    p = parse_policy(TOKEN, TRANSFER, {"recipient_arg": 0, "recipients": ["self", ALICE], "amount_arg": 1,
                                       "max_per_call": 100, "max_value": 0, "expires_at": 2000}, "p")  # fmt: skip
    assert p.recipients == (ZERO_ADDRESS, ALICE)
    assert p.check(ACCOUNT, 0, call(ALICE, 100), now=1000) is None
    assert p.check(ACCOUNT, 0, call(ACCOUNT, 1), now=1000) is None  # `self` is the account
    assert p.check(ACCOUNT, 0, call("0x" + "99" * 20, 1), now=1000) == "recipients"
    assert p.check(ACCOUNT, 0, call(ALICE, 101), now=1000) == "max_per_call"
    assert p.check(ACCOUNT, 1, call(ALICE, 1), now=1000) == "max_value"
    assert p.check(ACCOUNT, 0, call(ALICE, 1), now=2000) == "expires_at"
    assert p.check(ACCOUNT, 0, TRANSFER + b"\x00" * 40, now=1000) == "recipients"  # address(0) is not `self`
    assert p.check(ACCOUNT, 0, TRANSFER + bytes.fromhex(ALICE[2:]), now=1000) == "recipients"  # too short
    dirty = TRANSFER + b"\x01" + b"\x00" * 11 + bytes.fromhex(ALICE[2:]) + (1).to_bytes(32, "big")
    assert p.check(ACCOUNT, 0, dirty, now=1000) == "recipients"  # high bits set: not an address
    period = parse_policy(TOKEN, TRANSFER, {"period": 60, "max_per_period": 5}, "p")
    assert period.amount_arg == NO_ARG and period.check(ACCOUNT, 6, b"", now=0) == "max_per_period"


def test_the_encoding_is_what_the_account_decodes_and_the_hash_covers() -> None:
    params = {"allowlist": [{"target": TOKEN, "selector": "0xa9059cbb", "policy": {"max_calls": 3}},
                            {"target": ALICE, "selector": "0x00000000"}]}  # fmt: skip
    (p,) = policies_of(params)
    encoded = encode_policies([p])
    (decoded,) = decode([f"{POLICY_TUPLE}[]"], encoded)
    assert decoded[0][:2] == (TOKEN, TRANSFER) and decoded[0][4] == 3 and decoded[0][7] == UINT256_MAX
    assert encode_policies([]) == b"" and policy_hash([]) == bytes.fromhex(
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )  # keccak256 of empty bytes


@pytest.mark.parametrize(
    ("policy", "field", "problem"),
    [
        ("{recipients: [self]}", "policy", "recipients need recipient_arg"),
        ("{recipient_arg: 0}", "policy", "recipient_arg needs recipients"),
        ("{recipient_arg: 255, recipients: [self]}", "policy.recipient_arg", "at most 254"),
        ("{max_per_call: -1}", "policy.max_per_call", "decimal digits"),
        ("{max_per_call: 1.5}", "policy.max_per_call", "a number or a decimal string"),
        (f"{{max_per_call: '{2**256}'}}", "policy.max_per_call", "at most"),
        ("{max_calls: true}", "policy.max_calls", "a number or a decimal string"),
        ("{period: 60}", "policy", "go together"),
        ("{spend: 1}", "policy", "unknown field 'spend'"),
        ("{recipient_arg: 0, recipients: ['0x0000000000000000000000000000000000000000']}",
         "policy.recipients[0]", "not zero"),
        ("{recipient_arg: 0, recipients: []}", "policy.recipients", "1 to 32"),
        ("[1]", "policy", "must be a map"),
    ],
)  # fmt: skip
def test_a_bad_policy_is_refused_naming_its_field(policy: str, field: str, problem: str) -> None:
    spec = (
        "type: t\nparams:\n  chains: [a]\n  allowlist:\n"
        f"    - {{target: '{TOKEN}', selector: '0xa9059cbb', policy: {policy}}}\n"
    )
    with pytest.raises(InvalidArgument) as err:
        parse_yaml(spec)
    assert err.value.field == f"spec_yaml.params.allowlist[0].{field}" and problem in str(err.value)


def test_an_allowlist_names_a_pair_once() -> None:
    spec = (
        "type: t\nparams:\n  chains: [a]\n  allowlist:\n"
        f"    - {{target: '{TOKEN}', selector: '0xa9059cbb'}}\n"
        f"    - {{target: '{TOKEN.upper().replace('0X', '0x')}', selector: '0xA9059CBB', policy: {{max_calls: 1}}}}\n"
    )
    with pytest.raises(InvalidArgument, match=r"lists a \(target, selector\) twice"):
        parse_yaml(spec)
