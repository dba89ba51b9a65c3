"""SessionDB schema (SQLAlchemy Core). The migrations in ./migrations create exactly this; a test checks
that they agree. Amounts wider than 64 bits (uint256 budgets, uint64 nonces) are decimal strings."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

sessions = sa.Table(
    "sessions",
    metadata,
    # Insertion order: "newest first" listings and page tokens use it.
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(78), nullable=False, unique=True),
    sa.Column("owner", sa.String(42), nullable=False, index=True),
    sa.Column("state", sa.SmallInteger, nullable=False, index=True),
    sa.Column("state_reason", sa.String(512), nullable=False),
    sa.Column("terminal_reason", sa.String(32), nullable=True),
    sa.Column("type", sa.String(64), nullable=False, index=True),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("workflow_hash", sa.LargeBinary, nullable=False),
    sa.Column("budget", sa.String(80), nullable=False),
    sa.Column("budget_spent", sa.String(80), nullable=False),
    sa.Column("home_chain_id", sa.BigInteger, nullable=False),
    sa.Column("mint_tx_hash", sa.LargeBinary, nullable=False),
    sa.Column("executor", sa.String(42), nullable=False),
    sa.Column("lease_executor", sa.String(128), nullable=False),
    sa.Column("lease_epoch", sa.BigInteger, nullable=False),
    sa.Column("lease_expires_at", sa.Float, nullable=True, index=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("entered_at", sa.BigInteger, nullable=False),
    sa.Column("active_used", sa.BigInteger, nullable=False),
    sa.Column("deadline", sa.BigInteger, nullable=True, index=True),
    sa.Column("context_epoch", sa.BigInteger, nullable=False),
    sa.Column("checkpoint_json", sa.Text, nullable=True),
    sa.Column("next_task_seq", sa.BigInteger, nullable=False),
    sa.Column("event_cursor", sa.BigInteger, nullable=False),
    sa.Column("event_head", sa.LargeBinary, nullable=False),
    sa.Column("gas_used", sa.BigInteger, nullable=False),
    sa.Column("gas_cost_wei", sa.String(80), nullable=False),
    sa.Column("log_cid", sa.String(128), nullable=True),
    sa.Column("final_tx_hash", sa.LargeBinary, nullable=True),
    # A timer-driven expiry not yet mirrored on chain: when to try SessionFactory.expire next (NULL = none
    # pending) and how many tries failed so far (migration 0002).
    sa.Column("chain_expiry_due", sa.Float, nullable=True, index=True),
    sa.Column("chain_expiry_attempts", sa.Integer, nullable=False, server_default="0"),
    # The owner's secp256k1 public key (64 bytes x || y), recovered from the owner's signature on
    # ActivateSession: a recipient of every sealed checkpoint body (migration 0003). NULL for sessions
    # activated before it was kept: those have no checkpoint keys.
    sa.Column("owner_public_key", sa.LargeBinary, nullable=True),
)

# Checkpoint data keys, one per (session, executor epoch on the home chain), kept only wrapped (ECIES,
# agentgpt.sealing) to the service's custodian key — the relayer key — whose address is `custodian`
# (migration 0003). A key is never stored in clear; it is re-wrapped to a caller's public key on request.
session_keys = sa.Table(
    "session_keys",
    metadata,
    sa.Column("session_id", sa.String(78), primary_key=True),
    sa.Column("epoch", sa.BigInteger, primary_key=True),
    sa.Column("executor", sa.String(42), nullable=False),  # the executor of record at that epoch
    sa.Column("custodian", sa.String(42), nullable=False),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("session_id", sa.String(78), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("args_json", sa.Text, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("result_json", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("intents", sa.LargeBinary, nullable=False),  # serialized repeated TxIntent
    sa.Column("gas_used", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.String(80), nullable=False),
    sa.Column("log_hash", sa.LargeBinary, nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("executor_id", sa.String(128), nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("session_id", sa.String(78), primary_key=True),
    sa.Column("cursor", sa.BigInteger, primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("data_json", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
)

# Idempotency keys, and the durable intent of a chain transaction relayed for the request: written
# before broadcast so a crash between the transaction and the database write is reconciled, never redone.
requests = sa.Table(
    "requests",
    metadata,
    sa.Column("principal", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("request_hash", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending | done
    sa.Column("response", sa.LargeBinary, nullable=True),
    sa.Column("session_id", sa.String(78), nullable=True),
    sa.Column("op", sa.String(32), nullable=True),
    sa.Column("payload_json", sa.Text, nullable=True),
    sa.Column("tx_hash", sa.LargeBinary, nullable=True),
    sa.Column("raw_tx", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Owner request nonces already used (replay protection).
nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("owner", sa.String(42), primary_key=True),
    sa.Column("nonce", sa.String(20), primary_key=True),
    sa.Column("used_at", sa.Float, nullable=False),
)
