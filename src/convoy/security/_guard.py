"""The tool guard: scopes and approvals, checked before a tool runs.

Every engine runs a :class:`ToolGuard` in the ``policy`` stage of its chain (after trace
and audit, so they see refusals; before retries, caches and the tool). A call of a tool
that declares nothing to check passes straight through; otherwise:

* the tool's scopes must be covered by the agent's grant (and the tenant's cap): if not,
  :class:`~convoy.ToolDenied` (``reason="scope"``) is raised before anything runs; the
  step journals it and the agent loop reports it to the model as a failed call;
* a tool that requires approval runs only with a valid approval (:func:`approved`); else
  :class:`~convoy.ApprovalRequired` parks the session on an approval task.

Another policy asks for an approval the same way: raise ``ApprovalRequired`` from its
``tool_call`` unless ``await convoy.approved(input)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from convoy._errors import ApprovalRequired, ToolDenied
from convoy.hitl._task import INBOX, load_task
from convoy.interceptors._base import Interceptor, Next, Stage, ToolCallInput
from convoy.security._approval import binding
from convoy.security._scopes import check_grants, missing_scopes
from convoy.stores._protocol import StateWrite


def _used_by(input: ToolCallInput) -> str:
    return f"{input.session.id}:{input.key}"


async def approved(input: ToolCallInput) -> bool:
    """Whether this call carries a valid approval, which it then consumes.

    Valid: an approval task of this session and tenant, approved (or approved with edited
    arguments) by a person, not expired, bound to exactly this tool and these arguments,
    and not used by another call. Consuming it is a compare-and-set that names this step,
    so the same step run again after a crash finds it is its own (and is not asked
    again), while any other call finds it used.
    """
    tid = input.approval
    if tid is None:
        return False
    s = input.session
    store = s.runtime.store
    entry = await store.state_get(s.tenant, INBOX, tid)
    if entry is None:
        return False
    task = load_task(entry.value, entry.version)
    if task.kind != "approval" or task.session_id != s.id or task.tenant != s.tenant:
        return False
    if task.status == "used":
        return task.used_by == _used_by(input)
    d = task.decision
    if task.status != "answered" or d is None or d.action not in ("approve", "edit"):
        return False
    if task.expires_at is None or s.runtime.clock() > task.expires_at:
        return False
    proposal: dict[str, Any] = task.proposal if isinstance(task.proposal, dict) else {}
    tool = input.tool
    try:
        granted = tool.args_model.model_validate(
            proposal.get("arguments") if d.action == "approve" else d.value)
    except ValidationError:
        return False
    if binding(str(proposal.get("tool")), granted, task.tenant, task.session_id) != \
            binding(tool.name, input.args, s.tenant, s.id):
        return False
    used = task.model_copy(update={"status": "used", "used_by": _used_by(input)})
    res = await store.state_put(StateWrite(
        tenant=s.tenant, namespace=INBOX, key=tid, value=used.model_dump_json(),
        expected_version=entry.version, session_id=s.id, agent=input.agent.name,
        step_key=f"{input.key}#approval"))
    return res.written


class ToolGuard(Interceptor):
    """Checks scopes and approvals before a tool runs (see the module docstring).

    Args:
        tenant_scopes: per tenant, the most its sessions' agents may hold: a tool scope is
            granted only if the agent's grant and the tenant's cap both cover it.

    Attributes:
        refused: refusals by reason (``"scope"``), and ``"approval"`` for calls sent to
            a person.
        approved_calls: calls that ran on an approval.
    """

    stage: Stage = "policy"

    def __init__(self, tenant_scopes: Mapping[str, Collection[str]] | None = None) -> None:
        self.caps = {t: check_grants(g, f"tenant_scopes[{t!r}]")
                     for t, g in (tenant_scopes or {}).items()}
        self.refused: Counter[str] = Counter()
        self.approved_calls = 0

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        tool = input.tool
        if not tool.guarded:
            return await next(input)
        if tool.scopes:
            missing = missing_scopes(tool.scopes, input.agent.scopes,
                                     self.caps.get(input.session.tenant))
            if missing:
                self.refused["scope"] += 1
                raise ToolDenied(
                    f"agent {input.agent.name!r} may not call tool {tool.name!r}: it needs "
                    f"scope(s) {', '.join(missing)} that the agent is not granted"
                    + (f" in tenant {input.session.tenant!r}"
                       if input.session.tenant in self.caps else "")
                    + "; do the task without this tool, or hand it to an agent that may",
                    tool=tool.name, reason="scope", missing=missing)
        if tool.approval is not None:
            if not await approved(input):
                self.refused["approval"] += 1
                raise ApprovalRequired(f"tool {tool.name!r} requires a person's approval "
                                       "for every call", rule="requires_approval")
            self.approved_calls += 1
        return await next(input)


__all__ = ["ToolGuard", "approved"]
