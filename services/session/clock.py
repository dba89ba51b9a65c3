"""The session service's one clock: unix seconds as a float. Everything that reads the time (the control
plane, SessionDB, the request validators) is given this callable, so tests can inject their own."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


def system_clock() -> float:
    """The wall clock (the default wherever a Clock is taken)."""
    return time.time()
