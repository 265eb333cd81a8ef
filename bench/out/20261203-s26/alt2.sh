#!/bin/bash
out=/work/main/bench/out/20261203-s26
for i in 1 2 3; do
  for v in old new; do
    if [ $v = old ]; then src=/work/s26/old/src; else src=/work/main/src; fi
    (cd /work/main && PYTHONPATH=$src .venv/bin/python bench/observability.py --sessions 100 --runs 210 --warmup 100 --clock cpu --only bare,metrics,audit,tracing_metrics_audit > $out/slices_${v}_$i.json 2>&1)
  done
done
echo done > /work/s26/alt2.done
