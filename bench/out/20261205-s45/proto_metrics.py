"""Prototype (not landed): Metrics that count model calls and agent runs from the
session's journal records at the run's end, with no model_call hook and no run tap."""
from __future__ import annotations
from bisect import bisect_left
from itertools import groupby
from operator import attrgetter
from convoy.interceptors._base import Interceptor
from convoy.observability._metrics import Metrics, STEP_NS, SESSION_NS, perf_ns

_AGENT = attrgetter("agent")


class JournalMetrics(Metrics):
    model_call = Interceptor.model_call  # (no hook: counted from the journal)

    async def _session_run(self, input, next):
        info = input.info
        self._session_began(info.workflow)
        held: list = []
        input.journal_taps.append(held.append)
        t = perf_ns()
        try:
            end = await next(input)
        except BaseException:
            self._session_ended(info, None, 0)
            raise
        self._session_ended(info, end, perf_ns() - t)
        if held:
            self._records(held)
        return end

    def _records(self, held):
        steps, agents = self._steps, self._agents
        for agent, run in groupby(held, _AGENT):
            run = list(run)
            for r in run:
                if r.kind == "model" and r.status == "completed":
                    name = agent or ""
                    st = steps.get(("model", name, r.target)) or self._step("model", name, r.target)
                    ns = int((r.at - r.began) * 1e9) if r.began else 0
                    st.counts[bisect_left(STEP_NS, ns)] += 1
                    st.sum += ns
                    st.tokens_in += r.input_tokens
                    st.tokens_out += r.output_tokens
                    st.cost += r.cost
            if agent:
                a = agents.get(agent) or self._agent(agent)
                first = run[0]
                ns = int((run[-1].at - (first.began or first.at)) * 1e9)
                h = a.handoff if run[-1].kind == "handoff" else a.ok
                h.counts[bisect_left(SESSION_NS, ns)] += 1
                h.sum += ns


class ModelFromJournal(Metrics):
    """Only the model calls from the journal; agent runs by the run tap as now."""
    model_call = Interceptor.model_call

    async def _session_run(self, input, next):
        info = input.info
        self._session_began(info.workflow)
        input.run_taps.append(self._run_ended)
        held: list = []
        input.journal_taps.append(held.append)
        t = perf_ns()
        try:
            end = await next(input)
        except BaseException:
            self._session_ended(info, None, 0)
            raise
        self._session_ended(info, end, perf_ns() - t)
        steps = self._steps
        for r in held:
            if r.kind == "model" and r.status == "completed":
                name = r.agent or ""
                st = steps.get(("model", name, r.target)) or self._step("model", name, r.target)
                ns = int((r.at - r.began) * 1e9) if r.began else 0
                st.counts[bisect_left(STEP_NS, ns)] += 1
                st.sum += ns
                st.tokens_in += r.input_tokens
                st.tokens_out += r.output_tokens
                st.cost += r.cost
        return end
