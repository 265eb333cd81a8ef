"""bench/faults.py --quick: a real fault server on loopback, one JSON line per scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "faults.py"

COMMON = ("scenario", "sessions", "concurrency", "completed", "success_rate", "requests",
          "extra_calls", "primary_answers", "retries", "retry_budget_denied", "errors",
          "half_open_calls", "breaker_transitions", "wall_s")
PROBES = ("outage_requests", "opened_after_s", "requests_after_open", "half_open_periods",
          "probes_allowed", "within_probes")
FIELDS = {
    "random": (*COMMON, "fault_share"),
    "burst429": (*COMMON, "fault_share"),
    "outage": (*COMMON, *PROBES, "recovery_to_close_s", "requests_before_outage"),
    "fallback": (*COMMON, *PROBES, "fallback_share", "fallback_requests", "primary_requests"),
    "deployments": (*COMMON, *PROBES, "fallback_share", "fallback_requests",
                    "primary_requests", "failovers"),
}


def test_faults_bench_quick_prints_one_json_line_per_scenario() -> None:
    res = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                         text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [r["scenario"] for r in rows] == list(FIELDS)
    for row in rows:
        for key in FIELDS[row["scenario"]]:
            assert key in row, (row["scenario"], key)
        assert row["sessions"] == 40
        assert 0.0 <= row["success_rate"] <= 1.0
        assert row["requests"] > 0  # the sessions really reached the HTTP server
    outage = rows[2]
    assert outage["primary_answers"].get("503", 0) > 0 and outage["primary_answers"]["ok"] > 0
    assert "scenario" in res.stderr and "success" in res.stderr  # the table
