"""Ready orchestration patterns, built only on :class:`Context` (:func:`pipeline` and
:func:`supervisor` call the agent loop as :meth:`Context.run` does, without its frame).

* :func:`pipeline` - A -> B -> C, each output validated into the next agent's input.
* :func:`supervisor` - a supervisor delegates to workers (as tools); control returns to it
  after each worker; independent delegations in one turn run in parallel.
* :func:`fan_out` - one or many agents over many inputs concurrently, then an optional
  reducer agent (fan-in).
* :func:`decompose` - recursive decomposition: a planner splits a task into subtasks down to
  a depth limit, leaves are solved, and a combiner merges the results on the way up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from convoy._errors import UserError
from convoy.definitions._agent import Agent
from convoy.runtime._agent_loop import run_agent
from convoy.runtime._context import Context

OutT = TypeVar("OutT")


async def pipeline(ctx: Context, agents: Sequence[Agent[Any, Any]], input: Any) -> Any:
    """Run ``agents`` in order; each one's output is the next one's input."""
    if not agents:
        raise UserError("pipeline needs at least one agent")
    value = input
    # By index and with ``ctx.run`` inlined: no iterator and one coroutine fewer held by
    # every session in flight.
    for i in range(len(agents)):
        value = await run_agent(ctx.child(), agents[i], value)
    return value


async def supervisor(ctx: Context, boss: Agent[Any, OutT], workers: Sequence[Agent[Any, Any]],
                     input: Any) -> OutT:
    """Run ``boss`` with ``workers`` as delegable agents; returns the boss's typed output."""
    if workers and set(workers) != set(boss.workers):
        boss = replace(boss, workers=tuple(workers))
    out: OutT = await run_agent(ctx.child(), boss, input)  # ``ctx.run``, inlined
    return out


async def fan_out(ctx: Context, agents: Agent[Any, Any] | Sequence[Agent[Any, Any]],
                  inputs: Sequence[Any], *, reducer: Agent[Any, OutT] | None = None) -> Any:
    """Run one agent over many inputs (or many agents over one input each) concurrently.

    Returns the list of outputs, or, with ``reducer``, the reducer's output on the list.
    """
    if isinstance(agents, Agent):
        outputs = await ctx.map(agents, inputs)
    else:
        if len(agents) != len(inputs):
            raise UserError(f"fan_out got {len(agents)} agents but {len(inputs)} inputs")
        outputs = await ctx.gather(*(_run(a, x) for a, x in zip(agents, inputs, strict=True)))
    if reducer is None:
        return outputs
    return await ctx.run(reducer, {"results": [_plain(o) for o in outputs]})


class Plan(Protocol):
    """What a planner agent outputs in :func:`decompose`: subtasks, empty for a leaf."""

    subtasks: list[str]


async def decompose(ctx: Context, task: str, *, planner: Agent[Any, Any],
                    solver: Agent[Any, Any], combiner: Agent[Any, Any],
                    max_depth: int = 3) -> Any:
    """Recursive decomposition.

    ``planner`` gets ``{"task", "depth"}`` and outputs a model with ``subtasks: list[str]``
    (empty: solve directly). Leaves, and every task at ``max_depth``, go to ``solver``.
    ``combiner`` gets ``{"task", "results"}`` and merges the subtasks' results.
    """
    if max_depth < 0:
        raise UserError(f"decompose: max_depth must be >= 0, got {max_depth}")
    return await _solve(ctx, task, 0, planner, solver, combiner, max_depth)


async def _solve(ctx: Context, task: str, depth: int, planner: Agent[Any, Any],
                 solver: Agent[Any, Any], combiner: Agent[Any, Any], max_depth: int) -> Any:
    if depth >= max_depth:
        return await ctx.run(solver, {"task": task})
    plan = await ctx.run(planner, {"task": task, "depth": depth})
    subtasks = list(getattr(plan, "subtasks", []) or [])
    if not subtasks:
        return await ctx.run(solver, {"task": task})

    def branch(sub: str) -> Any:
        async def go(c: Context) -> Any:
            return await _solve(c, sub, depth + 1, planner, solver, combiner, max_depth)

        return go

    results = await ctx.gather(*(branch(s) for s in subtasks))
    return await ctx.run(combiner, {"task": task, "results": [_plain(r) for r in results]})


def _run(agent: Agent[Any, Any], value: Any) -> Any:
    async def go(c: Context) -> Any:
        return await c.run(agent, value)

    return go


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value
