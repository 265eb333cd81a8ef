"""What counts as a failure is the user's to say (issue 8, item 11): failure kinds, record
and ignore predicates per breaker and per retry policy, typed fallbacks by failure kind,
with today's classification as the default."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy._errors import error_from_record
from convoy.resilience import (
    FAILURE_KINDS,
    BreakerPolicy,
    Breakers,
    Fallback,
    RateLimited,
    Retry,
    RetryBudget,
    RetryPolicy,
    classify,
    failure_kind,
    is_downstream_failure,
)

from .fakeclock import FakeClock
from .fault_servers import OK, error


class Label(BaseModel):
    label: str


def flow(agent: convoy.Agent[Any, Any], name: str = "kinds") -> convoy.Workflow[Any, Any]:
    @convoy.workflow(name=name)
    async def wf(ctx: convoy.Context, t: str) -> Any:
        return await ctx.run(agent, t)

    return wf


# -- kinds ---------------------------------------------------------------------------------

def test_every_failure_has_one_kind() -> None:
    E = convoy.ModelError
    cases = {
        E("429", retryable=True, status_code=429, retry_after=1): "rate_limited",
        RateLimited("bucket", retryable=True): "rate_limited",
        E("quota", status_code=429): "quota_exhausted",
        convoy.ContextWindowExceeded("too long", status_code=400): "context_window_exceeded",
        convoy.ContentPolicyViolation("filtered", status_code=400): "content_policy",
        E("slow", timeout=True): "timeout",
        TimeoutError(): "timeout",
        convoy.ToolError("slow tool", timeout=True): "timeout",
        E("503", retryable=True, status_code=503): "server_error",
        E("reset", retryable=True): "unavailable",
        ConnectionResetError(): "unavailable",
        E("401", status_code=401): "auth",
        E("400", status_code=400): "bad_request",
        convoy.CircuitOpenError("open"): "circuit_open",
        convoy.OutputValidationError("bad"): "invalid_output",
        convoy.PolicyDenied("no"): "denied",
        convoy.ToolError("raised"): "other",
        ValueError("x"): "other",
    }
    for exc, kind in cases.items():
        assert failure_kind(exc) == kind, (exc, kind)
    assert set(cases.values()) == set(FAILURE_KINDS)
    # Terminal by nature: sending the same request again cannot help.
    assert classify(convoy.ContextWindowExceeded("x", retryable=True)) == "terminal"
    assert classify(convoy.ContentPolicyViolation("x", retryable=True)) == "terminal"
    assert classify(E("slow", timeout=True)) == "retryable"
    assert is_downstream_failure(E("quota", status_code=429))
    assert not is_downstream_failure(convoy.ContextWindowExceeded("x", status_code=400))


@pytest.mark.parametrize(("answer", "error_type", "kind"), [
    (error(400, code="context_length_exceeded"), "ContextWindowExceeded",
     "context_window_exceeded"),
    (error(400, code="content_filter"), "ContentPolicyViolation", "content_policy"),
    (error(429, code="insufficient_quota"), "ModelError", "quota_exhausted"),
    (error(429, retry_after=0), "ModelError", "rate_limited"),
])
async def test_the_openai_adapter_names_the_failure_the_server_reported(
        engine_factory: Any, servers: Any, answer: Any, error_type: str, kind: str) -> None:
    server = servers(lambda now: answer)
    agent = convoy.Agent(name="a", output_type=Label,
                         model=f"openai:gpt-4o-mini?base_url={server.base_url()}")
    res = await engine_factory().run(flow(agent), "sess-0")
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == error_type
    assert failure_kind(error_from_record(res.error)) == kind  # journaled, read back, the same kind
    assert len(server.log) == 1


async def test_a_healthy_answer_is_still_an_answer(engine_factory: Any, servers: Any) -> None:
    server = servers(lambda now: OK)
    agent = convoy.Agent(name="a", output_type=Label,
                         model=f"openai:gpt-4o-mini?base_url={server.base_url()}")
    assert (await engine_factory().run(flow(agent), "sess-0")).ok


# -- a model that answers from a list -------------------------------------------------------

GOOD = '{"label": "x"}'


class Scripted(convoy.Model):
    """Answers (or raises) the next item of its list; the last one repeats."""

    def __init__(self, *items: BaseException | convoy.ModelResponse, name: str = "sim:s") -> None:
        self.items = list(items)
        self.name = name
        self.calls = 0

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        item = self.items[min(self.calls, len(self.items) - 1)]
        self.calls += 1
        if isinstance(item, BaseException):
            raise item
        return convoy.ModelResponse(text=item.text, finish_reason=item.finish_reason,
                                    usage=convoy.Usage(10, 5))


def answer(text: str = GOOD, finish_reason: str = "stop") -> convoy.ModelResponse:
    return convoy.ModelResponse(text=text, finish_reason=finish_reason)


def e503() -> convoy.ModelError:
    return convoy.ModelError("503", retryable=True, status_code=503)


def e429(after: float = 1.0) -> convoy.ModelError:
    return convoy.ModelError("429", retryable=True, status_code=429, retry_after=after)


async def run_many(eng: convoy.Engine, agent: convoy.Agent[Any, Any], n: int) -> list[str]:
    return [(await eng.run(flow(agent), f"t{i}")).status for i in range(n)]


TIGHT: dict[str, Any] = {"window_type": "count", "window": 5, "minimum_calls": 5,
                         "wait_in_open": 3600}


# -- breakers: record and ignore --------------------------------------------------------------

async def test_by_default_a_breaker_counts_failures_of_the_downstream_not_rate_limits(
        engine_factory: Any, tmp_path: Path) -> None:
    # A 429 is the endpoint's flow control: counting it opened the breaker of an endpoint
    # that was only busy, refusing every call for wait_in_open (30 s) when it asked for 1 s.
    limited = Scripted(e429())
    breakers = Breakers(BreakerPolicy(**TIGHT), clock=FakeClock())
    agent = convoy.Agent(name="a", output_type=Label, model=limited, output_retries=0)
    await run_many(engine_factory(interceptors=[breakers]), agent, 10)
    assert limited.calls == 10 and breakers.breakers["model:sim:s"].state == "closed"
    failing = Scripted(e503(), name="sim:f")
    agent = convoy.Agent(name="b", output_type=Label, model=failing, output_retries=0)
    await run_many(engine_factory(db=tmp_path / "second.db", interceptors=[breakers]), agent, 10)
    assert failing.calls == 5 and breakers.breakers["model:sim:f"].state == "open"


async def test_a_breaker_ignores_what_its_policy_ignores(engine_factory: Any) -> None:
    failing = Scripted(e503())
    breakers = Breakers(BreakerPolicy(**TIGHT, ignore="server_error"), clock=FakeClock())
    agent = convoy.Agent(name="a", output_type=Label, model=failing, output_retries=0)
    assert await run_many(engine_factory(interceptors=[breakers]), agent, 10) == ["failed"] * 10
    b = breakers.breakers["model:sim:s"]
    assert failing.calls == 10 and b.state == "closed"
    assert b.failure_rate == 0.0  # ignored: neither a failure nor a success


async def test_a_breaker_records_what_its_policy_records(engine_factory: Any) -> None:
    # Count the 400s of a misconfigured deployment (by default the caller's mistake).
    bad = Scripted(convoy.ModelError("400", status_code=400))
    policy = BreakerPolicy(**TIGHT, record=("bad_request", convoy.ContextWindowExceeded))
    breakers = Breakers(policy, clock=FakeClock())
    agent = convoy.Agent(name="a", output_type=Label, model=bad, output_retries=0)
    await run_many(engine_factory(interceptors=[breakers]), agent, 10)
    assert bad.calls == 5 and breakers.breakers["model:sim:s"].state == "open"
    with pytest.raises(convoy.UserError, match="Did you mean 'bad_request'"):
        BreakerPolicy(record="bad_requests")  # type: ignore[arg-type]


async def test_a_breaker_can_count_an_answer_as_a_failure(engine_factory: Any) -> None:
    cut = Scripted(answer(GOOD, finish_reason="length"))
    policy = BreakerPolicy(**TIGHT, record_result=lambda r: r.finish_reason == "length")
    breakers = Breakers(policy, clock=FakeClock())
    agent = convoy.Agent(name="a", output_type=Label, model=cut)
    statuses = await run_many(engine_factory(interceptors=[breakers]), agent, 10)
    assert statuses == ["completed"] * 5 + ["failed"] * 5  # the answer is still returned
    assert cut.calls == 5 and breakers.breakers["model:sim:s"].state == "open"


# -- retries: retry_on, ignore, retry_on_result --------------------------------------------

class QuotaHiccup(Exception):
    """Not a Convoy error: terminal by default."""


async def test_a_retry_policy_says_which_failures_it_retries(engine_factory: Any,
                                                            tmp_path: Path) -> None:
    clock = FakeClock()
    # Only server errors: a timeout is not retried.
    m = Scripted(convoy.ModelError("slow", timeout=True), answer())
    retry = Retry(RetryPolicy(retry_on="server_error"), sleep=clock.sleep)
    agent = convoy.Agent(name="a", output_type=Label, model=m)
    assert await run_many(engine_factory(interceptors=[retry]), agent, 1) == ["failed"]
    assert m.calls == 1
    # An exception of your own, terminal by default, retried because the policy says so.
    m = Scripted(QuotaHiccup("try again"), answer(), name="sim:q")
    retry = Retry(RetryPolicy(retry_on=QuotaHiccup), sleep=clock.sleep)
    agent = convoy.Agent(name="b", output_type=Label, model=m)
    eng = engine_factory(db=tmp_path / "second.db", interceptors=[retry])
    assert await run_many(eng, agent, 1) == ["completed"]
    assert m.calls == 2


async def test_a_retry_policy_never_retries_what_it_ignores(engine_factory: Any) -> None:
    m = Scripted(e429(), answer())
    retry = Retry(RetryPolicy(ignore=("rate_limited", lambda e: "never" in str(e))),
                  sleep=FakeClock().sleep)
    agent = convoy.Agent(name="a", output_type=Label, model=m)
    assert await run_many(engine_factory(interceptors=[retry]), agent, 1) == ["failed"]
    assert m.calls == 1 and retry.retries == 0


async def test_a_retry_policy_can_retry_an_answer(engine_factory: Any,
                                                  tmp_path: Path) -> None:
    m = Scripted(answer("", "content_filter"), answer(), name="sim:r")
    retry = Retry(RetryPolicy(retry_on_result=lambda r: r.finish_reason == "content_filter"),
                  sleep=FakeClock().sleep)
    agent = convoy.Agent(name="a", output_type=Label, model=m)
    assert await run_many(engine_factory(interceptors=[retry]), agent, 1) == ["completed"]
    assert m.calls == 2 and retry.retries == 1
    # Out of attempts: the last answer is returned as it is.
    m = Scripted(answer("", "content_filter"), name="sim:r2")
    retry = Retry(RetryPolicy(max_attempts=3, retry_on_result=lambda r: not r.text),
                  sleep=FakeClock().sleep)
    agent = convoy.Agent(name="b", output_type=Label, model=m, output_retries=0)
    eng = engine_factory(db=tmp_path / "second.db", interceptors=[retry])
    assert await run_many(eng, agent, 1) == ["failed"]
    assert m.calls == 3


class Hiccup(Exception):
    """A tool's or an adapter's own error."""


class SmallHiccup(Hiccup):
    pass


def flaky_tool(first: Exception, calls: list[str]) -> convoy.Tool[Any, Any]:
    @convoy.tool
    def lookup() -> str:
        """Look it up (read-only, so idempotent)."""
        calls.append("lookup")
        if len(calls) == 1:
            raise first
        return "found"

    return lookup


async def run_tool_agent(engine_factory: Any, db: Path, first: Exception,
                         policy: RetryPolicy) -> tuple[str, list[str]]:
    calls: list[str] = []
    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "lookup"}]},
                                 {"output": {"label": "x"}}]})
    agent = convoy.Agent(name="a", output_type=Label, tools=[flaky_tool(first, calls)],
                         model=sim)
    eng = engine_factory(db=db, interceptors=[Retry(policy, sleep=FakeClock().sleep)])
    res = await eng.run(flow(agent), "t")
    return res.status, calls


@pytest.mark.parametrize(("raised", "retry_on", "retried"), [
    (TimeoutError("slow"), TimeoutError, True),        # the reviewer's case
    (TimeoutError("slow"), "timeout", True),           # a kind: as before
    (SmallHiccup("again"), Hiccup, True),              # a subclass of the class matches
    (ValueError("bad"), (KeyError, Hiccup), False),    # another class does not
    (ValueError("bad"), convoy.ToolError, True),       # the wrapper's own class still does
    (ValueError("bad"), lambda e: isinstance(e, convoy.ToolError), True),  # so do predicates
])
async def test_retry_on_a_class_matches_the_exception_the_tool_raised(
        engine_factory: Any, tmp_path: Path, raised: Exception, retry_on: Any,
        retried: bool) -> None:
    policy = RetryPolicy(retry_on=retry_on, initial_delay=0, max_delay=0)
    status, calls = await run_tool_agent(engine_factory, tmp_path / "t.db", raised, policy)
    assert status == "completed"  # a failed call is reported to the model, which answers
    assert len(calls) == (2 if retried else 1)


async def test_ignore_a_class_matches_the_exception_the_tool_raised(
        engine_factory: Any, tmp_path: Path) -> None:
    policy = RetryPolicy(ignore=TimeoutError, initial_delay=0, max_delay=0)
    status, calls = await run_tool_agent(engine_factory, tmp_path / "t.db",
                                         TimeoutError("slow"), policy)
    assert status == "completed" and calls == ["lookup"]  # by default it was retried


class Wrapping(convoy.Model):
    """An adapter that wraps its client's errors in ``ModelError`` (as the openai: one does):
    the first call fails with ``first``."""

    name = "sim:w"

    def __init__(self, first: Exception) -> None:
        self.first = first
        self.calls = 0

    async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
        self.calls += 1
        if self.calls == 1:
            try:
                raise self.first
            except Exception as e:
                raise convoy.ModelError(f"client: {e}") from e  # terminal by default
        return answer()


@pytest.mark.parametrize(("raised", "retry_on", "retried"), [
    (SmallHiccup("again"), Hiccup, True),
    (SmallHiccup("again"), (TimeoutError, "server_error"), False),
    (TimeoutError("slow"), TimeoutError, True),
])
async def test_retry_on_a_class_matches_the_exception_a_model_error_wraps(
        engine_factory: Any, raised: Exception, retry_on: Any, retried: bool) -> None:
    m = Wrapping(raised)
    retry = Retry(RetryPolicy(retry_on=retry_on, initial_delay=0, max_delay=0),
                  sleep=FakeClock().sleep)
    agent = convoy.Agent(name="a", output_type=Label, model=m)
    statuses = await run_many(engine_factory(interceptors=[retry]), agent, 1)
    assert statuses == (["completed"] if retried else ["failed"])
    assert m.calls == (2 if retried else 1)


async def test_retry_on_a_class_of_the_openai_client(engine_factory: Any,
                                                     servers: Any) -> None:
    openai = pytest.importorskip("openai")
    answers = iter([error(500), OK])
    server = servers(lambda now: next(answers))
    agent = convoy.Agent(name="a", output_type=Label,
                         model=f"openai:gpt-4o-mini?base_url={server.base_url()}")
    retry = Retry(RetryPolicy(retry_on=openai.InternalServerError, initial_delay=0,
                              max_delay=0), sleep=FakeClock().sleep)
    assert (await engine_factory(interceptors=[retry]).run(flow(agent), "t")).ok
    assert len(server.log) == 2


async def test_a_breaker_records_a_class_the_tool_raised(engine_factory: Any,
                                                         tmp_path: Path) -> None:
    calls: list[str] = []

    @convoy.tool
    def lookup() -> str:
        """Look it up."""
        calls.append("lookup")
        raise SmallHiccup("down")

    sim = convoy.SimModel({"a": [{"tool_calls": [{"name": "lookup"}]},
                                 {"output": {"label": "x"}}]})
    agent = convoy.Agent(name="a", output_type=Label, tools=[lookup], model=sim)
    for record, state in ((KeyError, "closed"), (Hiccup, "open")):
        breakers = Breakers(BreakerPolicy(**TIGHT, record=record), clock=FakeClock())
        eng = engine_factory(db=tmp_path / f"{state}.db", interceptors=[breakers])
        await run_many(eng, agent, 6)
        assert breakers.breakers["tool:lookup"].state == state, record


# -- typed fallbacks -----------------------------------------------------------------------

async def test_fallbacks_by_failure_kind(engine_factory: Any) -> None:
    long_ctx = Scripted(answer(), name="sim:long")
    other = Scripted(answer(), name="sim:other")
    general = Scripted(answer(), name="sim:general")
    models = {"sim:long": long_ctx, "sim:other": other, "sim:general": general}
    fb = Fallback({"*": ["sim:general"]}, by_kind={
        "context_window_exceeded": {"*": ["sim:long"]},
        "content_policy": {"a": ["sim:other"]}})
    eng = engine_factory(models=models, interceptors=[fb])

    async def outcome(error: BaseException, agent: str = "a") -> str:
        primary = Scripted(error, name="sim:primary")
        ag = convoy.Agent(name=agent, output_type=Label, model=primary)
        res = await eng.run(flow(ag), f"{agent}:{error}")
        return str(res.status)

    assert await outcome(convoy.ContextWindowExceeded("too long", status_code=400)) == "completed"
    assert long_ctx.calls == 1 and general.calls == 0  # terminal, yet it has a chain
    assert await outcome(convoy.ContentPolicyViolation("no", status_code=400)) == "completed"
    assert other.calls == 1
    # Agent b has no content-policy chain: terminal, and the general chain is for
    # retryable failures.
    assert await outcome(convoy.ContentPolicyViolation("no", status_code=400), "b") == "failed"
    assert await outcome(e503()) == "completed" and general.calls == 1
    with pytest.raises(convoy.UserError, match="unknown failure kind 'context_window'"):
        Fallback({}, by_kind={"context_window": {"*": ["sim:long"]}})  # type: ignore[dict-item]


# -- bursty 429s: rate limits are not failures ----------------------------------------------

async def test_rate_limited_retries_are_bounded_by_time_not_by_the_attempts(
        engine_factory: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    m = Scripted(*[e429(1.0)] * 6, answer())
    retry = Retry(RetryPolicy(max_attempts=4, retry_after_jitter=0), sleep=clock.sleep,
                  budget=RetryBudget(min_retries=10))  # a quiet budget allows only 5
    agent = convoy.Agent(name="a", output_type=Label, model=m)
    assert await run_many(engine_factory(interceptors=[retry]), agent, 1) == ["completed"]
    assert m.calls == 7 and clock.slept == [1.0] * 6
    # Other failures still count against max_attempts, and so does a 429 between them.
    m = Scripted(e503(), e429(1.0), e503(), e503(), answer(), name="sim:mixed")
    retry = Retry(RetryPolicy(max_attempts=4, initial_delay=0), sleep=clock.sleep)
    agent = convoy.Agent(name="b", output_type=Label, model=m)
    eng = engine_factory(db=tmp_path / "second.db", interceptors=[retry])
    assert await run_many(eng, agent, 1) == ["completed"]
    assert m.calls == 5  # 3 failures + 1 rate limit + the answer


async def test_a_call_waits_for_a_rate_limit_at_most_max_rate_limited_wait(
        engine_factory: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    m = Scripted(e429(10.0))
    retry = Retry(RetryPolicy(max_rate_limited_wait=30, retry_after_jitter=0),
                  sleep=clock.sleep)
    agent = convoy.Agent(name="a", output_type=Label, model=m)
    assert await run_many(engine_factory(interceptors=[retry]), agent, 1) == ["failed"]
    assert clock.slept == [10.0, 10.0, 10.0] and m.calls == 4
    m = Scripted(e429(1.0), name="sim:count")
    retry = Retry(RetryPolicy(max_attempts=2, max_rate_limited_wait=None), sleep=clock.sleep)
    agent = convoy.Agent(name="b", output_type=Label, model=m)
    eng = engine_factory(db=tmp_path / "second.db", interceptors=[retry])
    assert await run_many(eng, agent, 1) == ["failed"]
    assert m.calls == 2  # None: rate limits count as attempts, as before


def test_error_kind_refines_other_into_one_taxonomy() -> None:
    from convoy._errors import error_to_record
    from convoy.resilience import ERROR_KINDS, error_kind, error_kind_of

    assert ERROR_KINDS[:len(FAILURE_KINDS) - 1] == FAILURE_KINDS[:-1]
    assert ERROR_KINDS[-1] == "other"
    cases: dict[BaseException, str] = {
        convoy.ModelError("503", retryable=True, status_code=503): "server_error",
        convoy.ModelError("odd answer"): "provider_error",
        convoy.ToolError("the CRM said no"): "tool_error",
        convoy.ToolError("slow", timeout=True): "timeout",
        convoy.HandoffError("undeclared"): "handoff_invalid",
        convoy.AgentTurnsExhausted("out of turns"): "turns_exhausted",
        convoy.UnknownOutcomeError("crashed mid-write"): "unknown_outcome",
        convoy.StateConflict("stale", namespace="n", key="k", expected_version=1,
                             current_version=2): "conflict",
        convoy.WaitTimeout("no signal"): "wait_timeout",
        convoy.BudgetExhausted("spent"): "budget_exhausted",
        convoy.LoopDetected("ping-pong"): "loop_detected",
        convoy.LimitExceeded("max_steps"): "limit_exceeded",
        convoy.Escalated("a person"): "escalated",
        convoy.NonDeterminismError("changed"): "nondeterminism",
        convoy.StoreError("disk full"): "store_error",
        convoy.PolicyDenied("no"): "denied",
        asyncio.CancelledError(): "cancelled",
        ValueError("x"): "other",
    }
    for exc, kind in cases.items():
        assert error_kind(exc) == kind, exc
        assert kind in ERROR_KINDS
        # a session's journaled error record classifies the same
        assert error_kind_of(error_to_record(exc)) == kind, exc
    assert error_kind_of(None) is None
    # a cancelled session's record (its run ended by a cancel: no exception class)
    assert error_kind_of({"type": "Cancelled", "message": "cancelled"}) == "cancelled"
    # a user's own exception called ``Cancelled`` is not a cancel
    assert error_kind_of({"type": "Cancelled", "message": "x", "module": "shop.errors",
                          "qualname": "Cancelled"}) == "other"
    assert error_kind_of({"wake_at": 1.0, "wait_name": "ok"}) is None
