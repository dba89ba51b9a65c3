from agentgpt.runtime.server import service_main
from services.recovery_oracle.app import build
from services.recovery_oracle.config import RecoveryConfig

if __name__ == "__main__":
    service_main("recovery_oracle", RecoveryConfig, build)
