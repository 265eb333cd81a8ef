"""Convoy's default protections against a real OpenAI-compatible fault server on loopback.

    python bench/faults.py [--sessions 300] [--concurrency 20] [--outage-s 30] [--quick]

Each scenario starts a scripted HTTP server (bench/_faultserver.py) and runs ``--sessions``
sessions of a one-agent workflow on ``openai:MODEL?base_url=http://127.0.0.1:PORT/v1``
through ``convoy.resilience.protections(...)`` (default retry and retry budget, default
breaker policy, ``--call-timeout`` per attempt; fallbacks in ``fallback``):

* ``random``: 10% of requests fail: 500, 503, hung (never answered), 200 with a non-JSON body.
* ``burst429``: 12.6% of requests answered 429 with ``Retry-After: 1``, in bursts.
* ``outage``: the endpoint answers 503 for ``--outage-s`` seconds, then recovers; sessions
  arrive at a steady rate before, during and after it.
* ``fallback``: the primary answers 503 throughout; a healthy second server on another port
  is the agent's fallback model (``--fallback-model``: the same model id makes it a second
  deployment of the primary's model, with breakers of its own).
* ``deployments``: the same two servers as two named deployments of one model
  (``convoy.resilience.Deployment``), routed ``in_order``: the first answers 503
  throughout, the second serves.

Prints one JSON line per scenario on stdout, and a table on stderr. Targets (issue 8):
>= 99.9% success at 10% random faults and with 12.6% bursty 429s; during an outage at most
the configured half-open probes reach the failing endpoint; a healthy fallback serves 100%
of sessions during the primary's outage (or its first deployment's).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _faultserver import BADJSON, HANG, OK, Action, FaultServer, error

import convoy
from convoy.resilience import (
    BreakerPolicy,
    Breakers,
    Deployment,
    Deployments,
    Fallback,
    Retry,
    protections,
)

SCENARIOS = ("random", "burst429", "outage", "fallback", "deployments")
AGENT = "extract"


class Label(BaseModel):
    label: str


# -- scripts: what the server answers, decided per request ------------------------------

def _blocks(make: Callable[[], list[Action]]) -> Callable[[float], Action]:
    """Answers from consecutive blocks of a schedule: every block has the exact fault share."""
    queue: list[Action] = []

    def script(now: float) -> Action:
        if not queue:
            queue.extend(reversed(make()))
        return queue.pop()
    return script


def random_faults(rng: random.Random, block: int = 10) -> Callable[[float], Action]:
    """10%: one request in every block of ten, at a random place, fails as a 500, a 503, a
    hang or a 200 with a non-JSON body."""
    kinds = (error(500), error(503), HANG, BADJSON)

    def make() -> list[Action]:
        out = [OK] * block
        out[rng.randrange(block)] = rng.choice(kinds)
        return out
    return _blocks(make)


def bursty_429(rng: random.Random, block: int = 254, faults: int = 32, bursts: int = 4,
               retry_after: float = 1.0) -> Callable[[float], Action]:
    """12.6%: every block of 254 requests has 32 answered 429 (``Retry-After: 1``), in 4
    bursts of consecutive requests (random lengths, mean 8) at random places."""
    def make() -> list[Action]:
        cuts = [0, *sorted(rng.sample(range(1, faults), bursts - 1)), faults]
        lengths = [b - a for a, b in itertools.pairwise(cuts)]
        gaps = sorted(rng.sample(range(block - faults + 1), bursts))
        out: list[Action] = []
        for i in range(block - faults + 1):
            if gaps and gaps[0] == i:
                gaps.pop(0)
                out.extend([error(429, retry_after)] * lengths.pop(0))
            if i < block - faults:
                out.append(OK)
        return out
    return _blocks(make)


def outage(window: list[float]) -> Callable[[float], Action]:
    """503 while ``window[0] <= now < window[1]`` (set once the run starts)."""
    def script(now: float) -> Action:
        return error(503) if window[0] <= now < window[1] else OK
    return script


# -- a run --------------------------------------------------------------------------------

class Watch:
    """Breaker transitions with their times (polled: the breakers keep no timestamps)."""

    def __init__(self, breakers: Breakers) -> None:
        self.breakers = breakers
        self.events: list[tuple[float, str, str, str]] = []  # (t, key, from, to)
        self._seen: dict[str, int] = {}

    def poll(self) -> None:
        now = time.monotonic()
        for key, b in list(self.breakers.breakers.items()):
            n, k = len(b.transitions), self._seen.get(key, 0)
            for a, z in b.transitions[k:n]:
                self.events.append((now, key, a, z))
            self._seen[key] = n

    async def run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(0.002)


def _find(chain: list[Any], kind: type) -> Any:
    return next((i for i in chain if isinstance(i, kind)), None)


async def run_scenario(name: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    n = args.sessions
    window = [float("inf"), float("inf")]
    servers: dict[str, FaultServer] = {}
    if name == "random":
        servers["primary"] = FaultServer(random_faults(rng))
    elif name == "burst429":
        servers["primary"] = FaultServer(bursty_429(rng))
    elif name == "outage":
        servers["primary"] = FaultServer(outage(window))
    else:  # fallback, deployments
        servers["primary"] = FaultServer(lambda now: error(503))
        servers["fallback"] = FaultServer(lambda now: OK)
    for s in servers.values():
        s.start()
    primary_spec = f"openai:{args.model}?base_url={servers['primary'].base_url()}"
    fallbacks = None
    deployments = None
    if name == "fallback":
        # Breakers are keyed by deployment: the same model id on another base URL is a
        # deployment of its own, never refused by the primary's record (issue 8, item 10).
        fb_model = args.fallback_model or f"{args.model}-fallback"
        fallbacks = {AGENT: [f"openai:{fb_model}?base_url="
                             f"{servers['fallback'].base_url()}"]}
    if name == "deployments":
        deployments = Deployments([
            Deployment(name="east", model=f"openai:{args.model}",
                       base_url=servers["primary"].base_url()),
            Deployment(name="west", model=f"openai:{args.model}",
                       base_url=servers["fallback"].base_url())], strategy="in_order")
        primary_spec = f"openai:{args.model}"  # the model name: routed among its deployments
    policy = BreakerPolicy(wait_in_open=args.wait_in_open)
    chain = protections(call_timeout=args.call_timeout, breaker=policy, fallbacks=fallbacks,
                        deployments=deployments)
    breakers: Breakers = _find(chain, Breakers)
    retry: Retry = _find(chain, Retry)
    fallback: Fallback | None = _find(chain, Fallback)
    agent: convoy.Agent[str, Label] = convoy.Agent(
        name=AGENT, instructions="Label the text.", output_type=Label, model=primary_spec)

    @convoy.workflow(name=f"faults.{name}")
    async def wf(ctx: convoy.Context, text: str) -> Label:
        out: Label = await ctx.run(agent, text)
        return out

    inputs = [f"text of sess-{i} ({name})" for i in range(n)]
    watch = Watch(breakers)
    lead = max(0.5, 0.1 * args.outage_s)
    with tempfile.TemporaryDirectory() as d:
        async with convoy.Engine(Path(d) / "faults.db", interceptors=chain,
                                 concurrency=args.concurrency) as engine:
            watcher = asyncio.create_task(watch.run())
            t0 = time.monotonic()
            if name == "outage":
                # Steady arrivals: before, during and after the outage, long enough after it
                # for the breaker to probe once the endpoint is back.
                window[0], window[1] = t0 + lead, t0 + lead + args.outage_s
                span = lead + args.outage_s + args.wait_in_open + 2 * lead
                rate = n / span

                async def start(i: int) -> convoy.SessionResult[Label]:
                    await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                    return await engine.run(wf, inputs[i])
                results = list(await asyncio.gather(*(start(i) for i in range(n))))
            else:
                if name in ("fallback", "deployments"):
                    window[0], window[1] = t0, float("inf")
                results = await engine.run_many(wf, inputs)
            wall = time.monotonic() - t0
            watcher.cancel()
            watch.poll()
    for s in servers.values():
        s.stop()

    ok = sum(r.ok for r in results)
    errors = Counter(str((r.error or {}).get("type", r.status)) for r in results if not r.ok)
    examples: dict[str, str] = {}
    for r in results:
        if not r.ok:
            t = str((r.error or {}).get("type", r.status))
            examples.setdefault(t, str((r.error or {}).get("message", ""))[:160])
    requests = sum(len(s.log) for s in servers.values())
    primary = servers["primary"]
    answers = Counter(e.action for e in primary.log)
    out: dict[str, Any] = {
        "scenario": name, "sessions": n, "concurrency": args.concurrency,
        "completed": ok, "success_rate": round(ok / n, 5),
        "requests": requests, "extra_calls": round(requests / n - 1, 4),
        "primary_answers": dict(sorted(answers.items())),
        "retries": retry.retries, "retry_budget_denied": retry.budget.denied,
        "errors": dict(errors), "error_examples": examples,
        "call_timeout_s": args.call_timeout, "wait_in_open_s": args.wait_in_open,
        "half_open_calls": policy.half_open_calls,
        "breaker_transitions": [[round(t - t0, 3), k, a, z] for t, k, a, z in watch.events],
        "wall_s": round(wall, 2),
    }
    if name == "random" or name == "burst429":
        faulty = sum(v for k, v in answers.items() if k != "ok")
        out["fault_share"] = round(faulty / max(1, len(primary.log)), 4)
    if name == "outage":
        out.update(_outage_figures(primary, watch, window, policy))
    if name in ("fallback", "deployments"):
        fb = servers["fallback"]
        out["fallback_share"] = round(len(fb.served & set(range(n))) / n, 5)
        out["fallback_requests"] = len(fb.log)
        out["primary_requests"] = len(primary.log)
        out["fallback_used"] = fallback.used if fallback is not None else 0
        if deployments is not None:
            out["failovers"] = deployments.failovers
        out.update(_probe_figures(primary, watch, window, policy))
    return out


def _probe_figures(server: FaultServer, watch: Watch, window: list[float],
                   policy: BreakerPolicy) -> dict[str, Any]:
    """Requests that reached the failing endpoint during its outage, and after a breaker
    guarding it first opened; the probes the policy allows in that time."""
    start, end = window
    during = [e for e in server.log if start <= e.t < end]
    opens = [t for t, _, _, z in watch.events if z == "open" and start <= t < end]
    first_open = min(opens) if opens else None
    after = [e for e in during if first_open is not None and e.t >= first_open]
    # Probes run in half-open periods; a call needs every breaker guarding it (the
    # endpoint's and the agent's), so count the periods of the breaker with the most.
    periods = Counter(k for t, k, _, z in watch.events if z == "half_open" and start <= t < end)
    n_periods = max(periods.values(), default=0)
    allowed = n_periods * policy.half_open_calls
    return {"outage_requests": len(during),
            "opened_after_s": None if first_open is None else round(first_open - start, 3),
            "requests_after_open": len(after), "half_open_periods": n_periods,
            "probes_allowed": allowed,
            "within_probes": first_open is not None and len(after) <= allowed}


def _outage_figures(server: FaultServer, watch: Watch, window: list[float],
                    policy: BreakerPolicy) -> dict[str, Any]:
    out = _probe_figures(server, watch, window, policy)
    end = window[1]
    # Recovery -> every breaker that opened during the outage is closed again.
    keys = {k for t, k, _, z in watch.events if z == "open" and window[0] <= t < end}
    closed_at = []
    for key in keys:
        last = [(t, z) for t, k, _, z in watch.events if k == key]
        closes = [t for t, z in last if z == "closed" and t >= end]
        closed_at.append(min(closes) if closes else None)
    if not keys or None in closed_at:
        out["recovery_to_close_s"] = None
    else:
        out["recovery_to_close_s"] = round(max(t for t in closed_at if t is not None) - end, 3)
    out["requests_before_outage"] = sum(1 for e in server.log if e.t < window[0])
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'scenario':<11} {'success':>8} {'extra':>7} {'429/5xx/hang/bad':>17} "
             f"{'outage req':>10} {'after open':>10} {'probes':>6} {'to close':>8} "
             f"{'fallback':>8}  failures"]
    for r in rows:
        a = r["primary_answers"]
        mix = (f"{a.get('429', 0)}/{a.get('500', 0) + a.get('503', 0)}/{a.get('hang', 0)}/"
               f"{a.get('badjson', 0)}")

        def g(key: str, fmt: str = "{}", r: dict[str, Any] = r) -> str:
            v = r.get(key)
            return "-" if v is None else fmt.format(v)
        lines.append(
            f"{r['scenario']:<11} {100 * r['success_rate']:>7.2f}% {r['extra_calls']:>+7.3f} "
            f"{mix:>17} {g('outage_requests'):>10} {g('requests_after_open'):>10} "
            f"{g('probes_allowed'):>6} {g('recovery_to_close_s', '{:.2f}s'):>8} "
            f"{g('fallback_share', '{:.1%}'):>8}  "
            + ", ".join(f"{k} x{v}" for k, v in r["errors"].items()))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    os.environ.setdefault("OPENAI_API_KEY", "local")
    rows = []
    for i, name in enumerate(args.scenarios):
        row = await run_scenario(name, args, args.seed + i)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--outage-s", type=float, default=30.0,
                    help="how long the endpoint answers 503 in the outage scenario")
    ap.add_argument("--call-timeout", type=float, default=5.0,
                    help="protections(call_timeout=...): cuts hung requests")
    ap.add_argument("--wait-in-open", type=float, default=BreakerPolicy().wait_in_open,
                    help="BreakerPolicy(wait_in_open=...); the default policy's by default")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--fallback-model", default=None,
                    help="the fallback's model id (default: MODEL-fallback; the same id as "
                    "--model makes it a second deployment of the primary's model)")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (for the test): 40 sessions, 1.5 s outage, 1 s open wait")
    args = ap.parse_args(argv)
    if args.quick:
        args.sessions, args.outage_s = min(args.sessions, 40), min(args.outage_s, 1.5)
        args.wait_in_open, args.call_timeout = min(args.wait_in_open, 1.0), 0.5
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


if __name__ == "__main__":
    rows = asyncio.run(main(parse()))
    print(table(rows), file=sys.stderr)
