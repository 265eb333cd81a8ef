"""The observability commands: ``convoy run --trace store`` then ``convoy trace``, and
``convoy metrics serve`` answering a real HTTP scrape of the store's sessions."""

from __future__ import annotations

import asyncio
import http.server
import json
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

import convoy
from convoy.observability import Tracing, observe

from .clikit import (
    FLOW,
    GOOD,
    LIMIT,
    STOPS,
    Background,
    background_fixture,
    cli,
    ids_of,
    one_line_error,
    run_live_traced,
    subprocess_env,
    workdir,
    write_jsonl,
)

__all__ = ["background_fixture", "workdir"]


@pytest.mark.parametrize("chunk", ["{not json", '[{"name": 1}]', '{"v": 2}',
                                   '{"v": 2, "trace_id": "x", "shapes": [], "spans": [1]}'])
def test_damaged_stored_spans_are_one_line(tmp_path: Path, chunk: str) -> None:
    [sid] = run_live_traced(GOOD[:1], db=tmp_path / "convoy.db")
    with sqlite3.connect(tmp_path / "convoy.db") as db:
        assert db.execute("UPDATE kv SET value=? WHERE namespace=?",
                          (chunk, f"trace:{sid}")).rowcount > 0
    db.close()
    for args in ((), ("--json",)):
        one_line_error(cli("trace", sid, *args), 1,
                       f"the spans kept for session {sid!r} are damaged")


def test_run_with_trace_then_convoy_trace(tmp_path: Path) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), "--trace", "store")
    assert res.code == 0, res.stderr
    [sid] = ids_of(GOOD[:1])
    shown = cli("trace", sid)
    assert shown.code == 0, shown.stderr
    assert shown.stdout.startswith("span") and "invoke_workflow" in shown.stdout
    assert "chat" in shown.stdout
    # derived from the journal when read, which the last line says
    assert "(derived from the journal: no state versions" in " ".join(shown.stdout.split())
    # without --trace, the same: its journal is its trace
    other = write_jsonl(tmp_path / "other.jsonl", GOOD[1:2])
    assert cli("run", FLOW, "--input", str(other)).code == 0
    [plain] = ids_of(GOOD[1:2])
    none = cli("trace", plain)
    assert none.code == 0 and "invoke_workflow" in none.stdout
    assert "Tracing(live=True) with the 'store' exporter keeps them: on the command line, " \
        "--trace store beside another exporter (--trace otlp), or --interceptors " \
        "MODULE:NAME naming such a Tracing" in " ".join(none.stdout.split())


def test_trace_json_lists_each_span_after_its_parent(tmp_path: Path) -> None:
    """Derived spans (the default) and live ones alike: a reader that builds the tree in
    one pass over ``--json`` finds every parent before its children, in the waterfall's
    order."""
    inputs = write_jsonl(tmp_path / "in.jsonl", GOOD[:1])
    assert cli("run", FLOW, "--input", str(inputs)).code == 0
    [derived] = ids_of(GOOD[:1])
    [live] = run_live_traced(GOOD[1:2], db=Path("convoy.db"))
    for sid in (derived, live):
        spans = json.loads(cli("trace", sid, "--json").stdout)
        assert len(spans) > 3
        seen: set[str] = set()
        for s in spans:
            assert s["parent_id"] is None or s["parent_id"] in seen or \
                s["parent_id"] not in {x["span_id"] for x in spans}, (sid, s["name"])
            seen.add(s["span_id"])
        lines = cli("trace", sid).stdout.splitlines()
        end = next(i for i, ln in enumerate(lines) if ln.startswith("trace "))
        waterfall = [ln.split()[0] for ln in lines[1:end]]
        assert waterfall == [s["name"].split()[0] for s in spans]


def test_bad_trace_exporter_is_one_line() -> None:
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), "--trace", "jaeger")
    one_line_error(res, 2, "--trace: unknown exporter 'jaeger'; use 'store', 'otlp' or "
                   "'console'")
    assert "SpanExporter" not in res.stderr  # (an object the command line cannot take)


@pytest.mark.parametrize(("env", "said"), [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "notaurl"},
     "OTEL_EXPORTER_OTLP_ENDPOINT='notaurl' is not an http:// or https:// URL"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://127.0.0.1:4318"},
     "OTEL_EXPORTER_OTLP_ENDPOINT='ftp://127.0.0.1:4318' is not an http:// or https:// URL"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"},
     "OTEL_EXPORTER_OTLP_ENDPOINT='http://[::1' cannot be read as a URL"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:99999/v1/traces"},
     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT='http://127.0.0.1:99999/v1/traces': the port "
     "must be a number from 1 to 65535"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://ops:s3cret@127.0.0.1"},  # (no password shown)
     "OTEL_EXPORTER_OTLP_ENDPOINT='ftp://ops:***@127.0.0.1' is not an http:// or https://"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL='grpc': Convoy exports OTLP over HTTP (http/protobuf), "
     "not gRPC"),
    ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "junk"},
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='junk' is not an OTLP protocol: use "
     "'http/protobuf'"),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "abc"},
     "OTEL_EXPORTER_OTLP_TIMEOUT='abc' is not a number of seconds"),
    ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-5"},
     "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT='-5' is not a number of seconds"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "garbage"},
     "OTEL_EXPORTER_OTLP_HEADERS: its item 1 is not KEY=VALUE"),
    ({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer s3cret,,x-key: s3cret",
      "OTEL_EXPORTER_OTLP_HEADERS": "a=1"},
     "OTEL_EXPORTER_OTLP_TRACES_HEADERS: its item 3 is not KEY=VALUE"),
])
def test_an_otlp_setting_no_span_could_be_sent_with_is_one_line_before_any_session(
        env: dict[str, str], said: str) -> None:
    """Before, every session ran, then one warning blamed a collector not running."""
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), "--trace", "otlp", env=env)
    one_line_error(res, 2, f"--trace: {said}")
    assert "sessions run" not in res.stdout  # (refused before any session ran)
    assert "s3cret" not in res.stderr  # (a header's value may be a token)


def test_the_console_exporter_writes_to_stderr_beside_the_summary() -> None:
    """stdout holds the command's own output (the summary, the failures): spans went there
    too, before the summary table."""
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), "--trace", "console")
    assert res.code == 0, res.stderr
    assert '"trace_id"' not in res.stdout and '"trace_id"' in res.stderr, res.stdout[:300]


def test_the_console_exporter_writes_one_json_line_a_span() -> None:
    """Each span is one line of JSON (the SDK's default is indented over some twenty
    lines, its first a bare ``{``): a log shipper reading ``--log-format json`` lines, or
    ``jq``, takes each line whole."""
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    res = cli("run", FLOW, "--input", str(inputs), "--trace", "console",
              "--log-format", "json")
    assert res.code == 0, res.stderr
    spans = [json.loads(line) for line in res.stderr.splitlines()
             if line.startswith('{"name"')]
    assert spans and all(s["context"]["trace_id"] for s in spans), res.stderr[:500]
    assert "{" not in [line.strip() for line in res.stderr.splitlines()], res.stderr[:500]


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A collector that refuses every batch (400: the exporter does not retry it)."""

    posts: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append(self.path)
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_the_collector_did_not_take_are_reported_in_one_line() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        inputs = write_jsonl(Path("in.jsonl"), GOOD[:2])
        res = cli("run", FLOW, "--input", str(inputs), "--trace", "otlp",
                  env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint})
    finally:
        server.shutdown()
        server.server_close()
    assert res.code == 0, res.stderr  # the sessions ran: only their spans are lost
    assert _Refusing.posts and set(_Refusing.posts) == {"/v1/traces"}
    [line] = [ln for ln in res.stderr.splitlines() if "span" in ln]
    assert line.startswith("warning: ") and f"could not be exported to OTLP {endpoint}" in line
    assert "is the collector running there?" in line


def test_a_collector_that_is_down_is_one_warning_line_in_a_real_process() -> None:
    """Without pytest's log capture, the SDK's own records of each failed export (its
    retries, the batch it dropped) reached stderr before Convoy's line: the command says
    it once."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nobody listens on (closed again at once)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    # (a user and password in the endpoint: the warning shows neither's secret; the
    # protocol variable, which the HTTP exporter does not read, is no reason to refuse)
    env = {**subprocess_env(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
           f"HTTP://ops:s3cret@127.0.0.1:{port}/v1/traces", "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    res = subprocess.run([sys.executable, "-m", "convoy.cli", "run", FLOW, "--input",
                          str(inputs), "--trace", "otlp", "--db", "down.db"],
                         check=False, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: "), res.stderr
    assert "could not be exported" in lines[0]
    assert "s3cret" not in res.stderr and "ops:***@127.0.0.1" in lines[0], lines[0]
    assert "(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT says where OTLP goes)" in lines[0], lines[0]


def test_general_otlp_headers_the_traces_ones_replace_are_not_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK sends the traces' headers instead of the general ones: a general setting
    it ignores is no reason to refuse."""
    from convoy.observability._otlp_env import otlp_problem

    assert otlp_problem({"OTEL_EXPORTER_OTLP_HEADERS": "garbage",
                         "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer x"}) is None


@pytest.mark.parametrize(("timeout", "bound"), [("2", 3.0), ("30", 31.0), (None, 11.0)])
def test_the_flush_at_close_is_bounded_by_the_otlp_exporters_own_timeout(
        monkeypatch: pytest.MonkeyPatch, timeout: str | None, bound: float) -> None:
    """The bound is the OTLP exporter's timeout and a second: the SDK keeps it on the
    exporter's client, where it was not looked for (always 10 s: a collector answering
    within a longer timeout was said to have lost the spans)."""
    from convoy.observability import Tracing

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", raising=False)
    if timeout is None:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", timeout)
    assert Tracing(exporters=["otlp"])._export_bound() == bound


def test_a_collector_that_trickles_its_answer_holds_the_command_no_longer_than_its_timeout(
        ) -> None:
    """A collector that says 200 and then sends its body a byte at a time never trips the
    exporter's timeout, which bounds each read: the command, its sessions run, waited for
    it forever (and, its event loop blocked, heard no SIGTERM). The flush at its end is
    bounded by the exporter's timeout (``OTEL_EXPORTER_OTLP_TIMEOUT``), and the spans not
    delivered are said to be lost."""
    import socket
    import subprocess
    import sys

    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(1 << 16)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n"
                         b"Content-Type: application/x-protobuf\r\n\r\n")
            while not stop.wait(0.5):
                try:
                    conn.sendall(b"\0")
                except OSError:
                    return

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    env = {**subprocess_env(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
           f"http://127.0.0.1:{port}/v1/traces", "OTEL_EXPORTER_OTLP_TIMEOUT": "2"}
    try:
        res = subprocess.run([sys.executable, "-m", "convoy.cli", "run", FLOW, "--input",
                              str(inputs), "--trace", "otlp", "--db", "drip.db"],
                             check=False, capture_output=True, text=True, env=env,
                             timeout=120)
    finally:
        stop.set()
        listener.close()
    assert res.returncode == 0, res.stderr
    assert "│ completed                 │ 1" in res.stdout, res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: "), res.stderr
    assert "could not be exported" in lines[0], lines[0]


@pytest.mark.parametrize(("sig", "sigint", "code"), STOPS)
def test_metrics_serve_answers_a_scrape(tmp_path: Path, background: Callable[..., Background],
                                        sig: int, sigint: str, code: int) -> None:
    inputs = write_jsonl(tmp_path / "in.jsonl", GOOD)
    assert cli("run", FLOW, "--input", str(inputs)).code == 0
    server = background("metrics", "serve", "--port", "0", sigint=sigint)
    ready = server.wait_for_line("metrics of convoy.db of tenant 'default' on http://")
    url = ready.split(" on ", 1)[1].strip()
    with urllib.request.urlopen(url, timeout=LIMIT) as r:
        body = r.read().decode()
    res = server.stop(sig)
    assert res.code == code, res.stderr
    assert "Traceback" not in res.stderr
    values = {(s.name, s.labels.get("status")): s.value
              for fam in text_string_to_metric_families(body) for s in fam.samples}
    assert values[("convoy_store_sessions", "completed")] == len(GOOD)
    assert values[("convoy_store_sessions", "failed")] == 0


def test_metrics_serve_says_once_when_the_store_becomes_unreadable(
        background: Callable[..., Background]) -> None:
    """A store removed or damaged after the server started: each scrape answers (the
    target stays up) with ``convoy_store_up 0`` and nothing else, and stderr says so in one
    line, once, not a traceback a scrape; ``convoy_store_up 1`` again once it reads."""
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    assert cli("run", FLOW, "--input", str(inputs)).code == 0
    server = background("metrics", "serve", "--port", "0")
    url = server.wait_for_line("metrics of convoy.db").split(" on ", 1)[1].strip()

    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(url, timeout=LIMIT) as r:
            return {s.name: s.value for fam in text_string_to_metric_families(r.read().decode())
                    for s in fam.samples}

    assert scrape()["convoy_store_up"] == 1
    Path("convoy.db").rename("kept.db")
    for _ in range(3):
        assert scrape() == {"convoy_store_up": 0}
    line = server.wait_for_line("cannot read")
    assert "no Convoy store at convoy.db any more (removed or moved" in line, line
    assert "creates one" not in line, line  # (not one to create: new user's trial)
    Path("kept.db").rename("convoy.db")
    assert scrape()["convoy_store_up"] == 1
    server.wait_for_line("reads the store again")
    res = server.stop()
    assert "Traceback" not in res.stderr, res.stderr
    assert sum("cannot read" in ln for ln in res.stderr.splitlines()) == 1, res.stderr


def test_metrics_serve_says_when_its_tenant_has_no_sessions(
        background: Callable[..., Background]) -> None:
    """A --tenant with no session in the store (a typo, most likely: its scrapes would be
    zeros forever) is said in one line before serving; a tenant with sessions is not."""
    inputs = write_jsonl(Path("in.jsonl"), GOOD[:1])
    assert cli("run", FLOW, "--input", str(inputs)).code == 0
    typo = background("metrics", "serve", "--port", "0", "--tenant", "defualt")
    typo.wait_for_line("metrics of convoy.db of tenant 'defualt' on http://")
    assert typo.stop().code == 130  # (Ctrl-C)
    assert typo.printed["stderr"][0].rstrip() == (
        "note: tenant 'defualt' has no sessions in convoy.db: a mistyped --tenant? "
        "('convoy sessions list --all-tenants' shows every tenant's)")
    known = background("metrics", "serve", "--port", "0", "--tenant", "default")
    known.wait_for_line("metrics of convoy.db of tenant 'default' on http://")
    assert known.stop().code == 130
    assert not any("note:" in ln for ln in known.printed["stderr"])
    every = background("metrics", "serve", "--port", "0", "--all-tenants")
    every.wait_for_line("metrics of convoy.db of every tenant on http://")
    assert every.stop().code == 130


def test_metrics_serve_names_a_postgresql_store_without_its_password(
        background: Callable[..., Background]) -> None:
    """Its first line names the store as every message does: without the password, in the
    user part or as a libpq parameter (review s24 F5)."""
    from tests.store_backends import PostgresBackend

    backend = PostgresBackend(Path.cwd())
    try:
        db = backend.url.replace("postgres@", "postgres:s3cret@", 1) + "&password=s3cret"
        assert cli("db", "migrate", "--db", db).code == 0
        server = background("metrics", "serve", "--db", db, "--port", "0")
        ready = server.wait_for_line("metrics of ")
        server.stop()
        assert "s3cret" not in ready and "postgres:***@" in ready, ready
        assert "&password=*** of tenant 'default' on http://" in ready, ready
    finally:
        backend.cleanup()


def test_worker_serves_its_metrics_while_it_works(
        tmp_path: Path, background: Callable[..., Background]) -> None:
    lines = ['"order 1"', '"order 2"']
    inputs = write_jsonl(tmp_path / "in.jsonl", lines)
    assert cli("run", "cli_flows:approval", "--input", str(inputs)).code == 0
    first, second = ids_of(lines, "cli_flows:approval")
    worker = background("worker", "cli_flows", "--metrics-port", "0", "--poll-interval",
                        "0.05", "--trace", "store")
    ready = worker.wait_for_line("metrics on http://")
    url = ready.split(" on ", 1)[1].strip()
    worker.wait_for_line("worker on convoy.db")
    body: list[str] = []

    def completed(n: int) -> bool:
        with urllib.request.urlopen(url, timeout=LIMIT) as r:
            text = r.read().decode()
        body.append(text)
        return sum(s.value for fam in text_string_to_metric_families(text)
                   for s in fam.samples if s.name == "convoy_sessions_total"
                   and s.labels.get("outcome") == "completed") == n

    assert completed(0)
    assert cli("signal", first, "approve", "--payload", "true").code == 0
    assert cli("signal", second, "approve", "--payload", "false").code == 0
    ended = worker.wait_for_line(first, second)  # a line as each run ends, in any order
    worker.wait_for_line(second if first in ended else first)
    assert completed(2)
    res = worker.stop()
    assert res.code == 130, res.stderr
    assert "stopped after 2 session runs" in res.stderr, res.stderr
    names = {s.name for fam in text_string_to_metric_families(body[-1]) for s in fam.samples}
    assert "convoy_session_run_seconds_count" in names
    shown = cli("trace", first)  # and the worker kept the spans of the run it made
    assert shown.code == 0 and "invoke_workflow" in shown.stdout, shown.stdout
    assert "wait approve" in shown.stdout and "2 spans" in shown.stdout, shown.stdout


def test_a_span_name_or_message_with_line_breaks_stays_on_its_row() -> None:
    from rich.console import Console

    from convoy.cli._trace import waterfall

    attrs: dict[str, object] = {"convoy.step.key": "0.1"}
    spans = [{"span_id": "a", "parent_id": None, "name": "invoke_workflow w", "start": 0,
              "end": 10, "status": "ok", "attrs": {}, "message": None},
             {"span_id": "b", "parent_id": "a", "name": "step notify\n[CARD]", "start": 1,
              "end": 5, "status": "error", "attrs": attrs,
              "message": "ToolError: no such customer\n[IBAN]\r\n[IP]"}]
    console = Console(width=200, record=True, color_system=None)
    console.print(waterfall(spans))
    rows = console.export_text().splitlines()
    [row] = [r for r in rows if "step notify" in r]
    assert "step notify [CARD]" in row and "no such customer [IBAN] [IP]" in row
    assert len(rows) == 3  # the header and one row per span


def test_a_failed_sessions_span_says_its_status_once() -> None:
    from convoy.cli._trace import detail

    span = {"status": "error", "message": "failed: session 'tw' waited too long",
            "attrs": {"convoy.session.status": "failed", "convoy.session.resumed": True}}
    assert detail(span) == "resumed, failed: session 'tw' waited too long"


@convoy.workflow(name="obs.asks", version="1")
async def _asks(ctx: convoy.Context, amount: int) -> str:
    ok = await ctx.ask_human(f"Refund {amount}?", bool, queue="billing")
    return "yes" if ok.value else "no"


def test_a_live_trace_with_a_derived_span_says_how_many_were_derived() -> None:
    """The bug: a session traced live, parked on a person, drew its wait as a derived
    span, and the last line said the whole trace was derived, suggesting live=True."""
    async def go() -> str:
        tracing = Tracing(["store"], live=True)
        async with convoy.Engine("convoy.db", interceptors=observe(tracing)) as engine:
            res = await engine.run(_asks, 120)
            await tracing.flush()
        assert res.status == "waiting"
        return res.id

    sid = asyncio.run(go())
    shown = cli("trace", sid)
    assert shown.code == 0, shown.stderr
    spans = json.loads(cli("trace", sid, "--json").stdout)
    derived = sum(1 for s in spans if s["attrs"].get("convoy.derived"))
    assert 0 < derived < len(spans), spans
    footer = " ".join(shown.stdout.split()[-20:])
    assert f"({derived} of {len(spans)} spans derived from the journal" in footer, footer
    assert "live=True" not in footer


_LONG = "examples.support_desk.workflow:handle_ticket_" + "x" * 80
_long_agent = convoy.Agent(name="agent_" + "y" * 70, model=convoy.SimModel(
    {"agent_" + "y" * 70: {"text": "hi"}}))


@convoy.workflow(name=_LONG, version="1")
async def _long(ctx: convoy.Context, text: str) -> str:
    return str(await ctx.run(_long_agent, text))


def test_a_trace_piped_to_a_file_keeps_each_name_on_its_row(workdir: Path) -> None:
    """The bug: piped (no terminal, no $COLUMNS), the waterfall was drawn 120 columns wide
    and folded long span names mid-word, so grep missed them."""
    async def go() -> str:
        async with convoy.Engine("convoy.db") as engine:
            return (await engine.run(_long, "x")).id

    sid = asyncio.run(go())
    env = {k: v for k, v in subprocess_env().items() if k != "COLUMNS"}
    res = subprocess.run([sys.executable, "-m", "convoy.cli", "trace", sid], cwd=workdir,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    rows = res.stdout.splitlines()
    assert any(r.startswith(f"invoke_workflow {_LONG} ") for r in rows), res.stdout
    assert any(r.startswith(f"  invoke_agent {_long_agent.name} ") for r in rows)
    assert rows[-1].startswith("trace ") and "(derived from the journal" in rows[-1]


_short_agent = convoy.Agent(name="triage", model=convoy.SimModel({"triage": {"text": "hi"}}))


@convoy.workflow(name="obs.narrow", version="1")
async def _narrow(ctx: convoy.Context, text: str) -> str:
    return str(await ctx.run(_short_agent, text))


@pytest.mark.parametrize("columns", [80, 60])
def test_a_waterfall_on_a_narrow_terminal_keeps_names_and_times_whole(
        workdir: Path, columns: int) -> None:
    """A new user's trial: on an 80-column terminal the bar kept its 32 columns and the
    span names folded mid-word (``invoke_workflo`` / ``w``), times over two lines (``0.0``
    / ``ms``); at 40 columns only the bars were left. The bar gives way first: each name
    and time stays whole on its row."""
    async def go() -> str:
        async with convoy.Engine("convoy.db") as engine:
            return (await engine.run(_narrow, "x")).id

    sid = asyncio.run(go())
    env = {**subprocess_env(), "COLUMNS": str(columns)}
    res = subprocess.run([sys.executable, "-m", "convoy.cli", "trace", sid], cwd=workdir,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    rows = res.stdout.splitlines()[:-1]  # (the last: the trace's line, which wraps)
    assert all(len(r) <= columns for r in rows), res.stdout
    assert rows[1].startswith("invoke_workflow obs.narrow  0."), res.stdout
    assert rows[1].split()[2:6] == [rows[1].split()[2], "ms", rows[1].split()[4], "ms"]
    assert rows[2].startswith("  invoke_agent triage "), res.stdout
    assert rows[3].startswith("    chat default "), res.stdout
