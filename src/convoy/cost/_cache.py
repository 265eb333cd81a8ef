"""Exact-match response cache, scoped per tenant, with a TTL and hit/miss counts.

Two levels: the engine's memory, and the store, which every engine on it shares (and which
outlives a restart). A lookup that misses in memory asks the store; an answer worth
keeping goes into both (into the store with the next of its writes at most
:data:`PUT_DELAY` seconds later, many answers in one commit).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic_core import from_json, to_json

from convoy._errors import UserError
from convoy.definitions._calls import calls_valid
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage
from convoy.models._messages import ModelRequest, ModelResponse, Usage
from convoy.privacy._sealed_store import SealingStore

if TYPE_CHECKING:
    from convoy.engine._engine import Engine
    from convoy.stores._protocol import Store

#: Answers wait at most this long (seconds) before they are written to the store together.
PUT_DELAY = 0.05


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
    """Serves an identical request from the cache instead of calling the model.

    A hit costs no tokens and no money (``response.cached`` is set, usage is zero); what it
    saved is counted in ``saved_usage`` and ``saved_usd``. Entries expire after ``ttl``
    seconds. Each engine keeps up to ``max_entries`` in memory (the least recently used go
    first); with ``shared=True`` (the default) entries are also kept in the engine's store,
    where every engine on it finds them (until they expire, by the store's clock).
    ``shared=False`` keeps the cache in memory only.
    """

    stage: Stage = "cache"

    def __init__(self, *, ttl: float = 3600.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic, shared: bool = True) -> None:
        if not ttl > 0 or max_entries < 1:  # (NaN compares false: refused too)
            raise UserError("ResponseCache needs ttl > 0 and max_entries >= 1")
        self.ttl, self.max_entries = ttl, max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[object, ...], tuple[float, ModelResponse]] = \
            OrderedDict()
        self._agents: dict[int, object] = {}
        self._fingerprints: dict[int, str] = {}
        self.shared = shared
        self._store: Store | None = None
        self._sealing: SealingStore | None = None  # an engine's that seals subjects' data
        self._wall: Callable[[], float] = time.time
        self._puts: list[tuple[str, str, str]] = []  # (tenant, key, value) not yet written
        self._flush: asyncio.TimerHandle | None = None
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0
        self.saved_usage = Usage()
        self.saved_usd = 0.0

    async def start(self, engine: Engine) -> None:
        self._store = engine.store if self.shared else None
        self._sealing = engine.store if isinstance(engine.store, SealingStore) else None
        self._wall = engine.clock

    async def close(self) -> None:
        self._write()  # the store is still open: answers not yet written go now

    def _put(self, tenant: str, key: str, value: str) -> None:
        self._puts.append((tenant, key, value))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(PUT_DELAY, self._write)

    def _write(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        puts, self._puts = self._puts, []
        if self._store is not None:
            for tenant, key, value in puts:
                self._store.cache_put(tenant, key, value, ttl=self.ttl).add_done_callback(
                    _report)

    def _shared_key(self, key: tuple[object, ...], input: ModelCallInput) -> str:
        """The memory key as every engine computes it: the agent's identity (an object id
        in memory) is replaced by its name, tools and output schema."""
        agent = input.agent
        fp = self._fingerprints.get(id(agent))
        if fp is None:
            req = input.request
            fp = self._fingerprints[id(agent)] = json.dumps(
                [agent.name, [[t.name, t.parameters] for t in req.tools], req.output_schema],
                sort_keys=True, default=str)
        return hashlib.blake2b(repr((fp, key[:2], key[3:])).encode(),
                               digest_size=20).hexdigest()

    def _key(self, input: ModelCallInput) -> tuple[object, ...]:
        """The normalised request as a tuple (exact match; hashing it is cheap). Tools and
        output schema are fixed by the agent definition, so the agent stands for them."""
        agent = input.agent
        self._agents.setdefault(id(agent), agent)  # keeps the id from being reused
        req = input.request
        s = req.settings
        subject = input.session.subject
        return (req.tenant, input.model.name, id(agent),
                tuple((m.role, (m.content or "").strip(), m.tool_call_id,
                       tuple((c.name, c.arguments) for c in m.tool_calls)
                       if m.tool_calls else ()) for m in req.messages),
                s.temperature, s.max_tokens, s.seed,
                subject if subject is None else (subject, self._label(req.tenant, subject)))

    def _label(self, tenant: str, subject: str) -> str | None:
        """The label of the subject's key as its session started with it: a subject erased
        by another process and seen again has a new key, and none of the answers given
        under the old one."""
        keys = self._sealing.keys if self._sealing is not None else None
        key = keys.peek(tenant, subject) if keys is not None else None
        return None if key is None else key.label

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        session = input.session
        if session.subject is None and self._sealing is not None and \
                self._sealing.holds_personal_data(session.id):
            # A session of no subject that read a subject's data (shared state): its
            # answers may hold that data, which is no one's to reuse and which erasure
            # must reach: kept nowhere.
            return await next(input)
        key = self._key(input)
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            self._entries.move_to_end(key)
            return self._hit(hit[1])
        # A data subject's answers stay in this engine's memory: never in the shared store
        # (where they would be plaintext personal data that erasure could not find).
        store = self._store if input.session.subject is None else None
        shared_key = ""
        if store is not None:
            shared_key = self._shared_key(key, input)
            found = await store.cache_get(input.request.tenant, shared_key)
            if found is not None:
                stored, left = _decode(found, self._wall())
                if stored is not None:
                    self.shared_hits += 1
                    self._keep(key, now - (self.ttl - left), stored)
                    return self._hit(stored)
        self.misses += 1
        resp = await next(input)
        if _valid(input, resp):
            kept = replace(resp, tool_calls=list(resp.tool_calls),
                           usage=Usage(resp.usage.input_tokens, resp.usage.output_tokens))
            self._keep(key, now, kept)
            if store is not None:
                self._put(input.request.tenant, shared_key,
                          _encode(kept, self._wall() + self.ttl))
        return resp

    def _hit(self, stored: ModelResponse) -> ModelResponse:
        self.hits += 1
        self.saved_usage.add(stored.usage)
        self.saved_usd += stored.cost
        return replace(stored, tool_calls=list(stored.tool_calls), usage=Usage(), cost=0.0,
                       cached=True)

    def _keep(self, key: tuple[object, ...], at: float, resp: ModelResponse) -> None:
        self._entries[key] = (at, resp)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget_subject(self, tenant: str, subject: str) -> int:
        """Drop every answer given to sessions of a data subject (``engine.erase`` calls
        it); how many. Answers are cached per subject, never shared across subjects, and
        never kept in the store."""
        gone = [k for k in self._entries if k[0] == tenant and isinstance(k[-1], tuple)
                and k[-1][0] == subject]
        for k in gone:
            del self._entries[k]
        return len(gone)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups so far (0 before the first)."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


def _encode(resp: ModelResponse, expires: float) -> str:
    return to_json({"v": 1, "expires": expires, "response": resp.to_dict()}).decode()


def _decode(raw: str, now: float) -> tuple[ModelResponse | None, float]:
    """A stored answer and the seconds it has left (``None`` if unreadable: written by
    another version, say)."""
    try:
        d: dict[str, Any] = from_json(raw)
        if d.get("v") != 1:
            return None, 0.0
        return ModelResponse.from_dict(d["response"]), float(d["expires"]) - now
    except (ValueError, KeyError, TypeError):
        return None, 0.0


def _report(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        warnings.warn(f"convoy: could not keep an answer in the shared cache: "
                      f"{fut.exception()}", RuntimeWarning, stacklevel=1)


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
