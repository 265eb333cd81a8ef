"""Convoy without its optional packages: ``pip install convoy`` (no ``[audit]``, no
``[privacy]``) must import, run sessions and start its command line; what needs an extra
says which one, in one line. Each case is a real Python process in which the package
cannot be imported (``sys.modules[NAME] = None``, as if it were not installed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _python(code: str, blocked: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys; sys.modules[{blocked!r}] = None\n"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("CONVOY_DB", None)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          check=False, capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


@pytest.mark.parametrize("blocked", ["cryptography"])
def test_convoy_imports_and_runs_a_session_without_an_optional_package(
        tmp_path: Path, blocked: str) -> None:
    res = _python("""
        import asyncio
        import convoy

        @convoy.workflow(name="bare")
        async def bare(ctx: convoy.Context, x: int) -> int:
            async def double() -> int:
                return x * 2

            return await ctx.step("double", double)

        async def main() -> None:
            async with convoy.Engine("s.db") as engine:
                res = await engine.run(bare, 21)
                print(res.status, res.output)

        asyncio.run(main())
    """, blocked, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["completed", "42"]


def test_the_command_line_starts_without_cryptography(tmp_path: Path) -> None:
    res = _python("""
        import sys
        from convoy.cli import main
        sys.argv = ["convoy", "--help"]
        main()
    """, "cryptography", tmp_path)
    assert res.returncode == 0, res.stderr
    assert "sessions" in res.stdout


def test_the_audit_log_without_cryptography_says_which_extra_to_install(
        tmp_path: Path) -> None:
    res = _python("""
        try:
            from convoy.audit import AuditInterceptor
        except ImportError as e:
            print(e)
        from convoy.audit import AuditEvent, entry_leaf  # (no key: no package needed)
        print(AuditEvent.__name__, entry_leaf.__name__)
    """, "cryptography", tmp_path)
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    assert "pip install 'convoy[audit]'" in first
    assert second == "AuditEvent entry_leaf"
