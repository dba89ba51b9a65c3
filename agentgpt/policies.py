"""Action policies: limits on what an allowlisted call of a session's account may do (the guard's "valid
instruction" check made real), in the shape of ERC-7715 permissions, enforced by SessionAccount.

A spec's allowlist entry may carry a `policy`:

    allowlist:
      - target: '0x…token'
        selector: '0xa9059cbb'          # transfer(address,uint256)
        policy:
          recipient_arg: 0              # the ABI word (0-based) holding the recipient ...
          recipients: [self, '0x…']     # ... which must be one of these (`self`: the session account)
          amount_arg: 1                 # the ABI word holding the amount (omitted: the call's native value)
          max_per_call: '1000000'       # base units, per call
          max_per_period: '5000000'     # base units, over each `period` seconds
          period: 86400
          max_value: '0'                # native wei per call
          max_calls: 10                 # calls in all
          expires_at: 1767225600        # unix seconds: no call at or after

Every field is optional; an omitted limit is no limit. ERC-7715's permission types map onto it: a
native-token-recurring-allowance is `max_per_period` + `period` without `amount_arg`, an
erc20-recurring-allowance the same with `amount_arg`, the expiry rule is `expires_at`, a call limit
`max_calls`. The owner's activation signature commits them (as `policyHash`, keccak256 of their ABI
encoding), the factory hands them to the account in the same transaction, and the account checks every
call of that pair while the session is ACTIVE, reverting with `PolicyViolation(…, rule)`; the executor
checks the stateless rules first and reports a refusal as a REFUSED task naming the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

NO_ARG = 255
UINT256_MAX = 2**256 - 1
UINT32_MAX = 2**32 - 1
UINT40_MAX = 2**40 - 1
MAX_ARG = 254  # ABI word indexes 0..254 (255 is NO_ARG)
MAX_RECIPIENTS = 32
SELF = "self"
ZERO_ADDRESS = "0x" + "00" * 20
POLICY_TUPLE = "(address,bytes4,uint8,uint8,uint32,uint40,uint40,uint256,uint256,uint256,address[])"
FIELDS = (
    "recipient_arg",
    "recipients",
    "amount_arg",
    "max_per_call",
    "max_per_period",
    "period",
    "max_value",
    "max_calls",
    "expires_at",
)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class PolicyError(ValueError):
    """A policy field is malformed: `field` names it, `problem` says what it must be."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class Policy:
    target: str
    selector: bytes
    recipient_arg: int = NO_ARG
    amount_arg: int = NO_ARG
    max_calls: int = UINT32_MAX
    expires_at: int = 0
    period: int = 0
    max_per_call: int = UINT256_MAX
    max_per_period: int = UINT256_MAX
    max_value: int = UINT256_MAX
    recipients: tuple[str, ...] = ()  # ZERO_ADDRESS stands for the session account

    def to_abi(self) -> tuple[Any, ...]:
        return (
            self.target.lower(),
            self.selector,
            self.recipient_arg,
            self.amount_arg,
            self.max_calls,
            self.expires_at,
            self.period,
            self.max_per_call,
            self.max_per_period,
            self.max_value,
            list(self.recipients),
        )

    def check(self, account: str, value: int, data: bytes, now: float) -> str | None:
        """The rule a call breaks on its face (what needs no on-chain state), or None. The account also
        counts calls and spending per period, which only the chain knows."""
        if self.expires_at and now >= self.expires_at:
            return "expires_at"
        if value > self.max_value:
            return "max_value"
        if self.recipient_arg != NO_ARG:
            word = _word(data, self.recipient_arg)
            if word is None or word >> 160 or word == 0:  # (zero is no recipient: it stands for the account)
                return "recipients"
            to = "0x" + word.to_bytes(20, "big").hex()
            to = ZERO_ADDRESS if to.lower() == account.lower() else to
            if to.lower() not in {r.lower() for r in self.recipients}:
                return "recipients"
        amount = value
        if self.amount_arg != NO_ARG:
            word = _word(data, self.amount_arg)
            if word is None:
                return "amount_arg"
            amount = word
        if amount > self.max_per_call:
            return "max_per_call"
        if self.period and amount > self.max_per_period:
            return "max_per_period"
        return None

    def describe(self) -> str:
        """One line for `inspect`: the limits that are set."""
        parts = []
        if self.recipient_arg != NO_ARG:
            names = ["self" if r == ZERO_ADDRESS else r for r in self.recipients]
            parts.append(f"recipient (word {self.recipient_arg}) in [{', '.join(names)}]")
        what = f"word {self.amount_arg}" if self.amount_arg != NO_ARG else "value"
        if self.max_per_call != UINT256_MAX:
            parts.append(f"≤ {self.max_per_call} per call ({what})")
        if self.period:
            parts.append(f"≤ {self.max_per_period} per {self.period} s ({what})")
        if self.max_value != UINT256_MAX:
            parts.append(f"≤ {self.max_value} wei value per call")
        if self.max_calls != UINT32_MAX:
            parts.append(f"≤ {self.max_calls} calls")
        if self.expires_at:
            parts.append(f"until {self.expires_at} (unix s)")
        return "; ".join(parts) or "no limits"


def _word(data: bytes, index: int) -> int | None:
    at = 4 + index * 32
    if len(data) < at + 32:
        return None
    return int.from_bytes(data[at : at + 32], "big")


def _int(raw: Any, where: str, top: int, *, what: str = "an integer") -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise PolicyError(where, f"must be {what} (a number or a decimal string), got {str(raw)[:60]!r}")
    text = str(raw).strip()
    if not re.fullmatch(r"[0-9]{1,78}", text):
        raise PolicyError(where, f"must be {what} in decimal digits, got {text[:60]!r}")
    value = int(text)
    if value > top:
        raise PolicyError(where, f"must be at most {top}, got {text[:80]}")
    return value


def parse_policy(target: str, selector: bytes, raw: Any, where: str) -> Policy:
    """The policy of one allowlist entry, validated (PolicyError names the field)."""
    if not isinstance(raw, Mapping):
        raise PolicyError(where, f"must be a map of limits ({', '.join(FIELDS)})")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise PolicyError(where, f"unknown field {unknown[0]!r}; known: {', '.join(FIELDS)}")
    fields: dict[str, Any] = {}
    for name, top in (("recipient_arg", MAX_ARG), ("amount_arg", MAX_ARG)):
        if name in raw:
            fields[name] = _int(raw[name], f"{where}.{name}", top, what="an ABI word index")
    for name in ("max_per_call", "max_per_period", "max_value"):
        if name in raw:
            fields[name] = _int(raw[name], f"{where}.{name}", UINT256_MAX, what="an amount in base units")
    if "max_calls" in raw:
        fields["max_calls"] = _int(raw["max_calls"], f"{where}.max_calls", UINT32_MAX - 1)
    for name in ("period", "expires_at"):
        if name in raw:
            fields[name] = _int(raw[name], f"{where}.{name}", UINT40_MAX, what="seconds")
    if ("max_per_period" in fields) != bool(fields.get("period")):
        raise PolicyError(where, "max_per_period and period (> 0 seconds) go together")
    if "recipients" in raw:
        recipients = raw["recipients"]
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise PolicyError(
                f"{where}.recipients", f"must be a list of 1 to {MAX_RECIPIENTS} addresses or `self`"
            )
        out = []
        for i, r in enumerate(recipients):
            if r == SELF:
                out.append(ZERO_ADDRESS)
            elif isinstance(r, str) and _ADDRESS.fullmatch(r) and int(r, 16) != 0:
                out.append(r.lower())
            else:
                raise PolicyError(
                    f"{where}.recipients[{i}]",
                    f"must be a 0x address (not zero) or `self`, got {str(r)[:60]!r}",
                )
        if "recipient_arg" not in fields:
            raise PolicyError(where, "recipients need recipient_arg (the ABI word that holds the recipient)")
        fields["recipients"] = tuple(dict.fromkeys(out))
    elif "recipient_arg" in fields:
        raise PolicyError(where, "recipient_arg needs recipients (who may receive)")
    return Policy(target=target, selector=selector, **fields)


def policies_of(params: Mapping[str, Any]) -> list[Policy]:
    """The policies of a (validated) spec's allowlist, in allowlist order."""
    out = []
    for i, call in enumerate(params.get("allowlist") or []):
        if "policy" in call:
            selector = bytes.fromhex(str(call["selector"])[2:])
            out.append(
                parse_policy(str(call["target"]), selector, call["policy"], f"params.allowlist[{i}].policy")
            )
    return out


def encode_policies(policies: Sequence[Policy]) -> bytes:
    """What activation hands the account: abi.encode(Policy[]) (empty bytes for none)."""
    if not policies:
        return b""
    return encode([f"{POLICY_TUPLE}[]"], [[p.to_abi() for p in policies]])


def policy_hash(policies: Sequence[Policy]) -> bytes:
    """The Activate signature's `policyHash`: keccak256 of the encoding (keccak256("") for none)."""
    return keccak(encode_policies(policies))
