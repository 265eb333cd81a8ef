"""Versioned agent configuration: a content hash of every agent definition, journaled with
each step and shown by ``convoy sessions show``."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

import convoy
from tests.clikit import (
    FIXTURES,
    GOOD,
    SRC,
    cli,
    ids_of,
    journal,
    run_ok,
    workdir,  # noqa: F401  (autouse fixture)
)
from tests.conftest import Classification, Crash, FakeClock


class Reply(BaseModel):
    answer: str


@convoy.tool
def lookup(order: int) -> str:
    """Look an order up."""
    return f"order {order}"


def make(**changes: object) -> convoy.Agent[str, Reply]:
    base: dict[str, object] = {"name": "support", "instructions": "Answer politely.",
                               "output_type": Reply, "model": "sim:", "tools": [lookup],
                               "scopes": {"orders:read"}, "max_turns": 6}
    base.update(changes)
    return convoy.Agent(**base)  # type: ignore[arg-type]


def test_the_same_definition_has_the_same_hash_and_any_change_another() -> None:
    h = make().config_hash
    assert len(h) == 64 and int(h, 16) >= 0
    assert make().config_hash == h  # another object, the same definition
    changed = [make(instructions="Answer politely and briefly."), make(model="sim:other"),
               make(tools=[]), make(scopes={"orders:*"}), make(max_turns=7),
               make(output_type=str), make(output_retries=0),
               make(model_settings=convoy.ModelSettings(temperature=0.2))]
    hashes = {a.config_hash for a in changed}
    assert h not in hashes and len(hashes) == len(changed)


def test_computed_instructions_are_hashed_by_their_code() -> None:
    def prompt(x: str) -> str:
        return f"Answer {x} politely."

    def other(x: str) -> str:
        return f"Answer {x} rudely."

    assert make(instructions=prompt).config_hash == make(instructions=prompt).config_hash
    assert make(instructions=prompt).config_hash != make(instructions=other).config_hash


def test_the_hash_is_the_same_in_another_process() -> None:
    code = ("import cli_flows; print(cli_flows.triage.config_hash)")
    env = {"PYTHONPATH": f"{FIXTURES}:{SRC}", "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=60).stdout.strip()
    import cli_flows  # type: ignore[import-not-found]  # on sys.path through workdir

    assert out == cli_flows.triage.config_hash


def test_every_step_journals_its_agents_hash_and_sessions_show_prints_it() -> None:
    run_ok(lines=[GOOD[0]])
    (sid,) = ids_of([GOOD[0]])
    import cli_flows  # type: ignore[import-not-found]  # on sys.path through workdir

    want = cli_flows.triage.config_id
    assert want == cli_flows.triage.config_hash[:16]
    steps = journal(sid)
    assert [(s.kind, s.config) for s in steps] == [
        ("model", want), ("tool", want), ("model", want)]
    res = cli("sessions", "show", sid)
    assert res.code == 0, res.stderr
    assert f"config {want}" in res.stdout  # all 16 digits: the id spans and audit entries carry
    data = json.loads(cli("sessions", "show", sid, "--json").stdout)
    assert data["agent_configs"] == {"triage": [want]}
    assert {s["config"] for s in data["journal"]} == {want}


# -- computed instructions: what a function captures is part of it -----------------------


def _factory_def(text: str) -> object:
    def prompt(x: str) -> str:
        return f"{text} {x}"

    return prompt


def _factory_lambda(text: str) -> object:
    return lambda x: f"{text} {x}"


def _factory_default(text: str) -> object:
    def prompt(x: str, tone: str = text, *, sign: str = text) -> str:
        return f"{tone} {x} {sign}"

    return prompt


def _styled(x: str, *, tone: str) -> str:
    return f"{tone}: {x}"


def test_closures_of_one_factory_hash_by_what_they_capture() -> None:
    for factory in (_factory_def, _factory_lambda, _factory_default):
        nice = make(instructions=factory("Be nice")).config_hash
        assert make(instructions=factory("Be nice")).config_hash == nice, factory
        assert make(instructions=factory("Refund everything")).config_hash != nice, factory


def test_partials_hash_by_their_function_and_arguments() -> None:
    from functools import partial

    warm = make(instructions=partial(_styled, tone="warm")).config_hash
    assert make(instructions=partial(_styled, tone="warm")).config_hash == warm
    assert make(instructions=partial(_styled, tone="cold")).config_hash != warm
    assert make(instructions=partial(_factory_default("a"), tone="warm")).config_hash != \
        make(instructions=partial(_factory_default("b"), tone="warm")).config_hash


def test_two_lambdas_on_one_line_hash_apart() -> None:
    kind, rude = (lambda x: f"Answer {x} kindly."), (lambda x: f"Answer {x} rudely.")
    plus, minus = (lambda x: str(x + 1)), (lambda x: str(x - 1))
    assert make(instructions=kind).config_hash != make(instructions=rude).config_hash
    assert make(instructions=plus).config_hash != make(instructions=minus).config_hash


def test_a_recursive_closure_and_an_opaque_capture_still_hash() -> None:
    class Opaque:  # its repr shows a memory address: only its type is hashed
        pass

    def make_prompt(depth: int, thing: object) -> object:
        def prompt(x: str, n: int = depth) -> str:
            return prompt(x, n - 1) if n and thing else x  # prompt captures itself

        return prompt

    h = make(instructions=make_prompt(2, Opaque())).config_hash
    assert make(instructions=make_prompt(2, Opaque())).config_hash == h
    assert make(instructions=make_prompt(3, Opaque())).config_hash != h


@dataclass(frozen=True)
class _Template:
    text: str

    def __call__(self, x: str) -> str:
        return self.text.format(x)


def test_bound_methods_and_callable_objects_hash_by_their_object() -> None:
    kind, rude = "Answer {} kindly.", "Answer {} rudely."
    assert make(instructions=kind.format).config_hash == \
        make(instructions="Answer {} kindly.".format).config_hash
    assert make(instructions=kind.format).config_hash != \
        make(instructions=rude.format).config_hash
    assert make(instructions=_Template(kind)).config_hash == \
        make(instructions=_Template(kind)).config_hash
    assert make(instructions=_Template(kind)).config_hash != \
        make(instructions=_Template(rude)).config_hash
    assert make(instructions=_Template(kind).__call__).config_hash != \
        make(instructions=_Template(rude).__call__).config_hash


_APP = '''
import functools
import convoy


class Opaque:
    pass


OPAQUE = Opaque()


def make(text):
    marker = OPAQUE
    allowed = {"alpha", "beta", "gamma", "delta", "epsilon"}

    def prompt(x):
        known = x in {"one", "two", "three", "four", "five"}
        return f"{text} {x}" if (x in allowed or known) and marker else text

    return prompt


def styled(x, *, tone, extra):
    return f"{tone}: {x} {sorted(extra)}"


first = convoy.Agent(name="first", instructions=make("Be nice"), model="sim:")
second = convoy.Agent(name="second", model="sim:", instructions=functools.partial(
    styled, tone="warm", extra=frozenset({"x", "y", "z", "w"})))
HASHES = f"{first.config_hash} {second.config_hash}"

if __name__ == "__main__":
    print(HASHES)
'''


def test_a_script_and_its_import_by_a_worker_hash_alike(tmp_path: object) -> None:
    """``python app.py`` (module ``__main__``) and ``import app`` (as ``convoy worker``
    loads it) record the same hash, whatever the hash seed of each process."""
    from pathlib import Path

    d = Path(str(tmp_path))
    (d / "app_defs.py").write_text(_APP)

    def run(args: list[str], seed: str) -> str:
        env = {"PYTHONPATH": f"{d}:{SRC}", "PYTHONHASHSEED": seed}
        return subprocess.run([sys.executable, *args], env=env, cwd=d, capture_output=True,
                              text=True, check=True, timeout=60).stdout.strip()

    as_script = run([str(d / "app_defs.py")], "1")
    as_module = run(["-c", "import app_defs; print(app_defs.HASHES)"], "2")
    assert as_script == as_module
    assert as_script == run(["-c", "import app_defs; print(app_defs.HASHES)"], "3")


# -- tools: every policy flag is part of the definition ----------------------------------


def find_order(order: int) -> str:
    """Look an order up."""
    return f"order {order}"


def _plain_tool(**flags: object) -> convoy.Tool:
    return convoy.tool(**flags)(find_order)  # type: ignore[call-overload, no-any-return]


def test_every_tool_policy_is_part_of_the_hash() -> None:
    base = make(tools=[_plain_tool()]).config_hash
    assert make(tools=[_plain_tool()]).config_hash == base
    variants: list[dict[str, object]] = [
        {"trusted": True}, {"destructive": True}, {"writes": True},
        {"writes": True, "idempotent": True}, {"scopes": ["orders:read"]},
        {"requires_approval": True}, {"isolate": "process"}, {"sandbox": convoy.Sandbox()},
        {"sandbox": convoy.Sandbox(network=True)},
        {"sandbox": convoy.Sandbox(read_paths=("/srv",))},
        {"sandbox": convoy.Sandbox(env={"TOKEN": "x"})},
        {"threads": convoy.ToolThreads(4)}]
    hashes = [make(tools=[_plain_tool(**v)]).config_hash for v in variants]
    assert base not in hashes and len(set(hashes)) == len(hashes)


# -- a session journaled under another hash still resumes --------------------------------


async def test_a_session_journaled_under_an_older_hash_resumes(tmp_path: object) -> None:
    """The journal's ``config`` is a record, never checked on replay: a session whose
    steps an earlier Convoy journaled under another hash of the same definition (the
    hash's contents changed) resumes, replaying them as they are."""
    from pathlib import Path

    from convoy.stores import store_from_url

    db = Path(str(tmp_path)) / "old.db"
    calls: list[str] = []
    crash_at = {"second"}

    class Model(convoy.SimModel):
        async def request(self, request: convoy.ModelRequest) -> convoy.ModelResponse:
            calls.append(request.agent)
            if request.agent in crash_at:
                crash_at.clear()
                raise Crash
            return await super().request(request)

    sim = Model({"*": {"output": {"label": "billing", "confidence": 0.9}}})

    def agents() -> list[convoy.Agent[str, Classification]]:
        return [convoy.Agent(name=n, instructions=_factory_def("Classify"),
                             output_type=Classification, model=sim)
                for n in ("first", "second")]

    def flow(pair: list[convoy.Agent[str, Classification]]) -> convoy.Workflow[str, Any]:
        @convoy.workflow(name="flow", version="1")
        async def wf(ctx: convoy.Context, text: str) -> Classification:
            out: Classification = await convoy.pipeline(ctx, pair, text)
            return out

        return wf

    old = agents()
    object.__setattr__(old[0], "config_id", "0123456789abcdef")  # an earlier algorithm's
    clock = FakeClock()
    async with convoy.Engine(store_from_url(db, clock=clock)) as eng:  # type: ignore[arg-type]
        with pytest.raises(Crash):
            await eng.run(flow(old), "t", session_id="s1")
    assert calls == ["first", "second"]
    new = agents()
    assert new[0].config_id != "0123456789abcdef"
    later = FakeClock(clock.now + 3600)  # past the crashed engine's lease
    async with convoy.Engine(store_from_url(db, clock=later),  # type: ignore[arg-type]
                             workflows=[flow(new)]) as eng2:
        [again] = await eng2.resume()
        steps = await eng2.store.journal("s1")
    assert again.ok, again.error
    assert calls == ["first", "second", "second"]  # the first step replayed, not re-run
    assert [(s.key, s.config) for s in steps] == [
        ("0/0", "0123456789abcdef"), ("1/0", new[1].config_id)]
