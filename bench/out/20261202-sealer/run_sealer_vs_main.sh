cd /work/main/bench
for i in 3 4 5 6; do
  for v in sealer main; do
    if [ $v = sealer ]; then P=/tmp/sealer-src2; else P=/tmp/main-src; fi
    echo "== $v run $i $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    PYTHONPATH=$P:. ../.venv/bin/python observability.py --sessions 300 --runs 9 --warmup 50 --clock cpu --only bare,audit,tracing_metrics_audit 2>&1 | tail -1
  done
done
