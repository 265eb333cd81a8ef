"""``local:``: SmolLM2 in this process through llama.cpp (no server, no API key)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import convoy

llama_cpp = pytest.importorskip("llama_cpp") if os.environ.get("CI") != "true" else None


class Verdict(BaseModel):
    category: Literal["billing", "technical", "account"]
    urgent: bool


@pytest.fixture(scope="module")
def local() -> Iterator[convoy.Model]:
    model = convoy.infer_model("local:")
    yield model
    asyncio.run(model.aclose())


async def test_local_model_gives_schema_valid_structured_output(local: convoy.Model,
                                                                tmp_path: Any) -> None:
    agent = convoy.Agent(name="triage", instructions="Classify the support ticket.",
                         output_type=Verdict, model=local,
                         model_settings=convoy.ModelSettings(max_tokens=48, temperature=0))

    @convoy.workflow(name="local-triage")
    async def wf(ctx: convoy.Context, text: str) -> Verdict:
        out: Verdict = await ctx.run(agent, text)
        return out

    async with convoy.Engine(tmp_path / "l.db") as eng:
        res = await eng.run(wf, "I was charged twice for my subscription.")
    assert res.ok, res.error
    assert isinstance(res.output, Verdict)
    assert res.usage.input_tokens > 10 and res.usage.output_tokens > 0
    assert res.cost == 0.0  # local models are free in the default price table


def test_local_model_errors_are_clear() -> None:
    with pytest.raises(convoy.UserError, match="does not exist"):
        convoy.infer_model("local:/no/such/model.gguf")
    with pytest.raises(convoy.UserError, match="unknown option"):
        convoy.infer_model("openai:x?colour=red")
