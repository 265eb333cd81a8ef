#!/bin/bash
# Old (b89f6cd, a worktree at /work/s26/old) and new code in alternating processes, three
# of each, with the command and the given run shape; outputs PREFIX_{old,new}_N.json.
#   alt.sh alt    --sessions 1000 --runs 21    # the command
#   alt.sh slices --sessions 100 --runs 210    # pairs 50 ms apart
prefix=$1; shift
out=/work/main/bench/out/20261203-s26
for i in 1 2 3; do
  for v in old new; do
    if [ $v = old ]; then src=/work/s26/old/src; else src=/work/main/src; fi
    (cd /work/main && PYTHONPATH=$src .venv/bin/python bench/observability.py "$@" --warmup 100 \
      --clock cpu --only bare,metrics,audit,tracing_metrics_audit > $out/${prefix}_${v}_$i.json 2>&1)
  done
done
