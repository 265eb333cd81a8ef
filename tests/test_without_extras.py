"""Convoy without its optional packages: ``pip install convoy`` (no ``[audit]``, no
``[privacy]``) must import, run sessions and start its command line; what needs an extra
says which one, in one line. Each case is a real Python process in which the package
cannot be imported (``sys.modules[NAME] = None``, as if it were not installed)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import convoy
from convoy.audit import AuditInterceptor

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


@pytest.mark.parametrize("args", [
    ["audit", "verify"], ["audit", "checkpoint", "--key", "audit.key"], ["audit", "prove", "0"],
    ["audit", "consistency", "1"], ["audit", "seal"], ["audit", "check", "proof.json"]])
def test_an_audit_command_without_cryptography_says_which_extra_in_one_line(
        tmp_path: Path, args: list[str]) -> None:
    """``convoy audit list`` reads entries with no package; the commands that sign or
    check signatures say which extra to install, in one line (the third party who checks
    a proof may well have a plain ``pip install convoy``)."""
    (tmp_path / "proof.json").write_text("{}")
    asyncio.run(_audited_store(tmp_path / "a.db"))
    res = _python(f"""
        import sys
        from convoy.cli import main
        sys.argv = ["convoy", *{args!r}, *{[] if args[1] == "check" else ["--db", "a.db"]!r}]
        main()
    """, "cryptography", tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: convoy.audit signs checkpoints with the 'cryptography' package, which is not "
        "installed; install it with: pip install 'convoy[audit]'"], res.stderr


def test_the_audit_interceptor_without_the_pii_extra_says_so_and_the_log_still_reads(
        tmp_path: Path) -> None:
    """The names an entry holds (a state key, a step's name) are masked by the PII redactor,
    the same one on every engine: without ``phonenumbers`` an engine would mask less than
    another, so the interceptor refuses to start, in one line naming the extra; reading
    and verifying the log need no redactor."""
    asyncio.run(_audited_store(tmp_path / "a.db"))
    res = _python("""
        import asyncio
        import convoy
        from convoy.audit import AuditInterceptor
        from convoy.cli import main

        async def go() -> None:
            try:
                async with convoy.Engine("b.db", interceptors=[AuditInterceptor()]):
                    print("started")
            except convoy.UserError as e:
                print(e)

        asyncio.run(go())
        sys.argv = ["convoy", "audit", "list", "--db", "a.db"]
        try:
            main()
        except SystemExit as e:
            assert e.code in (0, None), e.code
    """, "phonenumbers", tmp_path)
    assert res.returncode == 0, res.stderr
    first, *rest = res.stdout.splitlines()
    assert first.startswith("the audit log masks personal data in the names its entries "
                            "hold"), first
    assert "pip install 'convoy[pii]'" in first
    assert any(" effect " in line and "double" in line for line in rest), res.stdout


async def _audited_store(db: Path) -> None:
    """A store with an audited session (made here, where the package is installed)."""
    @convoy.workflow(name="audited")
    async def audited(ctx: convoy.Context, x: int) -> int:
        async def double() -> int:
            return x * 2

        return await ctx.step("double", double)

    audit = AuditInterceptor(key_path=db.parent / "audit.key")
    async with convoy.Engine(db, interceptors=[audit]) as engine:
        assert (await engine.run(audited, 21)).ok
        await audit.sealed()
        await audit.log.checkpoint("default")
