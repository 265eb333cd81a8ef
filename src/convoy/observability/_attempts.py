"""Whether a chain can make more than one attempt of a step (so per-attempt hooks matter).

Retries come from interceptors at the stages between ``trace`` and ``attempt`` that may call
``next`` more than once: ``retry`` (:class:`~convoy.resilience.Retry`), ``fallback``, and
``custom`` (yours: Convoy cannot tell). With none of them hooking model or tool calls, a
step is exactly one attempt, and the per-attempt hooks of tracing and metrics step aside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from convoy.interceptors._base import Interceptor, Stage

if TYPE_CHECKING:
    pass

_RETRYING = ("custom", "fallback", "retry")
_PER_ATTEMPT = frozenset({"model_call", "tool_call"})


def attempts_vary(interceptors: Sequence[Interceptor]) -> bool:
    """Whether an interceptor of ``interceptors`` may make a step more than one attempt."""
    base_model, base_tool = Interceptor.model_call, Interceptor.tool_call
    return any(ic.stage in _RETRYING and (
        (type(ic).model_call is not base_model and "model_call" not in ic.unhooked) or
        (type(ic).tool_call is not base_tool and "tool_call" not in ic.unhooked))
        for ic in interceptors)


class PerAttempt(Interceptor):
    """Base of the per-attempt interceptors: in an engine where nothing retries, the chains
    skip their hooks (:meth:`unhooked_in`), so a hook that runs is in an engine that can
    make a step more than one attempt (an instance shared by engines is in the chains of
    those that can only)."""

    stage: Stage = "attempt"

    def unhooked_in(self, interceptors: Sequence[Interceptor]) -> frozenset[str]:
        skipped = self.unhooked
        return skipped if attempts_vary(interceptors) else skipped | _PER_ATTEMPT


__all__ = ["PerAttempt", "attempts_vary"]
