"""``convoy metrics serve``: a Prometheus endpoint for what a store knows."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import typer

from convoy import Engine
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
    require_store,
    tenant_scope,
)
from convoy.cli._stop import Stopped, stop_signals
from convoy.observability._metrics import OTHER
from convoy.stores import STATUSES, store_from_url

metrics_app = typer.Typer(
    name="metrics", no_args_is_help=True, rich_markup_mode="markdown",
    help="Prometheus metrics.\n\nA running engine serves its own with "
         "`convoy.observability.Metrics` (`convoy worker --metrics-port PORT`); "
         "`convoy metrics serve` serves what the store knows, whichever engines wrote it.")


class StoreCollector:
    """Sessions by status (and by workflow), and the open human tasks (parked sessions
    waiting for a person) by kind and queue, read from the store at each scrape. The
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

    def _bounded(self, series: Mapping[tuple[str, str], int], at: int
                 ) -> dict[tuple[str, str], int]:
        """``series`` with label ``at`` of each key redacted, and the values of that label
        past the ``max_label_values`` largest (by their total) merged into ``"other"``."""
        def relabel(key: tuple[str, str], value: str) -> tuple[str, str]:
            return (value, key[1]) if at == 0 else (key[0], value)

        totals: Counter[str] = Counter()
        redacted: Counter[tuple[str, str]] = Counter()
        for key, n in series.items():
            value = self.redact(key[at])
            totals[value] += n
            redacted[relabel(key, value)] += n
        kept = {v for v, _ in totals.most_common(self.max_label_values)}
        out: Counter[tuple[str, str]] = Counter()
        for key, n in redacted.items():
            out[key if key[at] in kept else relabel(key, OTHER)] += n
        return dict(out)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        counts, by_workflow, tasks = asyncio.run(self.read())
        sessions = GaugeMetricFamily(
            "convoy_store_sessions", "Sessions in the store by status.", labels=["status"])
        for status in STATUSES:
            sessions.add_metric([status], counts.get(status, 0))
        yield sessions
        unfinished = GaugeMetricFamily(
            "convoy_store_unfinished_sessions", "Unfinished sessions (pending, running, "
            "waiting) by workflow and status.", labels=["workflow", "status"])
        for (workflow, state), n in sorted(self._bounded(by_workflow, 0).items()):
            unfinished.add_metric([workflow, state], n)
        yield unfinished
        human = GaugeMetricFamily(
            "convoy_store_human_tasks_open", "Open human tasks (questions, approvals of "
            "tool calls, escalated sessions) waiting for a person, by kind and queue "
            "(kind 'sealed': a task holding a data subject's data, without the master key "
            "or of an erased subject).",
            labels=["kind", "queue"])
        for (kind, queue), n in sorted(self._bounded(tasks, 1).items()):
            human.add_metric([kind, queue], n)
        yield human

    async def read(self) -> tuple[dict[str, int], dict[tuple[str, str], int],
                                  Counter[tuple[str, str]]]:
        """Sessions by status, unfinished ones by workflow and status, and open human
        tasks by kind and queue."""
        # Read-only: a scrape never migrates the store. The inbox reads through an engine
        # (sealed tasks open with the master key of the environment, if one is set).
        engine = Engine(store_from_url(self.db, read_only=True))
        async with engine:
            store = engine.store
            counts = await store.counts(tenant=self.scope.tenant)
            by: dict[tuple[str, str], int] = {}
            for row in await store.unfinished(tenant=self.scope.tenant):
                key = (row.workflow, row.status)
                by[key] = by.get(key, 0) + 1
            inbox = self.scope.view(engine).inbox
            sealed: list[str] = []
            tasks: Counter[tuple[str, str]] = Counter(
                (str(t.kind), t.queue or "") for t in await inbox.tasks(sealed=sealed))
            if sealed:  # kind and queue sealed too (no master key, an erased subject)
                tasks[("sealed", "")] = len(sealed)
            return counts, by, tasks


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
    unfinished ones by workflow, and its open human tasks by kind and queue, read at each
    scrape (of the tenant 'default',
    --tenant NAME, or --all-tenants). Runs until Ctrl-C or SIGTERM.

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
                err.print(f"metrics of {label(db)}{scope.of} on "
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
