"""A sandboxed tool: an agent evaluates the arithmetic a user typed with Python's ``eval``,
in a sandbox. An expression that would spin, eat memory or reach the network is stopped
and reported to the model; the engine and its other sessions carry on.

    python -m examples.sandboxed_tools
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import convoy


@convoy.tool(sandbox=convoy.Sandbox(cpu_seconds=2, memory_mb=128, wall_seconds=10))
def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression."""
    return float(eval(expression, {"__builtins__": {}}))  # untrusted: hence the sandbox


def script(req: convoy.ModelRequest) -> Any:
    """A model that hands the user's text to the tool, then reports what came back."""
    last = req.messages[-1]
    if last.role == "tool":
        reply = json.loads(last.content or "null")
        if isinstance(reply, dict) and "sandbox" in reply:
            return {"text": f"refused: stopped by {reply['sandbox']['stopped_by']}"}
        return {"text": f"= {reply}"}
    return {"tool_calls": [{"name": "calculate", "arguments": {"expression": last.content}}]}


calculator = convoy.Agent(name="calculator", instructions="Compute what the user asks.",
                          tools=[calculate], model=convoy.SimModel(script))


@convoy.workflow(name="examples.calculate")
async def compute(ctx: convoy.Context, expression: str) -> str:
    return str(await ctx.run(calculator, expression))


async def main() -> None:
    async with convoy.Engine("calculator.db") as engine:
        for expression in ["6 * 7", "9 ** 9 ** 9", "2 ** 0.5"]:
            result = await engine.run(compute, expression)
            print(f"{expression:12} {result.output}")


if __name__ == "__main__":
    asyncio.run(main())
