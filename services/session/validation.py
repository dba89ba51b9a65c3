"""Request validation for the session service: one validator per RPC, run by the
ValidationInterceptor before any servicer code. Each error names the offending field.

Besides the shape of each field, a spec is checked against what this deployment supports (`Deployment`):
its decorators against the decorator registry (agentgpt.decorators, shared with the executor) and its
chains against the network manifest (AGENTGPT_NETWORK; without one, any well-formed chain name). The
validators do this at CreateSession and AttachDecorators; SessionControl repeats it on the stored spec
at ActivateSession (the deployment may have changed since the draft was made). An owner signature's
deadline is judged at the service's clock (`validators(..., clock=)`, the one SessionControl uses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from agentgpt.common.v1 import common_pb2 as common
from agentgpt.decorators import DecoratorSet, UnknownDecorator, supported_decorators
from agentgpt.errors import InvalidArgument
from agentgpt.network import Network
from agentgpt.runtime import validation as v
from agentgpt.sealing import address_of
from agentgpt.session.v1 import session_pb2 as pb
from agentgpt.spec import SPEC_FIELDS_IN_PARAMS, SessionSpec, build_spec, parse_yaml
from services.session.clock import Clock, system_clock

PREFIX = "/agentgpt.session.v1.SessionService/"
MAX_TASK_PAGE = 1000
MAX_SIGNATURE_AHEAD = 3600  # an owner signature may be valid for at most 1 h


@dataclass(frozen=True)
class Deployment:
    """What this deployment supports, for the spec checks that depend on it."""

    network: Network | None = None  # None (or no chains): any well-formed chain name is accepted
    decorators: DecoratorSet | None = None  # None: agentgpt.decorators.supported_decorators()
    # Where this deployment keeps checkpoints: its IPFS nodes, pinned. ("IPFS+Filecoin" needs a remote
    # pinning service backed by Filecoin, which the executors do not have yet.)
    storage: tuple[str, ...] = ("IPFS",)

    def check_decorators(self, names: Iterable[str], field: Callable[[int], str]) -> None:
        """Every name a supported decorator; else INVALID_ARGUMENT naming `field(i)`, with the close
        match and the supported names."""
        known = self.decorators or supported_decorators()
        for i, name in enumerate(names):
            try:
                known.resolve(name)
            except UnknownDecorator as exc:
                raise InvalidArgument(field(i), exc.message) from None

    def check_chains(self, chains: Iterable[str], field: Callable[[int], str]) -> None:
        """Every chain in the network manifest, by name or chain id (as the executor maps them)."""
        if self.network is None or not self.network.chains:
            return
        keys = {k for c in self.network.chains for k in (c.name, str(c.chain_id))}
        for i, chain in enumerate(chains):
            if str(chain) not in keys:
                listed = ", ".join(f"{c.name} ({c.chain_id})" for c in self.network.chains)
                raise InvalidArgument(
                    field(i),
                    f"chain {str(chain)[:80]!r} is not in this deployment's network manifest; "
                    f"its chains are: {listed}",
                )

    def check_spec(self, spec: SessionSpec, prefix: str = "spec") -> None:
        self.check_chains(spec.chains, lambda i: f"{prefix}.chains[{i}]")
        self.check_decorators(spec.decorators, lambda i: f"{prefix}.decorators[{i}]")
        recovery = spec.params.get("recovery")
        storage = recovery.get("storage") if isinstance(recovery, dict) else None
        if storage is not None and storage not in self.storage:
            raise InvalidArgument(
                f"{prefix}.recovery.checkpoints.storage",
                f"{storage!r} is not available in this deployment, which keeps checkpoints on "
                f"{' or '.join(self.storage)} (pinned on its IPFS nodes; no Filecoin pinning is configured)",
            )


def edited_params(params_json: str, spec: Mapping[str, Any], field: str = "params_json") -> dict[str, Any]:
    """EditParams' new params for a stored spec. The seed writes `chains` and `models` under params, so
    a params document may hold them, but only with the session's own values (they are fixed at create;
    EditParams replaces params only): equal ones are dropped, different ones refused naming both."""
    params = v.json_object(params_json, field, required=True)
    for key in SPEC_FIELDS_IN_PARAMS:
        if key not in params:
            continue
        if params[key] != spec.get(key):
            raise InvalidArgument(
                f"{field}.{key}",
                f"is {str(params[key])[:120]}, but the session's spec.{key} is {spec.get(key)}; "
                f"a session's {key} are fixed when it is created (remove `{key}` from the params)",
            )
        params.pop(key)
    return params


def chain_signature(value: bytes, field: str = "chain_signature") -> None:
    """The owner's SessionFactory signature: optional here (an in-memory chain needs none; the service
    demands it when it relays), but when present exactly 65 bytes (r, s, v)."""
    if value and len(value) != 65:
        raise InvalidArgument(
            field, f"must be empty or a 65-byte EIP-712 signature (r, s, v), got {len(value)} bytes"
        )


def spec_message(spec: pb.SessionSpec, deployment: Deployment) -> None:
    params = v.json_object(spec.params_json, "spec.params_json")
    parsed = build_spec(
        type=spec.type,
        chains=list(spec.chains),
        models=dict(spec.models),
        decorators=list(spec.decorators),
        params=params,
        checkpoint_interval=spec.checkpoint_interval,
    )
    deployment.check_spec(parsed, "spec")


class Signed:
    """The validators of the RPCs that carry an owner signature (and of those that depend on what the
    deployment supports): a signature's deadline may lie at most MAX_SIGNATURE_AHEAD past `clock()`."""

    def __init__(self, deployment: Deployment, clock: Clock) -> None:
        self.deployment = deployment
        self.clock = clock

    def owner_signature(
        self, auth: common.OwnerSignature, field: str = "auth", *, required: bool = True
    ) -> None:
        if not required and not auth.signer and not auth.signature:
            return
        v.address(auth.signer, f"{field}.signer")
        if len(auth.signature) != 65:
            raise InvalidArgument(
                f"{field}.signature", f"must be a 65-byte EIP-712 signature, got {len(auth.signature)} bytes"
            )
        if auth.deadline <= 0:
            raise InvalidArgument(f"{field}.deadline", "is required (unix seconds)")
        if auth.deadline > self.clock() + MAX_SIGNATURE_AHEAD:
            raise InvalidArgument(
                f"{field}.deadline", f"may be at most {MAX_SIGNATURE_AHEAD} s in the future"
            )

    def read_auth(self, req: Any) -> None:
        """Reads may omit `auth` (service identities); when present it is checked like any owner signature."""
        if req.HasField("auth"):
            self.owner_signature(req.auth, required=False)

    def create(self, req: pb.CreateSessionRequest) -> None:
        v.idempotency_key(req.idempotency_key)
        has_yaml, has_spec = bool(req.spec_yaml), req.HasField("spec")
        if has_yaml == has_spec:
            raise InvalidArgument("spec_yaml", "exactly one of spec_yaml or spec is required")
        if has_yaml:
            self.deployment.check_spec(parse_yaml(req.spec_yaml), "spec_yaml")
        else:
            spec_message(req.spec, self.deployment)
        v.uint256(req.initial_budget, "initial_budget", positive=True)
        self.owner_signature(req.auth)
        chain_signature(req.chain_signature)
        if req.budget_permit:
            v.bytes_len(req.budget_permit, "budget_permit", 65)
            if req.budget_permit_deadline <= 0:
                raise InvalidArgument("budget_permit_deadline", "is required with budget_permit")

    def mutating(self, *, reason: bool = False, auth_required: bool = True) -> Callable[[Any], None]:
        """Validator for the lifecycle RPCs sharing idempotency_key, session_id, auth (and reason)."""

        def check(req: Any) -> None:
            v.idempotency_key(req.idempotency_key)
            v.session_id(req.session_id)
            if reason:
                v.text(req.reason, "reason", max_len=256)
            elif getattr(req, "reason", ""):
                v.text(req.reason, "reason", max_len=256, required=False)
            self.owner_signature(req.auth, required=auth_required)

        return check

    def edit_params(self, req: pb.EditParamsRequest) -> None:
        self.mutating()(req)
        v.json_object(req.params_json, "params_json", required=True)

    def attach(self, req: pb.AttachDecoratorsRequest) -> None:
        self.mutating()(req)
        if not 1 <= len(req.decorators) <= 32:
            raise InvalidArgument("decorators", "must list 1 to 32 decorator names")
        for i, d in enumerate(req.decorators):
            v.name(d, f"decorators[{i}]")
        self.deployment.check_decorators(req.decorators, lambda i: f"decorators[{i}]")

    def activate(self, req: pb.ActivateSessionRequest) -> None:
        self.mutating()(req)
        v.address(req.executor, "executor", required=False)
        chain_signature(req.chain_signature)

    def update_budget(self, req: pb.UpdateBudgetRequest) -> None:
        self.mutating()(req)
        v.uint256(req.add_amount, "add_amount", positive=True)
        if req.budget_permit:
            v.bytes_len(req.budget_permit, "budget_permit", 65)
        chain_signature(req.chain_signature)

    def complete(self, req: pb.CompleteSessionRequest) -> None:
        self.mutating()(req)
        chain_signature(req.chain_signature)

    def get_session(self, req: pb.GetSessionRequest) -> None:
        v.session_id(req.session_id)
        self.read_auth(req)

    def watch(self, req: pb.WatchSessionRequest) -> None:
        v.session_id(req.session_id)
        self.read_auth(req)

    def list_sessions(self, req: pb.ListSessionsRequest) -> None:
        v.address(req.owner, "owner", required=False)
        for i, s in enumerate(req.states):
            v.enum_value(s, f"states[{i}]", common.SessionState)
        if req.type:
            v.name(req.type, "type")
        v.address(req.executor, "executor", required=False)
        if req.HasField("lease_lapsed_before"):
            v.timestamp(req.lease_lapsed_before, "lease_lapsed_before")
        v.page(req.page)
        self.read_auth(req)

    def reassign(self, req: pb.ReassignExecutorRequest) -> None:
        v.idempotency_key(req.idempotency_key)
        v.session_id(req.session_id)
        v.address(req.executor, "executor", required=True)
        v.text(req.reason, "reason", max_len=256)

    def submit_tasks(self, req: pb.SubmitTasksRequest) -> None:
        v.idempotency_key(req.idempotency_key)
        v.session_id(req.session_id)
        if not 1 <= len(req.tasks) <= 1000:
            raise InvalidArgument("tasks", f"must hold 1 to 1000 tasks, got {len(req.tasks)}")
        for i, t in enumerate(req.tasks):
            v.name(t.kind, f"tasks[{i}].kind")
            v.json_object(t.args_json, f"tasks[{i}].args_json")
        self.owner_signature(req.auth)

    def inspect(self, req: pb.InspectSessionRequest) -> None:
        v.session_id(req.session_id)
        if req.detail not in ("", "summary", "full"):
            raise InvalidArgument("detail", f"must be 'summary' or 'full', got {req.detail[:40]!r}")
        self.read_auth(req)

    def list_tasks(self, req: pb.ListTasksRequest) -> None:
        v.session_id(req.session_id)
        v.int64(req.after_seq, "after_seq")
        for i, s in enumerate(req.statuses):
            v.enum_value(s, f"statuses[{i}]", pb.TaskStatus)
        v.in_range(req.page_size, "page_size", 1, MAX_TASK_PAGE)
        self.read_auth(req)


def executor_id(value: str, field: str = "executor_id") -> None:
    v.text(value, field, max_len=128, identifier=True)


def public_key(value: bytes, field: str, *, required: bool = True) -> str | None:
    """A 64-byte secp256k1 public key (x || y, a point on the curve): its checksummed address."""
    if not value and not required:
        return None
    v.bytes_len(value, field, 64)
    try:
        return address_of(value)
    except InvalidArgument as exc:
        raise InvalidArgument(field, exc.message.removeprefix("public_key: ")) from None


def claim(req: pb.ClaimLeaseRequest) -> None:
    executor_id(req.executor_id)
    if req.session_id:
        v.session_id(req.session_id)
    v.in_range(req.ttl_seconds, "ttl_seconds", 1, 300)
    named = v.address(req.executor_address, "executor_address", required=False)
    keyed = public_key(req.executor_public_key, "executor_public_key", required=False)
    if named and keyed and to_checksum_address(named) != keyed:
        raise InvalidArgument(
            "executor_public_key",
            f"is the key of {keyed}, not of executor_address {to_checksum_address(named)}",
        )


def session_keys(req: pb.GetSessionKeysRequest) -> None:
    v.session_id(req.session_id)
    public_key(req.public_key, "public_key")


def leased(req: Any) -> None:
    v.session_id(req.session_id)
    executor_id(req.executor_id)
    if req.epoch == 0:
        raise InvalidArgument("epoch", "is required (the lease's fencing epoch)")


def renew(req: pb.RenewLeaseRequest) -> None:
    leased(req)
    v.in_range(req.ttl_seconds, "ttl_seconds", 1, 300)


def report(req: pb.ReportTaskRequest) -> None:
    leased(req)
    if not req.HasField("task"):
        raise InvalidArgument("task", "is required")
    t = req.task
    if t.session_id and t.session_id != req.session_id:
        raise InvalidArgument("task.session_id", "must equal session_id")
    if t.seq == 0:
        raise InvalidArgument("task.seq", "is required (1-based task sequence number)")
    v.enum_value(t.status, "task.status", pb.TaskStatus)
    v.json_object(t.result_json, "task.result_json")
    if t.cost:
        v.uint256(t.cost, "task.cost")
    v.bytes_len(t.log_hash, "task.log_hash", 32, required=False)
    for i, intent in enumerate(t.intents):
        v.bytes_len(intent.tx_hash, f"task.intents[{i}].tx_hash", 32)


def restore(req: pb.RestoreSessionRequest) -> None:
    v.session_id(req.session_id)


def record_checkpoint(req: pb.RecordCheckpointRequest) -> None:
    leased(req)
    if not req.HasField("checkpoint"):
        raise InvalidArgument("checkpoint", "is required")
    cp = req.checkpoint
    if cp.session_id != req.session_id:
        raise InvalidArgument("checkpoint.session_id", "must equal session_id")
    if cp.seq == 0:
        raise InvalidArgument("checkpoint.seq", "is required (> 0)")
    v.text(cp.cid, "checkpoint.cid", max_len=128, identifier=True)
    v.bytes_len(cp.state_root, "checkpoint.state_root", 32)


def validators(
    deployment: Deployment | None = None, clock: Clock = system_clock
) -> dict[str, Callable[[Any], None]]:
    """The validator of every RPC; `deployment` says which decorators and chains a spec may name, `clock`
    is the service's clock (owner signatures' deadlines)."""
    c = Signed(deployment or Deployment(), clock)
    return {
        PREFIX + "CreateSession": c.create,
        PREFIX + "GetSession": c.get_session,
        PREFIX + "ListSessions": c.list_sessions,
        PREFIX + "EditParams": c.edit_params,
        PREFIX + "AttachDecorators": c.attach,
        PREFIX + "ActivateSession": c.activate,
        PREFIX + "UpdateBudget": c.update_budget,
        PREFIX + "PauseSession": c.mutating(reason=True, auth_required=False),
        PREFIX + "ResumeSession": c.mutating(auth_required=False),
        PREFIX + "CompleteSession": c.complete,
        PREFIX + "TerminateSession": c.mutating(reason=True, auth_required=False),
        PREFIX + "SubmitTasks": c.submit_tasks,
        PREFIX + "ClaimLease": claim,
        PREFIX + "RenewLease": renew,
        PREFIX + "ReleaseLease": leased,
        PREFIX + "ReportTask": report,
        PREFIX + "RecordCheckpoint": record_checkpoint,
        PREFIX + "WatchSession": c.watch,
        PREFIX + "InspectSession": c.inspect,
        PREFIX + "ListTasks": c.list_tasks,
        PREFIX + "ReassignExecutor": c.reassign,
        PREFIX + "RestoreSession": restore,
        PREFIX + "GetSessionKeys": session_keys,
    }


#: The validators of a deployment without a network manifest (any well-formed chain name).
VALIDATORS = validators()
