"""Old (aa1efa6~) and new redactor on bench/pii_redaction.py's hostile texts, alternating in
one process: median CPU seconds per 100 KB text over 7 rounds, and old/new.

    git show aa1efa6~:src/convoy/observability/_redact.py > /tmp/old_redact.py
    .venv/bin/python bench/out/20261203-s25/redact_hostile_ab.py /tmp/old_redact.py
"""
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pii_redaction import hostile_texts  # noqa: E402

import convoy.observability._redact as new  # noqa: E402

spec = importlib.util.spec_from_file_location("convoy.observability._redact_old", sys.argv[1])
old = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = old
spec.loader.exec_module(old)
out = {}
for name, text in hostile_texts(7).items():
    times = {"old": [], "new": []}
    for _ in range(7):
        for tag, mod in (("old", old), ("new", new)):
            r = mod.Redactor(memo=0)
            t = time.process_time()
            r(text)
            times[tag].append(time.process_time() - t)
    o, n = statistics.median(times["old"]), statistics.median(times["new"])
    out[name] = {"old_s": round(o, 3), "new_s": round(n, 3), "old_over_new": round(o / n, 2)}
print(json.dumps(out))
