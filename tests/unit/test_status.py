"""The status a finished call is logged and counted with."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agentgpt.errors import NotFound
from agentgpt.runtime.interceptors import go_code_name, status_of


class Context:
    def __init__(self, code: object = None) -> None:
        self._code = code

    def code(self) -> object:
        return self._code


@pytest.mark.parametrize(
    ("code", "exc", "expected", "go"),
    [
        (None, None, grpc.StatusCode.OK, "OK"),
        (None, NotFound("session 7 does not exist"), grpc.StatusCode.NOT_FOUND, "NotFound"),
        (None, asyncio.CancelledError(), grpc.StatusCode.CANCELLED, "Canceled"),  # the client went away
        (None, RuntimeError("bug"), grpc.StatusCode.UNKNOWN, "Unknown"),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            RuntimeError("aborted"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "InvalidArgument",
        ),
    ],
)
def test_status_of_a_finished_call(
    code: object, exc: BaseException | None, expected: grpc.StatusCode, go: str
) -> None:
    got = status_of(Context(code), exc)  # type: ignore[arg-type]
    assert got == expected and go_code_name(got) == go
