"""The baseline-alerts interceptor: learns what is normal per agent and per tenant, and
raises an alert when a metric leaves its band (see :mod:`convoy.alerts._baseline` and
:mod:`convoy.alerts._metrics`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from convoy._errors import ApprovalRequired, UserError
from convoy._text import a_word, plural
from convoy.alerts._baseline import Baseline, BaselinePolicy, Transition
from convoy.alerts._metrics import METRICS, Metric, Tally, Window
from convoy.alerts._webhook import Deliverer, Webhook, load_httpx
from convoy.interceptors._base import (
    Interceptor,
    ModelCallInput,
    Next,
    SessionEnd,
    SessionInput,
    Stage,
    ToolCallInput,
)
from convoy.models._messages import ModelResponse
from convoy.observability._redact import Redactor
from convoy.resilience._classify import error_kind
from convoy.stores._protocol import AlertRow, NewAlert, Store
from convoy.stores._rows import (
    DamagedRow,
    LeftOut,
    damaged,
    row_name,
    shown,
    stored_json,
)

if TYPE_CHECKING:
    from convoy.engine._engine import Engine

log = logging.getLogger("convoy.alerts")

#: The interceptor-state namespace the learned baselines are kept in.
KV_NAMESPACE = "convoy.alerts"
Scope = Literal["agent", "tenant"]
SeriesKey = tuple[str, Scope, str, Metric]
"""(tenant, scope, subject, metric): one learned series."""
_Kind = Literal["session-end", "token-velocity"]
_KINDS: tuple[_Kind, ...] = ("session-end", "token-velocity")
"""What observations being recorded are of: a session run's end, a closed velocity window."""
_WHAT: dict[_Kind, str] = {"session-end": "session run", "token-velocity": "token-velocity window"}
"""How a warning counts them (a run observes several series at once)."""

_SEP = "\x1f"
#: The most open alerts one read takes (a series has one open at a time: far more than a
#: store ever holds): to link them to their series, to find one by its id, to count them.
OPEN_ALERTS_READ = 100_000


class BaselineAlerts(Interceptor):
    """Alerts on learned baselines, per agent and per tenant, for the error rate, latency,
    tokens per session and tokens per minute (:data:`~convoy.alerts.METRICS`).

    Each run of a session is one observation of each metric, for each agent that made
    calls in it and for its tenant. An alert fires when a metric rises out of its band and
    clears when it is back (:class:`BaselinePolicy`). Alerts go to the ``convoy.alerts``
    logger (a child of ``convoy``), to the store (``convoy alerts``), and to every
    webhook: queued in the store with the alert, delivered by the engine while it is open,
    retried with backoff.

    Observations are recorded in the background, in the order they were made: neither a
    model call nor a session's end waits for the store's write of an alert (a store that
    does not answer holds no session up); :meth:`settled` waits for them. While
    ``max_pending`` wait behind a write the store has not answered for a second, later
    ones are dropped, with a warning, and another that counts them once the backlog is
    down to half.

    The baselines are kept in the store (interceptor state), so they survive a restart;
    the token-per-minute window in progress does not.

    Args:
        policy: how every metric's baseline learns and alerts.
        policies: a policy per metric, over ``policy`` (the error rate defaults to
            ``policy`` with a ``min_deviation`` of at least 0.05: a run of sessions without
            one error must not make a single failure an anomaly).
        webhooks: URLs (or :class:`Webhook`) every alert event is POSTed to (one alone,
            or a list).
        window_s: the token-velocity window, in seconds.
        clock: seconds, for latency, windows and alert times (default: the engine's clock,
            which its store shares).
        poll_interval: seconds between delivery passes when nothing new fired.
        background: deliver webhook events from a task the engine runs while it is open
            (``False``: only :meth:`deliver_due` delivers, for tests and cron-style runs).
        redact: the :class:`~convoy.observability.Redactor` (or any function of a string)
            a webhook's body (its tenant, subject and detail) goes through, as log lines
            and metric labels do (``True``: a default one, which needs the ``pii`` extra,
            part of the ``alerts`` one; ``False``: none).
        max_pending: the most session runs and token-velocity windows whose observations
            wait behind a write the store has not answered for a second (by ``clock``);
            past it, the observations of later ones are dropped (memory stays bounded
            while it does not answer; :attr:`dropped` counts them).
    """

    stage: Stage = "custom"

    def __init__(self, policy: BaselinePolicy | None = None, *,
                 policies: Mapping[Metric, BaselinePolicy] | None = None,
                 webhooks: Sequence[str | Webhook] | str | Webhook = (),
                 window_s: float = 60.0,
                 clock: Callable[[], float] | None = None, poll_interval: float = 1.0,
                 background: bool = True,
                 redact: Redactor | Callable[[str], str] | bool = True,
                 max_pending: int = 10_000) -> None:
        base = policy or BaselinePolicy()
        if type(max_pending) is not int or max_pending < 1:
            raise UserError(f"BaselineAlerts(max_pending={max_pending!r}): the most "
                            "observations waiting to be recorded is a whole number >= 1")
        self.max_pending = max_pending
        if not isinstance(base, BaselinePolicy):
            raise UserError(f"BaselineAlerts(policy=...) is {a_word(type(base).__name__)}, "
                            "not a BaselinePolicy")
        _check_seconds("window_s", window_s, "the token-velocity window must be")
        _check_seconds("poll_interval", poll_interval,
                       "the time between delivery passes must be")
        self.policies: dict[Metric, BaselinePolicy] = dict.fromkeys(METRICS, base)
        self.policies["error_rate"] = dataclasses.replace(
            base, min_deviation=max(base.min_deviation, 0.05), relearn_after=None)
        self.policies.update(_checked_policies(policies))
        if isinstance(webhooks, (str, Webhook)):  # (one, not its characters)
            webhooks = [webhooks]
        hooks = [w if isinstance(w, Webhook) else Webhook(url=w) for w in webhooks]
        self._redact: Callable[[str], str] | None = None
        if hooks:
            load_httpx()  # missing: one clear error now, not at the first alert
            if redact is True:
                try:
                    self._redact = Redactor().redact
                except UserError as e:  # (the pii extra missing: say the way out too)
                    raise UserError(f"{e}, or BaselineAlerts(redact=False) to send webhook "
                                    "bodies unredacted") from None
            elif isinstance(redact, Redactor):
                self._redact = redact.redact
            elif callable(redact):
                self._redact = redact
        self.webhooks: dict[str, Webhook] = {w.url: w for w in hooks}
        self.window_s = window_s
        self.poll_interval = poll_interval
        self.background = background
        self._clock = clock
        self.baselines: dict[SeriesKey, Baseline] = {}
        self._windows: dict[SeriesKey, Window] = {}
        self._runs: dict[str, dict[str, Tally]] = {}
        #: The observations waiting to be recorded, in order: what each is of (a session
        #: run's end, :meth:`_observe_run`; a closed velocity window, :meth:`_observe_rates`)
        #: and the arguments of the method that records it.
        self._waiting: deque[tuple[_Kind, tuple[Any, ...]]] = deque()
        self._drainer: asyncio.Task[None] | None = None  # (records them: :meth:`_drain`)
        self._recording: _Kind | None = None  # (what it waits for the store to record)
        self._recording_since = 0.0  # (since when, by the clock)
        self._queued = self._recorded = 0  # (observations queued, of those recorded)
        #: :meth:`settled` calls waiting: (observations queued when called, its future).
        self._settling: list[tuple[int, asyncio.Future[None]]] = []
        #: Observations dropped while ``max_pending`` waited (said once the store answers).
        self._dropped: Counter[_Kind] = Counter()
        #: Session runs and velocity windows whose observations were dropped, ever.
        self.dropped = 0
        self._store: Store | None = None
        self._wake = asyncio.Event()
        self._deliverer: Deliverer | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------

    @property
    def clock(self) -> Callable[[], float]:
        """The clock alerts are timed by (the engine's, unless one was given)."""
        if self._clock is None:
            raise RuntimeError("BaselineAlerts has not started: give it to an Engine")
        return self._clock

    @property
    def store(self) -> Store:
        """The store of the engine this interceptor runs in."""
        if self._store is None:
            raise RuntimeError("BaselineAlerts has not started: give it to an Engine")
        return self._store

    async def start(self, engine: Engine) -> None:
        self._store = engine.store
        self._wake = asyncio.Event()  # (this opening's loop: run_sync makes one a call)
        if self._clock is None:
            self._clock = engine.clock
        for key, text in (await self._store.kv_all(KV_NAMESPACE)).items():
            parts = key.split(_SEP)
            if len(parts) == 4 and parts[1] in ("agent", "tenant") and parts[3] in METRICS:
                series = cast(SeriesKey, tuple(parts))
                try:
                    self.baselines[series] = _stored_baseline(series, text)
                except DamagedRow as e:  # (learned state: learned again, not a stop)
                    log.warning("%s: it is learned again from the next observations", e)
        await self._adopt_open_alerts()
        self._deliverer = Deliverer(self._store, self.webhooks, self._clock,
                                    redact=self._redact)
        if self.background and self.webhooks:
            self._task = asyncio.get_running_loop().create_task(self._deliver_loop(),
                                                                name="convoy-alert-webhooks")

    async def _adopt_open_alerts(self) -> None:
        """Link each series to the store's open alert of it, whatever the loaded baseline
        says: the link is saved apart from the alert (batched), so a crash right after one
        fired, or another engine on the store, leaves an open alert no baseline of ours
        points to, which would never clear and be fired again as a duplicate."""
        linked: set[SeriesKey] = set()
        left: list[LeftOut] = []  # (an open alert row edited by hand: left out, said)
        found = await self.store.list_alerts(open_only=True, limit=OPEN_ALERTS_READ,
                                             left_out=left)
        if left:
            log.warning("alerts: %s left out as the engine starts (%s): 'convoy alerts' "
                        "says which; their series fire anew if their metric leaves its band",
                        plural(len(left), "damaged open alert row"),
                        f"{left[0].row}: {left[0].problem}")
        for alert in reversed(found):
            key = _series_of(alert)
            if key is None or key in linked:  # (oldest first: an older duplicate wins)
                continue
            linked.add(key)
            baseline = self.baselines.get(key)
            if baseline is None:  # (none kept of it: it starts from the alert's, warmed up,
                # not from a warm-up of the abnormal level it alerts on, cleared as normal)
                baseline = self.baselines[key] = Baseline(
                    count=self.policies[key[3]].warmup, mean=alert.mean,
                    deviation=alert.deviation)
            baseline.alert_id = alert.id
        stale = {b.alert_id: k[0] for k, b in self.baselines.items()
                 if k not in linked and b.alert_id is not None}
        # An alert closed by hand (``convoy alerts --close``: cleared, with no cleared
        # value) stays its series' alert while the metric stays out of its band, as it
        # does in the engine that saw it closed: no new one fires until the metric came
        # back and left again. (Read from its tenant's newest alerts, a damaged row left
        # out: one found nowhere there is taken as cleared.)
        by_hand: set[int | None] = set()
        for tenant in set(stale.values()):
            by_hand.update(a.id for a in await self.store.list_alerts(
                tenant=tenant, limit=OPEN_ALERTS_READ, left_out=[])
                if a.id in stale and a.status == "cleared" and a.cleared_value is None)
        for key, baseline in self.baselines.items():
            if key not in linked and baseline.alert_id not in by_hand:
                baseline.alert_id = None  # (cleared meanwhile, by another engine)

    async def close(self) -> None:
        try:
            await self._settle_for(_CLOSE_WAIT_S)
        finally:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def deliver_due(self) -> int:
        """One delivery pass now (the engine runs them in the background): POST every
        queued event that is due, those of the alerts the observations made so far fire or
        clear included (it waits for them: :meth:`settled`); how many were delivered."""
        if self._deliverer is None:
            raise RuntimeError("BaselineAlerts has not started: give it to an Engine")
        await self.settled()
        async with load_httpx().AsyncClient() as client:
            return await self._deliverer.deliver_due(client)

    async def _deliver_loop(self) -> None:
        assert self._deliverer is not None
        async with load_httpx().AsyncClient() as client:
            while True:
                self._wake.clear()
                try:
                    await self._deliverer.deliver_due(client)
                except Exception:  # a store hiccup: the events stay queued for the next pass
                    log.exception("alert webhook delivery pass failed; retrying later")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    # -- the hooks --------------------------------------------------------------------

    async def session_run(self, input: SessionInput,
                          next: Next[SessionInput, SessionEnd]) -> SessionEnd:
        info = input.info
        if info.replay:
            return await next(input)
        tallies: dict[str, Tally] = {}
        self._runs[info.session_id] = tallies
        try:
            return await next(input)
        finally:
            if self._runs.get(info.session_id) is tallies:
                del self._runs[info.session_id]
            if tallies:  # (queued: the session's end does not wait for the store)
                try:
                    await self.observe(info.tenant, tallies)
                except Exception:  # alerting must never fail a session
                    log.exception("baseline alerts: could not record the observations of "
                                  "session %s", info.session_id)

    async def model_call(self, input: ModelCallInput,
                         next: Next[ModelCallInput, ModelResponse]) -> ModelResponse:
        tallies = self._runs.get(input.session.id)
        if tallies is None:
            return await next(input)
        tally = tallies.setdefault(input.agent.name, Tally())
        tally.calls += 1
        tally.model_calls += 1
        if input.request.repairs:
            tally.errors += 1
            tally.kinds["invalid_output"] += 1
        clock = self.clock
        t0 = clock()
        try:
            resp = await next(input)
        except Exception as e:
            tally.errors += 1
            tally.kinds[error_kind(e)] += 1
            raise
        finally:
            tally.seconds += clock() - t0
        tokens = resp.usage.total_tokens
        tally.tokens += tokens
        self._burned(input.session.tenant, input.agent.name, tokens)
        return resp

    async def tool_call(self, input: ToolCallInput, next: Next[ToolCallInput, Any]) -> Any:
        tallies = self._runs.get(input.session.id)
        if tallies is None:
            return await next(input)
        tally = tallies.setdefault(input.agent.name, Tally())
        tally.calls += 1
        try:
            return await next(input)
        except ApprovalRequired:  # (a policy of yours, after this one: it waits for a
            tally.calls -= 1      # person, neither a call nor a failure)
            raise
        except Exception as e:
            tally.errors += 1
            tally.kinds[error_kind(e)] += 1
            raise

    # -- learning and alerting --------------------------------------------------------

    async def observe(self, tenant: str, tallies: Mapping[str, Tally]) -> None:
        """Feed one run's calls (by agent) to the baselines of its agents and tenant.

        The observations are measured and timed now, and queued: one task records what is
        queued, in order (each series learns its observations in the order they were
        made). This returns without waiting for the store's write of an
        alert they fire or clear, as the end of a session does not wait for it (a store
        that does not answer would hold every session's end up): ``await`` :meth:`settled`
        to wait until they are recorded."""
        total = Tally()
        subjects: list[tuple[Scope, str, Tally]] = []
        for agent, tally in tallies.items():
            total.add(tally)
            subjects.append(("agent", agent, tally))
        subjects.append(("tenant", tenant, total))
        observed = [((tenant, scope, subject, metric), value, tally)
                    for scope, subject, tally in subjects
                    for metric, value in tally.observations().items()]
        self._enqueue("session-end", tenant, observed, self.clock())

    def _enqueue(self, kind: _Kind, *args: Any) -> None:
        """Queue observations for the task that records them, one after another in the
        order they were queued (:meth:`_drain`; :meth:`settled` waits for it). While it
        has waited :data:`_HUNG_S` or more for the store (an alert's write) with
        ``max_pending`` queued behind it, they are dropped instead (the first drop says
        so): a burst queued while a write is answered is not."""
        if self._recording is not None and len(self._waiting) >= self.max_pending and \
                self.clock() - self._recording_since >= _HUNG_S:
            if not self._dropped:
                log.warning("baseline alerts: the observations of %s wait to be recorded "
                            "(the store does not answer): later ones are dropped until it "
                            "does (BaselineAlerts(max_pending=...))",
                            plural(self.max_pending, "session run or window",
                                   many="session runs and windows"))
            self._dropped[kind] += 1
            self.dropped += 1
            return
        self._waiting.append((kind, args))
        self._queued += 1
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), name="convoy-alert-observations")

    async def _drain(self) -> None:
        """Record what is queued, in order, until nothing is (one task: an observation
        that writes nothing takes no turn of the event loop, so a busy engine's backlog
        drains as soon as the store answers)."""
        me = asyncio.current_task()
        try:
            while self._waiting:
                kind, args = self._waiting.popleft()
                self._recording, self._recording_since = kind, self.clock()
                record = self._observe_run if kind == "session-end" else self._observe_rates
                try:
                    await record(*args)  # (it logs its own failures)
                except asyncio.CancelledError:
                    if me is None or me.cancelling():  # (the close cancelled this task)
                        raise
                    # (the store's call was cancelled, not this task: the others go on)
                    log.warning("baseline alerts: the observations of %s were not recorded: "
                                "the store's call was cancelled", _counted(Counter([kind])))
                self._recording = None
                self._recorded += 1
                self._wake_settled()
                if self._dropped and len(self._waiting) <= self.max_pending // 2:
                    self._said_dropped("it answers again")
        finally:
            if self._drainer is me:  # (the close may have let a new one start already)
                self._drainer, self._recording = None, None

    def _wake_settled(self) -> None:
        """Resolve the :meth:`settled` calls whose observations are all recorded."""
        if self._settling:
            waiting = []
            for target, fut in self._settling:
                if self._recorded >= target:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    waiting.append((target, fut))
            self._settling = waiting

    def _said_dropped(self, why: str) -> None:
        """Warn of the observations dropped since the last warning, and forget them."""
        log.warning("baseline alerts: the observations of %s were dropped while the store "
                    "did not answer (%s)", _counted(self._dropped), why)
        self._dropped.clear()

    async def _observe_run(self, tenant: str,
                           observed: list[tuple[SeriesKey, float, Tally]], now: float) -> None:
        try:
            for key, value, tally in observed:
                await self._observe(key, value, tally, now)
        except Exception:  # alerting must never fail a session, nor stop the next ones
            log.exception("baseline alerts: could not record the observations of a run of "
                          "tenant %r", tenant)

    def _burned(self, tenant: str, agent: str, tokens: int) -> None:
        """Count a model call's ``tokens`` in the velocity windows of its agent and tenant
        as the call ends (not when its session ends: a runaway loop in one long session
        alerts while it runs). A window that closed is queued for the task that records
        observations (:meth:`_enqueue`): the call's response is not held back by the
        store's write of an alert (nor dropped, paid for, by a cancel landing there), nor
        is any session's end."""
        now = self.clock()
        closed: list[tuple[SeriesKey, float]] = []
        series: tuple[tuple[Scope, str], ...] = (("agent", agent), ("tenant", tenant))
        for scope, subject in series:
            key: SeriesKey = (tenant, scope, subject, "velocity")
            window = self._windows.get(key)
            if window is None:
                self._windows[key] = Window(now, tokens)
                continue
            rate = window.add(now, tokens, self.window_s)
            if rate is not None:
                closed.append((key, rate))
        if closed:
            self._enqueue("token-velocity", closed, now)

    async def _observe_rates(self, closed: list[tuple[SeriesKey, float]], now: float) -> None:
        try:
            for key, rate in closed:
                await self._observe(key, rate, Tally(), now)
        except Exception:  # alerting must never fail a call
            log.exception("baseline alerts: could not record the token velocity of %s",
                          ", ".join(_series_name(key) for key, _ in closed))

    async def settled(self) -> None:
        """Wait until the observations queued so far are recorded, with the alerts they
        fire or clear: those of the sessions' ends (:meth:`observe`) and of the
        token-velocity windows the model calls closed (closing the engine waits for them,
        for a few seconds). Not those queued after it was called: they are recorded after
        these, in turn, and a busy engine queues them all the time."""
        if self._recorded >= self._queued:
            return
        fut = asyncio.get_running_loop().create_future()
        self._settling.append((self._queued, fut))
        await fut  # (a cancel here cancels this wait only)

    async def _settle_for(self, seconds: float) -> None:
        """:meth:`settled`, for at most ``seconds``: a store that does not answer (a lock
        held elsewhere) does not hold the engine's close up; what is left is dropped (the
        recording cancelled), said in one warning."""
        if self._recorded < self._queued:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settled(), seconds)
        if self._recorded < self._queued:
            kinds = Counter(kind for kind, _ in self._waiting)
            if self._recording is not None:
                kinds[self._recording] += 1
            self._waiting.clear()
            if self._drainer is not None:  # (what is queued from now on: a new one)
                self._drainer.cancel()
                self._drainer, self._recording = None, None
            self._recorded = self._queued
            self._wake_settled()
            log.warning("baseline alerts: the observations of %s were not recorded: the store "
                        "did not answer within %g s as the engine closed", _counted(kinds),
                        seconds)
        if self._dropped:
            self._said_dropped("the engine closed")

    async def _observe(self, key: SeriesKey, value: float, tally: Tally, now: float) -> None:
        policy = self.policies[key[3]]
        baseline = self.baselines.get(key)
        if baseline is None:
            baseline = self.baselines[key] = Baseline()
        before = (baseline.mean, baseline.spread(policy), baseline.threshold(policy))
        change: Transition | None = baseline.observe(value, policy)
        if change == "fired":
            baseline.alert_id = await self._fire(key, value, before, baseline, tally, now)
        elif change in ("cleared", "relearned") and baseline.alert_id is not None:
            alert_id, baseline.alert_id = baseline.alert_id, None
            if await self.store.alert_clear(alert_id, now, value, list(self.webhooks)):
                self._wake.set()
                extra = {"alert": {"id": alert_id, "event": "cleared", "tenant": key[0],
                                   "scope": key[1], "subject": key[2], "metric": key[3],
                                   "value": value, "relearned": change == "relearned"}}
                if change == "cleared":
                    log.info("alert %d cleared: %s of %s is back to %s (baseline %s)",
                             alert_id, key[3], _series_name(key),
                             shown_value(key[3], value), shown_value(key[3], baseline.mean),
                             extra=extra)
                else:
                    log.warning("alert %d cleared: %s of %s stayed out of its band for %d "
                                "observations (now %s): taken as its new normal, its "
                                "baseline is learned again from here", alert_id, key[3],
                                _series_name(key), policy.relearn_after or 0,
                                shown_value(key[3], value), extra=extra)
        self.store.kv_put(KV_NAMESPACE, _SEP.join(key), json.dumps(baseline.to_json())
                          ).add_done_callback(_baseline_not_kept)

    async def _fire(self, key: SeriesKey, value: float, before: tuple[float, float, float],
                    baseline: Baseline, tally: Tally, now: float) -> int:
        """Open an alert of series ``key``, or adopt the one the store has open (atomically:
        engines firing it at once open one); only the one that opened it logs it. Its
        ``fired`` event is queued for each of our webhooks it was not queued for already,
        whichever opened it. Returns its id."""
        tenant, scope, subject, metric = key
        mean, spread, threshold = before
        detail: dict[str, Any] = {"observations": baseline.count, "above": baseline.above}
        if metric == "error_rate":
            detail["error_kinds"] = dict(sorted(tally.kinds.items()))
        fired = await self.store.alert_open(NewAlert(
            tenant=tenant, scope=scope, subject=subject, metric=metric, value=value, mean=mean,
            deviation=spread, threshold=threshold, opened=now,
            detail=json.dumps(detail, sort_keys=True)), list(self.webhooks))
        alert_id = fired.id
        if self.webhooks:  # (adopted, it has its fired events queued for our webhooks too)
            self._wake.set()
        if not fired.opened:  # the series' open alert (another engine's, or this one's
            return alert_id   # before a crash lost its link): adopted, fired already
        log.warning("alert %d fired: %s of %s is %s, above its band %s (baseline %s ± %s)",
                    alert_id, metric, _series_name(key), *(shown_value(metric, x) for x in (
                        value, threshold, mean, spread)), extra={"alert": {
                        "id": alert_id, "event": "fired", "tenant": tenant, "scope": scope,
                        "subject": subject, "metric": metric, "value": value,
                        "threshold": threshold, **detail}})
        return alert_id


#: How long closing the engine waits for the observations being recorded.
_CLOSE_WAIT_S = 5.0
#: How long (by the interceptor's clock) a write of the store goes unanswered before the
#: observations queued past ``max_pending`` behind it are dropped.
_HUNG_S = 1.0


def _series_name(key: SeriesKey) -> str:
    """Whose series ``key`` is, in a log line: an agent's names its tenant too (the agents
    of two tenants share their names)."""
    tenant, scope, subject, _ = key
    return f"tenant {tenant!r}" if scope == "tenant" else \
        f"{scope} {subject!r} (tenant {tenant!r})"


def shown_value(metric: Metric, value: float) -> str:
    """A value of ``metric`` as a log line gives it: with its unit, rounded (a rate as a
    percentage, seconds to 3 figures, tokens whole)."""
    if metric == "error_rate":
        return f"{value * 100:.3g}%"
    if metric == "latency":
        return f"{value:.3g} s" if abs(value) < 1000 else f"{value:,.0f} s"
    return f"{value:,.0f} {'tokens/min' if metric == 'velocity' else 'tokens'}"


def _series_of(alert: AlertRow) -> SeriesKey | None:
    """The series an alert row is of (``None``: a scope or metric this version lacks)."""
    if alert.scope not in ("agent", "tenant") or alert.metric not in METRICS:
        return None
    return cast(SeriesKey, (alert.tenant, alert.scope, alert.subject, alert.metric))


def _stored_baseline(series: SeriesKey, text: Any) -> Baseline:
    """The baseline of ``series`` kept in the store, or :class:`DamagedRow`: not text, not
    JSON, or not a baseline (its counts whole numbers, its mean and deviation numbers)."""
    what = (f"alert baseline of {series[1]} {row_name(series[2])} {series[3]} (tenant "
            f"{row_name(series[0])})")
    if not isinstance(text, str):
        raise damaged(what, f"its stored value {shown(text)} is not text")
    data = stored_json(text, what, "value", strict=True)
    if not isinstance(data, dict) or \
            any(type(data.get(k, 0)) is not int
                for k in ("count", "above", "within", "open_for")) or \
            any(type(data.get(k, 0.0)) not in (int, float) for k in ("mean", "deviation")) or \
            type(data.get("alert_id")) not in (int, type(None)):
        raise damaged(what, f"its stored value {shown(text)} is not a baseline")
    return Baseline.from_json(data)


def _baseline_not_kept(fut: asyncio.Future[None]) -> None:
    """A baseline the store could not keep (locked, read-only, gone): the engine goes on
    with the one it holds, and a restart picks up the last one kept."""
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("alerts: a baseline could not be saved (%s); it is kept in memory and "
                    "saved with its next update", fut.exception())


def _counted(kinds: Counter[_Kind]) -> str:
    """``3 session runs and 1 token-velocity window``."""
    return " and ".join(plural(kinds[kind], _WHAT[kind]) for kind in _KINDS if kinds[kind])


def _check_seconds(name: str, value: float, what: str) -> None:
    """A number of seconds ``BaselineAlerts`` divides by or waits for: more than 0 (a zero
    window divides by zero at every session's end; a zero poll interval spins)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or \
            value == float("inf"):
        raise UserError(f"BaselineAlerts({name}={value!r}): {what} more than 0 seconds "
                        "(and finite)")


def _checked_policies(policies: Mapping[Metric, BaselinePolicy] | None
                      ) -> dict[Metric, BaselinePolicy]:
    """``policies`` if each key is a metric and each value a :class:`BaselinePolicy`: a
    misspelt metric would be ignored, another value would fail every session."""
    if policies is None:
        return {}
    if not isinstance(policies, Mapping):
        raise UserError(f"BaselineAlerts(policies=...) is {a_word(type(policies).__name__)}:"
                        " policies takes a mapping of metric to BaselinePolicy")
    for metric, policy in policies.items():
        if metric not in METRICS:
            raise UserError(f"BaselineAlerts(policies=...): {metric!r} is not a metric: pick "
                            f"from {', '.join(METRICS)}")
        if not isinstance(policy, BaselinePolicy):
            raise UserError(f"BaselineAlerts(policies=...): the policy of {metric!r} is "
                            f"{a_word(type(policy).__name__)}, not a BaselinePolicy")
    return dict(policies)
