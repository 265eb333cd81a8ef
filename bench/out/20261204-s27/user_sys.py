import asyncio, resource, sys, tempfile, statistics, json
from pathlib import Path
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from observability import engines, sealed_timed, AGENTS
import time
async def rounds(es, sessions, runs):
    """Warm each engine, then time ``runs`` rounds of ``sessions``: user and system CPU
    and context switches per step, each engine's samples (also used by ablate.py)."""
    for n, e in es.items(): await sealed_timed(e, "warm"+n, 100, time.process_time)
    out = {n: {"u": [], "s": [], "vcs": [], "ivcs": []} for n in es}
    for r in range(runs):
        for n, e in es.items():
            a = resource.getrusage(resource.RUSAGE_SELF)
            await sealed_timed(e, f"{n}-{r}", sessions, time.process_time)
            b = resource.getrusage(resource.RUSAGE_SELF)
            k = 1e6 / (sessions * AGENTS)
            out[n]["u"].append((b.ru_utime - a.ru_utime) * k)
            out[n]["s"].append((b.ru_stime - a.ru_stime) * k)
            out[n]["vcs"].append((b.ru_nvcsw - a.ru_nvcsw) / (sessions*AGENTS))
            out[n]["ivcs"].append((b.ru_nivcsw - a.ru_nivcsw) / (sessions*AGENTS))
    return out
async def main(names, sessions, runs):
    with tempfile.TemporaryDirectory() as tmp:
        es = {n: e for n, e in engines(Path(tmp), "http://127.0.0.1:1/v1/traces").items() if n in names}
        for e in es.values(): await e.open()
        out = await rounds(es, sessions, runs)
        for e in es.values(): await e.aclose()
    for n, d in out.items():
        print(n, {k: round(statistics.median(v), 3) for k, v in d.items()})
if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])))
