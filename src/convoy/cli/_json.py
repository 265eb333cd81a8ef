"""The JSON the commands print (``--json``) and write (``convoy export``): strict JSON,
which every reader parses. A stored value may hold a float NaN or infinity (a workflow's
output keeps them: Python's ``json`` and ``pydantic_core`` write ``NaN`` and read it
back), which no strict reader parses (``JSON.parse``, ``jq``): such a float is written as
the text ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, the names pydantic's ``strings``
mode gives them.
"""

from __future__ import annotations

import json
import math
from typing import Any


def json_text(value: Any, **kw: Any) -> str:
    """``json.dumps(value, **kw)``, strict (see the module docstring)."""
    try:
        return json.dumps(value, allow_nan=False, **kw)
    except ValueError:  # (a float no strict JSON holds: the rare path)
        return json.dumps(_finite(value), allow_nan=False, **kw)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


__all__ = ["json_text"]
