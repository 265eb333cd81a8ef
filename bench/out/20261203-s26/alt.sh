#!/bin/bash
# old/new alternating processes of the command
out=/work/main/bench/out/20261203-s26
for i in 1 2 3; do
  for v in old new; do
    if [ $v = old ]; then src=/work/s26/old/src; else src=/work/main/src; fi
    (cd /work/main && PYTHONPATH=$src .venv/bin/python bench/observability.py --sessions 1000 --runs 21 --warmup 100 --clock cpu --only bare,metrics,audit,tracing_metrics_audit > $out/alt_${v}_$i.json 2>&1)
  done
done
