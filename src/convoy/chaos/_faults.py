"""Fault injection at the adapter end of the interceptor chain.

:class:`FaultInjector` goes *last* in ``Engine(interceptors=[...])`` so it is the innermost
interceptor: every retry attempt, timeout, breaker and budget sits outside it and sees the
injected fault exactly as it would see a real one from the provider.

Every decision is drawn from a generator seeded with ``(seed, session id, step key,
attempt, target)``, like :meth:`convoy.SimModel.rng`: the same seed injects the same faults
however many sessions run at once, in whatever order, and a retry (a new attempt) gets a
fresh draw.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from convoy._errors import ModelError, ToolError, UserError
from convoy._faults import MODEL_FAULTS, FaultRates
from convoy._seeding import seeded_rng
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage, ToolCallInput
from convoy.models._messages import ModelResponse, ToolCall


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultSpec(FaultRates):
    """Probabilities (0..1) of each injected fault, and their parameters.

    The kinds are those of :class:`convoy.Faults` (see :class:`~convoy._faults.FaultRates`).
    Per model call, at most one of the :data:`MODEL_FAULTS` is injected, so their sum is the
    per-call failure rate and must be <= 1: ``timeout`` (hang ``hang_seconds``),
    ``rate_limit`` (HTTP 429 with ``retry_after``), ``server_error`` (HTTP 503),
    ``malformed`` (truncated JSON text), ``schema_invalid`` (JSON that breaks the output
    schema), ``undeclared_tool`` / ``undeclared_handoff`` (a call to a tool or agent that
    does not exist). ``slow`` (adds ``slow_seconds`` of latency) is drawn independently.
    Per tool call, ``tool_failure`` raises a retryable :class:`~convoy.ToolError`.
    """

    def __post_init__(self) -> None:
        FaultRates.__post_init__(self)  # zero-argument super() fails in slotted dataclasses
        total = self.model_rate
        if total > 1.0 + 1e-9:
            raise UserError(f"model faults {', '.join(MODEL_FAULTS)} exclude each other, so "
                            f"their probabilities must add up to at most 1; they add up to "
                            f"{total:g}")

    @property
    def model_rate(self) -> float:
        """The probability that a model call gets a failing fault (``slow`` excluded)."""
        return float(sum(getattr(self, k) for k in MODEL_FAULTS))


FaultHook = Callable[[str, str, str], None]


class FaultInjector(Interceptor):
    """Injects the faults of a :class:`FaultSpec` into model and tool calls.

    Put it last in the interceptor list. ``injected`` counts faults by kind; ``on_fault``
    (``kind, session_id, step_key``) is called for each, e.g. to log it durably.

    A ``timeout`` fault hangs: ``await asyncio.sleep(hang_seconds)``, so a
    :class:`~convoy.resilience.Timeout` outside must cut it; with no timeout the call
    hangs the full ``hang_seconds`` and then fails with a retryable ``ModelError``.
    ``malformed``, ``schema_invalid``, ``undeclared_tool`` and ``undeclared_handoff`` call
    the model (its tokens are paid) and replace the answer: cut as at ``max_tokens``, off
    the schema, or a call to a tool / agent that does not exist.
    """

    stage: Stage = "fault"

    def __init__(self, faults: FaultSpec | str | None = None, *, seed: int = 0,
                 enabled: bool = True, on_fault: FaultHook | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.spec = faults if isinstance(faults, FaultSpec) else FaultSpec.parse(faults)
        self.seed = seed
        self.enabled = enabled
        self.on_fault = on_fault
        self._sleep = sleep
        self.injected: Counter[str] = Counter()
        self.model_calls = 0
        self.tool_calls = 0
        self._tool_attempts: dict[tuple[str, str], int] = {}

    def rng(self, session_id: str, step_key: str, attempt: int, target: str) -> random.Random:
        """The generator for one call, seeded by ``(seed, session, step key, attempt, target)``:
        the same call draws the same fault in every run."""
        return seeded_rng(self.seed, session_id, step_key, attempt, target)

    def draw(self, session_id: str, step_key: str, attempt: int, target: str
             ) -> tuple[str | None, bool]:
        """The model fault (or ``None``) and whether the call is slow. Pure: the same
        arguments always give the same answer."""
        spec = self.spec
        rng = self.rng(session_id, step_key, attempt, target)
        u, slow = rng.random(), rng.random() < spec.slow
        edge = 0.0
        for kind in MODEL_FAULTS:
            edge += getattr(spec, kind)
            if u < edge:
                return kind, slow
        return None, slow

    @property
    def total(self) -> int:
        """Faults injected so far, all kinds together."""
        return sum(self.injected.values())

    def _note(self, kind: str, session_id: str, key: str) -> None:
        self.injected[kind] += 1
        if self.on_fault is not None:
            self.on_fault(kind, session_id, key)

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        if not self.enabled or not self.spec.any:
            return await next(input)
        self.model_calls += 1
        spec, req = self.spec, input.request
        sid, key, model = input.session.id, input.key, input.model.name
        kind, slow = self.draw(sid, key, req.attempt, f"{input.agent.name}@{model}")
        if slow:
            self._note("slow", sid, key)
            await self._sleep(spec.slow_seconds)
        if kind is None:
            return await next(input)
        where = f"model {model!r} (agent {input.agent.name!r}, step {key})"
        if kind == "schema_invalid" and not req.output_schema:
            return await next(input)  # free text has no schema to break
        self._note(kind, sid, key)
        if kind == "timeout":
            await self._sleep(spec.hang_seconds)
            raise ModelError(f"chaos: {where} hung for {spec.hang_seconds:g}s (injected "
                             "timeout; no timeout interceptor cut it)", timeout=True)
        if kind == "rate_limit":
            raise ModelError(f"chaos: {where} answered HTTP 429 (injected rate limit)",
                             retryable=True, status_code=429, retry_after=spec.retry_after)
        if kind == "server_error":
            raise ModelError(f"chaos: {where} answered HTTP 503 (injected server error)",
                             retryable=True, status_code=503)
        resp = await next(input)
        if kind == "malformed":
            return replace(resp, text=_truncated(resp.text), tool_calls=[],
                           finish_reason="length")
        if kind == "schema_invalid":
            return replace(resp, text=json.dumps({"chaos_unexpected_field": True}),
                           tool_calls=[], finish_reason="stop")
        name = "chaos_no_such_tool" if kind == "undeclared_tool" else "transfer_to_chaos_nobody"
        return replace(resp, text=None, tool_calls=[ToolCall(f"call_{kind}", name, "{}")],
                       finish_reason="tool_calls")

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        if not self.enabled or not self.spec.tool_failure:
            return await next(input)
        self.tool_calls += 1
        sid, key = input.session.id, input.key
        slot = (sid, key)
        attempt = self._tool_attempts.get(slot, 0)
        self._tool_attempts[slot] = attempt + 1
        if self.rng(sid, key, attempt, f"tool:{input.tool.name}").random() < \
                self.spec.tool_failure:
            self._note("tool_failure", sid, key)
            raise ToolError(f"chaos: tool {input.tool.name!r} failed (injected, step {key})",
                            retryable=True)
        out = await next(input)
        self._tool_attempts.pop(slot, None)
        return out


def _truncated(text: str | None) -> str:
    """Cut JSON mid-way so it no longer parses (``'{"truncated": '`` for short text)."""
    cut = text[: len(text) // 2] if text and len(text) >= 4 else ""
    try:
        json.loads(cut)
    except ValueError:
        return cut or '{"truncated": '
    return '{"truncated": '
