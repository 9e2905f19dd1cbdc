"""`openai`: any OpenAI-compatible Chat Completions endpoint through the official `openai` SDK.

OpenAI itself with OPENAI_API_KEY, or a local server (vLLM, Ollama, llama.cpp, LM Studio)
with `--base-url http://host:port/v1` (or OPENAI_BASE_URL), where no key is needed. The
model answers with an edit (see `agents.api`); we apply it. No streaming: one request, one
answer.
"""

from __future__ import annotations

import os

from autoresearch.agents.api import ApiAgent, CallTimeout, cost_of
from autoresearch.agents.base import Usage
from autoresearch.errors import AutoresearchError

OPENAI_HOST = "api.openai.com"


class OpenAIAgent(ApiAgent):
    name = "openai"
    description = "any OpenAI-compatible Chat Completions server (openai SDK; OpenAI, vLLM, Ollama, llama.cpp)"
    default_model = "gpt-5"

    @property
    def base_url(self) -> str:
        return self.settings.base_url or os.environ.get("OPENAI_BASE_URL") or ""

    def _local(self) -> bool:
        return bool(self.base_url) and OPENAI_HOST not in self.base_url

    def check(self) -> str | None:
        if not os.environ.get("OPENAI_API_KEY") and not self._local():
            return "OPENAI_API_KEY is not set (or give --base-url for a local server)"
        return None

    def complete(self, system, messages):
        import openai

        problem = self.check()
        if problem:
            raise AutoresearchError(f"openai: {problem}")
        # A local server takes any key; the SDK insists on one.
        key = os.environ.get("OPENAI_API_KEY") or "no-key-needed"
        client = openai.OpenAI(
            api_key=key, base_url=self.base_url or None, timeout=self.timeout, max_retries=self.max_retries,
        )
        try:
            response = client.chat.completions.create(
                model=self.model, messages=[{"role": "system", "content": system}, *messages],
            )
        except openai.APITimeoutError as exc:
            raise CallTimeout() from exc
        except openai.APIError as exc:
            raise self.failure("openai", exc) from exc
        if not response.choices:
            raise AutoresearchError("openai: the server answered with no choices")
        text = response.choices[0].message.content or ""
        u = response.usage
        tokens_in = (u.prompt_tokens or 0) if u else 0
        tokens_out = (u.completion_tokens or 0) if u else 0
        reported = (getattr(u, "model_extra", None) or {}).get("cost") if u else None
        if isinstance(reported, (int, float)):
            cost = float(reported)
        elif self._local():
            cost = None  # a local or third-party server: list prices do not apply
        else:
            cost = cost_of(response.model or self.model, tokens_in, tokens_out)
        return text, Usage(tokens_in, tokens_out, cost)
