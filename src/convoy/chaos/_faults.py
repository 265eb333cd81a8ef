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
import difflib
import json
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from convoy._errors import ModelError, ToolError, UserError
from convoy._seeding import seeded_rng
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage, ToolCallInput
from convoy.models._messages import ModelResponse

#: Faults of one model call that exclude each other (one draw picks at most one).
MODEL_FAULTS = ("timeout", "rate_limit", "server_error", "malformed", "schema_invalid")
#: Every kind a spec may name.
FAULT_KINDS = (*MODEL_FAULTS, "slow", "tool_failure")
#: Kinds that take a ``:SECONDS`` parameter, and the field it sets.
_PARAM = {"timeout": "hang_seconds", "slow": "slow_seconds", "rate_limit": "retry_after"}
_ALIASES = {"malformed_json": "malformed", "hang": "timeout", "5xx": "server_error",
            "429": "rate_limit"}


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultSpec:
    """Probabilities (0..1) of each injected fault, and their parameters.

    Per model call, at most one of ``timeout`` (hang ``hang_seconds``), ``rate_limit``
    (HTTP 429 with ``retry_after``), ``server_error`` (HTTP 503), ``malformed`` (truncated
    JSON text) and ``schema_invalid`` (JSON that breaks the output schema) is injected, so
    their sum is the per-call failure rate and must be <= 1. ``slow`` (adds
    ``slow_seconds`` of latency) is drawn independently. Per tool call, ``tool_failure``
    raises a retryable :class:`~convoy.ToolError`.
    """

    timeout: float = 0.0
    rate_limit: float = 0.0
    server_error: float = 0.0
    malformed: float = 0.0
    schema_invalid: float = 0.0
    slow: float = 0.0
    tool_failure: float = 0.0
    hang_seconds: float = 30.0
    slow_seconds: float = 0.5
    retry_after: float = 0.1

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            if not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
                raise UserError(f"fault {kind!r}: probability must be in [0, 1], got {p!r}")
        for name in _PARAM.values():
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise UserError(f"fault parameter {name!r} must be >= 0 seconds, got {v!r}")
        total = self.model_rate
        if total > 1.0 + 1e-9:
            raise UserError(f"model faults {', '.join(MODEL_FAULTS)} exclude each other, so "
                            f"their probabilities must add up to at most 1; they add up to "
                            f"{total:g}")

    @property
    def model_rate(self) -> float:
        """The probability that a model call gets a failing fault (``slow`` excluded)."""
        return float(sum(getattr(self, k) for k in MODEL_FAULTS))

    @property
    def any(self) -> bool:
        return any(getattr(self, k) for k in FAULT_KINDS)

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """Parse ``"timeout=0.02:10,server_error=0.02,slow=0.05:0.5,tool_failure=0.01"``.

        ``KIND=PROBABILITY`` pairs separated by commas; ``timeout``, ``slow`` and
        ``rate_limit`` take an optional ``:SECONDS`` (hang, added latency, Retry-After).
        An empty string or ``"none"`` means no faults.

        Raises:
            UserError: an unknown kind (with a suggestion), a bad number, a repeated kind.
        """
        values: dict[str, float] = {}
        raw = (text or "").strip()
        if raw.lower() in ("", "none", "off"):
            return cls()
        for part in raw.split(","):
            item = part.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not value.strip():
                raise UserError(f"fault {item!r} must look like KIND=PROBABILITY, e.g. "
                                "'server_error=0.02' (kinds: " + ", ".join(FAULT_KINDS) + ")")
            kind = _ALIASES.get(name, name)
            if kind not in FAULT_KINDS:
                hint = difflib.get_close_matches(name, FAULT_KINDS, n=1)
                dym = f" Did you mean {hint[0]!r}?" if hint else ""
                raise UserError(f"unknown fault kind {name!r}; known kinds: "
                                f"{', '.join(FAULT_KINDS)}.{dym}")
            if kind in values:
                raise UserError(f"fault {kind!r} is given twice in {raw!r}")
            prob, colon, param = value.partition(":")
            values[kind] = _number(prob, f"probability of fault {kind!r}")
            if colon:
                if kind not in _PARAM:
                    raise UserError(f"fault {kind!r} takes no ':SECONDS' parameter; only "
                                    f"{', '.join(_PARAM)} do")
                values[_PARAM[kind]] = _number(param, f"seconds of fault {kind!r}")
        return cls(**values)

    def __str__(self) -> str:
        parts = []
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            if p:
                extra = f":{getattr(self, _PARAM[kind]):g}" if kind in _PARAM else ""
                parts.append(f"{kind}={p:g}{extra}")
        return ",".join(parts) or "none"

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _number(text: str, what: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise UserError(f"{what}: {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise UserError(f"{what}: {text.strip()!r} is not a finite number")
    return v


FaultHook = Callable[[str, str, str], None]


class FaultInjector(Interceptor):
    """Injects the faults of a :class:`FaultSpec` into model and tool calls.

    Put it last in the interceptor list. ``injected`` counts faults by kind; ``on_fault``
    (``kind, session_id, step_key``) is called for each, e.g. to log it durably.

    A ``timeout`` fault hangs: ``await asyncio.sleep(hang_seconds)``, so a
    :class:`~convoy.resilience.Timeout` outside must cut it; with no timeout the call
    hangs the full ``hang_seconds`` and then fails with a retryable ``ModelError``.
    ``malformed`` and ``schema_invalid`` call the model (its tokens are paid) and corrupt
    the answer, as a provider cutting output at ``max_tokens`` would.
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
                             "timeout; no timeout interceptor cut it)", retryable=True)
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
        return replace(resp, text=json.dumps({"chaos_unexpected_field": True}), tool_calls=[],
                       finish_reason="stop")

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
