"""W1 CPU per step, main vs the gdpr branch (no master key: the path every user without
data subjects takes), back-to-back pairs, median of the ratios.

    python bench/out/20261130-gdpr/w1_main_vs_gdpr.py [PAIRS] [SESSIONS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
BRANCH = HERE.parents[3]
MAIN = Path("/work/main")
PY = "/work/main/.venv/bin/python"


def one(src: Path, sessions: int) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVOY_MASTER_KEY", "CONVOY_MASTER_KEY_FILE")}
    env["PYTHONPATH"] = str(src / "src")
    out = subprocess.run([PY, str(BRANCH / "bench" / "convoy_peer.py"), "--workload", "W1",
                          "--sessions", str(sessions), "--warmup", "50"], env=env,
                         capture_output=True, text=True, check=True, cwd="/tmp").stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return float(rec["cpu_s"]) / (sessions * 5) * 1e6  # µs of CPU per step


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    sessions = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    base, new = [], []
    for i in range(pairs):
        order = [(MAIN, base), (BRANCH, new)] if i % 2 == 0 else [(BRANCH, new), (MAIN, base)]
        for src, acc in order:
            acc.append(one(src, sessions))
    ratios = [n / b for b, n in zip(base, new, strict=True)]
    print(f"W1 {sessions} sessions x {pairs} pairs: main {statistics.median(base):.1f} "
          f"us CPU/step, gdpr {statistics.median(new):.1f} us CPU/step, median ratio "
          f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
