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
import convoy.alerts
import convoy.audit
import convoy.chaos
import convoy.cost
import convoy.resilience

ROOT = Path(__file__).resolve().parents[1]


def test_exported_members() -> None:
    public = {n for n in dir(convoy) if not n.startswith("_")
              and type(getattr(convoy, n)).__name__ != "module"}
    assert public == set(convoy.__all__) - {"__version__"}
    assert sorted(convoy.__all__) == list(convoy.__all__)


#: Public dataclasses that are plain values, not configuration, and stay positional.
POSITIONAL_VALUES = {
    "Usage": "a (input, output) token pair, built positionally like a tuple",
    "ToolCall": "an (id, name, arguments) triple mirroring the provider wire format",
    "BudgetLedger": "running state of one budget that the engine builds, never users",
    "VelocityAlert": "an event handed to on_alert callbacks, never built by users",
}


def _public_dataclasses() -> dict[str, type]:
    found: dict[str, type] = {}
    for module in (convoy, convoy.resilience, convoy.cost, convoy.chaos, convoy.alerts,
                   convoy.audit):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and dataclasses.is_dataclass(obj):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_public_configuration_dataclasses_are_keyword_only() -> None:
    classes = _public_dataclasses()
    for must in ("Limits", "ModelSettings", "Price", "RetryPolicy", "BreakerPolicy", "Budget",
                 "Rate", "Faults", "Latency", "FaultSpec", "Hypothesis", "Agent"):
        assert any(q.rsplit(".", 1)[1] == must for q in classes), must
    positional = sorted(q for q, cls in classes.items()
                        if cls.__name__ not in POSITIONAL_VALUES
                        and not all(f.kw_only for f in dataclasses.fields(cls) if f.init))
    assert positional == [], "make these dataclasses kw_only=True"
    # every exception is still a public dataclass, so the list cannot go stale
    assert set(POSITIONAL_VALUES) <= {cls.__name__ for cls in classes.values()}


def test_readme_example_is_the_quickstart_and_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## A first workflow\n\n```python\n(.*?)```", readme, re.S)
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


def test_resilience_guide_example_runs_on_the_simulator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (ROOT / "docs" / "how-to" / "resilience.md").read_text()
    block = re.search(r"```python\n(.*?)```", page, re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    # Were any call to go to OpenAI, it would fail at once on a closed loopback port.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-none")
    namespace: dict[str, object] = {"__name__": "readme"}  # as written: its own imports
    exec(compile(block.group(1), "resilience.md", "exec"), namespace)
    engine = namespace["engine"]
    assert isinstance(engine, convoy.Engine)
    names = [type(i).__name__ for i in engine.runtime.interceptors]
    assert names == ["StepTimings", "ToolGuard", "ProvenancePolicy", "TokenVelocity", "Router",
                     "ResponseCache",
                     "Fallback",
                     "Retry", "Breakers", "Budgets", "RateLimit", "Timeout", "UsageAccounting",
                     "StateStats"]
    # TokenVelocity may print an alert first (it measures tokens per second of wall time).
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("['completed'] "), lines
    # Every session called the model; the faults drawn (seeded by the random session ids,
    # so their number varies, none at all about once in 70 runs) were retried.
    assert int(lines[0].split()[1]) >= 20


def test_the_package_ships_py_typed() -> None:
    package = Path(convoy.__file__).parent
    assert (package / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    wheel = pyproject.split("[tool.hatch.build.targets.wheel]", 1)[1].split("\n[", 1)[0]
    assert '"src/convoy/py.typed"' in wheel or '"src/convoy"' in wheel
