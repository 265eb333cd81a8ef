"""Provenance rules: which tool calls may use arguments derived from untrusted content.

The model is assumed to obey any instruction it reads, so the check is the runtime's: the
:class:`ProvenancePolicy` interceptor (stage ``policy``, after the tool guard) runs before
every call of a side-effecting tool (``writes=True``) and of any tool a rule names, and
asks the session's :class:`~convoy.security._provenance.Taint` ledger. Its rules are
checked in order; the first whose condition holds decides:

* ``when="untrusted_arguments"``: an argument's text, or an entity inside it (an e-mail
  address, a URL, a domain, an IBAN, an account or card number), occurs in untrusted
  content the session read but in nothing trusted: not in the user's request (the
  session's input, without its :class:`~convoy.Untrusted` fields), not in the calling
  agent's instructions, not in the output of a tool declared ``trusted=True``;
* ``when="untrusted_read"``: the session has read any untrusted content;
* ``when="ungrounded_entities"``: the session has read untrusted content, and an entity
  inside an argument (an e-mail address, a URL, a domain, an IBAN, an account number) is
  grounded nowhere trusted: not in the user's request, not in the calling agent's
  instructions, not in the output of a tool declared ``trusted=True``. This catches what
  ``untrusted_arguments`` cannot: an injected instruction that has the model *write* an
  address or account it was told in another form (``"attacker at evil dot com"``, spelled
  out, split, encoded), so the value never occurs in the untrusted text as such.

and its ``action``: ``"approve"`` (the call waits for a person's approval, bound to these
exact arguments: the session parks on an approval task, as for ``requires_approval``),
``"deny"`` (refused, :class:`~convoy.ToolDenied` with ``reason="untrusted"``) or
``"allow"`` (no later rule is checked). Each refusal and approval request is journaled
as the step's outcome with the rule's name, and counted in :attr:`ProvenancePolicy.blocked`.

The defaults (:data:`DEFAULT_RULES`, ``ProvenancePolicy.default_rules``) ask for approval
of a side-effecting call whose arguments come from untrusted content, of every
destructive call (``@convoy.tool(destructive=True)``) once untrusted content was read,
and of a side-effecting call, once untrusted content was read, whose arguments name an
address, URL or account that nothing trusted named.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

from convoy._errors import ApprovalRequired, ToolDenied, UserError
from convoy.interceptors._base import Interceptor, Next, Stage, ToolCallInput
from convoy.security._guard import approved
from convoy.security._provenance import (
    MIN_MATCH,
    Taint,
    count_injections,
    normalise,
    strings,
    untrusted_fields,
)

if TYPE_CHECKING:
    from convoy.definitions._tools import Tool
    from convoy.runtime._session import SessionState

#: Entities looked for inside arguments (case-insensitive).
ENTITIES: dict[str, re.Pattern[str]] = {name: re.compile(rx, re.IGNORECASE) for name, rx in {
    "email": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    "url": r"\b(?:https?|ftp|javascript|data):[^\s\"'<>]+",
    "domain": r"\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b",
    "iban": r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b",
    "number": r"\b\d(?:[ -]?\d){7,}\b",
}.items()}


def entities(text: str) -> Iterator[tuple[str, str]]:
    """``(kind, match)`` for each entity in ``text``."""
    for kind, rx in ENTITIES.items():
        for m in rx.finditer(text):
            yield kind, m.group()


Action = Literal["approve", "deny", "allow"]
When = Literal["untrusted_arguments", "untrusted_read", "ungrounded_entities"]
_WHEN = ("untrusted_arguments", "untrusted_read", "ungrounded_entities")


@dataclass(frozen=True, kw_only=True, slots=True)
class ProvenanceRule:
    """One rule of a :class:`ProvenancePolicy` (see :mod:`convoy.security._policy`).

    Args:
        name: recorded with every call it stops (journal, approval task, counters).
        when: ``"untrusted_arguments"``, ``"untrusted_read"`` or
            ``"ungrounded_entities"``.
        action: ``"approve"``, ``"deny"`` or ``"allow"``.
        tools: ``"writes"`` (every side-effecting tool), ``"destructive"`` (tools
            declared ``destructive=True``), or tool names.
    """

    name: str
    when: When
    action: Action = "approve"
    tools: Literal["writes", "destructive"] | Collection[str] = "writes"

    def __post_init__(self) -> None:
        if not self.name:
            raise UserError("ProvenanceRule.name must be a non-empty name")
        if self.when not in _WHEN:
            raise UserError(f"ProvenanceRule.when must be 'untrusted_arguments', "
                            f"'untrusted_read' or 'ungrounded_entities', got {self.when!r}")
        if self.action not in ("approve", "deny", "allow"):
            raise UserError(f"ProvenanceRule.action must be 'approve', 'deny' or 'allow', "
                            f"got {self.action!r}")
        if isinstance(self.tools, str) and self.tools not in ("writes", "destructive"):
            raise UserError(f"ProvenanceRule.tools is 'writes', 'destructive' or a list of "
                            f"tool names, got {self.tools!r} (write [{self.tools!r}])")

    def applies(self, tool: Tool) -> bool:
        """Whether this rule covers calls of ``tool``."""
        if self.tools == "writes":
            return tool.writes
        if self.tools == "destructive":
            return tool.destructive
        return tool.name in self.tools


#: Approval for side-effecting calls with arguments from untrusted content, for
#: destructive calls after untrusted content was read, and for side-effecting calls after
#: untrusted content was read whose addresses, URLs or accounts nothing trusted named.
DEFAULT_RULES: tuple[ProvenanceRule, ...] = (
    ProvenanceRule(name="untrusted_arguments", when="untrusted_arguments"),
    ProvenanceRule(name="destructive_after_untrusted", when="untrusted_read",
                   tools="destructive"),
    ProvenanceRule(name="ungrounded_entities", when="ungrounded_entities"),
)


def request_text(s: SessionState, taint: Taint) -> str:
    """The user's request, normalised: the session's input without its Untrusted fields
    (computed once per session)."""
    if taint.request is None:
        value = s.input
        if isinstance(value, BaseModel):
            skip = set(untrusted_fields(type(value)))
            value = value.model_dump(mode="json", exclude=skip)
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        taint.request = normalise(text)
    return taint.request


def _trusted_text(s: SessionState, taint: Taint, input: ToolCallInput) -> tuple[str, ...]:
    """What grounds an argument, normalised: the user's request, the calling agent's
    instructions (when they are a string), the outputs of trusted tools the session read."""
    instructions = input.agent.instructions
    developer = normalise(instructions) if isinstance(instructions, str) else ""
    return (request_text(s, taint), developer, *(s.grounded or ()))


def untrusted_argument(s: SessionState, taint: Taint, input: ToolCallInput) -> str | None:
    """Why an argument comes from untrusted content (``None``: none does). A value a
    trusted source also holds (the request, the agent's instructions, a trusted tool's
    output: an id the CRM returned, quoted back by a tool's reply) is not one."""
    trusted = _trusted_text(s, taint, input)
    for name, value in input.args.model_dump(mode="json").items():
        for text in strings(value):
            whole = normalise(text)
            found = [("value", text)] if len(whole) >= MIN_MATCH else []
            for kind, entity in [*found, *entities(text)]:
                n = normalise(entity)
                if n and taint.seen_in(n) and not any(n in t for t in trusted):
                    return (f"argument {name!r} carries {entity[:80]!r} ({kind}), found in "
                            f"untrusted content ({', '.join(taint.sources)}) but not in the "
                            "user's request")
    return None


def ungrounded_entity(s: SessionState, taint: Taint, input: ToolCallInput) -> str | None:
    """Why an argument names something nothing trusted named (``None``: all grounded)."""
    trusted = _trusted_text(s, taint, input)
    for name, value in input.args.model_dump(mode="json").items():
        for text in strings(value):
            for kind, entity in entities(text):
                n = normalise(entity)
                if not n or any(n in t for t in trusted):
                    continue
                return (f"argument {name!r} carries {entity[:80]!r} ({kind}), which neither "
                        "the user's request, the agent's instructions nor a trusted tool "
                        f"named, after the session read untrusted content "
                        f"({', '.join(taint.sources)})")
    return None


class ProvenancePolicy(Interceptor):
    """Holds side-effecting tool calls to the provenance rules (module docstring).

    ``Engine(provenance=ProvenancePolicy(rules=[...]))``; every engine has one, with
    :data:`DEFAULT_RULES` unless told otherwise (``rules=()`` enforces nothing).

    It also counts the known injection patterns of every untrusted tool output in
    ``engine.injection_signals``, once per call that ran.

    Attributes:
        blocked: calls stopped, by rule name (sent for approval or denied).
        approved_calls: calls a rule stopped that then ran on a person's approval.
    """

    stage: Stage = "policy"
    #: The rules of a policy built without any (:data:`DEFAULT_RULES`).
    default_rules: ClassVar[tuple[ProvenanceRule, ...]] = DEFAULT_RULES

    def __init__(self, rules: Sequence[ProvenanceRule] = DEFAULT_RULES) -> None:
        for r in rules:
            if not isinstance(r, ProvenanceRule):
                raise UserError(f"ProvenancePolicy rules are convoy.ProvenanceRule, got {r!r}")
        self.rules = tuple(rules)
        self._named = frozenset(n for r in self.rules if not isinstance(r.tools, str)
                                for n in r.tools)
        self.blocked: Counter[str] = Counter()
        self.approved_calls = 0

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        tool = input.tool
        s = input.session
        taint = s.taint
        if taint is not None and (tool.writes or tool.name in self._named):
            await self._check(input, taint)
        result = await next(input)
        if not tool.trusted:  # signals, counted once: a replayed step does not come here
            count_injections(s, tool.dump_result(result))
        return result

    async def _check(self, input: ToolCallInput, taint: Taint) -> None:
        """Raise if a rule stops this call (see the module docstring)."""
        tool = input.tool
        s = input.session
        for rule in self.rules:
            if not rule.applies(tool):
                continue
            if rule.when == "untrusted_arguments":
                why = untrusted_argument(s, taint, input)
            elif rule.when == "ungrounded_entities":
                why = ungrounded_entity(s, taint, input)
            else:
                why = f"the session read untrusted content ({', '.join(taint.sources)})"
            if why is None:
                continue
            if rule.action == "allow":
                break
            if rule.action == "deny":
                self.blocked[rule.name] += 1
                raise ToolDenied(f"rule {rule.name!r} refuses this call of tool {tool.name!r}: "
                                 f"{why}", tool=tool.name, reason="untrusted", rule=rule.name)
            if await approved(input):
                self.approved_calls += 1
                break
            self.blocked[rule.name] += 1
            raise ApprovalRequired(f"rule {rule.name!r}: {why}", rule=rule.name)


__all__ = ["DEFAULT_RULES", "ENTITIES", "ProvenancePolicy", "ProvenanceRule", "entities",
           "request_text", "ungrounded_entity", "untrusted_argument"]
