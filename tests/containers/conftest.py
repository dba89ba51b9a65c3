"""The container suite's fixture: one cluster of containers per module (tests.containers.cluster), skipped
with the reason when this machine has no Docker engine, and every container's logs attached to a failing
test's report."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from tests.containers.cluster import Cluster, container_cluster, docker_unavailable


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    reason = docker_unavailable()
    if reason:
        pytest.skip(f"Docker is not available here: {reason}")
    async with container_cluster(tmp_path_factory.mktemp("containers")) as c:
        yield c


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        found = getattr(item, "funcargs", {}).get("cluster")
        if isinstance(found, Cluster):
            for name, text in found.logs().items():
                report.sections.append((f"container {name}", text[-20000:]))
    return report
