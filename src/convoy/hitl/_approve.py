"""The approval gate of tool calls: a call a policy sent to a person runs only once a
person approved it (or edited its arguments), then carrying that approval.

A tool step whose chain raised :class:`~convoy.ApprovalRequired` has journaled that
refusal as its outcome. The gate then asks (a human decision, parked), and runs the call
again as a new step with the approval's task id: the guard (or any policy) checks the
approval is bound to exactly that call and consumes it. Replay takes the same path from
the journal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from convoy._errors import ApprovalRequired, ToolDenied
from convoy.hitl._decide import TaskSpec, decide
from convoy.hitl._escalate import conversation
from convoy.security._approval import Approval, binding, canonical_args

if TYPE_CHECKING:
    from convoy.definitions._agent import Agent
    from convoy.definitions._tools import Tool
    from convoy.models._messages import Message
    from convoy.runtime._context import Context

#: Approval tasks one call may raise (an approval that expired before the call ran, or
#: a second policy, asks again); past them the call is refused.
MAX_ASKS = 3

CallWith = Callable[[BaseModel, str], Awaitable[Any]]


async def approve_then_call(ctx: Context, agent: Agent[Any, Any], tool: Tool,
                            args: BaseModel, need: ApprovalRequired, call: CallWith,
                            messages: list[Message]) -> Any:
    """Ask a person to approve ``tool(args)``, then ``call(args, task_id)``.

    Raises:
        ToolDenied: the person rejected the call, nobody decided before the deadline, or
            approvals kept being asked for.
    """
    s = ctx.session
    policy = tool.approval or Approval()
    for _ in range(MAX_ASKS):
        out = await decide(ctx, TaskSpec(
            kind="approval",
            prompt=f"Agent {agent.name!r} wants to call tool {tool.name!r}. Approve?",
            reason=need.reason, context={"rule": need.rule, "tool": tool.description},
            history={**conversation(agent, messages, None), "tool": tool.name,
                     "writes": tool.writes, "scopes": sorted(tool.scopes)},
            proposal={"tool": tool.name, "arguments": canonical_args(args)},
            answer_schema=tool.spec.parameters, queue=policy.queue,
            assignees=tuple(policy.assignees), deadline=policy.deadline, on_deadline="fail",
            binding=binding(tool.name, args, s.tenant, s.id),
            expires_after=policy.expires_after, check=tool.args_model.model_validate))
        d = out.decision
        if d.action == "reject":
            raise ToolDenied(f"a person ({d.by}) rejected this call of tool {tool.name!r}"
                             + (f": {d.comment}" if d.comment else "")
                             + "; do not try it again with the same arguments",
                             tool=tool.name, reason="rejected", by=d.by, rule=need.rule)
        if d.action == "expire":
            raise ToolDenied(f"nobody approved this call of tool {tool.name!r} before its "
                             f"deadline ({policy.deadline}s)", tool=tool.name,
                             reason="expired", rule=need.rule)
        if d.action == "edit":
            args = out.value
        try:
            return await call(args, out.task.id)
        except ApprovalRequired as e:
            need = e
    raise ToolDenied(f"tool {tool.name!r} still needed an approval after {MAX_ASKS} "
                     f"approvals ({need.reason})", tool=tool.name, reason="expired",
                     rule=need.rule)


__all__ = ["MAX_ASKS", "approve_then_call"]
