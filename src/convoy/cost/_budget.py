"""Token and money budgets per agent, per session, per tenant per day and per agent of a
tenant per day.

Enforced before every model call (each retry attempt included) and settled after it. The
daily budgets of a tenant and of its agents are shared by every engine on the store: they
are counted and reserved in the store (:mod:`convoy.cost._shared`), atomically across
engine processes. A session's own budgets are kept by the engine running it (one engine at
a time runs a session): in one asyncio process their check-and-reserve has no ``await`` in
it, so it is atomic however many branches of the session share them. A call is admitted
while ``spent + reserved < limit``, where
``reserved`` holds, for each call in flight, its input estimate plus its output *ceiling*
(``max_tokens``, else the model's ``max_output_tokens``, known limit, or 4,096: see
``convoy.resilience.output_ceiling``), settled on the actual usage when it ends. A budget
is exceeded by at most what the calls already in flight when it was reached turn out to
cost (``BudgetLedger.overshoot`` reports it exactly, with ``in_flight_at_limit``); while no
answer outgrows its ceiling and no prompt its estimate, that is less than one call.

On exhaustion, the policy decides: ``"stop"`` ends the session (``budget_exhausted``),
``"downgrade"`` sends the call to a cheaper model while the *hard* limit
(``limit * hard_factor``) lasts, ``"escalate"`` hands the session to a human: an inbox task
(the session parks) when the agent has :class:`~convoy.Escalation` rules with
``"budget"``, whose approval grants the session one more budget's worth on that ledger;
else the session ends ``escalated``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from weakref import WeakKeyDictionary

from convoy._errors import BudgetExhausted, Escalated, UserError
from convoy.cost._shared import SharedBudgets, Ticket
from convoy.interceptors._base import Interceptor, ModelCallInput, Next, Stage
from convoy.models._base import Model
from convoy.models._messages import ModelResponse, Usage
from convoy.resilience._bulkhead import reserve_usage

if TYPE_CHECKING:
    from convoy.engine._engine import Engine
    from convoy.runtime._session import SessionState

Policy = Literal["stop", "downgrade", "escalate"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """A limit in tokens and/or USD (``None``: no limit on that unit)."""

    tokens: int | None = None
    usd: float | None = None

    def __post_init__(self) -> None:
        if self.tokens is None and self.usd is None:
            raise UserError("a Budget needs tokens=... or usd=...")
        if (self.tokens is not None and not self.tokens >= 0) or (
                self.usd is not None and not self.usd >= 0):  # (NaN: refused too)
            raise UserError(f"budget limits must be numbers >= 0, got tokens={self.tokens!r}, "
                            f"usd={self.usd!r}")


@dataclass(slots=True)
class BudgetLedger:
    """Spend against one budget: settled, reserved by calls in flight, and the overshoot.

    A budget shared by engines (``scope`` names it in the store) is counted in the store;
    its ledger holds this engine's calls in flight and mirrors the spend of every engine as
    the store last reported it (``start_*``: what the journal held when it was opened).
    """

    name: str
    budget: Budget
    tokens: int = 0
    usd: float = 0.0
    reserved_tokens: int = 0
    reserved_usd: float = 0.0
    in_flight: int = 0
    reached: bool = False
    in_flight_at_limit: int | None = None
    rejected: int = 0
    waited: int = 0
    scope: str | None = None
    start_tokens: int = 0
    start_usd: float = 0.0
    _settled: asyncio.Event | None = None
    _gate: asyncio.Lock | None = None
    _queue: deque[asyncio.Future[None]] | None = None  # calls of sessions starting
    _under_way: deque[asyncio.Future[None]] | None = None  # calls of sessions that spent

    def full(self, extra: int = 0) -> bool:
        """Whether spent plus reserved has reached the limit (plus ``extra`` more budgets'
        worth a person granted): no new call is admitted."""
        b, f = self.budget, 1 + extra
        return bool((b.tokens is not None and
                     self.tokens + self.reserved_tokens >= b.tokens * f)
                    or (b.usd is not None and self.usd + self.reserved_usd >= b.usd * f))

    def spent_out(self, extra: int = 0) -> bool:
        """Whether the settled spend alone has reached the limit (plus ``extra`` budgets'
        worth): the budget is exhausted."""
        b, f = self.budget, 1 + extra
        return bool((b.tokens is not None and self.tokens >= b.tokens * f)
                    or (b.usd is not None and self.usd >= b.usd * f))

    async def wait_settled(self, *, again: bool = False, under_way: bool = False) -> None:
        """Wait for room: until a call in flight settles (what it reserved becomes what it
        cost) and the callers queued before this one have had their turn. Waiters are
        woken one at a time, in order (each admitted call wakes the next while room is
        left), and all at once when the budget is spent. Calls of sessions ``under_way``
        (that have spent already) go before calls of sessions starting: a budget running
        low finishes work rather than starting more. ``again``: a waiter woken that found
        no room keeps its place at the front."""
        self.waited += 1
        if under_way:
            q = self._under_way = self._under_way if self._under_way is not None else deque()
        else:
            q = self._queue = self._queue if self._queue is not None else deque()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if again:
            q.appendleft(fut)
        else:
            q.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.pass_turn()  # woken, then cancelled: the turn goes to the next one
            elif fut in q:
                q.remove(fut)
            raise

    def pass_turn(self) -> None:
        """Wake the next waiter if there is room for it (after a call was admitted)."""
        if (self._under_way or self._queue) and not self.full():
            self._wake(all_of_them=False)

    def _wake(self, *, all_of_them: bool) -> None:
        for q in (self._under_way, self._queue):
            while q:
                fut = q.popleft()
                if not fut.done():
                    fut.set_result(None)
                    if not all_of_them:
                        return

    async def settled(self) -> None:
        """Return when the next of this engine's calls in flight settles."""
        if self._settled is None:
            self._settled = asyncio.Event()
        await self._settled.wait()

    @property
    def gate(self) -> asyncio.Lock:
        """Held by the one call that asks the store again while the budget is full."""
        if self._gate is None:
            self._gate = asyncio.Lock()
        return self._gate

    def limit_of(self, unit: str) -> float:
        """The limit in ``unit`` (``"tokens"`` or ``"usd"``; infinite if not limited)."""
        limit = self.budget.tokens if unit == "tokens" else self.budget.usd
        return float("inf") if limit is None else float(limit)

    def observe(self, unit: str, used: float) -> None:
        """What the store says every engine has spent (a shared budget): the mirror only
        moves up (this engine's latest calls may not be committed yet)."""
        if unit == "tokens":
            self.tokens = max(self.tokens, int(used))
        else:
            self.usd = max(self.usd, used)
        self._note_reached()

    def _note_reached(self) -> None:
        b = self.budget
        if not self.reached and ((b.tokens is not None and self.tokens >= b.tokens)
                                 or (b.usd is not None and self.usd >= b.usd)):
            self.reached = True
            # The calls in flight when the limit was reached, the one reaching it included:
            # together they bound the overshoot.
            self.in_flight_at_limit = self.in_flight
            self._wake(all_of_them=True)  # spent: every waiter learns it now

    def reserve(self, tokens: int, usd: float) -> None:
        """Hold an estimate for a call about to start."""
        self.reserved_tokens += tokens
        self.reserved_usd += usd
        self.in_flight += 1

    def settle(self, tokens_est: int, usd_est: float, usage: Usage | None, usd: float) -> None:
        """Replace a call's estimate with what it cost (``usage=None``: it failed and cost
        nothing), and note when the limit is reached."""
        self.reserved_tokens -= tokens_est
        self.reserved_usd -= usd_est
        if usage is not None:
            self.tokens += usage.total_tokens
            self.usd += usd
        self._note_reached()
        self.in_flight -= 1
        if self._settled is not None:
            self._settled.set()
            self._settled = None
        if self._under_way or self._queue:
            self._wake(all_of_them=self.spent_out())

    @property
    def overshoot_tokens(self) -> int:
        """Tokens spent past the limit (0 if within it)."""
        b = self.budget.tokens
        return max(0, self.tokens - b) if b is not None else 0

    @property
    def overshoot_usd(self) -> float:
        """USD spent past the limit (0 if within it)."""
        b = self.budget.usd
        return max(0.0, self.usd - b) if b is not None else 0.0


class Budgets(Interceptor):
    """Enforces budgets on model calls.

    Args:
        session: one budget applied to every session separately.
        agents: agent name -> budget (per session and agent).
        tenant_daily: a budget per tenant per UTC day (one for all tenants, or a mapping).
        agent_daily: a budget per agent of a tenant per UTC day, across its sessions (one
            for every agent, or agent name -> budget).
        on_exhausted: ``"stop"``, ``"downgrade"`` or ``"escalate"``.
        downgrade_to: the cheaper model for ``"downgrade"``.
        hard_factor: with ``"downgrade"``, calls stop for good at ``limit * hard_factor``.
        clock: wall clock (seconds since the epoch) that decides the UTC day; by default
            the engine's (its store's) clock, so spend journaled by the store and the day
            it counts against come from one clock.
        shared: keep the daily budgets in the engine's store (default), so every engine
            on that store draws on the same ones; ``False`` keeps them in this process
            (one store round trip less per call; only right if one engine spends them).

    Session and agent ledgers start from what the session has already spent (its
    journaled model steps), so a resumed session keeps its budget; a daily budget starts
    from the spend the store journaled for that tenant (and agent) in that UTC day.
    """

    stage: Stage = "budget"

    def __init__(self, *, session: Budget | None = None,
                 agents: Mapping[str, Budget] | None = None,
                 tenant_daily: Budget | Mapping[str, Budget] | None = None,
                 agent_daily: Budget | Mapping[str, Budget] | None = None,
                 on_exhausted: Policy = "stop", downgrade_to: str | Model | None = None,
                 hard_factor: float = 1.5, clock: Callable[[], float] | None = None,
                 shared: bool = True) -> None:
        if on_exhausted not in ("stop", "downgrade", "escalate"):
            raise UserError(f"on_exhausted must be 'stop', 'downgrade' or 'escalate', got "
                            f"{on_exhausted!r}")
        if on_exhausted == "downgrade" and downgrade_to is None:
            raise UserError("on_exhausted='downgrade' needs downgrade_to=<cheaper model>")
        self.session = session
        self.agents = dict(agents or {})
        self.tenant_daily = tenant_daily
        self.agent_daily = agent_daily
        self.on_exhausted: Policy = on_exhausted
        self.downgrade_to = downgrade_to
        self.hard_factor = hard_factor
        self.shared = shared
        self._clock = clock
        self.ledgers: dict[str, BudgetLedger] = {}  # daily ledgers (tenant, agent of a tenant)
        # Session and agent ledgers live as long as their session does.
        self._per_session: WeakKeyDictionary[SessionState, dict[str, BudgetLedger]] = \
            WeakKeyDictionary()
        self.downgraded = 0
        self._loading: asyncio.Lock | None = None
        self._store: SharedBudgets | None = None

    async def start(self, engine: Engine) -> None:
        if self._clock is None:
            self._clock = engine.clock
        self._loading = asyncio.Lock()  # bound to this run's event loop
        self.ledgers.clear()  # a daily ledger mirrors the store of this run
        self._store = SharedBudgets(engine.store, engine.owner, engine.lease_seconds) \
            if self.shared else None

    async def close(self) -> None:
        if self._store is not None:  # what this engine's reservations spent is counted
            self._store.close()

    @property
    def store_reserves(self) -> int:
        """Reservations asked of the store so far (shared daily budgets)."""
        return self._store.reserves if self._store is not None else 0

    def today(self) -> dt.date:
        """The UTC day the daily budgets count against now."""
        now = (self._clock or time.time)()
        return dt.datetime.fromtimestamp(now, dt.UTC).date()

    def ledger(self, key: str, budget: Budget) -> BudgetLedger:
        """The ledger named ``key``, created for ``budget`` on first use."""
        led = self.ledgers.get(key)
        if led is None:
            led = self.ledgers[key] = BudgetLedger(key, budget)
        return led

    def session_ledgers(self, session: SessionState) -> dict[str, BudgetLedger]:
        """The session's own ledgers (``session:ID`` and ``agent:ID:NAME``)."""
        return self._per_session.get(session, {})

    async def _own(self, session: SessionState, key: str, budget: Budget,
                   agent: str | None = None) -> BudgetLedger:
        mine = self._per_session.get(session)
        if mine is None:
            mine = self._per_session[session] = {}
        led = mine.get(key)
        if led is None:
            led = mine[key] = BudgetLedger(key, budget)
            if session.resumed:  # what the session's journaled model steps already spent
                spent = await session.runtime.store.session_spend(session.id)
                if agent is None:
                    led.tokens = sum(t for t, _ in spent.values())
                    led.usd = sum(u for _, u in spent.values())
                elif agent in spent:
                    led.tokens, led.usd = spent[agent]
        return led

    async def _applicable(self, input: ModelCallInput) -> list[BudgetLedger]:
        s = input.session
        out = []
        if self.session is not None:
            out.append(await self._own(s, f"session:{s.id}", self.session))
        name = input.agent.name
        ab = self.agents.get(name)
        if ab is not None:
            out.append(await self._own(s, f"agent:{s.id}:{name}", ab, name))
        td = self.tenant_daily
        if td is not None:
            tb = td if isinstance(td, Budget) else td.get(s.tenant)
            if tb is not None:
                out.append(await self._daily(input, f"tenant:{s.tenant}", tb, None))
        ad = self.agent_daily
        if ad is not None:
            adb = ad if isinstance(ad, Budget) else ad.get(name)
            if adb is not None:
                out.append(await self._daily(input, f"agent:{s.tenant}:{name}", adb, name))
        return out

    async def _daily(self, input: ModelCallInput, prefix: str, budget: Budget,
                     agent: str | None) -> BudgetLedger:
        s = input.session
        day = self.today()
        key = f"{prefix}:{day.isoformat()}"
        led = self.ledgers.get(key)
        if led is not None:
            return led
        if self._loading is None:
            self._loading = asyncio.Lock()
        # Calls that arrive while the day's spend is being read wait for it: admitted
        # against an empty ledger, they would spend what the store says is gone.
        async with self._loading:
            led = self.ledgers.get(key)
            if led is None:
                # The day's ledger starts from what the store journaled for this tenant
                # (and agent) in this UTC day, and only this day.
                midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
                store = s.runtime.store
                tokens, usd = await (
                    store.tenant_spend(s.tenant, midnight, midnight + 86400.0)
                    if agent is None else
                    store.tenant_spend(s.tenant, midnight, midnight + 86400.0, agent=agent))
                led = BudgetLedger(key, budget, tokens=tokens, usd=usd,
                                   start_tokens=tokens, start_usd=usd,
                                   scope=f"budget:{key}" if self._store is not None else None)
                self.ledgers[key] = led
        return led

    def _over_hard(self, led: BudgetLedger) -> bool:
        b, f = led.budget, self.hard_factor
        return bool((b.tokens is not None and led.tokens + led.reserved_tokens >= b.tokens * f)
                    or (b.usd is not None and led.usd + led.reserved_usd >= b.usd * f))

    def _refuse(self, input: ModelCallInput, full: list[BudgetLedger]) -> None:
        for x in full:
            x.rejected += 1
        led = full[0]
        msg = (f"budget {led.name!r} exhausted ({_describe(led)}) before a call of "
               f"agent {input.agent.name!r}")
        if self.on_exhausted == "escalate":
            raise Escalated(msg, grant=f"budget:{led.name}")
        raise BudgetExhausted(msg)

    def _downgrade(self, input: ModelCallInput, full: list[BudgetLedger]) -> bool:
        """Send the call to the cheaper model, if the policy says so and the hard limits
        of the exhausted budgets still have room."""
        if self.on_exhausted != "downgrade" or self.downgrade_to is None or \
                any(self._over_hard(x) for x in full):
            return False
        input.model = input.session.runtime.resolve(self.downgrade_to)
        self.downgraded += 1
        return True

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        ledgers = await self._applicable(input)
        if not ledgers:
            return await next(input)
        woken_on: BudgetLedger | None = None
        s = input.session
        under_way = s.resumed or s.usage.total_tokens > 0
        grants = s.grants  # one more budget's worth per approved escalation
        while True:
            if grants is None:
                full = [led for led in ledgers if led.full()]
                if not full or any(led.spent_out() for led in full):
                    break
            else:
                full = [led for led in ledgers if led.full(grants.get(f"budget:{led.name}", 0))]
                if not full or any(led.spent_out(grants.get(f"budget:{led.name}", 0))
                                   for led in full):
                    break
            if woken_on is not None and woken_on is not full[0]:
                woken_on.pass_turn()  # its room is not for this call: the next one's turn
            # Reserved, not spent: the calls in flight hold their output ceilings and
            # usually cost far less. Wait for one to settle instead of refusing.
            await full[0].wait_settled(again=woken_on is full[0], under_way=under_way)
            woken_on = full[0]
        if woken_on is not None:
            woken_on.pass_turn()
        downgraded = bool(full) and self._downgrade(input, full)
        if full and not downgraded:
            self._refuse(input, full)
        tokens, usd = self._estimate(input)
        # Claimed here at once (no await between the check and the claim), then confirmed
        # by the store for the budgets it keeps: this engine's calls never race each other
        # to the store for room its own ledger says is taken.
        for led in ledgers:
            led.reserve(tokens, usd)
            led.pass_turn()
        shared = [led for led in ledgers if led.scope is not None]
        ticket = None
        if shared:
            ticket, tokens, usd = await self._confirm(input, ledgers, shared, tokens, usd,
                                                      downgraded)
        resp: ModelResponse | None = None
        try:
            resp = await next(input)
            return resp
        finally:
            usage = resp.usage if resp else None
            cost = resp.cost if resp else 0.0
            for led in ledgers:
                led.settle(tokens, usd, usage, cost)
            if ticket is not None:
                assert self._store is not None
                self._store.settle(ticket, usage.total_tokens if usage else 0, cost)

    async def _confirm(self, input: ModelCallInput, ledgers: list[BudgetLedger],
                       shared: list[BudgetLedger], tokens: int, usd: float,
                       downgraded: bool) -> tuple[Ticket, int, float]:
        """Reserve the call in the store (the budgets shared by engines). Spent out there:
        the policy decides (a downgraded call is estimated again, and claimed again). The
        call's local claims are released if it is refused (or cancelled)."""
        assert self._store is not None
        grants = input.session.grants
        # An approved escalation on a shared ledger lets this session's calls use that
        # many more budgets' worth of it in the store too.
        extra = max((grants.get(f"budget:{led.name}", 0) for led in shared), default=0) \
            if grants else 0
        try:
            factor = self.hard_factor if downgraded else 1.0 + extra
            ticket, refused = await self._store.reserve(shared, tokens, usd, factor=factor,
                                                        wait_held=not downgraded)
            if ticket is None and not downgraded and self._downgrade(input, refused):
                # The cheaper model, against the hard limits.
                for led in ledgers:
                    led.settle(tokens, usd, None, 0.0)
                tokens, usd = self._estimate(input)
                for led in ledgers:
                    led.reserve(tokens, usd)
                ticket, refused = await self._store.reserve(shared, tokens, usd,
                                                            factor=self.hard_factor,
                                                            wait_held=False)
            if ticket is None:
                self._refuse(input, refused)
        except BaseException:
            for led in ledgers:
                led.settle(tokens, usd, None, 0.0)
            raise
        assert ticket is not None
        return ticket, tokens, usd

    @staticmethod
    def _estimate(input: ModelCallInput) -> tuple[int, float]:
        """What a call reserves: input estimate plus output ceiling, in tokens and USD."""
        est_in, est_out = reserve_usage(input.request, input.model)
        prices = input.session.runtime.prices
        model = input.model
        usd = prices.cost(model.name, Usage(est_in, est_out), model.deployment) \
            if prices else 0.0
        return est_in + est_out, usd


def _describe(led: BudgetLedger) -> str:
    parts = []
    if led.budget.tokens is not None:
        parts.append(f"{led.tokens}/{led.budget.tokens} tokens")
    if led.budget.usd is not None:
        parts.append(f"${led.usd:.6f}/${led.budget.usd:.6f}")
    return ", ".join(parts)
