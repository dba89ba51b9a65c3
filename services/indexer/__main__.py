import sys

from agentgpt.runtime.server import service_main
from services.indexer import admin
from services.indexer.app import build
from services.indexer.config import IndexerConfig

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in admin.COMMANDS:
        sys.exit(admin.main(sys.argv[1:]))
    service_main(
        "indexer",
        IndexerConfig,
        build,
        commands="  python -m services.indexer reset-chain --chain-id N [--to-block B]\n"
        "      clear a halted chain's data from block B (default: its start block) and the halt",
    )
