"""The fault vocabulary shared by the simulator and chaos engineering.

:class:`convoy.Faults` (faults the :class:`~convoy.SimModel` answers with) and
:class:`convoy.chaos.FaultSpec` (faults :class:`~convoy.chaos.FaultInjector` injects into
any model) both derive from :class:`FaultRates`, so the kinds, their ``:SECONDS``
parameters, their aliases and the ``"KIND=PROBABILITY[:SECONDS],..."`` syntax are defined
once, here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Self

from convoy._errors import UserError
from convoy._text import quoted

#: Faults of one model call, in the order they are drawn.
MODEL_FAULTS = ("timeout", "rate_limit", "server_error", "malformed", "schema_invalid",
                "undeclared_tool", "undeclared_handoff")
#: Every kind a fault spec may name: the model faults, added latency, and tool failures.
FAULT_KINDS = (*MODEL_FAULTS, "slow", "tool_failure")
#: Kinds that take a ``:SECONDS`` parameter, and the field it sets.
PARAMS = {"timeout": "hang_seconds", "slow": "slow_seconds", "rate_limit": "retry_after"}
#: Other names accepted for a kind.
ALIASES = {"malformed_json": "malformed", "hang": "timeout", "5xx": "server_error",
           "429": "rate_limit"}


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultRates:
    """Probabilities (0..1) of each fault kind, and the seconds some of them take.

    ``timeout`` hangs ``hang_seconds`` then fails with a retryable timeout; ``rate_limit``
    is an HTTP 429 with ``retry_after``; ``server_error`` an HTTP 503; ``malformed``
    truncated JSON; ``schema_invalid`` JSON that breaks the output schema;
    ``undeclared_tool`` / ``undeclared_handoff`` call a tool or hand off to an agent that
    does not exist; ``slow`` adds ``slow_seconds`` of latency; ``tool_failure`` makes a
    tool call fail with a retryable :class:`~convoy.ToolError`.
    """

    timeout: float = 0.0
    rate_limit: float = 0.0
    server_error: float = 0.0
    malformed: float = 0.0
    schema_invalid: float = 0.0
    undeclared_tool: float = 0.0
    undeclared_handoff: float = 0.0
    slow: float = 0.0
    tool_failure: float = 0.0
    hang_seconds: float = 30.0
    slow_seconds: float = 0.5
    retry_after: float = 0.1

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            if not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
                raise UserError(f"fault {quoted(kind)}: probability must be in [0, 1], got {p!r}")
        for name in PARAMS.values():
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise UserError(f"fault parameter {name!r} must be >= 0 seconds, got {v!r}")

    @property
    def any(self) -> bool:
        """Whether any fault has a non-zero probability."""
        return any(getattr(self, k) for k in FAULT_KINDS)

    @classmethod
    def parse(cls, text: str | None) -> Self:
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
            if not sep or not value.strip():
                raise UserError(f"fault {quoted(item)} must look like KIND=PROBABILITY, e.g. "
                                "'server_error=0.02' (kinds: " + ", ".join(FAULT_KINDS) + ")")
            kind = canonical_kind(name.strip())
            if kind in values:
                raise UserError(f"fault {quoted(kind)} is given twice in {quoted(raw, 200)}")
            prob, colon, param = value.partition(":")
            values[kind] = _number(prob, f"probability of fault {quoted(kind)}")
            if colon:
                if kind not in PARAMS:
                    raise UserError(f"fault {quoted(kind)} takes no ':SECONDS' parameter; only "
                                    f"{', '.join(PARAMS)} do")
                values[PARAMS[kind]] = _number(param, f"seconds of fault {quoted(kind)}")
        return cls(**values)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """Build from a mapping of kinds (or aliases) and parameters, e.g. a scenario file.

        Raises:
            UserError: an unknown key (with a suggestion).
        """
        params = set(PARAMS.values())
        values = {k if k in params else canonical_kind(k): v for k, v in data.items()}
        return cls(**values)

    def __str__(self) -> str:
        parts = []
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            if p:
                extra = f":{getattr(self, PARAMS[kind]):g}" if kind in PARAMS else ""
                parts.append(f"{kind}={p:g}{extra}")
        return ",".join(parts) or "none"

    def to_dict(self) -> dict[str, float]:
        """Every field by name, e.g. for a chaos report."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def canonical_kind(name: str) -> str:
    """The kind ``name`` stands for (aliases resolved).

    Raises:
        UserError: not a kind, with a "Did you mean" suggestion.
    """
    kind = ALIASES.get(name, name)
    if kind not in FAULT_KINDS:
        hint = difflib.get_close_matches(name, [*FAULT_KINDS, *ALIASES], n=1)
        dym = f" Did you mean {ALIASES.get(hint[0], hint[0])!r}?" if hint else ""
        raise UserError(f"unknown fault kind {quoted(name)}; known kinds: "
                        f"{', '.join(FAULT_KINDS)}.{dym}")
    return kind


def _number(text: str, what: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise UserError(f"{what}: {quoted(text.strip())} is not a number") from None
    if not math.isfinite(v):
        raise UserError(f"{what}: {quoted(text.strip())} is not a finite number")
    return v
