"""google.protobuf.Timestamp from and to unix seconds: the one conversion every service and the CLI use
(docs/design.md §5)."""

from __future__ import annotations

import math

from google.protobuf.timestamp_pb2 import Timestamp


def to_timestamp(seconds: float) -> Timestamp:
    """A float of unix seconds as a Timestamp, to the microsecond (what a float near 1.7e9 holds: scaling it
    to nanoseconds first, as `int(seconds * 1e9)` does, turns .25 s into 249999872 ns)."""
    whole = math.floor(seconds)
    micros = round((seconds - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return Timestamp(seconds=int(whole), nanos=micros * 1000)


def set_timestamp(field: Timestamp, seconds: float) -> None:
    """Set a message's Timestamp field (which protobuf lets one fill in, not assign) to `seconds`."""
    field.CopyFrom(to_timestamp(seconds))


def whole_seconds(ts: Timestamp) -> int:
    """A Timestamp as whole unix seconds (rounded down)."""
    return int(ts.seconds)
