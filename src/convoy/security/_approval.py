"""Approvals bound to arguments: what a sensitive tool call needs before it runs.

An approval is a human decision on one proposed call. It is bound to a hash of the tool,
its validated arguments, the tenant and the session (:func:`binding`), so it authorises
exactly that call: other arguments, another session or another tenant need their own. It
expires ``expires_after`` seconds after it was given, and it is used once: the first call
that presents it consumes it (a compare-and-set in the store, named after that call's
step, so the same step retried after a crash finds it its own and is not asked again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from convoy._errors import UserError
from convoy._seconds import LONGEST_S, timeout_seconds


@dataclass(frozen=True, kw_only=True, slots=True)
class Approval:
    """How a tool's calls are approved (``@convoy.tool(requires_approval=Approval(...))``;
    ``requires_approval=True`` takes these defaults).

    Args:
        queue: the inbox queue the approval tasks go to.
        assignees: who may decide (empty: anyone who can reach the tenant's inbox).
        expires_after: seconds an approval stays valid once given; a call resumed later
            than that asks again.
        deadline: seconds to wait for a decision; past it the call is refused
            (``ToolDenied``, reason ``"expired"``) and the model is told. ``None``: wait
            as long as it takes.
    """

    queue: str = "approvals"
    assignees: Sequence[str] = ()
    expires_after: float = 3600.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if not self.queue:
            raise UserError("Approval.queue must be a non-empty name")
        if isinstance(self.assignees, str):
            raise UserError(f"Approval.assignees is a list of names, got {self.assignees!r}")
        if not 0 < self.expires_after <= LONGEST_S:  # (NaN compares false: refused too)
            raise UserError(f"Approval.expires_after must be a number of seconds > 0, up to "
                            f"a hundred years, got {self.expires_after}")
        object.__setattr__(self, "deadline", timeout_seconds(  # (inf: none)
            self.deadline, "Approval.deadline"))


def binding(tool: str, args: BaseModel, tenant: str, session_id: str) -> str:
    """The hash an approval of this call is bound to (SHA-256, hex): the tool, its
    arguments as validated (canonical JSON), the tenant and the session."""
    text = json.dumps({"tool": tool, "arguments": args.model_dump(mode="json"),
                       "tenant": tenant, "session": session_id},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_args(args: BaseModel) -> Any:
    """The arguments as JSON values (what a reviewer sees and may edit)."""
    return args.model_dump(mode="json")


__all__ = ["Approval", "binding", "canonical_args"]
