"""``convoy metrics serve``: a Prometheus endpoint for what a store knows."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import typer

from convoy import Engine
from convoy._errors import NoStoreError
from convoy.alerts._interceptor import OPEN_ALERTS_READ
from convoy.cli._common import (
    DEFAULT_DB,
    INTERRUPTED,
    AllTenantsOption,
    DbOption,
    Scope,
    TenantOption,
    cannot_listen,
    convoy_errors,
    err,
    fail,
    host_in_url,
    label,
    no_sessions_note,
    reportable,
    require_store,
    tenant_scope,
)
from convoy.cli._stop import Stopped, stop_signals
from convoy.hitl._task import session_of
from convoy.observability._metrics import OTHER
from convoy.stores import STATUSES, SessionFilter, Store, store_from_url

metrics_app = typer.Typer(
    name="metrics", no_args_is_help=True, rich_markup_mode="markdown",
    help="Prometheus metrics.\n\nA running engine serves its own with "
         "`convoy.observability.Metrics` (`convoy worker --metrics-port PORT`); "
         "`convoy metrics serve` serves what the store knows, whichever engines wrote it."
         "\n\nExample: `convoy metrics serve --db convoy.db --port 9464`")


class StoreCollector:
    """Sessions by status (and by workflow), the open human tasks (parked sessions
    waiting for a person) by kind and queue, and the open baseline alerts by scope,
    subject and metric, read from the store at each scrape; of every
    tenant (a ``Scope(None)``), each series also by tenant (its first label). The tenant,
    workflow and queue labels are redacted (a queue's name is the application's text) and
    bounded as :class:`~convoy.observability.Metrics` bounds its own: past
    ``max_label_values`` distinct values of one label, the smallest series count as
    ``"other"``."""

    def __init__(self, db: str, scope: Scope, *, max_label_values: int = 200) -> None:
        from convoy.observability import Redactor

        self.db = db
        self.scope = scope
        self.max_label_values = max_label_values
        self.redact = Redactor().redact
        #: The labels every series starts with: ``tenant`` when it reads every tenant's.
        self.by: list[str] = ["tenant"] if scope.tenant is None else []
        #: Why the last scrape could not read the store (said once), or ``None``.
        self.unreadable: str | None = None
        self._said = threading.Lock()

    def _bounded(self, series: Mapping[Key, int], *at: int) -> dict[Key, int]:
        """``series`` with each label ``at`` of each key redacted, and the values of that
        label past the ``max_label_values`` largest (by their total) merged into
        ``"other"``."""
        for i in at:
            series = self._bound(series, i)
        return dict(series)

    def _bound(self, series: Mapping[Key, int], at: int) -> dict[Key, int]:
        def relabel(key: Key, value: str) -> Key:
            return (*key[:at], value, *key[at + 1:])

        totals: Counter[str] = Counter()
        redacted: Counter[Key] = Counter()
        for key, n in series.items():
            value = self.redact(key[at])
            totals[value] += n
            redacted[relabel(key, value)] += n
        kept = {v for v, _ in totals.most_common(self.max_label_values)}
        out: Counter[Key] = Counter()
        for key, n in redacted.items():
            out[key if key[at] in kept else relabel(key, OTHER)] += n
        return dict(out)

    def describe(self) -> list[Any]:
        return []

    def _say_unreadable(self, problem: str) -> None:
        """One line on stderr when the store cannot be read at a scrape (the first such
        scrape, or one whose reason changed): not a traceback a scrape."""
        with self._said:  # (scrapes are served each in a thread of its own)
            if problem == self.unreadable:
                return
            self.unreadable = problem
            err.print(f"warning: cannot read the store at scrapes: {problem} "
                      "(convoy_store_up is 0 until it reads again)", markup=False,
                      soft_wrap=True)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("convoy_store_up", "Whether the last scrape read the store "
                               "(0: it was removed, damaged or unreachable; the other "
                               "series are left out).")
        try:
            counts, by_workflow, tasks, alerts = asyncio.run(self.read())
        except Exception as e:
            problem = reportable(e)
            if problem is None:  # (a bug: its traceback, in the scrape's 500)
                raise
            # (a store that served the first scrape and is gone now was removed or moved
            # as this served: not one to create, as the error's own advice would say)
            # (only for that message: another one, a file replaced by another
            # application's database, says what it is; a path may hold ': ')
            said = str(problem)
            advice = said.rfind(": 'convoy db migrate")
            if isinstance(e, NoStoreError) and said.startswith("no Convoy store at ") and \
                    advice > 0:
                said = said[:advice] + " any more (removed or moved as this served)"
            self._say_unreadable(said)
            up.add_metric([], 0)
            yield up
            return
        with self._said:
            if self.unreadable is not None:
                self.unreadable = None
                err.print(f"note: {label(self.db)}: metrics serve reads the store again",
                          markup=False, soft_wrap=True)
        up.add_metric([], 1)
        yield up
        by = self.by
        tenants = range(len(by))  # (the tenant label's position, if it has one)
        sessions = GaugeMetricFamily(
            "convoy_store_sessions", "Sessions in the store by status.",
            labels=[*by, "status"])
        # Every status, of each tenant that has sessions: a zero is a value too.
        leads = sorted({k[:len(by)] for k in counts}) if by else [()]
        counts = {(*t, st): counts.get((*t, st), 0) for t in leads for st in STATUSES}
        for key, n in sorted(self._bounded(counts, *tenants).items()):
            sessions.add_metric(list(key), n)
        yield sessions
        unfinished = GaugeMetricFamily(
            "convoy_store_unfinished_sessions", "Unfinished sessions (pending, running, "
            "waiting) by workflow and status.", labels=[*by, "workflow", "status"])
        for key, n in sorted(self._bounded(by_workflow, *tenants, len(by)).items()):
            unfinished.add_metric(list(key), n)
        yield unfinished
        human = GaugeMetricFamily(
            "convoy_store_human_tasks_open", "Open human tasks (questions, approvals of "
            "tool calls, escalated sessions) waiting for a person, by kind and queue "
            "(kind 'sealed': a task holding a data subject's data, without the master key "
            "or of an erased subject).",
            labels=[*by, "kind", "queue"])
        for key, n in sorted(self._bounded(tasks, *tenants, len(by) + 1).items()):
            human.add_metric(list(key), n)
        yield human
        opened = GaugeMetricFamily(
            "convoy_store_alerts_open", "Open baseline alerts (convoy alerts --open) by "
            "scope ('agent' or 'tenant'), subject (the agent's or the tenant's name) and "
            "metric.", labels=[*by, "scope", "subject", "metric"])
        for key, n in sorted(self._bounded(alerts, *tenants, len(by) + 1).items()):
            opened.add_metric(list(key), n)
        yield opened

    async def read(self) -> tuple[dict[Key, int], dict[Key, int], Counter[Key],
                                  Counter[Key]]:
        """Sessions by status, unfinished ones by workflow and status, open human tasks by
        kind and queue, and open alerts by scope, subject and metric (each key led by its
        tenant when it reads every tenant's)."""
        # Read-only: a scrape never migrates the store. The inbox reads through an engine
        # (sealed tasks open with the master key of the environment, if one is set).
        engine = Engine(store_from_url(self.db, read_only=True))
        tenant = self.scope.tenant
        async with engine:
            store = engine.store

            def lead(of: str) -> Key:
                return () if tenant is not None else (of,)

            if tenant is not None:
                counts: dict[Key, int] = {
                    (st,): n for st, n in (await store.counts(tenant=tenant)).items()}
            else:
                counts = {(t, st): n for (t, st), n in (await tenant_counts(store)).items()}
            by: Counter[Key] = Counter(
                (*lead(row.tenant), row.workflow, row.status)
                for row in await store.unfinished(tenant=tenant))
            inbox = self.scope.view(engine).inbox
            sealed: list[str] = []
            tasks: Counter[Key] = Counter(
                (*lead(t.tenant), str(t.kind), t.queue or "")
                for t in await inbox.tasks(sealed=sealed))
            if sealed:  # kind and queue sealed too (no master key, an erased subject)
                rows = await store.get_sessions(sorted({session_of(t) for t in sealed}))
                for task in sealed:
                    row = rows.get(session_of(task))
                    tasks[(*lead(row.tenant if row else OTHER), "sealed", "")] += 1
            alerts: Counter[Key] = Counter(  # (one open alert a series: OPEN_ALERTS_READ is ample)
                (*lead(a.tenant), a.scope, a.subject, a.metric) for a in
                await store.list_alerts(tenant=tenant, open_only=True, limit=OPEN_ALERTS_READ,
                                        left_out=[]))
            return counts, dict(by), tasks, alerts


#: A series' label values.
Key = tuple[str, ...]


async def tenant_counts(store: Store) -> dict[tuple[str, str], int]:
    """Sessions by tenant and status: one query where the store has ``tenant_counts``
    (Convoy's SQLite and PostgreSQL stores), else counted page by page."""
    of_each = getattr(store, "tenant_counts", None)
    if of_each is not None:
        return dict(await of_each())
    found: Counter[tuple[str, str]] = Counter()
    offset = 0
    while page := await store.list_sessions(SessionFilter(limit=_PAGE, offset=offset)):
        found.update((r.tenant, r.status) for r in page)
        offset += len(page)
    return dict(found)


_PAGE = 1000


@metrics_app.command("serve")
def serve(
    db: DbOption = DEFAULT_DB,
    port: Annotated[int, typer.Option(
        "--port", "-p", min=0, max=65535,
        help="The port to listen on (0: a free port, printed at start).")] = 9464,
    addr: Annotated[str, typer.Option("--addr", help="The address to listen on.")
                    ] = "127.0.0.1",
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
) -> None:
    """Serve http://ADDR:PORT/metrics for Prometheus: the store's sessions by status, its
    unfinished ones by workflow, its open human tasks by kind and queue, and its open
    baseline alerts by scope, subject and metric, read at each scrape (of the tenant
    'default', --tenant NAME, or --all-tenants: then each series by tenant too, a 'tenant'
    label). Runs until Ctrl-C or SIGTERM.

    Exit codes: 1 when the store cannot be read as it starts (one line); 2 on usage
    errors (no Convoy store at --db; a port it cannot listen on: in use, or below 1024
    without the right; a bad option); 130 when interrupted (Ctrl-C), 143 when stopped by
    SIGTERM.

    Example: `convoy metrics serve --db app.db --port 9464 --all-tenants`
    """
    with stop_signals() as stop:  # first: from now on a signal stops the server cleanly
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            fail("metrics need prometheus-client: pip install 'convoy[metrics]'")
        scope = tenant_scope(tenant, all_tenants)
        require_store(db)
        collector = StoreCollector(db, scope)
        try:
            with convoy_errors():  # a store it cannot read: one line now, not at scrapes
                stop.run(collector.read())  # (a stop signal ends it, as it ends serving)
            no_sessions_note(db, scope)
            registry = CollectorRegistry()
            registry.register(collector)
            try:
                server, thread = start_http_server(port, addr, registry=registry)
            except OSError as e:
                fail(cannot_listen(e, addr, port, addr_option="--addr", port_option="--port"))
            try:
                err.print(f"metrics of {label(db)}{scope.of or ' of every tenant'} on "
                          f"http://{host_in_url(addr)}:{server.server_address[1]}/metrics",
                          markup=False, style="dim")
                stop.wait()
            finally:
                server.shutdown()
                server.server_close()
                thread.join()
        except (Stopped, KeyboardInterrupt) as e:
            if isinstance(e, KeyboardInterrupt):
                err.print("interrupted: stopped serving metrics", markup=False)
            raise typer.Exit(e.exit_code if isinstance(e, Stopped) else INTERRUPTED) from None
