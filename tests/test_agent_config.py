"""Versioned agent configuration: a content hash of every agent definition, journaled with
each step and shown by ``convoy sessions show``."""

from __future__ import annotations

import json
import subprocess
import sys

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
    assert f"config {want[:12]}" in res.stdout
    data = json.loads(cli("sessions", "show", sid, "--json").stdout)
    assert data["agent_configs"] == {"triage": [want]}
    assert {s["config"] for s in data["journal"]} == {want}
