"""`anthropic`: a Claude model through the Messages API and the official `anthropic` SDK.

Needs ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN); ANTHROPIC_BASE_URL or `--base-url`
points it at a proxy or a compatible server. The model answers with an edit (see
`agents.api`); we apply it.
"""

from __future__ import annotations

import os

from autoresearch.agents.api import ApiAgent, CallTimeout, cost_of
from autoresearch.agents.base import Usage
from autoresearch.errors import AutoresearchError

MAX_TOKENS = 16_000  # room for a whole train.py; non-streaming calls stay under the SDK's 10-minute guard


class AnthropicAgent(ApiAgent):
    name = "anthropic"
    description = "Claude through the Anthropic Messages API (anthropic SDK); answers with edits we apply"
    default_model = "claude-sonnet-4-6"

    def check(self) -> str | None:
        if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
            return "ANTHROPIC_API_KEY is not set"
        return None

    def complete(self, system, messages):
        import anthropic

        problem = self.check()
        if problem:
            raise AutoresearchError(f"anthropic: {problem}")
        client = anthropic.Anthropic(
            base_url=self.settings.base_url or None,
            timeout=self.timeout, max_retries=self.max_retries,
        )
        try:
            response = client.messages.create(
                model=self.model, max_tokens=int(self.options.get("max_tokens") or MAX_TOKENS),
                system=system, messages=messages,
            )
        except anthropic.APITimeoutError as exc:
            raise CallTimeout() from exc
        except anthropic.APIError as exc:
            raise self.failure("anthropic", exc) from exc
        text = "".join(getattr(block, "text", "") for block in response.content if block.type == "text")
        u = response.usage
        tokens_in = (u.input_tokens or 0) + (getattr(u, "cache_creation_input_tokens", 0) or 0) + (
            getattr(u, "cache_read_input_tokens", 0) or 0)
        tokens_out = u.output_tokens or 0
        return text, Usage(tokens_in, tokens_out, cost_of(response.model or self.model, tokens_in, tokens_out))
