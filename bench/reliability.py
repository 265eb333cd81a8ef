"""Reliability compounding: a chain of N agents with a per-call fault rate p, protections
off and on, next to the theoretical (1-p)^N.

    .venv/bin/python bench/reliability.py --agents 5 --fault-rate 0.05 --sessions 10000 \
        [--seed S] [--plot reliability.svg|.png]

Each agent runs on `convoy.SimModel` (zero latency, a canned valid answer). A
`convoy.chaos.FaultInjector` (innermost) fails each model call with probability p, split
evenly between a hang (0.2 s), an HTTP 503 and malformed (truncated JSON) output. The same
sessions (same ids, same seed: the same first-attempt faults) run twice, each on a fresh
Engine and store in a temp dir:

* off: no interceptors but the injector; agents have `output_retries=0`.
* on:  `convoy.resilience.protections()` - Retry (full jitter, 0.01 s initial, 0.2 s max
  delay), circuit breakers, a 0.05 s per-attempt call timeout - and `output_retries=2`.
  The breakers' count-based window is sized to the concurrency (`--concurrency`, 1000):
  with more calls in flight than the window holds, outcomes enter it in completion order,
  and every timed-out call of a wave completes at the same instant, so a 100-call window
  sees bursts of >50% failures at a 5% fault rate and opens (seen at 2,500 sessions in
  flight with the default `BreakerPolicy(window=100)`).

Prints ONE JSON line on stdout (`success_protected`, `success_unprotected`, `theoretical`,
...) and a table on stderr. The per-N curve (N = 1..agents) comes from the same runs: a
session that failed at agent k has passed k-1 agents, which is exactly what a k-1 chain
would have done with the same draws. `--plot` draws it (matplotlib when importable, else a
hand-written SVG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import convoy
from convoy.chaos import FaultInjector, FaultSpec
from convoy.resilience import BreakerPolicy, Retry, RetryPolicy, protections


class Step(BaseModel):
    value: int
    note: str


SIM = convoy.SimModel({"*": {"output": {"value": 1, "note": "ok"}}}, name="sim:reliability")


class Repairs(convoy.Interceptor):
    """Counts model calls that re-prompt after invalid output (the agent loop's repairs)."""

    def __init__(self) -> None:
        self.calls = 0

    async def model_call(self, input: convoy.ModelCallInput, next: Any) -> convoy.ModelResponse:
        self.calls += input.request.repairs > 0
        resp: convoy.ModelResponse = await next(input)
        return resp


@dataclass
class ModeResult:
    success: float
    curve: list[float]                 # success after n agents, n = 1..N
    retries: int = 0
    retries_denied: int = 0
    repairs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


def chain(n: int, protect: bool) -> convoy.Workflow[str, Step]:
    agents = [convoy.Agent(name=f"a{i}", input_type=str if i == 0 else Step, output_type=Step,
                           model=SIM, output_retries=2 if protect else 0)
              for i in range(n)]

    @convoy.workflow(name=f"reliability:chain_{n}_{'on' if protect else 'off'}")
    async def run(ctx: convoy.Context, text: str) -> Step:
        out: Step = await convoy.pipeline(ctx, agents, text)
        return out

    return run


def passed_agents(db: Path, n: int) -> Counter[int]:
    """How many agents each session got past (n for a completed session)."""
    passed: Counter[int] = Counter()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT s.id, s.status, MAX(CAST(SUBSTR(j.target, 2) AS INTEGER)) "
                            "FROM sessions s LEFT JOIN journal j ON j.session_id = s.id "
                            "AND j.kind = 'model' GROUP BY s.id").fetchall()
    for _, status, last in rows:
        passed[n if status == "completed" else int(last or 0)] += 1
    return passed


async def run_mode(n: int, p: float, sessions: int, seed: int, protect: bool,
                   work: Path, concurrency: int = 1000) -> ModeResult:
    spec = FaultSpec(timeout=p / 3, server_error=p / 3, malformed=p / 3, hang_seconds=0.2)
    injector = FaultInjector(spec, seed=seed)
    repairs = Repairs()
    chain_ics: list[convoy.Interceptor] = [repairs]
    if protect:
        chain_ics += protections(retry=RetryPolicy(max_attempts=4, initial_delay=0.01,
                                                   max_delay=0.2),
                                 breaker=BreakerPolicy(window=max(100, concurrency)),
                                 call_timeout=0.05, tool_timeout=None)
    chain_ics.append(injector)
    db = work / f"reliability-{'on' if protect else 'off'}.db"
    wf = chain(n, protect)
    t0 = time.perf_counter()
    async with convoy.Engine(db, interceptors=chain_ics,
                             concurrency=concurrency) as engine:
        results = await engine.run_many(wf, [f"ticket {i}" for i in range(sessions)],
                                        ids=[f"s{i}" for i in range(sessions)])
    wall = time.perf_counter() - t0
    passed = passed_agents(db, n)
    curve = [sum(v for k, v in passed.items() if k >= m) / sessions for m in range(1, n + 1)]
    res = ModeResult(success=sum(r.ok for r in results) / sessions, curve=curve,
                     repairs=repairs.calls, faults=injector.injected,
                     statuses=dict(Counter(r.status for r in results)), wall_s=wall)
    for ic in chain_ics:
        if isinstance(ic, Retry):
            res.retries, res.retries_denied = ic.retries, ic.denied
    return res


# -- output ------------------------------------------------------------------------------


def print_table(n: int, p: float, off: ModeResult, on: ModeResult) -> None:
    rows = [(str(m), f"{off.curve[m - 1]:.4f}", f"{on.curve[m - 1]:.4f}",
             f"{(1 - p) ** m:.4f}") for m in range(1, n + 1)]
    head = ("agents", "protections off", "protections on", "theoretical (1-p)^N")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for r in (head, *rows):
            print("  ".join(f"{c:>20}" for c in r), file=sys.stderr)
        return
    t = Table(title=f"end-to-end success, fault rate p={p:g} per model call",
              title_justify="left")
    for h in head:
        t.add_column(h, justify="right")
    for r in rows:
        t.add_row(*r)
    Console(stderr=True).print(t)


def plot(path: Path, n: int, p: float, off: ModeResult, on: ModeResult) -> Path:
    xs = list(range(1, n + 1))
    theo = [(1 - p) ** m for m in xs]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if path.suffix != ".svg":
            path = path.with_suffix(".svg")
            print(f"matplotlib is not installed: writing an SVG to {path}", file=sys.stderr)
        path.write_text(svg_plot(xs, {"protections on": on.curve, "protections off": off.curve,
                                      "theoretical (1-p)^N": theo}, p))
        return path
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(xs, on.curve, "o-", label="protections on", color="#2a9d8f")
    ax.plot(xs, off.curve, "s-", label="protections off", color="#e76f51")
    ax.plot(xs, theo, "--", label="theoretical $(1-p)^N$", color="#555555")
    ax.set_xlabel("agents in the chain (N)")
    ax.set_ylabel("end-to-end success rate")
    ax.set_title(f"Reliability compounding, p = {p:g} per model call")
    ax.set_xticks(xs)
    ax.set_ylim(min([*off.curve, *theo]) - 0.02, 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    return path


def svg_plot(xs: list[int], series: dict[str, list[float]], p: float) -> str:
    """A dependency-free line chart."""
    w, h, left, right, top, bottom = 640, 420, 70, 20, 40, 50
    lo = min(min(v) for v in series.values()) - 0.02
    span_x = max(1, xs[-1] - xs[0])

    def px(x: float) -> float:
        return left + (x - xs[0]) / span_x * (w - left - right)

    def py(y: float) -> float:
        return top + (1.005 - y) / (1.005 - lo) * (h - top - bottom)

    colors = ["#2a9d8f", "#e76f51", "#555555"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="14">Reliability '
           f'compounding, p = {p:g} per model call</text>']
    for i in range(6):
        y = lo + (1.005 - lo) * i / 5
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3f}</text>')
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{h - bottom + 18}" text-anchor="middle">{x}</text>')
    out.append(f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">agents in the chain (N)'
               '</text>')
    out.append(f'<text x="16" y="{h / 2}" text-anchor="middle" transform="rotate(-90 16 '
               f'{h / 2})">end-to-end success rate</text>')
    for (label, ys), color in zip(series.items(), colors, strict=False):
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        dash = ' stroke-dasharray="6 4"' if label.startswith("theoretical") else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"'
                   f'{dash}/>')
        k = list(series).index(label)
        out.append(f'<text x="{left + 10}" y="{h - bottom - 12 - 16 * k}" fill="{color}">'
                   f'{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--fault-rate", type=float, default=0.05)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=1000, help="sessions at once")
    ap.add_argument("--plot", type=Path, help="write the success-vs-N plot here (.png/.svg)")
    a = ap.parse_args()
    if a.agents < 1 or a.sessions < 1 or a.concurrency < 1 or not 0 <= a.fault_rate <= 1:
        ap.error("--agents, --sessions and --concurrency must be >= 1, --fault-rate in [0, 1]")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convoy-reliability-") as tmp:
        off, on = (asyncio.run(run_mode(a.agents, a.fault_rate, a.sessions, a.seed, protect,
                                        Path(tmp), a.concurrency)) for protect in (False, True))
    print_table(a.agents, a.fault_rate, off, on)
    if a.plot:
        print(f"plot: {plot(a.plot, a.agents, a.fault_rate, off, on)}", file=sys.stderr)
    print(json.dumps({
        "agents": a.agents, "fault_rate": a.fault_rate, "sessions": a.sessions, "seed": a.seed,
        "success_protected": on.success, "success_unprotected": off.success,
        "theoretical": (1 - a.fault_rate) ** a.agents,
        "retries": on.retries, "retries_denied": on.retries_denied,
        "output_repairs": on.repairs,
        "faults_injected": sum(on.faults.values()),
        "faults_by_kind": dict(on.faults),
        "faults_injected_unprotected": sum(off.faults.values()),
        "statuses_protected": on.statuses, "statuses_unprotected": off.statuses,
        "curve": {"agents": list(range(1, a.agents + 1)), "protected": on.curve,
                  "unprotected": off.curve},
        "concurrency": a.concurrency, "wall_s": round(time.perf_counter() - t0, 2),
        "wall_s_unprotected": round(off.wall_s, 2), "wall_s_protected": round(on.wall_s, 2),
    }))


if __name__ == "__main__":
    main()
