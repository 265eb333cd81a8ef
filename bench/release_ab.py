"""CPU time and Python bytecodes per W1 step / W2 or W3 session: this checkout against another.

    git worktree add /tmp/old <commit>          # the release to compare with
    .venv/bin/python bench/release_ab.py --old /tmp/old [--workload W1|W2|W3]
        [--sessions 3000] [--runs 5] [--bytecodes]

Each run is a fresh process that imports one checkout's ``src`` and its own
``bench/convoy_peer.py`` (the W1 chain or the W3 supervisor of
../shared/bench/WORKLOADS.md, journaling on), warms up with 50 sessions, then runs
``--sessions`` sessions one after another (W2: all at once, each model call waiting
50 ms as the workload says). Runs alternate between the two checkouts.

Printed: the medians of user and system CPU time per W1 step (per W2 / W3 session) of the
process (``os.times``; on a host shared with other work, elapsed time mostly measures the
neighbours) and their ratio. ``--bytecodes`` instead counts the Python bytecodes executed
(``sys.settrace`` with opcode events: deterministic, whatever the load) over 100 sessions,
in total and for the functions that changed most.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

_CHILD = r"""
import asyncio, collections, json, os, sys
tree, workload, n, bytecodes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
sys.argv = ["x", "--sessions", str(n)]
sys.path.insert(0, os.path.join(tree, "bench"))
import convoy_peer as cp
run = cp.supervisor_session if workload == "W3" else cp.chain_session
if workload == "W2":
    cp.common._state["latency"] = cp.common.W2_LATENCY_S
ops, calls = collections.Counter(), collections.Counter()
def name(co):
    f = co.co_filename
    return (f.split("/convoy/")[-1] if "/convoy/" in f else f.split("/")[-1]) + ":" + co.co_name
def trace(frame, event, arg):
    if event == "call":
        frame.f_trace_opcodes = True
        calls[name(frame.f_code)] += 1
    elif event == "opcode":
        ops[name(frame.f_code)] += 1
    return trace
async def main():
    async with cp.engine:
        for i in range(50):
            await run(i)
        t0 = os.times()
        if bytecodes:
            sys.settrace(trace)
        if workload == "W2":
            await asyncio.gather(*[run(100_000 + i) for i in range(n)])
        for i in range(n if workload != "W2" else 0):
            await run(100_000 + i)
        sys.settrace(None)
        t1 = os.times()
    div = n * 5 if workload == "W1" else n
    print(json.dumps({"user": (t1.user - t0.user) / div * 1e6,
                      "sys": (t1.system - t0.system) / div * 1e6,
                      "ops": ops, "calls": calls, "n": n}))
asyncio.run(main())
"""


def _run(tree: Path, workload: str, sessions: int, bytecodes: bool) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    env.setdefault("CONVOY_PEERS_DIR", str(HERE.parent / "shared" / "bench" / "peers"))
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), workload, str(sessions),
                          "1" if bytecodes else "0"], env=env, capture_output=True, text=True,
                         check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="the other checkout")
    ap.add_argument("--workload", choices=["W1", "W2", "W3"], default="W1")
    ap.add_argument("--sessions", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bytecodes", action="store_true")
    a = ap.parse_args()
    trees = {"old": a.old.resolve(), "this": HERE}
    unit = "step" if a.workload == "W1" else "session"
    if a.bytecodes:
        res = {k: _run(t, a.workload, 100, True) for k, t in trees.items()}
        total = {k: sum(r["ops"].values()) / 100 for k, r in res.items()}  # type: ignore[attr-defined]
        print(f"bytecodes per {a.workload} session: old {total['old']:.0f}, "
              f"this {total['this']:.0f} ({total['this'] / total['old']:.3f}x)")
        return
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in trees}
    for _ in range(a.runs):
        for k, t in trees.items():
            r = _run(t, a.workload, a.sessions, False)
            samples[k].append((float(r["user"]), float(r["sys"])))  # type: ignore[arg-type]
    med = {k: statistics.median(u + s for u, s in v) for k, v in samples.items()}
    for k, v in samples.items():
        print(f"{k}: CPU µs per {unit}: {med[k]:.1f} (user "
              f"{statistics.median(u for u, _ in v):.1f}, sys "
              f"{statistics.median(s for _, s in v):.1f}; runs "
              f"{sorted(round(u + s, 1) for u, s in v)})")
    print(f"this / old: {med['this'] / med['old']:.3f}")


if __name__ == "__main__":
    main()
