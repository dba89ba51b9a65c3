"""Operator commands run against the indexer's database with the service stopped.

    python -m services.indexer reset-chain --chain-id N [--to-block B]

reset-chain is the way out of a halt (a reorg deeper than the finality window stops a chain, durably,
because continuing could serve wrong data). Once the operator has looked at the chain and picked a
block below the fork, reset-chain retracts everything the indexer holds from block B up (stream
readers get removed=true entries, as for a reorg), moves the chain's cursor back to B and clears the
halt; the next start of the service re-ingests from B. B defaults to the chain's start block in the
network manifest (a full re-index of that chain). The database and manifest come from the same
AGENTGPT_* settings the service reads (AGENTGPT_DATABASE_URL, AGENTGPT_NETWORK).

It is a command, not an RPC, on purpose: the indexer's API is read-only, and the reset must not race
a running follower (stop the service first; a follower still running would only notice the moved cursor
at its next commit, and a halted one not at all until it restarts).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from agentgpt.network import load_network
from agentgpt.runtime import config as cfg
from services.indexer.config import IndexerConfig
from services.indexer.store import ChainReset, IndexerStore

COMMANDS = ("reset-chain",)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.indexer",
        description="Indexer operator commands (run with the indexer service stopped).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    reset = sub.add_parser(
        "reset-chain",
        help="clear a halted chain: retract its data from a block up, move its cursor back, clear the halt",
        description=(
            "Retract the chain's indexed events from --to-block up (stream readers see removals), move its "
            "cursor back to --to-block and clear its halt; the next start re-ingests from there. Uses "
            "AGENTGPT_DATABASE_URL and AGENTGPT_NETWORK like the service."
        ),
    )
    reset.add_argument("--chain-id", type=int, required=True, help="EVM chain id of the chain to reset")
    reset.add_argument(
        "--to-block",
        type=int,
        default=None,
        help="first block to re-ingest (default: the chain's start block in the network manifest)",
    )
    return p


async def reset_chain(config: IndexerConfig, chain_id: int, to_block: int | None) -> ChainReset:
    if to_block is None:
        if not config.network:
            raise LookupError("no --to-block and no AGENTGPT_NETWORK manifest to take the start block from")
        to_block = load_network(config.network).chain(chain_id).deploy_block
    if to_block < 0:
        raise ValueError(f"--to-block must be >= 0, got {to_block}")
    store = await IndexerStore.open(config.database_url)
    try:
        return await store.reset_chain(chain_id, to_block)
    finally:
        await store.close()


def main(argv: Sequence[str]) -> int:
    """Exit codes: 0 done, 1 refused (unknown chain, a block past the cursor), 2 usage or configuration."""
    args = _parser().parse_args(list(argv))
    try:
        config = cfg.load(IndexerConfig)
    except cfg.ConfigError as exc:
        print(f"indexer: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        done = asyncio.run(reset_chain(config, args.chain_id, args.to_block))
    except (LookupError, ValueError) as exc:
        print(f"reset-chain refused: {exc}", file=sys.stderr)
        return 1
    print(
        f"chain {done.chain_id}: cursor moved from block {done.old_next_block} to {done.new_next_block}, "
        f"{done.events_retracted} events retracted, "
        + (f"halt cleared (was: {done.halt_reason})" if done.was_halted else "was not halted")
        + "; start the indexer to re-ingest"
    )
    return 0
