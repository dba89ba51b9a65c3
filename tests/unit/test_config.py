from __future__ import annotations

from pathlib import Path

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


def test_a_setting_can_come_from_a_file(tmp_path: Path) -> None:
    key = tmp_path / "executor-0"
    key.write_text("0x" + "ab" * 32 + "\n")  # as `kubectl create secret --from-file` leaves it
    cfg = load(ExecutorConfig, env={"AGENTGPT_EXECUTOR_KEY_FILE": str(key), "AGENTGPT_CAPACITY": "3"})
    assert cfg.executor_key == "0x" + "ab" * 32 and cfg.capacity == 3
    (tmp_path / "capacity").write_text(" 5 ")
    assert load(ExecutorConfig, env={"AGENTGPT_CAPACITY_FILE": str(tmp_path / "capacity")}).capacity == 5


def test_a_missing_or_doubled_setting_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "executor-7"
    with pytest.raises(ConfigError, match=r"AGENTGPT_EXECUTOR_KEY_FILE='.*executor-7': cannot read it"):
        load(ExecutorConfig, env={"AGENTGPT_EXECUTOR_KEY_FILE": str(missing)})
    missing.write_text("x")
    with pytest.raises(ConfigError, match="both set"):
        load(
            ExecutorConfig,
            env={"AGENTGPT_EXECUTOR_KEY_FILE": str(missing), "AGENTGPT_EXECUTOR_KEY": "0x01"},
        )
    (tmp_path / "capacity").write_text("many")
    with pytest.raises(ConfigError, match="AGENTGPT_CAPACITY='many'"):
        load(ExecutorConfig, env={"AGENTGPT_CAPACITY_FILE": str(tmp_path / "capacity")})
