"""Session specs as SessionDB stores them (canonical JSON) and as requests carry them (YAML or a message)."""

from __future__ import annotations

import json
from typing import Any

from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.spec import SessionSpec, build_spec, parse_yaml, spec_from_message


def spec_to_dict(spec: SessionSpec) -> dict[str, Any]:
    return dict(json.loads(spec.canonical()))


def spec_from_dict(d: dict[str, Any]) -> SessionSpec:
    return build_spec(
        type=d["type"],
        chains=d["chains"],
        models=d["models"],
        decorators=d["decorators"],
        params=d["params"],
        checkpoint_interval=d["checkpoint_interval"],
    )


def spec_from_request(req: pb.CreateSessionRequest) -> SessionSpec:
    if req.spec_yaml:
        return parse_yaml(req.spec_yaml)
    return spec_from_message(req.spec)
