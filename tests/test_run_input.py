"""``Engine.run``'s input is a Python value of the workflow's input type: a string is a
string, not JSON text, where the type takes one (``Optional[str]``, a ``Literal``, ``Any``);
JSON text is still read where only it can be meant (a model, a list, a dict)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import convoy


class Ticket(BaseModel):
    text: str


@convoy.workflow(name="maybe_text")
async def maybe_text(ctx: convoy.Context, s: str | None) -> str:
    return repr(s)


@convoy.workflow(name="queue")
async def queue(ctx: convoy.Context, q: Literal["billing", "tech"]) -> str:
    return q


@convoy.workflow(name="anything")
async def anything(ctx: convoy.Context, value: Any) -> str:
    return repr(value)


@convoy.workflow(name="ticket")
async def ticket(ctx: convoy.Context, t: Ticket) -> str:
    return t.text


@convoy.workflow(name="numbers")
async def numbers(ctx: convoy.Context, xs: list[int]) -> int:
    return sum(xs)


async def test_a_string_is_a_string_where_the_input_type_takes_one(tmp_path: Path) -> None:
    async with convoy.Engine(tmp_path / "c.db") as engine:
        assert (await engine.run(maybe_text, "hello")).output == "'hello'"
        assert (await engine.run(maybe_text, "null")).output == "'null'"  # (not None)
        assert (await engine.run(maybe_text, None)).output == "None"
        assert (await engine.run(queue, "billing")).output == "billing"
        assert (await engine.run(anything, "hello")).output == "'hello'"
        assert (await engine.run(anything, '{"n": 1}')).output == "'{\"n\": 1}'"


async def test_json_text_is_read_where_only_it_can_be_meant(tmp_path: Path) -> None:
    async with convoy.Engine(tmp_path / "c.db") as engine:
        assert (await engine.run(ticket, '{"text": "charged twice"}')).output == \
            "charged twice"
        assert (await engine.run(numbers, "[1, 2, 3]")).output == 6
        # Bytes are JSON text (unless the type takes bytes): not JSON, said so.
        assert (await engine.run(anything, b'{"n": 1}')).output == "{'n': 1}"
        with pytest.raises(convoy.UserError, match="Invalid JSON"):
            await engine.run(ticket, b"\xff")


async def test_the_chaos_experiment_reads_inputs_as_the_engine_does() -> None:
    """The review of stop 56: a chaos experiment still read every string as JSON."""
    from convoy.chaos._experiment import _input_lines

    assert _input_lines(maybe_text, ["hello", "null"]) == ['"hello"', '"null"']
    assert _input_lines(numbers, ["[1, 2]"]) == ["[1,2]"]


async def test_a_string_that_is_not_the_type_says_what_was_expected(tmp_path: Path) -> None:
    async with convoy.Engine(tmp_path / "c.db") as engine:
        with pytest.raises(convoy.UserError, match="input does not match") as info:
            await engine.run(ticket, "I was charged twice")
        assert "Invalid JSON" not in str(info.value), info.value
        with pytest.raises(convoy.UserError, match="text") as info:
            await engine.run(ticket, '{"txt": "typo"}')  # (JSON: its own mismatch said)
        with pytest.raises(convoy.UserError, match="input does not match"):
            await engine.run(queue, "sales")
