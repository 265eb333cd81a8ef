"""Model answers' audit entries one at a time (_model_answer) vs in one pass of C iterators
over a batch (vec); checks both give the same bytes, prints µs per entry for 5, 50 and
1,000 records (stop 38, bench/RESULTS.md).  .venv/bin/python bench/out/20261204-s28/entries_batch.py"""
import timeit
from hashlib import sha256
from itertools import repeat
from json.encoder import encode_basestring as q
from operator import methodcaller

from pydantic_core import to_json

from convoy.audit._journal import _answer_tail, _model_answer

tail = _answer_tail("4fe196b0b4e447da983c5b20fdff74ed", "30dac03f73a826dc9a15f3aca7d631ed")
text = '{"model":"fake","text":"' + "x"*120 + '","usage":{"input_tokens":50,"output_tokens":10},"cost":0.0}'
def rec(i):
    return (f"{i}/0", "model", "fake", "completed", text, "af554806763bb08280e0e32fc3ca1eac", f"agent{i}", 50, 10, 1796378515.0493944+i*0.001, "4bf9d5080aec6285")
FMT = ('{"actor":%s,"at":%s,"hashes":{"output":"sha256:%s","prompt":"blake2b:%s"},'
       '"kind":"model_call","refs":{"config":%s,"decision":"answer","tokens":"%d+%d"%s%s'
       ',"target":%s,"v":1}')
PFX = '{"model":"'
def vec(records, tail):
    keys, kinds, targets, statuses, texts, fps, agents, tin, tout, ats, configs = zip(*records)
    n = len(keys)
    if kinds.count("model") != n or statuses.count("completed") != n or not all(fps) or not all(configs) or not all(agents):
        return None
    if not all(map(str.startswith, texts, repeat(PFX))) or any(map(str.__contains__, texts, repeat('"tool_calls":'))):
        return None
    ends = list(map(str.find, texts, repeat('"'), repeat(10)))
    models = list(map(str.__getitem__, texts, map(slice, repeat(10), ends)))
    at_s = to_json(ats).decode()[1:-1].split(",")
    hexes = map(methodcaller("hexdigest"), map(sha256, map(str.encode, texts)))
    out = list(map(str.encode, map(FMT.__mod__, zip(map(q, agents), at_s, hexes, fps, map(q, configs), tin, tout, repeat(tail), map(q, keys), map(q, models)))))
    return out
for n in (5, 50, 1000):
    rs = [rec(i % 5) for i in range(n)]
    a = list(map(_model_answer, rs, repeat(tail)))
    b = vec(rs, tail)
    assert a == b, (a[0], b[0])
    N = max(1, 20000 // n)
    t1 = min(timeit.repeat(lambda: list(map(_model_answer, rs, repeat(tail))), number=N, repeat=5)) / N / n * 1e6
    t2 = min(timeit.repeat(lambda: vec(rs, tail), number=N, repeat=5)) / N / n * 1e6
    print(n, f"per-record {t1:.3f} µs  vectorized {t2:.3f} µs")
