from agentgpt.runtime.server import service_main
from services.session.app import build
from services.session.config import SessionConfig

if __name__ == "__main__":
    service_main("session", SessionConfig, build)
