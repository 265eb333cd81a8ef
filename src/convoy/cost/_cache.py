"""Exact-match response cache, scoped per tenant, with a TTL and hit/miss counts."""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from convoy._errors import UserError
from convoy.definitions._calls import calls_valid
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage
from convoy.models._messages import ModelRequest, ModelResponse, Usage


def cache_key(model: str, req: ModelRequest) -> str:
    """The normalised request: model, messages, tools, output schema and sampling settings.

    The tenant is part of the key, so entries are never shared across tenants. Session ids,
    step keys and attempt numbers are not: they do not change what the model is asked.
    """
    body = {
        "tenant": req.tenant,
        "model": model,
        "messages": [[m.role, (m.content or "").strip(), m.tool_call_id,
                      [c.to_dict() | {"id": ""} for c in m.tool_calls or ()]]
                     for m in req.messages],
        "tools": [[t.name, t.parameters] for t in req.tools],
        "schema": req.output_schema,
        "settings": [req.settings.temperature, req.settings.max_tokens, req.settings.seed],
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


class ResponseCache(Interceptor):
    """Serves an identical request from memory instead of calling the model.

    A hit costs no tokens and no money (``response.cached`` is set, usage is zero); what it
    saved is counted in ``saved_usage`` and ``saved_usd``. Entries expire after ``ttl``
    seconds; the least recently used go first past ``max_entries``.
    """

    stage: Stage = "cache"

    def __init__(self, *, ttl: float = 3600.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0 or max_entries < 1:
            raise UserError("ResponseCache needs ttl > 0 and max_entries >= 1")
        self.ttl, self.max_entries = ttl, max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[object, ...], tuple[float, ModelResponse]] = \
            OrderedDict()
        self._agents: dict[int, object] = {}
        self.hits = 0
        self.misses = 0
        self.saved_usage = Usage()
        self.saved_usd = 0.0

    def _key(self, input: ModelCallInput) -> tuple[object, ...]:
        """The normalised request as a tuple (exact match; hashing it is cheap). Tools and
        output schema are fixed by the agent definition, so the agent stands for them."""
        agent = input.agent
        self._agents.setdefault(id(agent), agent)  # keeps the id from being reused
        req = input.request
        s = req.settings
        return (req.tenant, input.session.subject, input.model.name, id(agent),
                tuple((m.role, (m.content or "").strip(), m.tool_call_id,
                       tuple((c.name, c.arguments) for c in m.tool_calls)
                       if m.tool_calls else ()) for m in req.messages),
                s.temperature, s.max_tokens, s.seed)

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        key = self._key(input)
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            self._entries.move_to_end(key)
            self.hits += 1
            stored = hit[1]
            self.saved_usage.add(stored.usage)
            self.saved_usd += stored.cost
            return replace(stored, tool_calls=list(stored.tool_calls), usage=Usage(), cost=0.0,
                           cached=True)
        self.misses += 1
        resp = await next(input)
        if _valid(input, resp):
            self._entries[key] = (now, replace(resp, tool_calls=list(resp.tool_calls),
                                               usage=Usage(resp.usage.input_tokens,
                                                           resp.usage.output_tokens)))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return resp

    def forget_subject(self, tenant: str, subject: str) -> int:
        """Drop every answer given to sessions of a data subject (``engine.erase`` calls
        it); how many. Answers are cached per subject, never shared across subjects."""
        gone = [k for k in self._entries if k[0] == tenant and k[1] == subject]
        for k in gone:
            del self._entries[k]
        return len(gone)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups so far (0 before the first)."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


def _valid(input: ModelCallInput, resp: ModelResponse) -> bool:
    """Only answers that pass every contract check of the step are worth serving again: a
    final answer that parses into the agent's output type, or tool calls that each name a
    declared tool, worker or handoff with valid arguments (as the agent loop checks them).
    Anything else would fail again from the cache, for the whole TTL."""
    agent = input.agent
    if resp.tool_calls:
        try:
            links = agent.static_links or agent.links(input.session.agents)
        except UserError:
            return False
        return calls_valid(agent, links, resp.tool_calls)
    try:
        agent.parse_output(resp.text)
    except ValueError:
        return False
    return True
