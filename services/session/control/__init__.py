"""The session control plane: planes over one commit core. Knows nothing about gRPC transport: each plane
takes API requests plus a `CallContext` (what the transport authenticated) and raises agentgpt.errors.

- `core`: SessionDB and the home chain, the one clock, the event bus, the version check, retry-on-conflict
- `callers`: owner and service authentication
- `relay`: the idempotent chain-operation pipeline (a table of operations) and its reconciliation
- `commands`: owner commands (create, edit params, attach, activate, budget, pause/resume/terminate/complete)
- `work`: executor calls (task submission, leases, task reports, checkpoints)
- `reads`: get, list, list tasks, inspect with its alerts, watch
- `archive`: the event-log archive written at completion
- `expiry`: lifecycle timers and their on-chain mirror
- `facade`: SessionControl, all of them composed
"""

from services.session.control.callers import CallContext, chain_signature, read_signature
from services.session.control.core import EventBus, StaleVersion
from services.session.control.facade import SessionControl
from services.session.control.specs import spec_from_dict, spec_from_request, spec_to_dict

__all__ = [
    "CallContext",
    "EventBus",
    "SessionControl",
    "StaleVersion",
    "chain_signature",
    "read_signature",
    "spec_from_dict",
    "spec_from_request",
    "spec_to_dict",
]
