"""The documentation runs: every ```python block of docs/ and the README is executed, and
the site builds with ``mkdocs build --strict``.

Blocks of one page run in order, in one namespace, in a fresh temporary directory, as a
reader would paste them into one file; then all of them again, in a new namespace in the
same directory, as a reader runs an example a second time. A block that defines
``async def main`` calls ``asyncio.run(main())`` itself, and imports what it uses. A block
that must not run (it needs an API key or a server) is preceded by
``<!-- no-run: why -->``; those stay few.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NO_RUN = re.compile(r"<!--\s*no-run:\s*(.+?)\s*-->\s*$")
#: A script's ``asyncio.run(main())`` under ``if __name__ == "__main__":`` (so importing
#: it, ``--import``, runs nothing): the test runs it, as running the script would.
GUARDED_MAIN = re.compile(r'^if __name__ == "__main__":.*\n\s+asyncio\.run\(main\(\)\)', re.M)
#: Blocks marked no-run, across all pages: each one is a snippet no test checks.
MAX_NO_RUN = 4


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    code: str
    skip: str | None


def blocks(page: Path) -> list[Block]:
    """The ```python blocks of a page, with the reason when one is marked no-run."""
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        no_run = NO_RUN.search(before)
        found.append(Block(page, text.count("\n", 0, m.start()) + 2, m.group(1),
                           no_run.group(1) if no_run else None))
    return found


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


PAGES_WITH_CODE = [p for p in PAGES if any(b.skip is None for b in blocks(p))]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_id)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """The page's blocks run, and run again in the same directory: a reader runs an
    example twice, and what the first run left there (a store file, a key) must not break
    the second."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for run in (1, 2):
        namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
        for block in blocks(page):
            if block.skip is not None:
                continue
            # Line numbers in tracebacks point into the Markdown file.
            code = compile("\n" * (block.line - 1) + block.code, str(page), "exec",
                           dont_inherit=True)  # not this file's __future__ imports
            try:
                exec(code, namespace)
                if GUARDED_MAIN.search(block.code):
                    asyncio.run(namespace["main"]())  # type: ignore[operator]
            except BaseException as e:
                e.add_note(f"(run {run} of the page's examples in {tmp_path})")
                raise
        capsys.readouterr()


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_id)
def test_a_block_that_defines_main_runs_it(page: Path) -> None:
    """Pasted on its own, a block that defines ``async def main`` does something: it
    calls ``asyncio.run(main())`` itself."""
    idle = [f"{_id(page)}:{b.line}" for b in blocks(page)
            if re.search(r"^async def main\(", b.code, re.M)
            and not re.search(r"^asyncio\.run\(main\(\)\)", b.code, re.M)
            and not GUARDED_MAIN.search(b.code)]
    assert not idle, idle


def test_no_run_blocks_are_few_and_say_why() -> None:
    skipped = [b for p in PAGES for b in blocks(p) if b.skip is not None]
    assert len(skipped) <= MAX_NO_RUN, [f"{_id(b.page)}:{b.line}" for b in skipped]
    assert all(len(b.skip or "") > 5 for b in skipped)


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        assert str(page.relative_to(DOCS)) in nav, f"{page} is not in mkdocs.yml's nav"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_site_builds_strict(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                          "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-4000:]



def _imported(tree: ast.AST) -> set[str]:
    return {(a.asname or a.name).split(".")[0] for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}


def _unimported(code: str, imports: set[str]) -> set[str]:
    """The names of ``imports`` that ``code`` uses but neither imports nor defines."""
    tree = ast.parse(code)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)}
    defined = _imported(tree) | {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                                 and isinstance(n.ctx, ast.Store)} | {
        n.name for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    return (used & imports) - defined


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=_id)
def test_each_block_imports_what_it_uses(page: Path) -> None:
    """A reader who pastes one block of a page meets no ``NameError`` for a module or a
    name another block of the page imports (``convoy``, ``asyncio``, ``BaseModel``): each
    block imports what it uses. (A block may still use a class, a tool or an agent an
    earlier block of its page defines.)"""
    found = blocks(page)
    imports = {"convoy"} | {name for b in found for name in _imported(ast.parse(b.code))}
    missing = [(f"{_id(page)}:{b.line}", sorted(_unimported(b.code, imports)))
               for b in found]
    assert not [m for m in missing if m[1]], missing
