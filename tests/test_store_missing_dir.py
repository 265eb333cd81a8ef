"""A SQLite store whose directory does not exist is refused as it opens, in one line that
names the directory and says how to fix it (a :class:`~convoy.UserError`): never SQLite's
"unable to open database file", and the directory is never created behind the user's
back (a typo in a path would otherwise grow a tree of empty directories)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import convoy
from convoy import UserError
from convoy.stores import SQLiteStore, store_from_url
from tests.clikit import cli, one_line_error, workdir  # noqa: F401  (autouse fixture)


def _says_missing(e: pytest.ExceptionInfo[UserError], missing: Path) -> None:
    message = str(e.value)
    assert "\n" not in message
    assert repr(str(missing)) in message, message
    assert "does not exist" in message
    assert "create it" in message and "pick" in message, message
    assert "unable to open" not in message


@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
async def test_open_refuses_a_missing_directory(tmp_path: Path, read_only: bool) -> None:
    missing = tmp_path / "no" / "such"
    store = SQLiteStore(missing / "x.db", read_only=read_only)
    with pytest.raises(UserError) as e:
        await store.open()
    _says_missing(e, missing)
    assert not (tmp_path / "no").exists()  # nothing created


@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
def test_open_sync_refuses_a_missing_directory(tmp_path: Path, read_only: bool) -> None:
    missing = tmp_path / "nope"
    store = SQLiteStore(missing / "x.db", read_only=read_only)
    with pytest.raises(UserError) as e:
        store.open_sync()
    _says_missing(e, missing)
    assert not missing.exists()


def test_a_store_url_and_an_engine_refuse_it_too(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(UserError) as e:
        store_from_url(f"sqlite:///{missing}/x.db").open_sync()
    _says_missing(e, missing)

    async def engine() -> None:
        async with convoy.Engine(str(missing / "x.db")):
            pass

    with pytest.raises(UserError) as e:
        asyncio.run(engine())
    _says_missing(e, missing)
    assert not missing.exists()


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    with pytest.raises(UserError) as e:
        SQLiteStore(tmp_path / "plain" / "x.db").open_sync()
    assert repr(str(tmp_path / "plain")) in str(e.value)
    assert "not a directory" in str(e.value)


def test_a_directory_that_exists_still_opens(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    store = SQLiteStore(tmp_path / "data" / "x.db")
    store.open_sync()
    store.close()
    assert (tmp_path / "data" / "x.db").exists()


@pytest.mark.parametrize("args", [["sessions", "list"], ["db", "migrate"],
                                  ["state", "set", "ns", "k", "1"]],
                         ids=["sessions-list", "db-migrate", "state-set"])
def test_the_cli_says_so_in_one_line(args: list[str]) -> None:
    res = cli(*args, "--db", "/nonexistent/dir/x.db")
    one_line_error(res, 2, "'/nonexistent/dir'")
    assert "does not exist" in res.stderr
    assert not Path("/nonexistent").exists()
