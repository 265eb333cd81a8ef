"""Conventions as tests: the public surface, keyword-only definitions, docs that run."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import convoy

ROOT = Path(__file__).resolve().parents[1]


def test_exported_members() -> None:
    public = {n for n in dir(convoy) if not n.startswith("_")
              and type(getattr(convoy, n)).__name__ != "module"}
    assert public == set(convoy.__all__) - {"__version__"}
    assert sorted(convoy.__all__) == list(convoy.__all__)


def test_public_definitions_are_keyword_only() -> None:
    for cls in (convoy.Agent, convoy.Limits, convoy.Faults, convoy.Latency, convoy.Workflow,
                convoy.ModelRequest, convoy.ModelResponse, convoy.ModelSettings):
        assert dataclasses.is_dataclass(cls)
        init = [f for f in dataclasses.fields(cls) if f.init]
        assert all(f.kw_only for f in init), cls.__name__


def test_readme_example_is_the_quickstart_and_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Twenty lines\n\n```python\n(.*?)```", readme, re.S)
    assert block is not None
    code = block.group(1)
    assert code == (ROOT / "examples" / "quickstart.py").read_text()
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 30
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path,
                         capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("completed category='billing' urgent=False")


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines()[0].startswith("make demo")
    assert first_block.splitlines()[1].startswith("make test")


def test_readme_resilience_example_builds(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Resilience and cost control\n.*?```python\n(.*?)```", readme, re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"convoy": convoy}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    engine = namespace["engine"]
    assert isinstance(engine, convoy.Engine)
    names = [type(i).__name__ for i in engine.runtime.interceptors]
    assert names == ["StepTimings", "TokenVelocity", "Router", "ResponseCache", "Fallback",
                     "Retry", "Breakers", "Budgets", "RateLimit", "Timeout", "UsageAccounting"]
