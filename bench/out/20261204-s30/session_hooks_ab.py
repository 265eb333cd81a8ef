import asyncio, sys, tempfile, time, statistics
from pathlib import Path
sys.path.insert(0, "/work/main/bench")
from resilience_overhead import timed, AGENTS
import convoy

class AsyncWrap(convoy.Interceptor):
    async def session_run(self, input, next):
        end = await next(input)
        return end

class SyncWrap(convoy.Interceptor):
    def session_run(self, input, next):
        input.run_taps.append(lambda e: None)
        return next(input)

async def main():
    with tempfile.TemporaryDirectory() as tmp:
        es = {"bare": convoy.Engine(Path(tmp)/"b.db", concurrency=1000),
              "sync1": convoy.Engine(Path(tmp)/"s.db", interceptors=[SyncWrap()], concurrency=1000),
              "async3": convoy.Engine(Path(tmp)/"a.db", interceptors=[SyncWrap(), AsyncWrap(), AsyncWrap(), AsyncWrap()], concurrency=1000)}
        for e in es.values(): await e.open(); await timed(e, "w", 100)
        s = {k: [] for k in es}
        for r in range(int(sys.argv[1])):
            for k, e in es.items():
                t = time.process_time(); await timed(e, f"{k}{r}", 1000); s[k].append(time.process_time() - t)
        for k in es:
            print(k, round(statistics.median(s[k])/5000*1e6, 1), round(100*(statistics.median(x/b for x, b in zip(s[k], s["bare"]))-1), 1))
        for e in es.values(): await e.aclose()
asyncio.run(main())
