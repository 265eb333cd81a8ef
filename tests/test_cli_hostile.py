"""Hostile input to the command line: whatever a user types, or a file holds, the answer is
one line (or the line is skipped), never a traceback, and nothing unreadable is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from convoy import UserError
from convoy.stores import store_from_url
from tests.clikit import (
    FLOW,
    cli,
    one_line_error,
    run_ok,
    workdir,  # noqa: F401  (autouse fixture)
)
from tests.conftest import STORE_KINDS, store_db

HUGE = "99999999999999999999"


@pytest.fixture(params=STORE_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    for where in store_db(request.param, tmp_path):
        yield str(where)


@pytest.mark.parametrize("value", ["inf", "1e308", "nan", "-1"])
def test_busy_timeout_must_be_finite_and_sane(value: str) -> None:
    run_ok()
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", "--busy-timeout", value), 2,
                   "--busy-timeout")
    one_line_error(cli("run", FLOW, "-i", "in.jsonl", env={"CONVOY_BUSY_TIMEOUT": value}),
                   2, "CONVOY_BUSY_TIMEOUT must be")


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e308, -1.0])
def test_busy_timeout_of_the_python_api_is_a_user_error(value: float) -> None:
    with pytest.raises(UserError, match="busy_timeout"):
        store_from_url("x.db", busy_timeout=value)


@pytest.mark.parametrize("args", [
    ("sessions", "list", "--limit", HUGE), ("sessions", "list", "--offset", HUGE),
    ("sessions", "list", "--offset", "-1"), ("sessions", "list", "--limit", "0"),
    ("alerts", "--limit", HUGE), ("state", "history", "ns", "k", "--limit", HUGE),
    ("state", "set", "ns", "k", "1", "--expected-version", HUGE),
    ("cost", "--limit", HUGE), ("audit", "list", "--limit", HUGE),
])
def test_counts_beyond_a_64_bit_integer_are_usage_errors(db: str, args: tuple[str, ...]
                                                         ) -> None:
    run_ok("--db", db)
    one_line_error(cli(*args, "--db", db), 2, f"{args[-2]} must be")


BAD_URLS = ["postgresql://", "postgresql:///", "postgresql://[::1",
            "postgresql://x:sekret@h/db?foo=bar", "postgresql://%zz@h/db",
            "postgresql://u:%zz-sekret@h/db", "postgres://u:sekret@[::1/db"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_malformed_postgresql_url_is_one_line_without_its_password(url: str) -> None:
    with pytest.raises(UserError, match="PostgreSQL URL") as caught:
        store_from_url(url)
    assert "sekret" not in str(caught.value)
    for args in (("sessions", "list"), ("state", "set", "ns", "k", "1"),
                 ("run", FLOW, "-i", "in.jsonl"), ("erase", "someone")):
        res = cli(*args, "--db", url)
        one_line_error(res, 2, "PostgreSQL URL")
        assert "sekret" not in res.stderr
