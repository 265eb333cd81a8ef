"""``convoy alerts``: the baseline alerts of a store, by tenant, open or all."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from rich.cells import cell_len

from convoy.stores import NewAlert, SQLiteStore
from tests.clikit import (
    SRC,
    cli,
    one_line_error,
    workdir,  # noqa: F401  (autouse fixture)
)

T0 = 1_800_000_000.0


def seed_alerts() -> None:
    async def write() -> None:
        store = SQLiteStore(Path("convoy.db"))
        await store.open()
        try:
            for tenant, metric in (("default", "latency"), ("acme", "tokens"),
                                   ("default", "error_rate")):
                aid = (await store.alert_open(NewAlert(
                    tenant=tenant, scope="agent", subject="triage", metric=metric, value=3.0,
                    mean=0.5, deviation=0.05, threshold=0.65, opened=T0), [])).id
                if metric == "latency":
                    await store.alert_clear(aid, T0 + 60, 0.52, [])
        finally:
            await store.aclose()

    asyncio.run(write())


def test_alerts_lists_the_tenants_alerts_newest_first() -> None:
    seed_alerts()
    res = cli("alerts")
    assert res.code == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "triage" in ln]
    assert len(lines) == 2 and "error_rate" in lines[0] and "latency" in lines[1]
    assert "open" in lines[0] and "cleared" in lines[1] and "0.65 (0.5, 0.05)" in lines[1]
    assert "band top (mean, dev)" in res.stdout and "±" not in res.stdout  # (one-sided)
    assert "tokens" not in res.stdout  # acme's
    res = cli("alerts", "--open")
    assert "error_rate" in res.stdout and "latency" not in res.stdout
    data = json.loads(cli("alerts", "--all-tenants", "--json").stdout)
    assert [(a["tenant"], a["metric"], a["status"]) for a in data] == [
        ("default", "error_rate", "open"), ("acme", "tokens", "open"),
        ("default", "latency", "cleared")]
    assert data[2]["cleared_value"] == 0.52
    assert json.loads(cli("alerts", "--tenant", "acme", "--json").stdout)[0]["value"] == 3.0


def test_alerts_says_when_there_are_none_and_rejects_a_missing_store() -> None:
    seed_alerts()
    res = cli("alerts", "--tenant", "globex")
    assert res.code == 0 and "no alerts of tenant 'globex'" in res.stdout
    # a tenant with no session either: a mistyped --tenant, said on stderr
    assert res.stderr.strip() == (
        "note: tenant 'globex' has no sessions in convoy.db: a mistyped --tenant? "
        "('convoy sessions list --all-tenants' shows every tenant's)")
    assert cli("alerts", "--tenant", "acme").stderr == ""  # (its alerts: no note)
    # another store: the command it suggests names it (run as shown, it lists its tenants)
    shutil.copy("convoy.db", "other.db")
    res = cli("alerts", "--tenant", "globex", "--db", "other.db")
    assert res.stderr.strip() == (
        "note: tenant 'globex' has no sessions in other.db: a mistyped --tenant? "
        "('convoy sessions list --db other.db --all-tenants' shows every tenant's)")
    one_line_error(cli("alerts", "--db", "nope.db"), 2, "nope.db")


HOOK = "https://ops:s3cret@hooks.example.com/convoy?token=t0k"
SHOWN = f"https://hooks.example.com/… #{hashlib.sha256(HOOK.encode()).hexdigest()[:8]}"


def seed_deliveries() -> None:
    """Two alerts of tenant 'default': one whose webhook event was delivered, one whose
    event was given up."""
    async def write() -> None:
        store = SQLiteStore(Path("convoy.db"), clock=lambda: T0)
        await store.open()
        try:
            for metric in ("latency", "tokens"):
                await store.alert_open(NewAlert(
                    tenant="default", scope="agent", subject="triage", metric=metric,
                    value=3.0, mean=0.5, deviation=0.05, threshold=0.65, opened=T0), [HOOK])
            for d in await store.due_deliveries(T0, urls=[HOOK]):
                if d.alert.metric == "latency":
                    await store.delivery_result(d.id, attempts=1, delivered=T0 + 1)
                else:
                    await store.delivery_result(d.id, attempts=8, next_at=None,
                                                error="HTTP 503")
        finally:
            await store.aclose()

    asyncio.run(write())


def test_alerts_show_each_webhook_delivery_and_redeliver_queues_the_given_up_again() -> None:
    seed_deliveries()
    data = json.loads(cli("alerts", "--json").stdout)
    assert [(a["metric"], [(d["url"], d["event"], d["status"], d["attempts"], d["last_error"])
                           for d in a["deliveries"]]) for a in data] == [
        ("tokens", [(SHOWN, "fired", "given_up", 8, "HTTP 503")]),
        ("latency", [(SHOWN, "fired", "delivered", 1, None)])]
    assert data[1]["deliveries"][0]["delivered"] == T0 + 1
    assert data[0]["deliveries"][0]["key"].startswith(f"convoy-alert-{data[0]['id']}-fired-")
    res = cli("alerts")
    assert res.code == 0, res.stderr
    rows = {ln.split("│")[4].strip(): ln for ln in res.stdout.splitlines() if "triage" in ln}
    assert "given up" in rows["tokens"] and "delivered" in rows["latency"]
    assert "1 webhook event given up" in res.stdout and "--redeliver" in res.stdout
    assert "s3cret" not in res.stdout + json.dumps(data) and "t0k" not in res.stdout
    res = cli("alerts", "--redeliver", "--tenant", "acme")
    assert res.code == 0 and "no given-up webhook events of tenant 'acme'" in res.stderr
    res = cli("alerts", "--redeliver", "--json")
    assert res.code == 0, res.stderr
    assert "queued 1 given-up webhook event of tenant 'default' again" in res.stderr
    data = json.loads(res.stdout)
    assert [d["status"] for a in data for d in a["deliveries"]] == ["pending", "delivered"]
    assert data[0]["deliveries"][0]["attempts"] == 0


def test_a_damaged_delivery_is_left_out_with_a_warning() -> None:
    seed_deliveries()
    with sqlite3.connect("convoy.db") as conn:
        conn.execute("UPDATE alert_outbox SET attempts='many' WHERE last_error IS NOT NULL")
    conn.close()
    for args in (("alerts",), ("alerts", "--json")):
        res = cli(*args)
        assert res.code == 0, res.stderr
        assert "left out 1 damaged alert row (webhook delivery 2 (alert 2): its stored " \
            "attempts 'many' is not a whole number" in " ".join(res.stderr.split())
    data = json.loads(cli("alerts", "--json").stdout)
    assert [(a["metric"], len(a["deliveries"])) for a in data] == [("tokens", 0),
                                                                   ("latency", 1)]


def fingerprint(url: str) -> str:
    """What docs/how-to/alerts.md tells an operator to compute."""
    return hashlib.sha256(url.encode()).hexdigest()[:8]


SLACK = "https://hooks.slack.com/services/T000/B000/XXXXsecretoneXXXXXXXXXXX"
SLACK_TOO = "https://hooks.slack.com/services/T000/B000/XXXXsecrettwoXXXXXXXXXXX"


def seed_webhooks(queues: Sequence[tuple[str, str, Sequence[str]]],
                  outcomes: dict[tuple[str, str], str] | None = None) -> None:
    """An alert per ``(tenant, metric, urls)``, queued for ``urls``; ``outcomes``: the
    deliveries of ``(metric, url)`` that were ``delivered`` or ``given_up`` (the rest
    are pending)."""
    async def write() -> None:
        store = SQLiteStore(Path("convoy.db"), clock=lambda: T0)
        await store.open()
        try:
            for tenant, metric, urls in queues:
                await store.alert_open(NewAlert(
                    tenant=tenant, scope="agent", subject="triage", metric=metric,
                    value=3.0, mean=0.5, deviation=0.05, threshold=0.65, opened=T0), urls)
            every = sorted({u for _, _, urls in queues for u in urls})
            for d in await store.due_deliveries(T0, urls=every, limit=1000, lease_s=0):
                outcome = (outcomes or {}).get((d.alert.metric, d.url))
                if outcome == "delivered":
                    await store.delivery_result(d.id, attempts=1, delivered=T0 + 1)
                elif outcome == "given_up":  # (an error as an earlier Convoy stored it)
                    await store.delivery_result(
                        d.id, attempts=8, next_at=None,
                        error=f"ConnectError: {d.url.split('?')[0]}: refused")
        finally:
            await store.aclose()

    asyncio.run(write())


def test_alerts_never_show_a_secret_in_a_webhook_path_and_tell_two_webhooks_apart() -> None:
    seed_webhooks([("default", "latency", [SLACK, SLACK_TOO])],
                  {("latency", SLACK): "given_up"})
    shown = [cli("alerts"), cli("alerts", "--json"), cli("alerts", "--all-tenants", "--json")]
    for res in shown:
        assert res.code == 0, res.stderr
        assert "secret" not in res.stdout + res.stderr and "T000" not in res.stdout
    (a,) = json.loads(shown[1].stdout)
    assert [(d["url"], d["fingerprint"], d["status"]) for d in a["deliveries"]] == [
        (f"https://hooks.slack.com/… #{fingerprint(SLACK)}", fingerprint(SLACK), "given_up"),
        (f"https://hooks.slack.com/… #{fingerprint(SLACK_TOO)}", fingerprint(SLACK_TOO),
         "pending")]
    assert fingerprint(SLACK) != fingerprint(SLACK_TOO)
    assert a["deliveries"][0]["last_error"] == (
        f"ConnectError: https://hooks.slack.com/… #{fingerprint(SLACK)}: refused")


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum here")
def test_the_documented_shell_line_computes_a_webhooks_fingerprint() -> None:
    line = subprocess.run(["sh", "-c", 'printf %s "$1" | sha256sum | cut -c1-8', "sh", SLACK],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert line == fingerprint(SLACK)


GONE = "https://hooks.slack.com/services/T000/B000/XXXXgoneXXXXXXXXXXXXXXXX"
KEPT = "https://ops.example.com/convoy"


def deliveries(*args: str) -> list[tuple[str, str, str, str]]:
    """(tenant, metric, fingerprint, status) of every delivery ``convoy alerts --json``
    lists (of ``args``' tenants), oldest alert first."""
    res = cli("alerts", "--json", *args)
    assert res.code == 0, res.stderr
    return [(a["tenant"], a["metric"], d["fingerprint"], d["status"])
            for a in reversed(json.loads(res.stdout)) for d in a["deliveries"]]


def test_drop_webhook_drops_the_pending_and_given_up_events_of_one_webhook() -> None:
    seed_webhooks([("default", "latency", [GONE, KEPT]), ("default", "tokens", [GONE]),
                   ("default", "error_rate", [GONE, KEPT]), ("acme", "velocity", [GONE])],
                  {("latency", GONE): "delivered", ("tokens", GONE): "given_up"})
    gone, kept = fingerprint(GONE), fingerprint(KEPT)
    res = cli("alerts", "--drop-webhook", GONE, "--json")
    assert res.code == 0, res.stderr
    assert "secret" not in res.stderr and "XXXX" not in res.stderr
    assert " ".join(res.stderr.split()) == (
        f"dropped 2 pending or given-up webhook events of tenant 'default' for "
        f"https://hooks.slack.com/… #{gone} (its delivered ones are kept)")
    assert deliveries("--all-tenants") == [
        ("default", "latency", gone, "delivered"), ("default", "latency", kept, "pending"),
        ("default", "error_rate", kept, "pending"), ("acme", "velocity", gone, "pending")]
    # By its fingerprint, as 'convoy alerts' shows it (the '#' may be given), in a tenant.
    res = cli("alerts", "--drop-webhook", f"#{gone.upper()}", "--tenant", "acme")
    assert res.code == 0, res.stderr
    assert "dropped 1 pending or given-up webhook event of tenant 'acme'" in res.stderr
    assert deliveries("--all-tenants") == [
        ("default", "latency", gone, "delivered"), ("default", "latency", kept, "pending"),
        ("default", "error_rate", kept, "pending")]


def test_drop_webhook_of_every_tenant() -> None:
    seed_webhooks([("default", "latency", [GONE]), ("acme", "velocity", [GONE, KEPT])])
    res = cli("alerts", "--drop-webhook", fingerprint(GONE), "--all-tenants")
    assert res.code == 0, res.stderr
    assert "dropped 2 pending or given-up webhook events for https://" in res.stderr
    assert deliveries("--all-tenants") == [("acme", "velocity", fingerprint(KEPT), "pending")]


def test_drop_webhook_says_in_one_line_when_nothing_matches_or_the_argument_is_wrong(
) -> None:
    seed_webhooks([("default", "latency", [GONE]), ("acme", "velocity", [KEPT])],
                  {("latency", GONE): "delivered"})
    res = cli("alerts", "--drop-webhook", GONE)  # its one event was delivered
    one_line_error(res, 2, "no pending or given-up webhook events of tenant 'default' for "
                           f"https://hooks.slack.com/… #{fingerprint(GONE)}: nothing dropped")
    assert "XXXX" not in res.stderr
    one_line_error(cli("alerts", "--drop-webhook", KEPT), 2,
                   "(for other tenants: --tenant NAME or --all-tenants)")
    one_line_error(cli("alerts", "--drop-webhook", "0badf00d", "--all-tenants"), 2,
                   "no pending or given-up webhook events with the fingerprint '0badf00d': "
                   "nothing dropped")
    for wrong in ("hooks.slack.com/services/T000/B000/XXXXXXXX", "3fa81c2", "3fa81c2g",
                  "ftp://ops.example.com/x", ""):
        res = cli("alerts", "--drop-webhook", wrong)
        one_line_error(res, 2, "--drop-webhook takes a webhook's URL (http:// or https://, "
                               "exactly as configured) or its 8-hex-digit fingerprint")
        assert "XXXX" not in res.stderr
    assert len(deliveries("--all-tenants")) == 2  # nothing dropped
    one_line_error(cli("alerts", "--drop-webhook", KEPT, "--db", "nope.db"), 2, "nope.db")


def test_drop_webhook_refuses_a_fingerprint_two_webhooks_share() -> None:
    """Eight hex digits tell apart the handful of webhooks a store has; two that share one
    (about one chance in four billion for a pair) are dropped by URL instead."""
    one, two = "https://hooks.example.com/36233", "https://hooks.example.com/141914"
    assert fingerprint(one) == fingerprint(two) == "bada171a"  # (found by a search)
    seed_webhooks([("default", "latency", [one, two])])
    one_line_error(cli("alerts", "--drop-webhook", "bada171a"), 2,
                   "2 webhooks have the fingerprint 'bada171a': give the URL of the one "
                   "to drop")
    res = cli("alerts", "--drop-webhook", two)
    assert res.code == 0 and "dropped 1 pending or given-up webhook event " in res.stderr
    assert [d[3] for d in deliveries()] == ["pending"]


@pytest.mark.parametrize("columns", ["80", "100", "120"])
@pytest.mark.parametrize("tenants", [False, True])
def test_a_narrow_alerts_table_keeps_every_column_and_fits(columns: str,
                                                          tenants: bool) -> None:
    """At 80 to 120 columns every column keeps a width: none is squeezed to nothing (the
    band and the id were, at 100), a long agent name wraps, and no line is wider than the
    terminal (at 80 the table was cut off at its right edge: it drops its borders then)."""
    seed_alerts()

    async def long_name() -> None:
        store = SQLiteStore(Path("convoy.db"))
        await store.open()
        try:
            await store.alert_open(NewAlert(
                tenant="acme", scope="agent", subject="refund-desk-escalation-reviewer",
                metric="token_velocity", value=3.0, mean=0.5, deviation=0.05,
                threshold=0.65, opened=T0 + 5), [])
        finally:
            await store.aclose()

    asyncio.run(long_name())
    res = subprocess.run([sys.executable, "-m", "convoy", "alerts",
                          *(["--all-tenants"] if tenants else ["--tenant", "acme"])],
                         capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": columns, "PYTHONPATH": str(SRC)},
                         check=False)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(map(cell_len, lines)) <= int(columns), (columns, res.stdout)
    head = " ".join(line.strip("┃ ") for line in lines[:lines.index(next(
        ln for ln in lines if ln.lstrip("│ ").startswith("4 ")))])
    for name in ("id", "status", *(["tenant"] if tenants else []), "of", "metric", "value",
                 "band", "opened", "cleared"):
        assert name in head.split() or f"{name} " in head, (columns, res.stdout)
    assert "0.65" in res.stdout and "(0.5," in res.stdout, res.stdout
    assert "refund-des" in res.stdout and "token_velo" in res.stdout, res.stdout


def test_metrics_serve_counts_the_open_alerts() -> None:
    """``convoy metrics serve`` gives the store's open alerts as a gauge by scope, subject
    and metric (a cleared one counts nothing), so Prometheus can alert on them; every
    tenant's with ``--all-tenants``. A subject is redacted as a label."""
    from convoy.cli._common import Scope
    from convoy.cli._metrics import StoreCollector

    seed_alerts()

    async def more() -> None:
        store = SQLiteStore(Path("convoy.db"))
        await store.open()
        try:
            await store.alert_open(NewAlert(
                tenant="default", scope="tenant", subject="zoe.quinn@mail.example.org",
                metric="tokens", value=3.0, mean=0.5, deviation=0.05, threshold=0.65,
                opened=T0), [])
        finally:
            await store.aclose()

    asyncio.run(more())

    def scrape(scope: Scope) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(s.labels.items()): s.value
                for fam in StoreCollector("convoy.db", scope).collect()
                if fam.name == "convoy_store_alerts_open" for s in fam.samples}

    assert scrape(Scope("default")) == {
        (("scope", "agent"), ("subject", "triage"), ("metric", "error_rate")): 1,
        (("scope", "tenant"), ("subject", "[EMAIL]"), ("metric", "tokens")): 1}
    assert scrape(Scope(None)) == {
        (("tenant", "acme"), ("scope", "agent"), ("subject", "triage"),
         ("metric", "tokens")): 1,
        (("tenant", "default"), ("scope", "agent"), ("subject", "triage"),
         ("metric", "error_rate")): 1,
        (("tenant", "default"), ("scope", "tenant"), ("subject", "[EMAIL]"),
         ("metric", "tokens")): 1}
    assert scrape(Scope("nobody")) == {}


def test_close_clears_an_open_alert_by_hand_and_queues_its_cleared_event() -> None:
    """An alert whose agent gets no more runs (retired, renamed) would stay open for good:
    nothing observes it again. ``--close ID`` clears it (no cleared value: nobody
    observed the metric back) and queues its ``cleared`` event for the webhooks its
    ``fired`` one went to; a closed alert, another tenant's or an unknown id is refused in
    one line, closing nothing."""
    seed_deliveries()
    data = json.loads(cli("alerts", "--json").stdout)
    ids = {a["metric"]: a["id"] for a in data}
    res = cli("alerts", "--close", str(ids["latency"]), "--tenant", "acme")
    one_line_error(res, 2, f"no open alert {ids['latency']} of tenant 'acme'")
    res = cli("alerts", "--close", str(ids["latency"]), "--json")
    assert res.code == 0, res.stderr
    assert f"closed alert {ids['latency']} (latency of agent 'triage')" in res.stderr
    after = {a["metric"]: a for a in json.loads(res.stdout)}
    closed = after["latency"]
    assert closed["status"] == "cleared" and closed["cleared"] is not None
    assert closed["cleared_value"] is None
    assert [(d["event"], d["status"], d["url"]) for d in closed["deliveries"]] == [
        ("fired", "delivered", SHOWN), ("cleared", "pending", SHOWN)]
    assert after["tokens"]["status"] == "open"
    res = cli("alerts", "--close", str(ids["latency"]))
    one_line_error(res, 2, f"no open alert {ids['latency']} of tenant 'default'")
    res = cli("alerts", "--close", "999")
    one_line_error(res, 2, "no open alert 999 of tenant 'default'")
    res = cli("alerts", "--close", "0")
    one_line_error(res, 2, "--close")


@pytest.mark.parametrize("args", [["sessions", "list"], ["cost"], ["inbox", "list"]])
def test_listings_that_find_nothing_for_a_tenant_with_no_sessions_say_it_may_be_a_typo(
        args: list[str]) -> None:
    """As purge, alerts and metrics serve do (a new user's trial: sessions list, cost and
    inbox list said only 'no ...')."""
    seed_alerts()
    res = cli(*args, "--tenant", "globex")
    assert res.code == 0, res.stderr
    assert res.stderr.strip() == (
        "note: tenant 'globex' has no sessions in convoy.db: a mistyped --tenant? "
        "('convoy sessions list --all-tenants' shows every tenant's)")


def test_a_duplicate_a_migration_closed_shows_when_it_was_closed() -> None:
    """A store an earlier Convoy left with two open alerts of one series: ``convoy db
    migrate`` closes the newer one, cleared at the migration's time (shown, not ``-``),
    with no cleared value, ``duplicate_of`` in its detail."""
    seed_alerts()
    conn = sqlite3.connect("convoy.db")
    with conn:  # (the store as the Convoy before the add-on left it)
        conn.execute("DROP INDEX alerts_open_series")
        conn.execute("DELETE FROM meta WHERE key='addon:alerts_open_once'")
        conn.execute("INSERT INTO alerts(tenant,scope,subject,metric,status,value,mean,"
                     "deviation,threshold,opened,detail) SELECT tenant,scope,subject,metric,"
                     f"status,value,mean,deviation,threshold,{T0 + 1},'{{}}' FROM alerts "
                     "WHERE status='open' AND tenant='default'")
    conn.close()
    before = time.time()
    res = cli("db", "migrate")
    assert res.code == 0, res.stderr
    after = time.time()
    data = {a["id"]: a for a in json.loads(cli("alerts", "--json").stdout)}
    (dup,) = [a for a in data.values() if "duplicate_of" in a["detail"]]
    assert dup["status"] == "cleared" and dup["cleared_value"] is None
    assert before <= dup["cleared"] <= after
    kept = data[dup["detail"]["duplicate_of"]]
    assert (kept["metric"], kept["status"], kept["cleared"]) == (dup["metric"], "open", None)
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in cli("alerts").stdout.splitlines()
            if ln.startswith("│")]
    (cells,) = [r for r in rows if r[0] == str(dup["id"])]
    assert cells[1] == "cleared" and cells[-1] not in ("", "-"), cells  # (its cleared time)


def test_closing_an_alert_that_cleared_says_when_it_cleared() -> None:
    """A new user's trial: ``--close ID`` of an alert that had cleared said only ``no open
    alert ID ... ('convoy alerts --open' lists them)``, as for an id that does not exist:
    the line says it cleared already, and when."""
    seed_deliveries()
    data = json.loads(cli("alerts", "--json").stdout)
    latency = next(a["id"] for a in data if a["metric"] == "latency")
    assert cli("alerts", "--close", str(latency)).code == 0
    res = cli("alerts", "--close", str(latency))
    one_line_error(res, 2, f"no open alert {latency} of tenant 'default': it cleared "
                           "already, at ")
    assert "nothing closed" in res.stderr, res.stderr
    res = cli("alerts", "--close", "999")
    one_line_error(res, 2, "no open alert 999 of tenant 'default': nothing closed")
