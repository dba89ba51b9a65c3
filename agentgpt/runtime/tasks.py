"""Task helpers for the services' background loops."""

from __future__ import annotations

import asyncio


def cancelling() -> bool:
    """True when the current task was asked to stop. A loop that catches Exception checks this: a client
    library may turn the cancellation of a call into its own error (grpc's CANCELLED), and a loop that
    swallowed it would never stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
