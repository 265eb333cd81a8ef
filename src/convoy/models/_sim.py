"""The simulator model: seeded, scripted, with latency, token usage and injectable faults.

The script format is documented on :class:`SimModel`, the public name.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    NonNegativeFloat,
    NonNegativeInt,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from convoy._errors import ConvoyError, ModelError, UserError
from convoy._faults import MODEL_FAULTS, FaultRates
from convoy._seeding import seeded_rng
from convoy._text import short
from convoy.models._base import Model
from convoy.models._messages import ModelRequest, ModelResponse, ToolCall, Usage

Reply = Mapping[str, Any] | BaseModel | str | ModelResponse
ScriptFn = Callable[[ModelRequest], Reply]


@dataclass(frozen=True, kw_only=True, slots=True)
class Latency:
    """Simulated response time in seconds: ``fixed``, ``uniform`` or ``lognormal``."""

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    value: float = 0.0      # fixed: the latency; lognormal: the median
    low: float = 0.0        # uniform bounds
    high: float = 0.0
    sigma: float = 0.5      # lognormal shape

    def sample(self, rng: random.Random | None) -> float:
        """One latency in seconds; ``fixed`` (or no generator) returns ``value`` without drawing."""
        if self.kind == "fixed" or rng is None:
            return self.value
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return self.value * math.exp(rng.gauss(0.0, self.sigma))


@dataclass(frozen=True, kw_only=True, slots=True)
class Faults(FaultRates):
    """Probabilities (0..1) of each fault the simulator answers with, drawn independently
    per call in the order of :data:`~convoy.chaos.MODEL_FAULTS`.

    The kinds, their parameters and ``Faults.parse("server_error=0.05,...")`` are those of
    :class:`convoy.chaos.FaultSpec` (see :class:`~convoy._faults.FaultRates`). Here a
    ``timeout`` fails at once unless ``hang_seconds`` is set, and ``tool_failure`` is not
    available: the simulator only answers model calls.
    """

    hang_seconds: float = 0.0
    retry_after: float = 1.0

    def __post_init__(self) -> None:
        FaultRates.__post_init__(self)  # zero-argument super() fails in slotted dataclasses
        if self.tool_failure:
            raise UserError("Faults(tool_failure=...): the simulator only answers model "
                            "calls; inject tool failures with convoy.chaos.FaultInjector")


class SimModel(Model):
    """A seeded, scripted model: test and load-test your agents without a provider.

    Every random choice (latency, faults) is drawn from a generator seeded with ``(seed,
    session, step key, attempt, agent)``, so the same seed gives the same behaviour however
    many sessions run concurrently and in whatever order.

    **The script.** ``script`` is one of:

    * a mapping of agent name to that agent's script, with ``"*"`` for every other agent::

          SimModel({
              "triage": lambda req: {"output": {"category": "billing"}},
              "billing": [{"tool_calls": [{"name": "lookup", "arguments": {"id": 7}}]},
                          {"output": {"answer": "refunded"}}],
              "*": {"text": "ok"},
          })

    * a function of the :class:`~convoy.ModelRequest` (``req.agent``, ``req.messages``,
      ``req.tools``, ``req.output_schema``...) that returns an answer, for every agent;
    * a path to a scenario file (below); or ``None``.

    An agent's script is an answer, a function of the request returning an answer, or a
    list of these: one per turn, where the turn is the number of assistant messages
    already in the agent's conversation (tool results and repair prompts start a new
    turn), and the last one repeats. An agent without a script gets a minimal answer
    that satisfies its output schema (or the text ``"[agent] ok"``).

    **An answer** is a dict with one of these keys, a Pydantic model (its JSON is the
    answer), a plain string (a text answer) or a :class:`~convoy.ModelResponse`::

        {"output": {...}}                                  # final structured output
        {"text": "..."}                                    # final free text
        {"tool_calls": [{"name": "lookup", "arguments": {...}}, ...]}
        {"handoff": "billing", "payload": {...}}           # = a transfer_to_billing call
        {"delegate": "billing", "payload": {...}}          # call the worker agent billing
        {"error": "rate_limit"}                            # a fault, as in Faults below
        {"error": {"message": "bad key", "status_code": 401, "retryable": False,
                   "retry_after": None}}                   # a ModelError

    ``tool_calls`` run in one turn (workers in parallel). An ``error`` string names a
    fault kind of :data:`~convoy.chaos.MODEL_FAULTS`: ``timeout``, ``rate_limit`` and
    ``server_error`` raise a retryable :class:`~convoy.ModelError`, the others answer
    badly (``malformed``, ``schema_invalid``, ``undeclared_tool``, ...). An ``error``
    mapping raises a :class:`~convoy.ModelError`, retryable by default for status 429
    and 5xx.

    **Scenario files** (``SimModel("scenario.yaml")`` or the model ``"sim:scenario.yaml"``)
    are YAML or JSON with the keys ``seed``, ``latency`` (seconds, or ``{kind: uniform,
    low: 0.1, high: 0.5}`` / ``{kind: lognormal, value: 0.3, sigma: 0.5}``), ``usage``
    (``[input_tokens, output_tokens]`` per call), ``faults`` (rates, as in
    :class:`Faults`) and ``agents`` (the mapping above, without functions)::

        seed: 7
        latency: {kind: uniform, low: 0.05, high: 0.2}
        faults: {server_error: 0.05, rate_limit: 0.02}
        agents:
          triage: {output: {category: billing}}
          billing:
            - tool_calls: [{name: lookup, arguments: {id: 7}}]
            - output: {answer: refunded}
          "*": {text: ok}

    Args:
        script: the script, as above.
        seed: seeds every random choice.
        latency: seconds per call, or a :class:`Latency` distribution.
        usage: fixed ``(input_tokens, output_tokens)`` per call; default estimates ~4
            characters per token.
        faults: what to inject at random, see :class:`Faults`.
        name: the ``"sim:..."`` name used for pricing and metrics.
        sleep: how the latency is waited (default ``asyncio.sleep``); a test gives its fake
            clock's sleep, so simulated latency moves simulated time.
    """

    def __init__(self, script: ScriptFn | Mapping[str, Any] | str | Path | None = None, *,
                 seed: int = 0, latency: float | Latency = 0.0,
                 usage: tuple[int, int] | None = None, faults: Faults | None = None,
                 name: str = "sim:default",
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.name = name
        self.sleep = sleep
        self.calls = 0
        self.calls_by_agent: dict[str, int] = {}
        if isinstance(script, str | Path):
            scenario = load_scenario(script)
            script = scenario.get("agents", {})
            seed = int(scenario.get("seed", seed))
            if "latency" in scenario:
                latency = _latency(scenario["latency"])
            if "usage" in scenario:
                u = scenario["usage"]
                usage = (int(u[0]), int(u[1])) if isinstance(u, list | tuple) else \
                    (int(u["input"]), int(u["output"]))
            if "faults" in scenario:
                faults = Faults.from_mapping(scenario["faults"])
        self._fn: ScriptFn | None = None
        self._table: Mapping[str, Any] = {}
        if callable(script):
            self._fn = script
        elif isinstance(script, Mapping):
            self._table = script
        self.seed = seed
        self.latency = latency if isinstance(latency, Latency) else Latency(value=float(latency))
        lat = self.latency
        if not all(0 <= v < math.inf for v in (lat.value, lat.low, lat.high, lat.sigma)):
            # (NaN compares false: refused too; an infinite one answered never)
            raise UserError(f"SimModel latency must be finite seconds >= 0, got value="
                            f"{lat.value}, low={lat.low}, high={lat.high}, sigma={lat.sigma}")
        self.usage = usage
        self.faults = faults or Faults()
        self._random = self.faults.any or self.latency.kind != "fixed"

    def rng(self, req: ModelRequest) -> random.Random:
        """The generator for one call, seeded by ``(seed, session, step key, attempt, agent)`` so
        a call behaves the same however sessions interleave."""
        return seeded_rng(self.seed, req.session_id, req.step_key, req.attempt, req.agent)

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        agent = request.agent
        self.calls_by_agent[agent] = self.calls_by_agent.get(agent, 0) + 1
        rng = self.rng(request) if self._random else None
        delay = self.latency.sample(rng)
        kind, slow = self._draw(request, rng) if rng is not None and self.faults.any else \
            (None, False)
        if slow:
            delay += self.faults.slow_seconds
        if delay > 0:
            await (self.sleep or asyncio.sleep)(delay)
        resp = await self._fault(request, kind) if kind is not None else None
        if resp is None:
            reply = self._reply(request)
            resp = await self._error(request, reply["error"]) if (
                isinstance(reply, Mapping) and "error" in reply) else to_response(reply, request)
        resp.model = self.name
        if self.usage is not None:
            resp.usage = Usage(*self.usage)
        else:
            resp.usage = estimate_usage(request, resp)
        return resp

    def _reply(self, req: ModelRequest) -> Reply:
        entry: Any = self._fn if self._fn is not None else \
            self._table.get(req.agent, self._table.get("*"))
        if entry is None:
            return {"output": example_for(req.output_schema)} if req.output_schema else \
                {"text": f"[{req.agent}] ok"}
        if isinstance(entry, list):
            if not entry:
                raise UserError(f"sim script for agent {req.agent!r} is an empty list")
            turn = sum(1 for m in req.messages if m.role == "assistant")
            entry = entry[min(turn, len(entry) - 1)]
        if callable(entry):
            try:
                entry = entry(req)
            except ConvoyError:
                raise
            except Exception as e:
                raise UserError(f"the sim script of {self.name!r} raised {type(e).__name__} for "
                                f"agent {req.agent!r} at step {req.step_key}: {e}") from e
        return entry  # type: ignore[no-any-return]

    async def _error(self, req: ModelRequest, spec: Any) -> ModelResponse:
        """The answer ``{"error": spec}``: a fault kind, or a :class:`ModelError`."""
        if isinstance(spec, str):
            if spec not in MODEL_FAULTS:
                raise UserError(f"sim error {spec!r} for agent {req.agent!r} is not a model "
                                f"fault; use one of {', '.join(MODEL_FAULTS)}, or a mapping "
                                "with message, status_code, retryable and retry_after")
            return await self._fault(req, spec)
        if not isinstance(spec, Mapping):
            raise UserError(f"sim error for agent {req.agent!r} must be a fault name or a "
                            f"mapping, got {spec!r}")
        status = spec.get("status_code")
        retryable = spec.get("retryable", status is not None and (status == 429 or status >= 500))
        raise ModelError(f"{self.name}: {spec.get('message', 'simulated model error')}",
                         retryable=bool(retryable), status_code=status,
                         retry_after=spec.get("retry_after"))

    def _draw(self, req: ModelRequest, rng: random.Random) -> tuple[str | None, bool]:
        """The model fault (or ``None``) and whether the call is slow."""
        f = self.faults
        slow = bool(f.slow) and rng.random() < f.slow
        for kind in MODEL_FAULTS:
            if rng.random() < getattr(f, kind) and (kind != "schema_invalid"
                                                    or req.output_schema):
                return kind, slow
        return None, slow

    async def _fault(self, req: ModelRequest, kind: str) -> ModelResponse:
        f = self.faults
        if kind == "timeout":
            if f.hang_seconds > 0:
                await asyncio.sleep(f.hang_seconds)
            raise ModelError(f"{self.name}: simulated timeout for agent {req.agent!r}",
                             timeout=True)
        if kind == "rate_limit":
            raise ModelError(f"{self.name}: simulated HTTP 429 rate limit", retryable=True,
                             status_code=429, retry_after=f.retry_after)
        if kind == "server_error":
            raise ModelError(f"{self.name}: simulated HTTP 503 server error", retryable=True,
                             status_code=503)
        if kind == "malformed":
            return ModelResponse(text='{"truncated": ', finish_reason="length")
        if kind == "schema_invalid":
            return ModelResponse(text=json.dumps({"unexpected": "field"}))
        if kind == "undeclared_tool":
            return ModelResponse(tool_calls=[ToolCall("call_sim_x", "no_such_tool", "{}")])
        if kind == "undeclared_handoff":
            return ModelResponse(tool_calls=[ToolCall("call_sim_h", "transfer_to_nobody",
                                                      "{}")])
        raise AssertionError(f"the simulator does not implement model fault {kind!r}")

def to_response(reply: Reply, req: ModelRequest) -> ModelResponse:
    """Turn a script reply into a :class:`ModelResponse`."""
    if isinstance(reply, ModelResponse):
        return reply
    if isinstance(reply, BaseModel):
        return ModelResponse(text=reply.model_dump_json(), finish_reason="stop")
    if isinstance(reply, str):
        return ModelResponse(text=reply, finish_reason="stop")
    if "output" in reply:
        out = reply["output"]
        text = out.model_dump_json() if isinstance(out, BaseModel) else json.dumps(out)
        return ModelResponse(text=text, finish_reason="stop")
    if "text" in reply:
        return ModelResponse(text=str(reply["text"]), finish_reason="stop")
    n = sum(1 for m in req.messages if m.role == "assistant")
    if "tool_calls" in reply:
        calls = [ToolCall(f"call_{n}_{i}", str(c["name"]), _args(c.get("arguments", {})))
                 for i, c in enumerate(reply["tool_calls"])]
        return ModelResponse(tool_calls=calls, finish_reason="tool_calls")
    for key, prefix in (("handoff", "transfer_to_"), ("delegate", "")):
        if key in reply:
            return ModelResponse(tool_calls=[ToolCall(f"call_{n}", prefix + str(reply[key]),
                                                      _args(reply.get("payload", {})))],
                                 finish_reason="tool_calls")
    raise UserError(f"sim reply for agent {req.agent!r} must have one of output, text, "
                    f"tool_calls, handoff, delegate or error; got keys {sorted(reply)}")


def _args(a: Any) -> str:
    return a if isinstance(a, str) else json.dumps(a)


def estimate_usage(req: ModelRequest, resp: ModelResponse) -> Usage:
    chars_in = sum(len(m.content or "") for m in req.messages)
    chars_out = len(resp.text or "") + sum(len(c.arguments) + len(c.name)
                                           for c in resp.tool_calls)
    return Usage(max(1, chars_in // 4), max(1, chars_out // 4))


def example_for(schema: Mapping[str, Any] | None, defs: Mapping[str, Any] | None = None) -> Any:
    """A minimal value that satisfies a JSON schema (for unscripted sim agents)."""
    if not schema:
        return {}
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return example_for(defs[str(schema["$ref"]).rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example_for(schema[key][0], defs)
    t = schema.get("type", "object")
    if isinstance(t, list):
        t = t[0]
    if t == "object":
        props = schema.get("properties", {})
        return {k: example_for(v, defs) for k, v in props.items()
                if k in schema.get("required", props)}
    if t == "array":
        return [example_for(schema["items"], defs)] * schema.get("minItems", 0)
    if t == "string":
        return "sim" if schema.get("minLength", 0) <= 3 else "s" * schema["minLength"]
    if t in ("integer", "number"):
        v = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return v + (1 if "exclusiveMinimum" in schema else 0)
    if t == "boolean":
        return False
    return None


def _latency(spec: Any) -> Latency:
    if isinstance(spec, int | float):
        return Latency(value=float(spec))
    if isinstance(spec, Mapping):
        return Latency(**spec)
    raise UserError(f"scenario latency must be a number or a mapping, got {spec!r}")


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML scenario file; errors name the file and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"sim scenario file {str(p)!r} does not exist")
    try:
        text = p.read_text()
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise UserError(f"sim scenario {str(p)!r} is not valid JSON: {e.msg} at line "
                        f"{e.lineno}, column {e.colno}") from None
    except yaml.YAMLError as e:
        raise UserError(f"sim scenario {str(p)!r} is not valid YAML: {_yaml_problem(e)}"
                        ) from None
    if not isinstance(data, dict):
        raise UserError(f"sim scenario {str(p)!r} must be a mapping with an 'agents' key")
    unknown = set(data) - {"seed", "latency", "usage", "faults", "agents"}
    if unknown:
        raise UserError(f"sim scenario {str(p)!r} has unknown keys {sorted(unknown)}; allowed: "
                        "seed, latency, usage, faults, agents")
    for key, (check, should_be) in _SETTINGS.items():
        if key in data:
            try:
                check.validate_python(data[key])
            except ValidationError:
                raise UserError(f"sim scenario {str(p)!r}: {key} should be {should_be}; got "
                                f"{short(repr(data[key]), 60)}") from None
    agents = data.get("agents", {})
    if not isinstance(agents, dict):
        raise UserError(f"sim scenario {str(p)!r}: 'agents' must map agent names to replies")
    for name, script in agents.items():
        for i, answer in enumerate(script if isinstance(script, list) else [script]):
            where = f"agents.{name}" + (f"[{i}]" if isinstance(script, list) else "")
            why = _not_an_answer(answer)
            if why is not None:
                raise UserError(f"sim scenario {str(p)!r}: {where}: {why}")
        if script == []:
            raise UserError(f"sim scenario {str(p)!r}: agents.{name} is an empty list: give "
                            "one answer per turn")
    return data


class _Usage(BaseModel):
    input: NonNegativeInt
    output: NonNegativeInt


#: How each setting of a scenario file is checked, and what it should be.
_SETTINGS: dict[str, tuple[TypeAdapter[Any], str]] = {
    "seed": (TypeAdapter(StrictInt), "a whole number"),
    "latency": (TypeAdapter(NonNegativeFloat | Latency), "seconds (>= 0), or a mapping "
                "{kind: fixed|uniform|lognormal, value, low, high, sigma}"),
    "usage": (TypeAdapter(tuple[NonNegativeInt, NonNegativeInt] | _Usage),
              "[input_tokens, output_tokens], or {input: N, output: N} (whole numbers >= 0)"),
    "faults": (TypeAdapter(dict[str, float]), "a mapping of fault kinds to rates"),
}

#: The keys of a scripted answer (one of them), and what may go with one.
_ANSWER_KEYS = ("output", "text", "tool_calls", "handoff", "delegate", "error")


def _not_an_answer(answer: Any) -> str | None:
    """Why ``answer`` (from a scenario file) is not a scripted answer, ``None`` if it is."""
    if isinstance(answer, str):
        return None
    if not isinstance(answer, dict):
        return (f"an answer is a mapping with one of {', '.join(_ANSWER_KEYS)}, or a text; "
                f"got {short(repr(answer), 60)}")
    keys = [k for k in _ANSWER_KEYS if k in answer]
    extra = set(answer) - set(_ANSWER_KEYS) - ({"payload"} if set(keys) & {
        "handoff", "delegate"} else set())
    if len(keys) != 1 or extra:
        return (f"an answer has exactly one of {', '.join(_ANSWER_KEYS)} (and 'payload' with "
                f"handoff or delegate); got keys {sorted(map(str, answer))}")
    key = keys[0]
    value = answer[key]
    if key == "tool_calls" and not (isinstance(value, list) and value and all(
            isinstance(c, dict) and isinstance(c.get("name"), str)
            and isinstance(c.get("arguments", {}), dict | str) for c in value)):
        return ("tool_calls is a list of {name: TOOL, arguments: {...}}; got "
                f"{short(repr(value), 60)}")
    if key in ("handoff", "delegate") and not isinstance(value, str):
        return f"{key} names an agent; got {short(repr(value), 60)}"
    if key == "error" and not (value in MODEL_FAULTS or isinstance(value, dict)):
        return (f"error is one of {', '.join(MODEL_FAULTS)}, or a mapping with message, "
                f"status_code, retryable and retry_after; got {short(repr(value), 60)}")
    return None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what, and where."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"
