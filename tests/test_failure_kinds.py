"""What counts as a failure is the user's to say (issue 8, item 11): failure kinds, record
and ignore predicates per breaker and per retry policy, typed fallbacks by failure kind,
with today's classification as the default."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from convoy._errors import error_from_record
from convoy.resilience import (
    FAILURE_KINDS,
    RateLimited,
    classify,
    failure_kind,
    is_downstream_failure,
)

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
