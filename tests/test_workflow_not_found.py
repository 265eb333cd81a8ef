"""``convoy.WorkflowNotFound`` is public: a caller can catch a workflow this process
cannot load, and read which one it was."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

import convoy


@pytest.mark.parametrize("ref", ["no_such_workflow_name", "__main__:refund"])
def test_a_workflow_that_cannot_be_loaded_raises_the_public_error_naming_it(ref: str) -> None:
    with pytest.raises(convoy.WorkflowNotFound) as caught:
        convoy.load_workflow(ref)
    assert caught.value.workflow == ref
    assert isinstance(caught.value, convoy.UserError)
    assert "WorkflowNotFound" in convoy.__all__


@pytest.mark.parametrize(("ref", "message"), [
    ("no_such_module_for_convoy:flow",
     "cannot import module 'no_such_module_for_convoy' for workflow "
     "'no_such_module_for_convoy:flow': No module named 'no_such_module_for_convoy'. Run "
     "from the directory that contains it, or put it on PYTHONPATH"),
    ("json:no_such_flow",
     "module 'json' has no attribute 'no_such_flow'; workflows it defines: (none)"),
    ("json:decoder.no_such_flow",
     "module 'json' has no attribute 'decoder.no_such_flow'; workflows it defines: (none)"),
])
def test_a_reference_to_no_workflow_raises_it_too(ref: str, message: str) -> None:
    """A module that does not import, an attribute it does not have: no workflow is found
    by that reference (the retired workflow ``engine.resume()`` reports as
    ``WorkflowNotFound``). The message is the same as a plain UserError's was."""
    with pytest.raises(convoy.WorkflowNotFound) as caught:
        convoy.load_workflow(ref)
    assert str(caught.value) == message
    assert caught.value.workflow == ref


def test_an_explicit_name_typed_as_the_attribute_is_not_found_either(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wnf_named_flows.py").write_text(
        "import convoy\n\n\n@convoy.workflow(name='desk.wnf')\n"
        "async def flow(ctx: convoy.Context, x: str) -> str:\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "wnf_named_flows", raising=False)
    with pytest.raises(convoy.WorkflowNotFound) as caught:
        convoy.load_workflow("wnf_named_flows:desk.wnf")
    assert str(caught.value) == ("'desk.wnf' is the explicit name of wnf_named_flows:flow; "
                                 "name it as 'wnf_named_flows:flow'")
    assert caught.value.workflow == "wnf_named_flows:desk.wnf"


@pytest.mark.parametrize("ref", ["json:dumps", "flows.py:flow", "./app/flows:flow"])
def test_a_reference_to_something_else_is_a_plain_user_error(ref: str) -> None:
    """Not "not found": what it names is not a workflow, or it is a file path."""
    with pytest.raises(convoy.UserError) as caught:
        convoy.load_workflow(ref)
    assert not isinstance(caught.value, convoy.WorkflowNotFound)


def test_a_module_whose_own_code_fails_is_a_plain_user_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found, and broken: the module's import raised."""
    (tmp_path / "wnf_boom_flows.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "wnf_boom_flows", raising=False)
    with pytest.raises(convoy.UserError) as caught:
        convoy.load_workflow("wnf_boom_flows:flow")
    assert str(caught.value) == ("importing module 'wnf_boom_flows' for workflow "
                                 "'wnf_boom_flows:flow' failed: RuntimeError: boom")
    assert not isinstance(caught.value, convoy.WorkflowNotFound)


async def _undecorated(ctx: convoy.Context, x: int) -> int:
    return x


@pytest.mark.parametrize("call", [
    "run", "run_many", "register", "workflows", "tenant.run", "tenant.run_many", "run_sync",
])
async def test_every_engine_entry_point_refuses_an_undecorated_function(
        call: str, db: Path) -> None:
    """The mistake the CLI names (a function, not a workflow) is named the same way by the
    Python API, before anything runs, instead of an AttributeError."""
    engine = convoy.Engine(db) if call != "workflows" else None
    with pytest.raises(convoy.UserError) as caught:
        if call == "workflows":
            convoy.Engine(db, workflows=[_undecorated])  # type: ignore[list-item]
        elif call == "register":
            assert engine is not None
            engine.register(_undecorated)  # type: ignore[arg-type]
        elif call == "run_sync":
            assert engine is not None
            await asyncio.to_thread(engine.run_sync, _undecorated, 1)  # type: ignore[arg-type]
        else:
            assert engine is not None
            target: Any = engine.tenant("acme") if call.startswith("tenant.") else engine
            method = getattr(target, call.rsplit(".", 1)[-1])
            await method(_undecorated, [1] if call.endswith("run_many") else 1)
    assert str(caught.value) == ("'_undecorated' is a function, not a workflow; decorate it "
                                 "with @convoy.workflow")
    if engine is not None:
        await engine.aclose()
        assert await _no_sessions(db)


async def _no_sessions(db: Path) -> bool:
    async with convoy.Engine(db) as engine:
        return await engine.sessions() == []


def test_a_chaos_experiment_refuses_an_undecorated_function(tmp_path: Path) -> None:
    from convoy.chaos import run_experiment

    with pytest.raises(convoy.UserError, match="'_undecorated' is a function, not a workflow"):
        run_experiment(_undecorated, [1], db_dir=tmp_path)  # type: ignore[arg-type]
