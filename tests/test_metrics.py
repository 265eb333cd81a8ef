"""Metrics (issue 11, item 3): per agent and per model, sessions and steps by outcome,
latency histograms, tokens, cost, retries, breaker state, budget use and state conflicts,
with one error taxonomy as a label and bounded label values; scraped by a real Prometheus
(Debian's package, started by the test) and queried back through its HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import convoy
from convoy.cost import Budget, Budgets
from convoy.observability import Metrics, Tracing, observe
from convoy.resilience import ERROR_KINDS, Retry, RetryPolicy, protections
from convoy.stores import SQLiteStore

from .fakeclock import FakeClock
from .obs_flows import PLANTED_FORMS, TICKET, agents, desk_workflow, down_workflow, script
from .telemetry_servers import Prometheus, free_port, prometheus, wait_until  # noqa: F401


def samples(metrics: Metrics) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value)
            for fam in text_string_to_metric_families(metrics.text()) for s in fam.samples]


def total(metrics: Metrics, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples(metrics)
               if n == name and all(lab.get(k) == x for k, x in labels.items()))


class Flaky(convoy.SimModel):
    """Fails the first two attempts of every call with a 503."""

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        if request.attempt < 2:
            raise convoy.ModelError("upstream 503", retryable=True, status_code=503)
        return await super().request(request)


def observed(metrics: Metrics, how: str) -> list[convoy.Interceptor]:
    """``metrics`` alone, or recorded by the hooks of a tracing that traces every session
    (``traced``) or none (``untraced``): the same figures either way."""
    if how == "alone":
        return observe(metrics=metrics)
    return observe(Tracing(exporters=(), sample_rate=1.0 if how == "traced" else 0.0),
                   metrics)


def test_observe_records_metrics_in_the_tracing_hooks() -> None:
    tracing, metrics = Tracing(exporters=()), Metrics()
    chain = observe(tracing, metrics)
    assert chain == [tracing, tracing.attempts] and tracing.metrics is metrics
    assert observe(tracing) == [tracing, tracing.attempts] and tracing.metrics is None
    assert observe(metrics=metrics) == [metrics, metrics.attempts]



@pytest.mark.parametrize(("call", "said"), [
    (lambda: observe(Metrics()), r"^observe\(\) got a Metrics as its tracing: pass it as "
                                 r"observe\(metrics=\.\.\.\)$"),
    (lambda: observe(tracing=Metrics()), r"got a Metrics as its tracing"),
    (lambda: observe(Tracing(exporters=()), Tracing(exporters=())),
     r"^observe\(metrics=\.\.\.\) is a Tracing, not a Metrics$"),
    (lambda: observe("store"), r"^observe\(tracing=\.\.\.\) is a str, not a Tracing$"),
])
def test_observe_given_the_wrong_thing_says_so_in_one_line(call: Any, said: str) -> None:
    """``observe(metrics)`` raised AttributeError: 'Metrics' object has no attribute
    'derived' (the review, item 5)."""
    with pytest.raises(convoy.UserError, match=said):
        call()

async def test_metrics_added_again_after_observe_are_refused(engine_factory: Any) -> None:
    """``observe(tracing, metrics)`` wires the metrics into the tracing hooks; adding them
    to the chain as well would count every step twice: the engine refuses to open."""
    metrics = Metrics()
    eng = engine_factory(interceptors=[*observe(Tracing(["store"]), metrics), metrics])
    with pytest.raises(convoy.UserError, match="would count twice"):
        await eng.open()


@pytest.mark.parametrize("how", ["alone", "traced", "untraced"])
async def test_a_human_tasks_operations_count_as_human_steps_not_state(
        engine_factory: Any, how: str) -> None:
    """``ctx.ask_human`` writes and watches its task in Convoy's inbox: those operations
    count as ``kind="human"`` steps, so the ``state`` ones are the workflow's own (a
    workflow that touched no state showed four state steps per question asked)."""
    metrics = Metrics()

    @convoy.workflow(name="obs.asks")
    async def asks(ctx: convoy.Context, q: str) -> str:
        answer = await ctx.ask_human(q, str)
        await ctx.state("crm").set("last", answer.value, expected_version=0)
        return answer.value

    eng = engine_factory(interceptors=observed(metrics, how))
    assert (await eng.run(asks, "why?")).status == "waiting"
    [task] = await eng.inbox.tasks()
    await eng.inbox.answer(task.id, "because", by="ann")
    assert [r.status for r in await eng.resume()] == ["completed"]
    assert total(metrics, "convoy_steps_total", kind="state") == 1
    assert total(metrics, "convoy_steps_total", kind="state", target="set") == 1
    assert total(metrics, "convoy_steps_total", kind="human") >= 2
    assert total(metrics, "convoy_steps_total", kind="human", target="set") == 1


@pytest.mark.parametrize("how", ["alone", "traced", "untraced"])
async def test_sessions_steps_tokens_retries_and_the_error_taxonomy(
        engine_factory: Any, how: str) -> None:
    metrics = Metrics()
    sim = convoy.SimModel(script())
    wf = desk_workflow(agents(sim), name="obs.metrics")
    eng = engine_factory(interceptors=[*observed(metrics, how),
                                       *protections(retry=RetryPolicy(initial_delay=0,
                                                                      max_delay=0))])
    for _ in range(3):
        assert (await eng.run(wf, TICKET)).ok

    @convoy.tool
    def broken(query: str) -> str:
        """Always fails."""
        raise RuntimeError("the CRM is down")

    failing = convoy.Agent(name="fragile", tools=[broken], tool_failures=0, model=convoy.SimModel(
        {"fragile": {"tool_calls": [{"name": "broken", "arguments": {"query": "x"}}]}}))

    @convoy.workflow(name="obs.fails")
    async def fails(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(failing, t)
        return out

    res = await eng.run(fails, "t")
    assert res.status == "failed"
    flaky = convoy.Agent(name="flaky", model=Flaky({"*": {"output": "ok"}}))

    @convoy.workflow(name="obs.retried")
    async def retried(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(flaky, t)
        return out

    assert (await eng.run(retried, "t")).ok
    m = metrics
    assert total(m, "convoy_sessions_total", workflow="obs.metrics", outcome="completed") == 3
    assert total(m, "convoy_sessions_total", workflow="obs.fails", outcome="failed",
                 error="tool_error") == 1
    # per agent and per model
    assert total(m, "convoy_steps_total", kind="model", agent="billing",
                 target="sim:default", outcome="ok") == 9
    assert total(m, "convoy_steps_total", kind="tool", agent="billing",
                 target="find_customer", outcome="ok") == 3
    assert total(m, "convoy_steps_total", kind="handoff", agent="triage",
                 target="billing") == 3
    assert total(m, "convoy_steps_total", kind="state", target="set") == 3
    assert total(m, "convoy_steps_total", kind="tool", target="broken", outcome="error",
                 error="tool_error") == 1
    assert total(m, "convoy_agent_runs_total", agent="triage", outcome="handoff") == 3
    assert total(m, "convoy_agent_runs_total", agent="plans", outcome="ok") == 3
    assert total(m, "convoy_tokens_total", agent="billing", direction="input") > 0
    assert total(m, "convoy_cost_usd_total", agent="billing") > 0
    assert total(m, "convoy_step_seconds_count", kind="model", agent="triage") == 3
    assert total(m, "convoy_step_seconds_bucket", kind="model", agent="triage", le="+Inf") == 3
    assert 0 < total(m, "convoy_step_seconds_sum", kind="model", agent="triage") < 10
    assert total(m, "convoy_agent_run_seconds_bucket", agent="triage", le="10.0") == 3
    assert total(m, "convoy_session_run_seconds_count", workflow="obs.metrics") == 3
    assert total(m, "convoy_sessions_running", workflow="obs.metrics") == 0
    # retries and failed attempts, by the kind of error
    assert total(m, "convoy_retries_total", agent="flaky", error="server_error") == 2
    assert total(m, "convoy_attempt_errors_total", agent="flaky", error="server_error") == 2
    assert total(m, "convoy_retry_budget_denied_total") == 0
    # breaker state, read at scrape time
    assert total(m, "convoy_circuit_breaker_state", breaker="model:sim:default") == 0
    # one taxonomy, and no session id or personal value in any label
    ids = set()
    for _name, labels, _v in samples(m):
        if labels.get("error"):
            assert labels["error"] in ERROR_KINDS
        for value in labels.values():
            ids.add(value)
            assert not re.fullmatch(r"[0-9a-f]{32}", value), value
            assert not any(p in value for p in PLANTED_FORMS), value


async def test_label_values_are_bounded_and_redacted(engine_factory: Any) -> None:
    metrics = Metrics(max_label_values=3)

    @convoy.workflow(name="obs.many")
    async def many(ctx: convoy.Context, n: int) -> int:
        for i in range(6):
            await ctx.step(f"charge card {4111111111111111 if i == 0 else i}",
                           _value(i), idempotent=True)
        return n

    res = await engine_factory(interceptors=observe(metrics=metrics)).run(many, 1)
    assert res.ok
    targets = {lab["target"] for n, lab, _ in samples(metrics)
               if n == "convoy_steps_total" and lab["kind"] == "effect"}
    assert targets == {"charge card [CARD]", "charge card 1", "charge card 2", "other"}
    assert total(metrics, "convoy_steps_total", kind="effect", target="other") == 3


def _value(i: int) -> Any:
    async def fn() -> int:
        return i

    return fn


async def test_budget_use_and_state_conflicts(engine_factory: Any, db: Path) -> None:
    metrics = Metrics()
    budgets = Budgets(tenant_daily=Budget(usd=1.0))
    sim = convoy.SimModel({"*": {"output": "ok"}})
    agent = convoy.Agent(name="a", model=sim)

    @convoy.workflow(name="obs.conflict")
    async def wf(ctx: convoy.Context, t: str) -> str:
        st = ctx.state("customer:42")
        await st.set("n", 1, expected_version=0)
        with contextlib.suppress(convoy.StateConflict):
            await st.set("n", 2, expected_version=0)  # stale: refused
        out: str = await ctx.run(agent, t)
        return out

    # One fake clock: the day the budget is spent and the day it is read (at the scrape)
    # are one, even at midnight.
    eng = engine_factory(db=SQLiteStore(db, clock=FakeClock()),
                         interceptors=[*observe(metrics=metrics), budgets])
    assert (await eng.tenant("acme").run(wf, "t")).ok
    assert total(metrics, "convoy_state_conflicts_total", namespace="customer") == 1
    assert total(metrics, "convoy_steps_total", kind="state", target="set",
                 error="conflict") == 1
    assert total(metrics, "convoy_budget_limit_usd", tenant="acme") == 1.0
    used = total(metrics, "convoy_budget_used_ratio", tenant="acme")
    assert 0 < used < 1


@pytest.mark.backend
async def test_a_real_prometheus_scrapes_and_answers(prometheus: Any,  # noqa: F811
                                                     tmp_path: Path) -> None:
    metrics = Metrics()
    port = free_port()
    server = metrics.serve(port)
    try:
        prom: Prometheus = await asyncio.to_thread(prometheus, port)
        sim = convoy.SimModel(script())
        wf = desk_workflow(agents(sim), name="obs.prom")
        flaky = convoy.Agent(name="flaky", model=Flaky({"*": {"output": "ok"}}))

        @convoy.workflow(name="obs.prom_retry")
        async def retried(ctx: convoy.Context, t: str) -> str:
            out: str = await ctx.run(flaky, t)
            return out

        retry = Retry(RetryPolicy(initial_delay=0, max_delay=0))
        async with convoy.Engine(tmp_path / "prom.db",
                                 interceptors=[*observe(metrics=metrics), retry]) as eng:
            for _ in range(4):
                assert (await eng.run(wf, TICKET)).ok
            assert (await eng.run(retried, "t")).ok

        def scraped() -> bool:
            return prom.value('sum(convoy_sessions_total{outcome="completed"})') == 5.0

        await asyncio.to_thread(wait_until, "a scrape of the last sessions", scraped, None,
                                None, 60.0)
        assert prom.value('up{job="convoy"}') == 1.0
        assert prom.value('sum(convoy_steps_total{kind="model",agent="billing"})') == 12.0
        assert prom.value('sum by (error) (convoy_retries_total{agent="flaky"})') == 2.0
        [row] = prom.query('sum by (error) (convoy_retries_total{agent="flaky"})')
        assert row["metric"] == {"error": "server_error"}
        assert prom.value('sum(convoy_tokens_total{agent="triage"})') > 0
        p50 = prom.value('histogram_quantile(0.5, sum by (le) '
                         '(convoy_step_seconds_bucket{kind="model"}))')
        assert p50 is not None and 0 < p50 < 60
        series = prom.query('{__name__=~"convoy_.*"}')
        assert {s["metric"]["__name__"] for s in series} >= {
            "convoy_sessions_total", "convoy_steps_total", "convoy_step_seconds_bucket",
            "convoy_tokens_total", "convoy_agent_runs_total", "convoy_retries_total"}
        for s in series:  # bounded, taxonomy-only labels: no session ids
            assert not any(re.fullmatch(r"[0-9a-f]{32}", v) for v in s["metric"].values())
    finally:
        server.close()


async def test_the_asgi_and_wsgi_apps_serve_the_metrics(engine_factory: Any) -> None:
    metrics = Metrics()
    sim = convoy.SimModel({"*": {"output": "ok"}})
    agent = convoy.Agent(name="mounted", model=sim)

    @convoy.workflow(name="obs.mounted")
    async def wf(ctx: convoy.Context, t: str) -> str:
        out: str = await ctx.run(agent, t)
        return out

    assert (await engine_factory(interceptors=observe(metrics=metrics)).run(wf, "t")).ok
    # WSGI, as a WSGI server calls it
    started: list[str] = []
    body = b"".join(metrics.wsgi_app()(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "",
         "wsgi.input": io.BytesIO(b""), "SERVER_NAME": "x", "SERVER_PORT": "80"},
        lambda status, headers, exc_info=None: started.append(status)))
    assert started == ["200 OK"] and b'agent="mounted"' in body
    # ASGI, as an ASGI server calls it
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await metrics.asgi_app()({"type": "http", "method": "GET", "path": "/metrics",
                              "query_string": b"", "headers": []}, receive, send)
    assert sent[0]["status"] == 200
    assert b'convoy_agent_runs_total{agent="mounted"' in b"".join(
        m.get("body", b"") for m in sent)


async def test_where_nothing_retries_a_failed_step_is_one_failed_attempt(
        engine_factory: Any) -> None:
    wf = down_workflow("obs.once")

    for how in ("alone", "traced"):
        metrics = Metrics()
        eng = engine_factory(interceptors=observed(metrics, how))
        assert (await eng.run(wf, "t")).status == "failed"
        assert total(metrics, "convoy_steps_total", agent="solo", outcome="error",
                     error="server_error") == 1
        assert total(metrics, "convoy_attempt_errors_total", agent="solo",
                     error="server_error") == 1
        assert total(metrics, "convoy_retries_total") == 0


async def test_metrics_shared_by_an_engine_that_retries_and_one_that_does_not(
        engine_factory: Any) -> None:
    """Per-attempt hooks are in the chains of the engine that can retry only; the other's
    failed step still counts as its one failed attempt."""
    wf = down_workflow("obs.shared")
    metrics = Metrics()
    retrying = engine_factory(interceptors=[*observe(metrics=metrics), Retry(RetryPolicy(
        max_attempts=3, initial_delay=0, max_delay=0))])
    once = engine_factory(interceptors=observe(metrics=metrics))
    assert (await retrying.run(wf, "t")).status == "failed"
    assert (await once.run(wf, "t")).status == "failed"
    assert total(metrics, "convoy_steps_total", agent="solo", outcome="error",
                 error="server_error") == 2
    assert total(metrics, "convoy_attempt_errors_total", agent="solo",
                 error="server_error") == 3 + 1
    assert total(metrics, "convoy_retries_total") == 2


@pytest.mark.parametrize("value", [0, "200", 1.5, True, None])
def test_a_label_bound_that_is_no_whole_number_is_refused_in_one_line(value: object) -> None:
    """A new user's trial: ``Metrics(max_label_values="200")`` raised ``TypeError: '<' not
    supported between instances of 'str' and 'int'``, and ``1.5`` was taken."""
    with pytest.raises(convoy.UserError, match=re.escape(
            f"max_label_values must be a whole number >= 1, got {value!r}")):
        Metrics(max_label_values=value)  # type: ignore[arg-type]
