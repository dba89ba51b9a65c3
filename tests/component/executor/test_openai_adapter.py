"""The OpenAI-compatible adapter against a tiny local HTTP server speaking the chat-completions shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from services.executor.plan import PlanRejected, TaskRequest
from services.executor.planners import OpenAIPlanner, SessionView
from services.executor.planners.openai import ModelUnavailable

TO = "0x" + "ab" * 20


class FakeModel:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[str] = []
        self.answer: Any = None
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(await request.json())
        self.headers.append(request.headers.get("Authorization", ""))
        if self.status != 200:
            return web.Response(status=self.status, text="overloaded")
        content = self.answer if isinstance(self.answer, str) else json.dumps(self.answer)
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": content}}]})


@pytest_asyncio.fixture(loop_scope="session")
async def model() -> AsyncIterator[tuple[FakeModel, str]]:
    fake = FakeModel()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield fake, f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


TASK = TaskRequest("9", 4, "pay", {"amount": 5})
VIEW = SessionView("9", params={"max_base_fee_gwei": 30}, chains=("home",))


async def test_plans_from_the_endpoint(model: tuple[FakeModel, str]) -> None:
    fake, url = model
    fake.status = 200
    fake.answer = {
        "actions": [{"kind": "transfer", "params": {"chain": "home", "to": TO, "value": 5}}],
        "score": 0.7,
        "rationale": "pay",
        "est_gas": 21000,
    }
    planner = OpenAIPlanner(url, "gpt-4-enterprise-finance", api_key="sk-test")
    try:
        plan = await planner.plan(TASK, VIEW)
    finally:
        await planner.close()
    assert plan.actions[0].params["to"] == TO and plan.score == 0.7 and plan.est_gas == 21000
    body = fake.requests[-1]
    assert body["model"] == "gpt-4-enterprise-finance" and body["response_format"] == {"type": "json_object"}
    user = json.loads(body["messages"][1]["content"])
    assert user["task"] == {"seq": 4, "kind": "pay", "args": {"amount": 5}}
    assert user["session"]["params"] == {"max_base_fee_gwei": 30}
    assert fake.headers[-1] == "Bearer sk-test"


@pytest.mark.parametrize(
    "answer", ["not json at all", {"actions": [{"kind": "selfdestruct"}]}, {"score": 0.5}]
)
async def test_bad_answers_are_refused(model: tuple[FakeModel, str], answer: Any) -> None:
    fake, url = model
    fake.status = 200
    fake.answer = answer
    planner = OpenAIPlanner(url, "m")
    try:
        with pytest.raises(PlanRejected):
            await planner.plan(TASK, VIEW)
    finally:
        await planner.close()


async def test_outage_is_unavailable_not_refused(model: tuple[FakeModel, str]) -> None:
    fake, url = model
    fake.status = 503
    planner = OpenAIPlanner(url, "m")
    try:
        with pytest.raises(ModelUnavailable, match="503"):
            await planner.plan(TASK, VIEW)
    finally:
        await planner.close()
        fake.status = 200
    dead = OpenAIPlanner("http://127.0.0.1:9/v1", "m", timeout=2)
    try:
        with pytest.raises(ModelUnavailable):
            await dead.plan(TASK, VIEW)
    finally:
        await dead.close()
