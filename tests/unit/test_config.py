from __future__ import annotations

import pytest

from agentgpt.runtime.config import ConfigError, ServerConfig, describe, load
from services.executor.config import ExecutorConfig


def test_environment_overrides_defaults() -> None:
    cfg = load(ServerConfig, env={"AGENTGPT_GRPC_PORT": "7001", "AGENTGPT_SHUTDOWN_GRACE": "1.5"})
    assert cfg.grpc_port == 7001 and cfg.shutdown_grace == 1.5 and cfg.host == "127.0.0.1"


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="AGENTGPT_GRPC_PORT='eighty'"):
        load(ServerConfig, env={"AGENTGPT_GRPC_PORT": "eighty"})


def test_every_setting_is_documented() -> None:
    for cls in (ServerConfig, ExecutorConfig):
        for var, _default, doc in describe(cls):
            assert var.startswith("AGENTGPT_") and doc, var
