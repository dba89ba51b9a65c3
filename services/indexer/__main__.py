from agentgpt.runtime.server import service_main
from services.indexer.app import build
from services.indexer.config import IndexerConfig

if __name__ == "__main__":
    service_main("indexer", IndexerConfig, build)
