"""Layering: SQL and ``sqlite3`` live in ``convoy.stores`` only; everything else persists
through the store protocol, so every store implementation serves all of Convoy."""

from __future__ import annotations

import re
from pathlib import Path

import convoy

PACKAGE = Path(convoy.__file__).parent
SQL = re.compile(r"\bsqlite3\b|\b(?:SELECT|INSERT|UPDATE|DELETE FROM|CREATE TABLE)\s")
# Modules still reading the SQLite file directly, being moved to the store protocol on
# their own branch (the CLI and chaos rebuild). Remove each entry as it lands: the list
# only ever shrinks.
KNOWN: set[str] = set()  # nothing: every module goes through the Store protocol


def violations() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("stores/"):
            continue
        lines = [f"{n}: {line.strip()}" for n, line in
                 enumerate(path.read_text().splitlines(), 1) if SQL.search(line)]
        if lines:
            found[rel] = lines
    return found


def test_only_stores_speak_sql() -> None:
    new = {k: v for k, v in violations().items() if k not in KNOWN}
    assert not new, f"sqlite3 or SQL outside convoy/stores (use the Store protocol): {new}"


def test_the_check_sees_sql() -> None:
    assert SQL.search("import sqlite3") and SQL.search('"SELECT x FROM t"')
    assert SQL.search("UPDATE sessions SET") and not SQL.search("an UPDATEd value")
    assert "stores/_sqlite.py" not in violations()
