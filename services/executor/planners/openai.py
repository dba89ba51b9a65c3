"""A model adapter for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, ...).

The model is asked for a JSON object in the plan shape; its answer is validated like any untrusted
input (`plan_from_json`). A transport failure or a non-200 answer is a ModelUnavailable (the task is
deferred and retried); an answer that is not a valid plan is a PlanRejected (the task is refused).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from services.executor.plan import ACTION_KINDS, Plan, PlanRejected, TaskRequest, plan_from_json
from services.executor.planners.base import SessionView

SYSTEM_PROMPT = (
    "You plan one task of an on-chain automation session. Answer with one JSON object: "
    '{"actions": [{"kind": KIND, "params": {...}}], "score": 0..1, "rationale": str, "est_gas": int}. '
    "Allowed kinds and their required params: "
    + "; ".join(f"{k}({', '.join(v)})" for k, v in ACTION_KINDS.items())
    + ". Addresses are 0x-prefixed hex. Use only addresses given to you. `feedback` says what the chain "
    "costs now (base fee, recent gas used) and what is left in the budget (AGPT base units; each task "
    "pays task_fee plus its gas at gas_price): prefer fewer on-chain actions when fees are high."
)


class ModelUnavailable(Exception):
    """The model endpoint could not answer; the task is retried later, not refused."""


class OpenAIPlanner:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.name = f"openai:{model}"
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key  # never logged
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    def request_body(self, task: TaskRequest, view: SessionView) -> dict[str, Any]:
        user = {
            "task": {"seq": task.seq, "kind": task.kind, "args": dict(task.args)},
            "session": {
                "id": view.session_id,
                "chains": list(view.chains),
                "account": view.account,
                "params": dict(view.params),
                "memory": dict(view.memory),
            },
            # gas feedback and incentive signals: defer or batch on-chain work when fees are high
            "feedback": view.feedback.to_json(),
        }
        return {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": json.dumps(user, sort_keys=True, default=str)},
            ],
        }

    async def plan(self, task: TaskRequest, view: SessionView) -> Plan:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            async with self._client().post(
                f"{self.base_url}/chat/completions", json=self.request_body(task, view), headers=headers
            ) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:300]
                    raise ModelUnavailable(f"{self.base_url} answered HTTP {resp.status}: {text}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ModelUnavailable(f"{self.base_url}: {type(exc).__name__}: {exc}") from None
        except json.JSONDecodeError:
            raise PlanRejected("the model endpoint's answer is not JSON", by=self.name) from None
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise PlanRejected("the answer has no choices[0].message.content", by=self.name) from None
        try:
            raw = json.loads(content) if isinstance(content, str) else content
        except json.JSONDecodeError:
            raise PlanRejected(
                f"the model's plan is not JSON: {str(content)[:120]!r}", by=self.name
            ) from None
        return plan_from_json(task, raw)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
