#!/usr/bin/env bash
# Convoy vs the peer frameworks on workloads W1-W3 (shared/bench/WORKLOADS.md), in the
# same run, interleaved, using the peers' own driver (run_all.sh) unchanged.
#
#   bench/run.sh                                  # REPS=1, Convoy + all 5 peers, W2 N=1000,10000
#   REPS=3 bench/run.sh
#   FRAMEWORKS="convoy langgraph" W2_SIZES=1000 bench/run.sh     # quick
#
# Env: REPS (1), FRAMEWORKS ("convoy langgraph openai_agents pydantic_ai autogen crewai";
#      venv names), W2_SIZES ("1000 10000"), W1_SESSIONS / W3_SESSIONS (2000),
#      SKIP_RUNS (space separated fw:W:N runs not to do, e.g. "crewai:W2:10000"; default none),
#      PEER_VENVS (/tmp/peers; missing venvs are created by bench/setup_peers.sh),
#      CONVOY_PEERS_DIR (<repo>/../shared/bench/peers), CONVOY_PY (<repo>/.venv/bin/python),
#      CONVOY_DURABILITY (process), OUT (bench/out/<utc ts>).
# Output: $OUT/results.jsonl, $OUT/table.md (the peers' summarizer), $OUT/summary.md
# (bench/summarize.py: Convoy included, ratios to the fastest peer, targets), stderr logs.
# Nothing under shared/ is modified: a temp dir holds symlinks to the peers' files, to
# bench/convoy_peer.py and to the venvs, plus a venv-shaped dir whose bin/python runs
# Convoy's venv.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
export CONVOY_PEERS_DIR=$(cd "${CONVOY_PEERS_DIR:-$REPO/../shared/bench/peers}" && pwd)
PEER_VENVS=${PEER_VENVS:-/tmp/peers}
CONVOY_PY=${CONVOY_PY:-$REPO/.venv/bin/python}
export REPS=${REPS:-1}
export FRAMEWORKS=${FRAMEWORKS:-"convoy langgraph openai_agents pydantic_ai autogen crewai"}
export W2_SIZES=${W2_SIZES:-"1000 10000"}
SKIP_RUNS=${SKIP_RUNS:-}
export OUT=${OUT:-$HERE/out/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)   # absolute: the peers' driver runs from a temp dir
export OUT

[ -x "$CONVOY_PY" ] || { echo "run.sh: no Python at $CONVOY_PY (create the repo venv first)" >&2; exit 1; }
"$CONVOY_PY" -c 'import convoy' || { echo "run.sh: convoy is not importable by $CONVOY_PY" >&2; exit 1; }

missing=()
for fw in $FRAMEWORKS; do
  [ "$fw" = convoy ] && continue
  [ -x "$PEER_VENVS/$fw/bin/python" ] || missing+=("$fw")
done
if [ ${#missing[@]} -gt 0 ]; then
  PEER_VENVS="$PEER_VENVS" "$HERE/setup_peers.sh" "${missing[@]}"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/convoy-bench-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
for f in "$CONVOY_PEERS_DIR"/*.py "$CONVOY_PEERS_DIR"/run_all.sh; do ln -s "$f" "$WORK/"; done
ln -s "$HERE/convoy_peer.py" "$WORK/convoy_peer.py"
mkdir -p "$WORK/venvs/convoy/bin"
# a wrapper, not a symlink: a symlinked venv python would not find the venv's pyvenv.cfg
printf '#!/bin/sh\nexec %s "$@"\n' "$CONVOY_PY" >"$WORK/venvs/convoy/bin/python"
chmod +x "$WORK/venvs/convoy/bin/python"
for fw in $FRAMEWORKS; do
  [ "$fw" = convoy ] || ln -s "$PEER_VENVS/$fw" "$WORK/venvs/$fw"
done
for s in $SKIP_RUNS; do            # run_all.sh skips a (fw, W, N) whose marker exists
  IFS=: read -r fw wl nn <<<"$s"
  touch "$OUT/.skip_${fw}_${wl}_${nn}"
  echo "run.sh: skipping $fw $wl n=$nn (SKIP_RUNS)" >&2
done

{
  echo "date_utc=$(date -u +%FT%TZ)"
  echo "host=$(hostname) cpus=$(nproc) $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
  echo "mem=$(free -g | awk '/Mem:/{print $2" GiB"}') kernel=$(uname -r)"
  echo "python=$("$CONVOY_PY" -V 2>&1) convoy=$("$CONVOY_PY" -c 'import convoy; print(convoy.__version__)')"
  echo "REPS=$REPS FRAMEWORKS=\"$FRAMEWORKS\" W2_SIZES=\"$W2_SIZES\" SKIP_RUNS=\"$SKIP_RUNS\" durability=${CONVOY_DURABILITY:-process}"
} >"$OUT/machine.txt"

# the host may be shared: sample the load average while the benchmark runs
( while :; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 30; done ) >"$OUT/loadavg.txt" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null; rm -rf "$WORK"' EXIT
PEERS="$WORK/venvs" bash "$WORK/run_all.sh"
python3 "$HERE/summarize.py" "$OUT/results.jsonl" >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "run.sh: results in $OUT (results.jsonl, summary.md, table.md)" >&2
