"""Prototype (stop 45, not landed): Metrics that count model calls (and, with
``agent_runs``, agent runs) from the session's journal records at the run's end, with no
``model_call`` hook (and no run tap). Timed by ``obs_proto.py``; see bench/RESULTS.md."""
from __future__ import annotations

from bisect import bisect_left
from itertools import groupby
from typing import Any

from convoy.interceptors._base import Interceptor
from convoy.observability._metrics import SESSION_NS, STEP_NS, Metrics, perf_ns


def _agent_of(r: Any) -> str:
    """The agent of a record (a model record names its agent as its target)."""
    return str(r.target if r.kind == "model" else r.agent or "")


def _model_of(r: Any) -> str:
    """The model that answered, as a model record's result begins: {"model":"NAME",..."""
    text = r.result or ""
    return text[10:text.find('"', 10)] if text.startswith('{"model":"') else ""


class JournalMetrics(Metrics):
    model_call = Interceptor.model_call  # (no hook: counted from the journal)

    def __init__(self, *, agent_runs: bool = True) -> None:
        super().__init__()
        self.agent_runs = agent_runs

    async def _session_run(self, input: Any, next: Any) -> Any:
        held: list[Any] = []
        input.journal_taps.append(held.append)
        if not self.agent_runs:
            input.run_taps.append(self._run_ended)
        info = input.info
        self._session_began(info.workflow)
        t = perf_ns()
        try:
            end = await next(input)
        except BaseException:
            self._session_ended(info, None, 0)
            raise
        self._session_ended(info, end, perf_ns() - t)
        self._records(held)
        return end

    def _records(self, held: list[Any]) -> None:
        steps, agents = self._steps, self._agents
        for agent, group in groupby(held, _agent_of):
            run = list(group)
            for r in run:
                if r.kind == "model" and r.status == "completed":
                    model = _model_of(r)
                    st = steps.get(("model", agent, model)) or \
                        self._step("model", agent, model)
                    ns = int((r.at - r.began) * 1e9) if r.began else 0
                    st.counts[bisect_left(STEP_NS, ns)] += 1
                    st.sum += ns
                    st.tokens_in += r.input_tokens
                    st.tokens_out += r.output_tokens
                    st.cost += r.cost
            if self.agent_runs and agent:
                a = agents.get(agent) or self._agent(agent)
                first = run[0]
                ns = int((run[-1].at - (first.began or first.at)) * 1e9)
                h = a.handoff if run[-1].kind == "handoff" else a.ok
                h.counts[bisect_left(SESSION_NS, ns)] += 1
                h.sum += ns
