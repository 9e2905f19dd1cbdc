"""What the two API agents share: one question, an edit as the answer, one retry when it is bad.

The model sees the bounded prompt of `context.build` and answers in the edit format of
`answers` (whole files or SEARCH/REPLACE blocks), or the way many models do anyway: a line
of prose and a whole editable file in one fenced code block. The answer is checked and
applied all at once. A malformed answer (a SEARCH that does not match, a block not closed,
Python that no longer parses, a fenced fragment of a file) or one with no usable edit at
all is sent back once with the reason; a second bad answer is skipped: nothing changes and
the engine records a `noop` whose description says why. Only an answer in the format (a
`DESCRIPTION:` line) that holds no code at all is taken as a deliberate "no change".

Rate limits (429) and server errors (5xx) are retried by the official SDKs themselves, with
exponential backoff that honours the server's `retry-after`; `max_retries` and the per-call
timeout come from the options. A call that still times out is a no-op proposal, like a
timed-out CLI agent: the loop goes on. An error that outlives the retries, or one that
retrying cannot fix (a bad key, an unknown model), raises AutoresearchError.

Cost: the provider's own figure when the response carries one (OpenAI-compatible routers
put it in `usage.cost`); else tokens times the list price below for the models we know;
else None. Prices move: the table is a convenience, not a bill.
"""

from __future__ import annotations

from typing import Any, ClassVar

from autoresearch.agents import answers, editing, external
from autoresearch.agents.base import Agent, Context, Proposal, Usage, keep_transcript, one_line
from autoresearch.errors import AutoresearchError
from autoresearch.proc import redact

DEFAULT_RETRIES = 5

SYSTEM = (
    "You are an autonomous ML researcher working inside a fixed experiment harness. You cannot "
    "run code; you answer with one change, written as edit blocks that a program applies to the "
    "workspace exactly as written.\n\n" + answers.FORMAT
)

RETRY = (
    "Your answer could not be applied: {error}\n"
    "Nothing was changed. Answer again with the complete edit in the format above (edit blocks, "
    "or the whole file in one fenced block), against the files exactly as they were shown."
)

# USD per million tokens (input, output), by model-name prefix; the longest prefix wins.
PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.5, 10.0),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "o3": (2.0, 8.0),
}


def price_of(model: str) -> tuple[float, float] | None:
    model = (model or "").lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" -> "gpt-4o"
    best = None
    for prefix, price in PRICES.items():
        # "gpt-5" prices "gpt-5-2025-08-07" but not "gpt-5.5", a different model.
        if not (model == prefix or model.startswith(prefix + "-")):
            continue
        if best is None or len(prefix) > len(best[0]):
            best = (prefix, price)
    return best[1] if best else None


def cost_of(model: str, tokens_in: int, tokens_out: int) -> float | None:
    price = price_of(model)
    if price is None:
        return None
    return (tokens_in * price[0] + tokens_out * price[1]) / 1e6


def add(a: Usage, b: Usage) -> Usage:
    cost = None if a.cost_usd is None and b.cost_usd is None else (a.cost_usd or 0.0) + (b.cost_usd or 0.0)
    return Usage(a.tokens_in + b.tokens_in, a.tokens_out + b.tokens_out, cost)


class CallTimeout(Exception):
    """The call outlived its time limit, retries included (a `complete` raises it)."""


class ApiAgent(Agent):
    """Base of the API agents: subclasses implement `complete` (one call, no retry logic of ours)."""

    default_model: ClassVar[str] = ""
    default_timeout: ClassVar[float] = 600.0

    @property
    def model(self) -> str:
        return self.settings.model or self.default_model

    @property
    def max_retries(self) -> int:
        return DEFAULT_RETRIES if self.settings.max_retries is None else self.settings.max_retries

    def complete(self, system: str, messages: list[dict[str, str]]) -> tuple[str, Usage]:
        raise NotImplementedError  # pragma: no cover - interface

    def propose(self, context: Context) -> Proposal:
        messages: list[dict[str, Any]] = [{"role": "user", "content": context.prompt}]
        usage = Usage(0, 0, None)
        transcript = []
        for attempt in (1, 2):
            try:
                text, used = self.complete(SYSTEM, messages)
            except CallTimeout:
                self._keep_transcript(context, [*transcript, f"[timed out after {self.timeout:g} s]"])
                return external.timed_out(context, self.name, self.timeout, usage)
            usage = add(usage, used)
            transcript.append(text)
            try:
                answer = answers.parse(text, context.editable)
                editing.apply(context.root, answer)
            except answers.EditError as exc:
                transcript.append(f"[not applied: {exc}]")
                if attempt == 2:
                    self._keep_transcript(context, transcript)
                    return Proposal(one_line(f"malformed edit skipped: {exc}"), usage)
                messages += [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": RETRY.format(error=exc)},
                ]
                continue
            self._keep_transcript(context, transcript)
            return Proposal(answer.description or "(the model gave no description)", usage)
        raise AssertionError("unreachable")  # pragma: no cover

    def _keep_transcript(self, context: Context, replies: list[str]) -> None:
        head = f"agent: {self.name} ({self.model})\nprompt: {len(context.prompt)} characters\n\n"
        keep_transcript(context, head + "\n\n---\n\n".join(replies))

    @staticmethod
    def failure(name: str, exc: Exception) -> AutoresearchError:
        status = getattr(exc, "status_code", None)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        head = f"{name} API error" + (f" {status}" if status else "")
        return AutoresearchError(f"{head}: {redact(' '.join(str(message).split()))[:300]}")
