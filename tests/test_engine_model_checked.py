"""``Engine(model="provider:model")`` makes the model when the engine opens: a missing API
key or a bad model string is one error there, before any session is created, not a
failed session each."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

import convoy
from convoy.resilience import Deployment, Deployments
from convoy.stores import SessionFilter, SQLiteStore


class Reply(BaseModel):
    text: str


echo = convoy.Agent(name="echo", output_type=Reply)  # no model of its own: the engine's


@convoy.workflow(name="test_engine_model_checked:shout")
async def shout(ctx: convoy.Context, text: str) -> Reply:
    out: Reply = await ctx.run(echo, text)
    return out


async def test_a_model_that_cannot_be_made_fails_the_open_and_creates_no_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for spec, said in (("openai:gpt-4o-mini", "needs an API key: set OPENAI_API_KEY"),
                       ("gpt-4o-mini", "must look like 'provider:model'"),
                       ("openai:m?timeout=0", "a number > 0")):
        engine = convoy.Engine(SQLiteStore(tmp_path / "c.db"), model=spec)
        with pytest.raises(convoy.UserError, match=said):
            async with engine:
                await engine.run(shout, "a")
    async with convoy.Engine(SQLiteStore(tmp_path / "c.db")) as engine:
        assert await engine.store.list_sessions(SessionFilter()) == []


async def test_a_model_the_engine_is_given_or_a_route_names_is_not_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    sim = convoy.SimModel()
    async with convoy.Engine(tmp_path / "a.db", models={"mine:fast": sim},
                             model="mine:fast") as engine:
        assert (await engine.run(shout, "a")).ok
    # A route the deployments interceptor registers when the engine opens: its key is read
    # at the first call, as the deployments document
    routes = Deployments([Deployment(name="east", model="openai:gpt-4o-mini", adapter=sim)])
    async with convoy.Engine(tmp_path / "b.db", interceptors=[routes],
                             model="openai:gpt-4o-mini") as engine:
        assert (await engine.run(shout, "a")).ok
