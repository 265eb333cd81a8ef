"""A session that asks a person resumes whatever name its answer type's module has in
the resuming process: a script run directly (``python desk.py``: ``__main__``) and a process
that imports it (``convoy resume --import desk``, ``convoy worker desk``: ``desk``) run the
same workflow code, so the inbox task's step replays. The answer is checked by the type
under either name; a real change of the question still breaks determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from hashlib import blake2b
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import from_json

import convoy
from convoy.hitl import _ask, _decide
from convoy.privacy import MasterKey
from convoy.state._access import JournaledAccess
from convoy.stores import SQLiteStore
from tests.clikit import SRC, session, subprocess_cli, workdir  # noqa: F401  (autouse fixture)

DESK = '''
import asyncio
import json
import sys

from pydantic import BaseModel, field_validator

import convoy


class RefundAnswer(BaseModel):
    approve: bool
    note: str = ""

    @field_validator("note")
    @classmethod
    def polite(cls, note: str) -> str:
        # (a rule no JSON schema says: only the type knows it)
        if "idiot" in note:
            raise ValueError("keep it polite")
        return note


@convoy.workflow(name="desk.refund")
async def refund(ctx: convoy.Context, amount: int) -> str:
    got = await ctx.ask_human(f"Refund {amount}?", RefundAnswer, queue="refunds")
    verdict = "approved" if got.value.approve else "refused"
    return f"{amount} {verdict} by {got.by}: {got.value.note}"


async def main(what: str = "start", answer: str = "") -> None:
    async with convoy.Engine("convoy.db", workflows=[refund]) as engine:
        if what == "resume":
            print([(r.status, r.output, r.error) for r in await engine.resume()])
        elif what == "answer":
            try:
                await engine.inbox.answer("r-1:0", json.loads(answer), by="bob")
            except convoy.UserError as e:
                print(f"refused: {e}")
            else:
                print("answered")
        else:
            print((await engine.run(refund, 120, session_id="r-1")).status)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
'''


def _python(where: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), str(SRC)])}
    env.pop("CONVOY_DB", None)
    proc = subprocess.run([sys.executable, *args], cwd=where, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def _answer(where: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess_cli(where, "inbox", "answer", "r-1:0", "--by", "ann", *extra)


def test_a_script_session_resumes_where_the_script_is_imported(workdir: Path  # noqa: F811
                                                              ) -> None:
    """Started by ``python desk.py`` (the answer type is ``__main__:RefundAnswer`` there),
    answered and resumed by processes that import ``desk``."""
    (workdir / "desk.py").write_text(DESK)
    assert _python(workdir, "desk.py") == "waiting"
    # The type, loaded by --import, checks the answer (under its other module name).
    rude = _answer(workdir, "--import", "desk", "--value", '{"approve": true, "note": "idiot"}')
    assert rude.returncode == 2 and "keep it polite" in rude.stderr, rude.stderr
    ok = _answer(workdir, "--import", "desk", "--value", '{"approve": true, "note": "sure"}')
    assert ok.returncode == 0, ok.stderr
    res = subprocess_cli(workdir, "resume", "--import", "desk")
    assert res.returncode == 0, res.stderr + res.stdout
    row = session("r-1")
    assert row.status == "completed", row.error
    assert row.output is not None and json.loads(row.output) == "120 approved by ann: sure"


def test_a_session_of_an_imported_module_resumes_in_the_script(workdir: Path  # noqa: F811
                                                               ) -> None:
    """The other way round: started where ``desk`` is imported, answered (the type
    checks it) and finished by ``python desk.py`` (``__main__``); and a worker serves a
    script's session."""
    (workdir / "desk.py").write_text(DESK)
    assert _python(workdir, "-c", "import asyncio, desk; asyncio.run(desk.main())") \
        == "waiting"
    assert "keep it polite" in _python(workdir, "desk.py", "answer",
                                       '{"approve": false, "note": "idiot"}')
    assert _python(workdir, "desk.py", "answer",
                   '{"approve": false, "note": "no receipt"}') == "answered"
    assert _python(workdir, "desk.py", "resume") == \
        "[('completed', '120 refused by bob: no receipt', None)]"

    (workdir / "convoy.db").unlink()
    assert _python(workdir, "desk.py") == "waiting"
    ok = _answer(workdir, "--value", '{"approve": true}')
    assert ok.returncode == 0, ok.stderr
    res = subprocess_cli(workdir, "worker", "desk", "--until-idle")
    assert res.returncode == 0, res.stderr + res.stdout
    row = session("r-1")
    assert row.status == "completed", row.error
    assert row.output is not None and json.loads(row.output) == "120 approved by ann: "


CHANGES = {
    "a renamed answer type": [("class RefundAnswer(", "class RefundReply("),
                              ("RefundAnswer, queue", "RefundReply, queue")],
    "another field": [('    note: str = ""\n', '    note: str = ""\n    amount: int = 0\n')],
    "another prompt": [('f"Refund {amount}?"', 'f"Refund ${amount}?"')],
}


def test_a_changed_question_still_breaks_determinism(workdir: Path) -> None:  # noqa: F811
    """Code that asks another question does not replay the task the script wrote, though
    its module is imported under another name."""
    for i, (change, edits) in enumerate(CHANGES.items()):
        where = workdir / f"change{i}"
        where.mkdir()
        (where / "desk.py").write_text(DESK)
        assert _python(where, "desk.py") == "waiting"
        ok = _answer(where, "--value", '{"approve": true}')
        assert ok.returncode == 0, ok.stderr
        changed = DESK
        for old, new in edits:
            assert old in changed
            changed = changed.replace(old, new)
        (where / "desk.py").write_text(changed)
        res = subprocess_cli(where, "resume", "--import", "desk")
        assert res.returncode == 0, res.stderr + res.stdout
        row = session("r-1", db=where / "convoy.db")
        assert row.status == "failed", (change, row)
        error = row.error_record
        assert error is not None and error["type"] == "NonDeterminismError", (change, error)
        assert "different input" in error["message"], (change, error)


# -- in one process: the module a type names is changed between the runs -------------------


class Answer(BaseModel):
    approve: bool


PROMPT = "Refund {}?"


@convoy.workflow(name="script_types.ask")
async def ask(ctx: convoy.Context, amount: int) -> list[Any]:
    got = await ctx.ask_human(PROMPT.format(amount), Answer)
    return [got.value.approve, got.by]


class Verdict(BaseModel):
    label: str


judge = convoy.Agent(name="judge", output_type=Verdict, model="sim:",
                     escalation=convoy.Escalation(on=["invalid_output"]))


@convoy.workflow(name="script_types.judge")
async def judged(ctx: convoy.Context, text: str) -> str:
    out = await ctx.run(judge, text)
    return out.label


MASTER_KEY = MasterKey.generate()


def _engine(db: Path) -> convoy.Engine:
    sim = convoy.SimModel({"judge": {"text": "not JSON"}})
    return convoy.Engine(SQLiteStore(db), models={"sim:": sim}, workflows=[ask, judged],
                         master_key=MasterKey.from_text(MASTER_KEY))


async def _parked(db: Path, *, old_fingerprint: bool = False, subject: str | None = None,
                  ) -> None:
    """Session 's' (of ``subject``: its fingerprints are keyed) asks, and is answered.
    With ``old_fingerprint``, journaled as Convoy did before a question's fingerprint left
    the module out (the task's text, module and all)."""
    with pytest.MonkeyPatch.context() as m:
        if old_fingerprint:
            m.setattr(_decide, "_NewTask", lambda ctx, task: JournaledAccess(ctx))
        async with _engine(db) as eng:
            res = await eng.run(ask, 5, session_id="s", subject=subject)
            assert res.status == "waiting"
            await eng.inbox.answer("s:0", {"approve": True}, by="ann")
            [rec] = [r for r in await eng.store.journal("s") if r.key == "0/1"]
            [task] = await eng.inbox.tasks(status="answered")
    assert task.answer_type == f"{Answer.__module__}:Answer"
    if subject is None:
        written = from_json(rec.result or "")["value"]
        old = blake2b(f"0\x1f{written}".encode(), digest_size=16).hexdigest()
        assert (rec.input_hash == old) is old_fingerprint


async def _resumed(db: Path) -> convoy.SessionResult[Any]:
    async with _engine(db) as eng:
        [res] = await eng.resume()
        if res.ok:
            assert (await eng.replay(res.id)).matches
        return res


@pytest.mark.parametrize("subject", [None, "customer-7"], ids=["plain", "keyed"])
@pytest.mark.parametrize("old_fingerprint", [False, True], ids=["new", "journaled-before"])
@pytest.mark.parametrize("resumed_in", ["desk", "app.desk"])
async def test_a_task_replays_under_another_module_name(
        db: Path, monkeypatch: pytest.MonkeyPatch, old_fingerprint: bool,
        resumed_in: str, subject: str | None) -> None:
    """A journal written before the fingerprint left the module out (by today's Convoy:
    the task's text as written) replays too: where the type has the same name, and (the
    module read from the task the journal holds) where it has another. So does a data
    subject's session, whose fingerprints are keyed."""
    monkeypatch.setattr(Answer, "__module__", "desk")
    await _parked(db, old_fingerprint=old_fingerprint, subject=subject)
    monkeypatch.setattr(Answer, "__module__", resumed_in)
    res = await _resumed(db)
    assert res.ok and res.output == [True, "ann"], res.error


@pytest.mark.parametrize("old_fingerprint", [False, True], ids=["new", "journaled-before"])
@pytest.mark.parametrize("change", ["prompt", "class name", "schema"])
async def test_a_changed_question_does_not_replay(
        db: Path, monkeypatch: pytest.MonkeyPatch, old_fingerprint: bool,
        change: str) -> None:
    monkeypatch.setattr(Answer, "__module__", "desk")
    await _parked(db, old_fingerprint=old_fingerprint)
    monkeypatch.setattr(Answer, "__module__", "app.desk")  # and a module name that changed
    if change == "prompt":
        monkeypatch.setattr(sys.modules[__name__], "PROMPT", "Refund ${}?")
    elif change == "class name":
        monkeypatch.setattr(_ask, "type_name", lambda tp: "app.desk:Reply")  # same schema
    else:
        monkeypatch.setattr(_ask, "schema_for", lambda tp: {"type": "object"})
    res = await _resumed(db)
    assert res.status == "failed" and res.error is not None
    assert res.error["type"] == "NonDeterminismError" and res.error["key"] == "0/1", res.error


async def test_an_escalation_replays_under_another_module_name(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An escalated agent run's task names the agent's output type the same way."""
    monkeypatch.setattr(Verdict, "__module__", "__main__")
    async with _engine(db) as eng:
        assert (await eng.run(judged, "mail", session_id="j")).status == "waiting"
        [task] = await eng.inbox.tasks()
        assert task.answer_type is not None and task.answer_type.endswith(":Verdict")
        await eng.inbox.edit(task.id, {"label": "spam"}, by="ann")
    monkeypatch.setattr(Verdict, "__module__", "desk")
    res = await _resumed(db)
    assert res.ok and res.output == "spam", res.error
