"""What a listing (or a sum) over many rows of a store says about the damaged rows it left
out: one line on stderr, and, in JSON, a list naming them. A command about one row fails
instead (it cannot show half a session)."""

from __future__ import annotations

from collections.abc import Sequence

from convoy.cli._common import err
from convoy.stores._rows import DAMAGED, LeftOut


def warn_left_out(left_out: Sequence[LeftOut], what: str = "", *, then: str = "") -> None:
    """One ``warning:`` line on the rows ``left_out`` (``what``: their kind, ``session``),
    naming the first and counting the rest; ``then``: what that changes (``the totals
    exclude them``). Nothing when none was left out."""
    n = len(left_out)
    if not n:
        return
    first = left_out[0]
    more = f"; and {n - 1:,} more" if n > 1 else ""
    rows = f"{what} row" if what else "row"
    err.print(f"warning: left out {n:,} damaged {rows}{'' if n == 1 else 's'} "
              f"({first.row}: {first.problem}{more}){f'; {then}' if then else ''}; "
              f"{DAMAGED}: correct {'that row' if n == 1 else 'those rows'} by hand or "
              "restore the store from a backup", markup=False, soft_wrap=True,
              style="yellow")


def left_out_json(left_out: Sequence[LeftOut]) -> list[dict[str, str]]:
    """The rows ``left_out``, as a command's JSON names them."""
    return [{"row": x.row, "problem": x.problem} for x in left_out]
