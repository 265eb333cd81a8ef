"""The simulator is public API: scripts, scenario files, latency, usage, seeded faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import convoy
from convoy import ModelRequest


def req(agent: str = "a", key: str = "0/0", session: str = "s", **kw: Any) -> ModelRequest:
    return ModelRequest(messages=[convoy.Message(role="user", content="hello there")],
                        agent=agent, step_key=key, session_id=session, **kw)


async def test_scripts_by_agent_and_turn() -> None:
    sim = convoy.SimModel({"a": [{"text": "first"}, {"text": "second"}], "*": {"text": "any"}})
    assert (await sim.request(req())).text == "first"
    r = req()
    r.messages.append(convoy.Message(role="assistant", content="first"))
    assert (await sim.request(r)).text == "second"
    assert (await sim.request(req(agent="zzz"))).text == "any"


async def test_unscripted_agents_get_a_schema_valid_answer() -> None:
    schema = {"type": "object", "properties": {
        "category": {"enum": ["billing", "tech"]}, "n": {"type": "integer", "minimum": 3},
        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["category", "n"]}
    resp = await convoy.SimModel().request(req(output_schema=schema))
    assert resp.text == '{"category": "billing", "n": 3}'


async def test_scenario_file(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("seed: 3\nusage: [7, 3]\nagents:\n  a:\n    - output: {x: 1}\n")
    sim = convoy.infer_model(f"sim:{f}")
    assert isinstance(sim, convoy.SimModel) and sim.seed == 3
    resp = await sim.request(req())
    assert resp.text == '{"x": 1}' and (resp.usage.input_tokens, resp.usage.output_tokens) == (7, 3)


def test_bad_scenario_files_say_what_is_wrong(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("agents: [1, 2]\n")
    with pytest.raises(convoy.UserError, match="'agents' must map"):
        convoy.SimModel(f)
    f.write_text("agentz: {}\n")
    with pytest.raises(convoy.UserError, match="unknown keys \\['agentz'\\]"):
        convoy.SimModel(f)
    f.write_text("agents: {a: [unclosed\n")
    with pytest.raises(convoy.UserError, match=r"not valid YAML: .* at line 2, column 1$"):
        convoy.SimModel(f)
    j = tmp_path / "s.json"
    j.write_text('{"agents": ')
    with pytest.raises(convoy.UserError, match=r"not valid JSON: .* at line 1, column 12$"):
        convoy.SimModel(j)
    # Each agent's script is checked when the file is read, not when a session asks it.
    for script, said in [
            ("5", "agents.triage: an answer is a mapping with one of output, text, "
                  "tool_calls, handoff, delegate, error, or a text; got 5"),
            ("[{text: a}, 7]", r"agents.triage\[1\]: an answer is a mapping"),
            ("{text: a, output: b}", r"exactly one of .*; got keys \['output', 'text'\]"),
            ("{tool_calls: [{arguments: {}}]}", "tool_calls is a list of"),
            ("{handoff: [b]}", "handoff names an agent"),
            ("{error: nope}", "error is one of timeout, "),
            ("[]", "agents.triage is an empty list"),
            ("{text: a, payload: {}}", "exactly one of")]:
        f.write_text(f"agents:\n  triage: {script}\n")
        with pytest.raises(convoy.UserError, match=said):
            convoy.SimModel(f)
    for setting, said in [("seed: abc", "seed should be a whole number; got 'abc'"),
                          ("usage: [1, -2]", "usage should be"),
                          ("latency: {kind: weird}", "latency should be"),
                          ("faults: 3", "faults should be")]:
        f.write_text(setting + "\n")
        with pytest.raises(convoy.UserError, match=said):
            convoy.SimModel(f)
    f.write_text("agents:\n  t: {handoff: b, payload: {x: 1}}\n  '*': hello\n"
                 "usage: {input: 3, output: 4}\nlatency: {kind: uniform, low: 0, high: 0}\n")
    convoy.SimModel(f)  # (every form the docstring shows is accepted)
    with pytest.raises(convoy.UserError, match="does not exist"):
        convoy.infer_model("sim:/no/such/file.yaml")
    with pytest.raises(convoy.UserError, match="probability"):
        convoy.Faults(timeout=1.5)


async def outcomes(seed: int, n: int = 300) -> list[str]:
    sim = convoy.SimModel(seed=seed, faults=convoy.Faults(
        timeout=0.05, rate_limit=0.05, server_error=0.05, malformed=0.05,
        schema_invalid=0.05, undeclared_tool=0.05, undeclared_handoff=0.05))
    out = []
    for i in range(n):
        try:
            r = await sim.request(req(key=f"{i}/0", output_schema={"type": "object"}))
            out.append(r.text or r.tool_calls[0].name)
        except convoy.ModelError as e:
            out.append(f"{e.status_code}:{e.retryable}")
    return out


async def test_faults_are_seeded_and_all_kinds_occur() -> None:
    a, b, c = await outcomes(1), await outcomes(1), await outcomes(2)
    assert a == b and a != c
    kinds = set(a)
    assert {"None:True", "429:True", "503:True", '{"truncated": ', "no_such_tool",
            "transfer_to_nobody", '{"unexpected": "field"}', "{}"} <= kinds
    share_ok = a.count("{}") / len(a)
    assert 0.55 < share_ok < 0.85  # ~ (0.95)^7 = 0.70


async def test_latency_distribution_is_seeded() -> None:
    lat = convoy.Latency(kind="lognormal", value=0.001, sigma=0.5)
    sim = convoy.SimModel(seed=1, latency=lat)
    xs = [lat.sample(sim.rng(req(key=str(i)))) for i in range(200)]
    ys = [lat.sample(sim.rng(req(key=str(i)))) for i in range(200)]
    assert xs == ys and min(xs) > 0 and len(set(xs)) == 200


async def test_estimated_usage_and_rate_limit_retry_after() -> None:
    sim = convoy.SimModel({"a": {"text": "x" * 40}}, faults=convoy.Faults(rate_limit=1.0,
                                                                           retry_after=2.5))
    with pytest.raises(convoy.ModelError) as ei:
        await sim.request(req())
    assert ei.value.status_code == 429 and ei.value.retry_after == 2.5
    resp = await convoy.SimModel({"a": {"text": "x" * 40}}).request(req())
    assert resp.usage.output_tokens == 10 and resp.usage.input_tokens == 2


async def test_functions_lists_and_mappings_as_values_of_a_script() -> None:
    def billing(r: ModelRequest) -> Any:
        return {"text": f"billing saw {r.messages[-1].content}"}

    sim = convoy.SimModel({
        "triage": lambda r: {"output": {"category": "billing", "turn": len(r.messages)}},
        "billing": [billing, {"text": "second"}],
        "*": {"text": "anyone else"},
    })
    assert (await sim.request(req(agent="triage"))).text == '{"category": "billing", "turn": 1}'
    assert (await sim.request(req(agent="billing"))).text == "billing saw hello there"
    r = req(agent="billing")
    r.messages.append(convoy.Message(role="assistant", content="first"))
    assert (await sim.request(r)).text == "second"
    assert (await sim.request(req(agent="other"))).text == "anyone else"


async def test_a_script_function_that_raises_names_the_agent() -> None:
    sim = convoy.SimModel({"a": lambda r: 1 / 0})
    with pytest.raises(convoy.UserError, match=r"ZeroDivisionError for agent 'a'"):
        await sim.request(req())


async def test_error_answers_raise_model_errors() -> None:
    sim = convoy.SimModel({"a": [{"error": "rate_limit"}, {"text": "ok"}],
                           "b": {"error": {"message": "bad key", "status_code": 401}}})
    with pytest.raises(convoy.ModelError) as info:
        await sim.request(req())
    assert info.value.retryable and info.value.status_code == 429
    with pytest.raises(convoy.ModelError, match="bad key") as info:
        await sim.request(req(agent="b"))
    assert not info.value.retryable and info.value.status_code == 401
    with pytest.raises(convoy.UserError, match=r"'nope'.*rate_limit"):
        await convoy.SimModel({"a": {"error": "nope"}}).request(req())


def test_the_public_docstring_documents_the_script_format() -> None:
    doc = convoy.SimModel.__doc__ or ""
    for word in ('"*"', "output", "text", "tool_calls", "error", "handoff", "delegate",
                 "ModelRequest", "seed", "latency", "usage", "faults", "agents", "turn"):
        assert word in doc, word
