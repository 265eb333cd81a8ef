#!/bin/bash
# callgrind instructions per W1 step: (N=300) - (N=100) over 1000 steps
out=/work/s26/cg; mkdir -p $out
for v in old new; do
  if [ $v = old ]; then src=/work/s26/old/src; else src=/work/main/src; fi
  for name in bare tma; do
    for n in 100 300; do
      (cd /work/main && PYTHONPATH=$src valgrind --tool=callgrind --callgrind-out-file=$out/$v.$name.$n.out .venv/bin/python bench/observability_parts.py $name $n > /dev/null 2>$out/$v.$name.$n.log)
    done
  done
done
echo done > $out/DONE
