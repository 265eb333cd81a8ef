"""Machine instructions per W1 step by observability chain (issue 11), counted by
``valgrind --tool=callgrind``: C code included (SQLite, SHA-256, float formatting, the
garbage collector), which ``observability_parts.py --bytecodes`` does not see, and as
repeatable as bytecodes on a busy host (within ~3%: the store's group commit batches by
timing).

    .venv/bin/python bench/instructions.py bare metrics audit tma

Each chain runs ``observability_parts.py NAME 100`` and ``NAME 300`` under callgrind (the
two at once); their difference over the 1,000 steps between them is one step's
instructions, start-up and warm-up cancelled out. Prints one JSON line: instructions per
step by chain and each one's added percentage against ``bare`` (run it too).

Caveat: valgrind hides the CPU's SHA extensions, so OpenSSL hashes in plain code there:
SHA-256 costs several times more instructions than on a host with SHA-NI (audit's two
hashes per step: ~17k instructions under callgrind, ~1.5 µs native).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from observability_parts import CHAINS
from resilience_overhead import AGENTS

HERE = Path(__file__).parent


def instructions(name: str, tmp: Path) -> float:
    """Instructions of one W1 step with chain ``name``."""
    runs = {}
    for n in (100, 300):
        out = tmp / f"{name}.{n}.out"
        runs[n] = (out, subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             str(HERE / "observability_parts.py"), name, str(n)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    totals = {}
    for n, (out, proc) in runs.items():
        if proc.wait() != 0:
            raise SystemExit(f"instructions.py: {name} {n} failed under valgrind (exit "
                             f"{proc.returncode}); run it without valgrind to see why")
        line = next((x for x in out.read_text().splitlines() if x.startswith("totals:")), "")
        if not line:
            raise SystemExit(f"instructions.py: callgrind wrote no total for {name} {n} "
                             f"({out}); run it again")
        totals[n] = int(line.split()[1])
    return (totals[300] - totals[100]) / (200 * AGENTS)  # (W1: a model step per agent)


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in CHAINS]
    if not names or unknown:
        raise SystemExit(f"usage: instructions.py NAME... (NAME: {', '.join(CHAINS)})")
    if shutil.which("valgrind") is None:
        raise SystemExit("instructions.py needs valgrind: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        per = {n: round(instructions(n, Path(tmp))) for n in names}
    bare = per.get("bare")
    print(json.dumps({"instructions_per_step": per,
                      "added_pct": {n: round(100 * (v / bare - 1), 1)
                                    for n, v in per.items() if bare and n != "bare"}}))


if __name__ == "__main__":
    main(sys.argv[1:])
