"""bench/reliability.py, run as a new user would, on a small number of sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "reliability.py"


def test_reliability_bench_prints_one_json_line_and_protections_help(tmp_path: Path) -> None:
    plot = tmp_path / "reliability.svg"
    res = subprocess.run([sys.executable, str(BENCH), "--agents", "5", "--fault-rate", "0.05",
                          "--sessions", "300", "--seed", "4", "--plot", str(plot)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    for key in ("agents", "fault_rate", "sessions", "success_protected", "success_unprotected",
                "theoretical", "retries", "faults_injected", "wall_s"):
        assert key in out, key
    assert (out["agents"], out["fault_rate"], out["sessions"]) == (5, 0.05, 300)
    assert out["theoretical"] == pytest.approx(0.95 ** 5)
    assert out["success_protected"] > out["success_unprotected"]
    assert out["success_protected"] >= 0.99
    assert out["success_unprotected"] == pytest.approx(out["theoretical"], abs=0.08)
    assert out["retries"] > 0 and out["faults_injected"] > 0
    assert len(out["curve"]["protected"]) == 5
    assert out["curve"]["unprotected"] == sorted(out["curve"]["unprotected"], reverse=True)
    assert "protections on" in res.stderr  # the table
    assert plot.is_file() and plot.stat().st_size > 0
