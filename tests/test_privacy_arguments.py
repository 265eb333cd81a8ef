"""The data subject methods given what they do not take, as a new user writes it: an age
as the command line's text (``purge(older_than="30d")``), NaN, a subject that is not a
string. Each is a :class:`convoy.UserError` saying what to pass, not Python's
``TypeError`` from deep inside (``'<=' not supported between instances of 'str' and
'int'``, ``object of type 'NoneType' has no len()``), and NaN does not purge nothing in
silence."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import convoy

from .test_privacy import engine


@pytest.mark.parametrize(("age", "said"), [
    ("30d", "convoy.privacy.parse_age('30d')"),
    (math.nan, "got nan"),
    (math.inf, "got inf"),
    (True, "got True"),
    (None, "got None"),
])
async def test_purge_refuses_an_age_that_is_not_seconds(tmp_path: Path, age: Any,
                                                        said: str) -> None:
    async with engine(tmp_path / "convoy.db") as eng:
        for purge in (lambda: eng.purge(age), lambda: eng.tenant("acme").purge(age)):
            with pytest.raises(convoy.UserError, match="a retention age") as e:
                await purge()
            assert said in str(e.value), str(e.value)


@pytest.mark.parametrize("subject", [None, 42, b"c-1"])
async def test_erase_and_export_refuse_a_subject_that_is_not_a_string(
        tmp_path: Path, subject: Any) -> None:
    async with engine(tmp_path / "convoy.db") as eng:
        acme = eng.tenant("acme")
        for call in (lambda: eng.erase(subject), lambda: eng.erase_plan(subject),
                     lambda: eng.export(subject), lambda: acme.erase(subject),
                     lambda: acme.export(subject)):
            with pytest.raises(convoy.UserError, match="a subject is a string") as e:
                await call()
            assert type(subject).__name__ in str(e.value)


async def test_purge_takes_an_age_of_any_real_number_type(tmp_path: Path) -> None:
    """A real number of another type (a ``Fraction``; numpy's ``int64``) is seconds."""
    async with engine(tmp_path / "convoy.db") as eng:
        assert await eng.purge(Fraction(30 * 86400)) == []
