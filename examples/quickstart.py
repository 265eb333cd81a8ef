import asyncio
from typing import Literal

from pydantic import BaseModel

import convoy


class Ticket(BaseModel):
    text: str


class Triage(BaseModel):
    category: Literal["billing", "technical", "account"]
    urgent: bool


triage = convoy.Agent(name="triage", instructions="Classify the support ticket.",
                      input_type=Ticket, output_type=Triage, model="sim:")


@convoy.workflow
async def desk(ctx: convoy.Context, ticket: Ticket) -> Triage:
    return await ctx.run(triage, ticket)


async def main() -> None:
    sim = convoy.SimModel({"triage": {"output": {"category": "billing", "urgent": False}}})
    async with convoy.Engine("quickstart.db", models={"sim:": sim}) as engine:
        result = await engine.run(desk, Ticket(text="I was charged twice"))
        print(result.status, result.output, result.usage, f"${result.cost:.6f}")


asyncio.run(main())
