"""The observability commands: ``convoy run --trace store`` then ``convoy trace``, and
``convoy metrics serve`` answering a real HTTP scrape of the store's sessions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .clikit import FIXTURES, FLOW, GOOD, SRC, cli, ids_of, one_line_error, workdir, write_jsonl
from .telemetry_servers import free_port, wait_until

__all__ = ["workdir"]


def test_run_with_trace_then_convoy_trace(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), "--trace", "store")
    assert res.code == 0, res.stderr
    [sid] = ids_of(GOOD[:1])
    shown = cli("trace", sid)
    assert shown.code == 0, shown.stderr
    assert shown.stdout.startswith("span") and "invoke_workflow" in shown.stdout
    assert "chat" in shown.stdout
    # without --trace nothing is kept, and the command says how to get spans
    other = write_jsonl(tmp_path / "other.jsonl", GOOD[1:2])
    assert cli("run", FLOW, "--input", str(other)).code == 0
    [plain] = ids_of(GOOD[1:2])
    none = cli("trace", plain)
    assert none.code == 0 and "no spans kept" in none.stdout


def test_bad_trace_exporter_is_one_line() -> None:
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    one_line_error(cli("run", FLOW, "--input", str(inputs), "--trace", "jaeger"), 2,
                   "--trace: Tracing: unknown exporter 'jaeger'")


def test_metrics_serve_answers_a_scrape(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", GOOD)
    assert cli("run", FLOW, "--input", str(inputs)).code == 0
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(SRC)])}
    env.pop("CONVOY_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "convoy.cli", "metrics", "serve", "--db",
                             str(tmp_path / "convoy.db"), "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    body: list[str] = []

    def scraped() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body.append(r.read().decode())
        return True

    try:
        wait_until("convoy metrics serve", scraped, None, None, 60.0)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    values = {(s.name, s.labels.get("status")): s.value
              for fam in text_string_to_metric_families(body[-1]) for s in fam.samples}
    assert values[("convoy_store_sessions", "completed")] == len(GOOD)
    assert values[("convoy_store_sessions", "failed")] == 0


def test_worker_serves_its_metrics_while_it_works(tmp_path: Path) -> None:
    lines = ['"order 1"', '"order 2"']
    inputs = write_jsonl(tmp_path / "in.jsonl", lines)
    assert cli("run", "cli_flows:approval", "--input", str(inputs)).code == 0
    first, second = ids_of(lines, "cli_flows:approval")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(SRC)])}
    env.pop("CONVOY_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "convoy.cli", "worker", "cli_flows",
                             "--metrics-port", str(port), "--poll-interval", "0.05",
                             "--trace", "store"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    body: list[str] = []

    def completed(n: int) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        body.append(text)
        return sum(s.value for fam in text_string_to_metric_families(text)
                   for s in fam.samples if s.name == "convoy_sessions_total"
                   and s.labels.get("outcome") == "completed") == n

    try:
        wait_until("the worker's metrics", lambda: completed(0), proc, None, 60.0)
        assert cli("signal", first, "approve", "--payload", "true").code == 0
        assert cli("signal", second, "approve", "--payload", "false").code == 0
        wait_until("two completed sessions", lambda: completed(2), proc, None, 60.0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130
    names = {s.name for fam in text_string_to_metric_families(body[-1]) for s in fam.samples}
    assert "convoy_session_run_seconds_count" in names
    shown = cli("trace", first)  # and the worker kept the spans of the run it made
    assert shown.code == 0 and "invoke_workflow" in shown.stdout and "1 span" in shown.stdout
