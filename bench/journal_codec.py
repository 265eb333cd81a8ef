"""Journal encoding: pydantic_core's to_json/from_json against the stdlib json module.

    .venv/bin/python bench/journal_codec.py --n 200000

Encodes and decodes a typical model-step record (a ModelResponse's journal dict with a
structured answer and usage) both ways, in one process, and prints the median µs per
encode+decode of each over 5 rounds, and the ratio. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from pydantic_core import from_json, to_json

from convoy import ModelResponse, ToolCall, Usage

RESP = ModelResponse(text='{"label": "billing", "confidence": 0.9}',
                     tool_calls=[ToolCall("call_1", "lookup_customer", '{"customer_id": 42}')],
                     usage=Usage(50, 10), model="openai:gpt-4o-mini", finish_reason="stop",
                     cost=0.0000135)


def _round(n: int, enc: object, dec: object) -> float:
    d = RESP.to_dict()
    t = time.perf_counter()
    for _ in range(n):
        ModelResponse.from_dict(dec(enc(d)))  # type: ignore[operator]
    return (time.perf_counter() - t) / n * 1e6


def main(n: int) -> dict[str, object]:
    core, std = [], []
    for _ in range(5):
        core.append(_round(n, lambda d: to_json(d).decode(), from_json))
        std.append(_round(n, json.dumps, json.loads))
    c, s = statistics.median(core), statistics.median(std)
    return {"bench": "journal_codec", "n": n, "pydantic_core_us": round(c, 3),
            "stdlib_json_us": round(s, 3), "speedup": round(s / c, 2)}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    print(json.dumps(main(p.parse_args().n)))
