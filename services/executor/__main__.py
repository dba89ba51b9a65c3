from agentgpt.runtime.server import service_main
from services.executor.app import build
from services.executor.config import ExecutorConfig

if __name__ == "__main__":
    service_main("executor", ExecutorConfig, build)
