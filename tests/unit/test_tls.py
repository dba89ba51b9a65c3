"""The TLS settings, the header-trust guard and the per-RPC allowlist (agentgpt.runtime.tls, agentgpt.auth)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentgpt import auth
from agentgpt.runtime import tls
from agentgpt.runtime.config import ConfigError


def test_header_trust_is_refused_off_loopback() -> None:
    tls.check_header_trust(True, "127.0.0.1")
    tls.check_header_trust(True, "::1")
    tls.check_header_trust(True, "localhost")
    tls.check_header_trust(False, "0.0.0.0")
    with pytest.raises(ConfigError, match="loopback"):
        tls.check_header_trust(True, "0.0.0.0")


def test_identity_kinds_and_allowlist() -> None:
    assert auth.identity_kind("executor-7") == auth.EXECUTOR
    assert auth.identity_kind("recovery_oracle") == auth.ORACLE
    assert not auth.is_service_identity("cli")
    method = "/agentgpt.session.v1.SessionService/ReportTask"
    assert auth.caller_refusal(method, "executor-2") is None
    assert "ReportTask" in (auth.caller_refusal(method, "recovery-oracle") or "")
    assert auth.caller_refusal("/agentgpt.session.v1.SessionService/CreateSession", "cli") is None


def test_tls_files_are_all_or_nothing(tmp_path: Path) -> None:
    assert tls.files_from("", "", "") is None
    with pytest.raises(ConfigError, match="AGENTGPT_TLS_KEY_FILE"):
        tls.files_from("ca.pem", "cert.pem", "")
    with pytest.raises(ConfigError, match="cannot read"):
        tls.files_from(str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))


def test_issued_keys_are_private_and_found_again(tmp_path: Path) -> None:
    ca = tls.make_ca(tmp_path)
    files = tls.issue(ca, "executor-3", tmp_path)
    assert (files.key.stat().st_mode & 0o777) == 0o600
    assert ((tmp_path / "ca.key").stat().st_mode & 0o777) == 0o600
    assert tls.local_files(tmp_path, "executor-3") == files
    assert tls.local_files(tmp_path, "indexer") is None
