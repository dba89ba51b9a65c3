"""Field checks for request validators. Each raises InvalidArgument naming the field.

Services compose these into one validator per RPC (services/<svc>/validation.py); the
ValidationInterceptor runs them before any servicer code. JSON payloads and text are checked by
agentgpt.jsonvalue, the same code the executor runs before a task.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from agentgpt import jsonvalue
from agentgpt.errors import InvalidArgument

T = TypeVar("T")

UINT256_MAX = 2**256 - 1
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
_DECIMAL = re.compile(r"^[0-9]{1,78}$")
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")


def checked(call: Callable[[], T]) -> T:
    """`call()` with agentgpt.jsonvalue's errors as InvalidArgument naming the same field."""
    try:
        return call()
    except jsonvalue.JsonValueError as exc:
        raise InvalidArgument(exc.field, exc.problem) from None


def session_id(value: str, field: str = "session_id") -> int:
    """A session id is the decimal NFT token id: 1..2**256-1."""
    if not value:
        raise InvalidArgument(field, "is required (the session's decimal token id, e.g. '1')")
    if not _DECIMAL.fullmatch(value):
        raise InvalidArgument(field, f"must be a decimal token id, got {value[:80]!r}")
    n = int(value)
    if not 0 < n <= UINT256_MAX:
        raise InvalidArgument(field, "must be between 1 and 2**256-1")
    return n


def uint256(value: str, field: str, *, positive: bool = False) -> int:
    if not value:
        raise InvalidArgument(field, "is required (a decimal amount in base units)")
    if not _DECIMAL.fullmatch(value):
        raise InvalidArgument(field, f"must be a non-negative decimal integer, got {value[:80]!r}")
    n = int(value)
    if n > UINT256_MAX:
        raise InvalidArgument(field, "exceeds 2**256-1")
    if positive and n == 0:
        raise InvalidArgument(field, "must be greater than 0")
    return n


def address(value: str, field: str, *, required: bool = True) -> str | None:
    if not value:
        if required:
            raise InvalidArgument(field, "is required (a 0x-prefixed 20-byte hex address)")
        return None
    if not _ADDRESS.fullmatch(value):
        raise InvalidArgument(field, f"must be a 0x-prefixed 20-byte hex address, got {value[:80]!r}")
    return value


def name(value: str, field: str) -> str:
    if not _NAME.fullmatch(value):
        raise InvalidArgument(field, f"must match [a-z0-9_]{{1,64}}, got {value[:80]!r}")
    return value


def text(value: str, field: str, *, max_len: int, required: bool = True, identifier: bool = False) -> str:
    """Free text of at most `max_len` characters: valid Unicode without NUL characters; with
    `identifier` (an executor id, a CID), also without other control characters."""
    if required and not value.strip():
        raise InvalidArgument(field, "is required")
    if len(value) > max_len:
        raise InvalidArgument(field, f"is {len(value)} characters; the limit is {max_len}")
    return checked(lambda: jsonvalue.check_text(value, field, name=identifier))


def idempotency_key(value: str, field: str = "idempotency_key") -> str:
    if not value:
        raise InvalidArgument(field, "is required (1..128 printable ASCII characters, unique per request)")
    if len(value) > 128 or not _PRINTABLE.fullmatch(value):
        raise InvalidArgument(field, "must be 1..128 printable ASCII characters without spaces")
    return value


def json_object(value: str, field: str, *, max_bytes: int = 65536, required: bool = False) -> dict[str, Any]:
    """A JSON object under agentgpt.jsonvalue's rules (valid UTF-8, no NaN/Infinity, no duplicate keys,
    no lone surrogates in any string); empty is {} unless `required`."""
    return checked(lambda: jsonvalue.parse_json_object(value, field, max_bytes=max_bytes, required=required))


def bytes_len(value: bytes, field: str, length: int, *, required: bool = True) -> bytes:
    if not value and not required:
        return value
    if len(value) != length:
        raise InvalidArgument(field, f"must be {length} bytes, got {len(value)}")
    return value


def in_range(value: int, field: str, lo: int, hi: int, *, zero_ok: bool = True) -> int:
    if value == 0 and zero_ok:
        return value
    if not lo <= value <= hi:
        raise InvalidArgument(
            field, f"must be between {lo} and {hi}{' (or 0 for the default)' if zero_ok else ''}, got {value}"
        )
    return value


INT64_MAX = 2**63 - 1  # what SQL databases store; larger uint64 values are refused up front


def int64(value: int, field: str) -> int:
    """A uint64 field that must fit a signed 64-bit database column (block numbers, cursors, seqs)."""
    if value > INT64_MAX:
        raise InvalidArgument(field, f"must be at most {INT64_MAX}, got {value}")
    return value


def enum_value(value: int, field: str, enum_type: Any, *, required: bool = True) -> int:
    """Proto3 keeps unknown enum numbers; refuse them and UNSPECIFIED (when required)."""
    valid = set(enum_type.values())
    if value not in valid:
        raise InvalidArgument(field, f"unknown value {value}; expected one of {sorted(enum_type.keys())}")
    if required and value == 0:
        raise InvalidArgument(field, "is required")
    return value


def page(req_page: Any, field: str = "page") -> None:
    in_range(req_page.page_size, f"{field}.page_size", 1, 500)
    if len(req_page.page_token) > 512:
        raise InvalidArgument(f"{field}.page_token", "is not a token this service issued")


MAX_TIMESTAMP_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, protobuf Timestamp's own range


def timestamp(value: Any, field: str) -> None:
    """A google.protobuf.Timestamp inside its documented range (0001..9999; seconds since 1970 here)."""
    if not 0 <= value.seconds <= MAX_TIMESTAMP_SECONDS or not 0 <= value.nanos <= 999_999_999:
        raise InvalidArgument(
            field, f"must be a time between 1970 and 9999, got seconds={value.seconds} nanos={value.nanos}"
        )


def no_validation(_: Any) -> None:
    """For requests with no fields (status calls)."""
