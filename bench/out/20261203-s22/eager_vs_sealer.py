import asyncio, sys, statistics, tempfile
from pathlib import Path
sys.path.insert(0, "bench")
from resilience_overhead import CLOCKS, timed
import convoy
from convoy.audit import AuditInterceptor
from convoy.audit import _interceptor as ai
from convoy.audit._sealer import Queued
from convoy.observability import Metrics, Tracing, observe

class EagerTap(ai._RunTap):
    """The old behaviour: each record's entry made as it is written."""
    __slots__ = ("bodies",)
    def __init__(self, *a, **k):
        super().__init__(*a, **k); self.bodies = []
    def __call__(self, record):
        self.last_at = record.at
        if record.status != "started":
            self.bodies.extend(self.entries((record,)))
    def take_records(self):
        return []
    def queue(self, records, after, ended=()):
        before = self.cursor_text
        if after is None:
            after = before or repr(float("-inf"))
        bodies, self.bodies = self.bodies, []
        self.sealer.submit(Queued(tenant=self.tenant, session_id=self.session_id, before=before,
                                  after=after, bodies=bodies, trace_id=self.trace_id, mac=self.mac,
                                  ended=ended))
        self.cursor_text = after

class Eager(AuditInterceptor):
    async def session_run(self, input, next):
        ai._RunTap, saved = EagerTap, ai._RunTap
        try:
            return await super().session_run(input, next)
        finally:
            ai._RunTap = saved

async def main():
    tick = CLOCKS["cpu"]
    chains = {"bare": lambda: [], "audit": lambda: [AuditInterceptor()], "eager": lambda: [Eager()],
              "tma": lambda: [*observe(Tracing(["store"]), Metrics()), AuditInterceptor()],
              "tma_eager": lambda: [*observe(Tracing(["store"]), Metrics()), Eager()]}
    with tempfile.TemporaryDirectory() as tmp:
        es = {k: convoy.Engine(Path(tmp)/f"{k}.db", interceptors=c(), concurrency=1000) for k, c in chains.items()}
        for e in es.values(): await e.open()
        s = {k: [] for k in es}
        for k, e in es.items(): await timed(e, "w"+k, 100, tick)
        for r in range(int(sys.argv[1])):
            for k, e in es.items(): s[k].append(await timed(e, f"{k}{r}", int(sys.argv[2]), tick))
        for e in es.values(): await e.aclose()
    b = s["bare"]
    print("bare us/step", round(statistics.median(b), 1))
    for k in es:
        if k != "bare":
            print(k, "paired +%", round(100*(statistics.median(x/y for x, y in zip(s[k], b))-1), 1),
                  "median-ratio +%", round(100*(statistics.median(s[k])/statistics.median(b)-1), 1))
asyncio.run(main())
