"""Session specs in the seed's YAML form (docs/design.md §6), validated with errors naming the field.

    type: "treasury_management"
    params:
      chains: [arbitrum, polygon]
      models: {risk: "gpt-4-enterprise-finance", execution: "web3-agent-v4"}
    decorators: ["kyc_tier4", "ofac_filter", "gas_optimizer_v3"]

`chains` and `models` may sit under `params` (as in the seed) or at the top level, but not in both
places, even with equal values: a spec has one source of truth for each, so a document giving both is
refused (SpecError naming both places) rather than one silently winning. In the parsed form
(`SessionSpec`, the API's SessionSpec message, a stored spec) they are top-level fields only, and
`params` may not hold them. The workflow hash committed on chain is keccak256 of the spec's canonical
JSON encoding.

`params` must be plain JSON: string keys, text without lone surrogates, finite numbers (no NaN or
Infinity, which YAML's `.nan` / `.inf` would give), no YAML-only values such as dates.

The seed's `recovery:` block (docs/design.md §5) is accepted and honoured:

    recovery:
      checkpoints: {interval: "every 50 tasks", storage: "IPFS"}
      penalties: {data_loss: 5% AGPT burn, false_recovery_claim: 15% AGPT slash}

`interval` ("every N tasks", or N) is the session's checkpoint interval (given with a different top-level
`checkpoint_interval` it is an error); `storage` is where checkpoints are kept ("IPFS", or
"IPFS+Filecoin" where the deployment pins to Filecoin); `penalties` are the recovery protocol's, which
ExecutorRegistry applies to every session alike, so a value other than those is refused rather than
silently ignored. The block is kept, normalised, as `params.recovery`.

`params.allowlist` (optional) lists the calls the session's on-chain account may make, each
`{target: 0x-address, selector: 0x + 8 hex}` (at most 64, as SessionFactory.MAX_ALLOWLIST, each pair
once), optionally with a `policy` of limits (`agentgpt/policies.py`: recipients, amounts per call and per
period, native value, call count, expiry); activation commits exactly this list and these policies on
chain, so the owner signs them.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml
from eth_utils.crypto import keccak

from agentgpt.canonical import canonical_json
from agentgpt.errors import InvalidArgument
from agentgpt.jsonvalue import JsonValueError, check_json_value, check_text, text_problem
from agentgpt.policies import PolicyError, parse_policy
from agentgpt.zk import PROVED_MARKER, proves_batches

_NAME = re.compile(r"[a-z0-9_]{1,64}")
_CHAIN = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SELECTOR = re.compile(r"0x[0-9a-fA-F]{8}")
#: Keys that are spec fields, never params (in the YAML form they may be written under params).
SPEC_FIELDS_IN_PARAMS = ("chains", "models")
MAX_ALLOWLIST = 64  # SessionFactory.MAX_ALLOWLIST
MAX_SPEC_BYTES = 64 * 1024
DEFAULT_CHECKPOINT_INTERVAL = 50
#: Where checkpoints may be kept (a deployment supports a subset: see the session service's Deployment).
RECOVERY_STORAGE = ("IPFS", "IPFS+Filecoin")
#: The recovery protocol's penalties: ExecutorRegistry.DATA_LOSS_BURN_BPS / FALSE_RECOVERY_SLASH_BPS.
PENALTIES = {"data_loss": (500, "burn"), "false_recovery_claim": (1500, "slash")}
_INTERVAL = re.compile(r"(?:every\s+)?(\d{1,5})(?:\s+tasks?)?", re.IGNORECASE)
_PENALTY = re.compile(r"(\d{1,3}(?:\.\d{1,2})?)\s*%\s*AGPT\s+(burn|slash)", re.IGNORECASE)


class SpecError(InvalidArgument):
    """A session spec is malformed. `field` names where (e.g. `spec_yaml.params.chains`); the message
    starts with it. An InvalidArgument, so the services answer INVALID_ARGUMENT with it."""


@dataclass(frozen=True)
class SessionSpec:
    type: str
    chains: tuple[str, ...]
    models: dict[str, str] = field(default_factory=dict)
    decorators: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL

    def canonical(self) -> bytes:
        doc = {
            "type": self.type,
            "chains": list(self.chains),
            "models": self.models,
            "decorators": list(self.decorators),
            "params": self.params,
            "checkpoint_interval": self.checkpoint_interval,
        }
        return canonical_json(doc).encode()

    def workflow_hash(self) -> bytes:
        return keccak(self.canonical())

    def allowlist(self) -> list[tuple[str, bytes]]:
        """The account's allowlist as the owner signs it at activation (see allowlist_of)."""
        return allowlist_of(self.params, self.decorators)


def allowlist_of(params: dict[str, Any], decorators: Any = ()) -> list[tuple[str, bytes]]:
    """`params.allowlist` as (target, 4-byte selector) pairs, in order (validated by build_spec), then, for a
    session with the zk_batch_prover decorator, the entry that makes its anchors proved (agentgpt.zk)."""
    calls = [(str(c["target"]), bytes.fromhex(str(c["selector"])[2:])) for c in params.get("allowlist") or []]
    if proves_batches(decorators):
        calls.append(PROVED_MARKER)
    return calls


def _check_allowlist(value: Any, field_name: str, limit: int = MAX_ALLOWLIST) -> None:
    _check(
        isinstance(value, list) and len(value) <= limit,
        field_name,
        f"must be a list of at most {limit} {{target, selector}} entries"
        + (
            " (zk_batch_prover takes one of the account's 64 for its proved-anchoring entry)"
            if limit < MAX_ALLOWLIST
            else ""
        ),
    )
    for i, call in enumerate(value):
        where = f"{field_name}[{i}]"
        _check(
            isinstance(call, dict)
            and {"target", "selector"} <= set(call) <= {"target", "selector", "policy"},
            where,
            "must be a map with `target` (0x address), `selector` (0x + 8 hex) and optionally `policy` "
            "(its limits: docs/design.md §7)",
        )
        _check(
            isinstance(call["target"], str) and bool(_ADDRESS.fullmatch(call["target"])),
            f"{where}.target",
            f"must be a 0x-prefixed 20-byte address, got {str(call['target'])[:80]!r}",
        )
        _check(
            isinstance(call["selector"], str) and bool(_SELECTOR.fullmatch(call["selector"])),
            f"{where}.selector",
            f"must be a 4-byte function selector like 0x38ed1739, got {str(call['selector'])[:80]!r}",
        )
        if "policy" in call:
            try:
                parse_policy(
                    call["target"], bytes.fromhex(call["selector"][2:]), call["policy"], f"{where}.policy"
                )
            except PolicyError as exc:
                raise SpecError(exc.field, exc.problem) from None
    pairs = [(str(c["target"]).lower(), str(c["selector"]).lower()) for c in value]
    _check(len(pairs) == len(set(pairs)), field_name, "lists a (target, selector) twice")


def _check(cond: bool, field_name: str, problem: str) -> None:
    if not cond:
        raise SpecError(field_name, problem)


def _checked_json(value: Any, field_name: str) -> None:
    try:
        check_json_value(value, field_name)
    except JsonValueError as exc:
        raise SpecError(exc.field, exc.problem) from None


def build_spec(
    *,
    type: Any,
    chains: Any,
    models: Any = None,
    decorators: Any = None,
    params: Any = None,
    checkpoint_interval: Any = 0,
    prefix: str = "spec",
) -> SessionSpec:
    """Validate raw values (from YAML or from the proto message) into a SessionSpec."""
    _check(
        isinstance(type, str) and bool(_NAME.fullmatch(type)),
        f"{prefix}.type",
        f"must match [a-z0-9_]{{1,64}} (e.g. treasury_management), got {str(type)[:80]!r}",
    )
    _check(
        isinstance(chains, list | tuple) and 1 <= len(chains) <= 8,
        f"{prefix}.chains",
        "must list 1 to 8 chains; the first is the home chain",
    )
    for i, c in enumerate(chains):
        _check(
            isinstance(c, str | int) and bool(_CHAIN.fullmatch(str(c))),
            f"{prefix}.chains[{i}]",
            f"must be a chain name or id, got {str(c)[:80]!r}",
        )
    chain_names = tuple(str(c) for c in chains)
    _check(len(set(chain_names)) == len(chain_names), f"{prefix}.chains", "lists a chain twice")
    models = models or {}
    _check(
        isinstance(models, dict) and len(models) <= 16,
        f"{prefix}.models",
        "must be a map of role: model (at most 16)",
    )
    for k, val in models.items():
        _check(
            isinstance(k, str) and bool(_NAME.fullmatch(k)),
            f"{prefix}.models",
            f"role {str(k)[:80]!r} must match [a-z0-9_]{{1,64}}",
        )
        _check(
            isinstance(val, str) and 0 < len(val) <= 128,
            f"{prefix}.models.{k}",
            "must be a model name of 1..128 characters",
        )
        try:
            check_text(val, f"{prefix}.models.{k}", name=True)
        except JsonValueError as exc:
            raise SpecError(exc.field, exc.problem) from None
    decorators = decorators or []
    _check(
        isinstance(decorators, list | tuple) and len(decorators) <= 32,
        f"{prefix}.decorators",
        "must be a list of at most 32 names",
    )
    for i, d in enumerate(decorators):
        _check(
            isinstance(d, str) and bool(_NAME.fullmatch(d)),
            f"{prefix}.decorators[{i}]",
            f"must match [a-z0-9_]{{1,64}}, got {str(d)[:80]!r}",
        )
    _check(len(set(decorators)) == len(decorators), f"{prefix}.decorators", "lists a decorator twice")
    params = params or {}
    _check(isinstance(params, dict), f"{prefix}.params", "must be a map")
    for key in SPEC_FIELDS_IN_PARAMS:
        _check(
            key not in params,
            f"{prefix}.params.{key}",
            f"`{key}` is given both as {prefix}.{key} and under params; a spec has one {key} "
            f"({prefix}.{key}): remove it from params",
        )
    _checked_json(params, f"{prefix}.params")
    if "allowlist" in params:
        limit = MAX_ALLOWLIST - 1 if proves_batches(list(decorators)) else MAX_ALLOWLIST
        _check_allowlist(params["allowlist"], f"{prefix}.params.allowlist", limit)
    if "attestation" in params:
        params = {**params, "attestation": attestation_block(params["attestation"], f"{prefix}.attestation")}
    interval = checkpoint_interval or DEFAULT_CHECKPOINT_INTERVAL
    _check(
        isinstance(interval, int) and not isinstance(interval, bool) and 1 <= interval <= 10000,
        f"{prefix}.checkpoint_interval",
        "must be an integer from 1 to 10000",
    )
    spec = SessionSpec(str(type), chain_names, dict(models), tuple(decorators), dict(params), interval)
    try:
        encoded = spec.canonical()
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{prefix}.params", f"must be JSON-compatible: {exc}") from None
    _check(
        len(encoded) <= MAX_SPEC_BYTES,
        prefix,
        f"encodes to {len(encoded)} bytes; the limit is {MAX_SPEC_BYTES}",
    )
    return spec


def parse_yaml(text: str, field_name: str = "spec_yaml") -> SessionSpec:
    """Parse the seed's YAML form. `chains`/`models` are taken from `params` when not at top level;
    given in both places they are a SpecError naming both (whether or not the values are equal)."""
    problem = text_problem(text)
    _check(problem is None, field_name, f"{problem}; a spec is UTF-8 text")
    _check(len(text.encode()) <= MAX_SPEC_BYTES, field_name, f"is larger than {MAX_SPEC_BYTES} bytes")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(field_name, f"is not valid YAML: {exc}".replace("\n", " ")) from None
    except RecursionError:
        raise SpecError(field_name, "is nested too deeply") from None
    except ValueError as exc:  # a scalar YAML matched but Python cannot build: 2001-13-01, a 5000-digit int
        if "integer string conversion" in str(exc):
            problem = (
                f"holds an integer of more than {sys.get_int_max_str_digits()} digits; "
                "write such a value as a quoted string"
            )
        else:
            problem = f"holds a value that cannot be read ({exc}); quote it to keep it as a string"
        raise SpecError(field_name, problem) from None
    _check(isinstance(doc, dict), field_name, "must be a YAML mapping with type, params and decorators")
    unknown = set(doc) - {
        "type",
        "params",
        "chains",
        "models",
        "decorators",
        "checkpoint_interval",
        "recovery",
        "attestation",
    }
    _check(not unknown, field_name, f"has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    params = dict(doc.get("params") or {}) if isinstance(doc.get("params") or {}, dict) else doc.get("params")
    _check(isinstance(params, dict), f"{field_name}.params", "must be a mapping")
    for key in SPEC_FIELDS_IN_PARAMS:
        _check(
            not (key in doc and key in params),
            f"{field_name}.{key}",
            f"`{key}` is given both at the top level ({field_name}.{key}) and under params "
            f"({field_name}.params.{key}); give it in one place (even equal values are refused: "
            "a spec has one source of truth for it)",
        )
    interval = doc.get("checkpoint_interval", 0)
    if "recovery" in doc:
        _check(
            "recovery" not in params,
            f"{field_name}.params.recovery",
            "give the recovery block once, at top level",
        )
        every, params["recovery"] = recovery_block(doc["recovery"], f"{field_name}.recovery")
        _check(
            not interval or not every or interval == every,
            f"{field_name}.recovery.checkpoints.interval",
            f"says every {every} tasks, but checkpoint_interval says {interval}: give one",
        )
        interval = interval or every
    if "attestation" in doc:
        _check(
            "attestation" not in params,
            f"{field_name}.params.attestation",
            "give the attestation block once, at top level",
        )
        params["attestation"] = doc["attestation"]
    chains = doc["chains"] if "chains" in doc else params.pop("chains", None)
    models = doc["models"] if "models" in doc else params.pop("models", None)
    _check(
        chains is not None, f"{field_name}.params.chains", "is required (the chains the session anchors on)"
    )
    return build_spec(
        type=doc.get("type"),
        chains=chains,
        models=models,
        decorators=doc.get("decorators"),
        params=params,
        checkpoint_interval=interval,
        prefix=field_name,
    )


def recovery_block(block: Any, field: str) -> tuple[int, dict[str, Any]]:
    """The seed's `recovery:` block: (checkpoint interval or 0, the normalised block); SpecError naming
    the field when it says something this protocol does not do."""
    _check(isinstance(block, dict), field, "must be a mapping with `checkpoints` and/or `penalties`")
    unknown = set(block) - {"checkpoints", "penalties"}
    _check(not unknown, field, f"has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    out: dict[str, Any] = {}
    interval = 0
    cps = block.get("checkpoints") or {}
    _check(isinstance(cps, dict), f"{field}.checkpoints", "must be a mapping with `interval` and `storage`")
    unknown = set(cps) - {"interval", "storage"}
    _check(not unknown, f"{field}.checkpoints", f"has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    if "interval" in cps:
        m = _INTERVAL.fullmatch(str(cps["interval"]).strip())
        _check(
            m is not None and not isinstance(cps["interval"], bool) and 1 <= int(m.group(1)) <= 10000,
            f"{field}.checkpoints.interval",
            f'must be "every N tasks" (or N) with N from 1 to 10000, got {str(cps["interval"])[:60]!r}',
        )
        assert m is not None
        interval = int(m.group(1))
    if "storage" in cps:
        storage = next(
            (s for s in RECOVERY_STORAGE if s.lower() == str(cps["storage"]).strip().lower()), None
        )
        _check(
            storage is not None,
            f"{field}.checkpoints.storage",
            f"must be one of {', '.join(RECOVERY_STORAGE)}, got {str(cps['storage'])[:60]!r}",
        )
        out["storage"] = storage
    penalties = block.get("penalties") or {}
    _check(
        isinstance(penalties, dict),
        f"{field}.penalties",
        'must be a mapping of penalty -> "N% AGPT burn|slash"',
    )
    for name, text in penalties.items():
        where = f"{field}.penalties.{name}"
        _check(
            name in PENALTIES, where, f"is not a penalty of the recovery protocol ({', '.join(PENALTIES)})"
        )
        bps, how = PENALTIES[name]
        m = _PENALTY.fullmatch(str(text).strip())
        said = (round(float(m.group(1)) * 100), m.group(2).lower()) if m else None
        _check(
            said == (bps, how),
            where,
            f"the recovery protocol's {name} penalty is {bps / 100:g}% AGPT {how} (ExecutorRegistry applies it "
            f"to every session alike); {str(text)[:60]!r} cannot be chosen per session",
        )
    if penalties:
        out["penalties"] = {
            name: f"{PENALTIES[name][0] / 100:g}% AGPT {PENALTIES[name][1]}" for name in penalties
        }
    if interval:
        out["checkpoint_interval"] = interval
    return interval, out


def attestation_block(block: Any, field: str) -> dict[str, Any]:
    """The seed's `attestation:` block (`require`, `measurements`, `tcb`), normalised: measurements
    lowercase hex without 0x, TCB statuses in Intel's spelling. SpecError naming the field otherwise."""
    from agentgpt.attestation import TCB_STATUSES

    _check(isinstance(block, dict), field, "must be a mapping with `require`, `measurements` and/or `tcb`")
    unknown = set(block) - {"require", "measurements", "tcb"}
    _check(not unknown, field, f"has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    require = block.get("require", True)
    _check(isinstance(require, bool), f"{field}.require", "must be true or false")
    measurements = block.get("measurements") or []
    _check(
        isinstance(measurements, list) and len(measurements) <= 32,
        f"{field}.measurements",
        "must be a list of at most 32 hex measurements (MRENCLAVE or MRTD)",
    )
    norm: list[str] = []
    for i, m in enumerate(measurements):
        h = str(m).strip().lower().removeprefix("0x")
        _check(
            isinstance(m, str) and len(h) in (64, 96) and all(c in "0123456789abcdef" for c in h),
            f"{field}.measurements[{i}]",
            f"must be 32-byte (MRENCLAVE) or 48-byte (MRTD) hex, got {str(m)[:100]!r}",
        )
        norm.append(h)
    tcb = block.get("tcb") or ["UpToDate"]
    _check(isinstance(tcb, list) and bool(tcb), f"{field}.tcb", "must be a non-empty list of TCB statuses")
    out_tcb: list[str] = []
    for i, t in enumerate(tcb):
        name = next((s for s in TCB_STATUSES if s.lower() == str(t).strip().lower()), None)
        _check(
            name is not None,
            f"{field}.tcb[{i}]",
            f"must be one of {', '.join(TCB_STATUSES)}, got {str(t)[:60]!r}",
        )
        assert name is not None
        out_tcb.append(name)
    _check(
        require or not (norm or "tcb" in block), field, "lists measurements or tcb but says require: false"
    )
    return {"require": require, "measurements": sorted(set(norm)), "tcb": sorted(set(out_tcb))}


def spec_from_message(message: Any) -> SessionSpec:
    """A SessionSpec from its proto form (agentgpt.session.v1.SessionSpec: params as JSON text)."""
    import json

    params = json.loads(message.params_json) if message.params_json else {}
    return build_spec(
        type=message.type,
        chains=list(message.chains),
        models=dict(message.models),
        decorators=list(message.decorators),
        params=params,
        checkpoint_interval=message.checkpoint_interval,
    )
