#!/usr/bin/env bash
# Create the peer-framework virtualenvs that bench/run.sh compares Convoy with, exactly as
# measured (pip freeze files of the shared peer benchmark). Existing venvs are left alone.
#
#   bench/setup_peers.sh                     # all five under /tmp/peers
#   PEER_VENVS=/somewhere bench/setup_peers.sh langgraph autogen
#
# Env: PEER_VENVS (default /tmp/peers), CONVOY_PEERS_DIR (default <repo>/../shared/bench/peers),
#      PYTHON (interpreter for the venvs, default python3; the peers were measured on 3.11).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PEERS_SRC=$(cd "${CONVOY_PEERS_DIR:-$REPO/../shared/bench/peers}" && pwd)
PEER_VENVS=${PEER_VENVS:-/tmp/peers}
PYTHON=${PYTHON:-python3}
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(langgraph openai_agents pydantic_ai autogen crewai)

mkdir -p "$PEER_VENVS"
for n in "${NAMES[@]}"; do
  if [ -x "$PEER_VENVS/$n/bin/python" ]; then
    echo "setup_peers: $n: exists at $PEER_VENVS/$n" >&2
    continue
  fi
  freeze="$PEERS_SRC/freeze/$n.txt"
  [ -f "$freeze" ] || { echo "setup_peers: no freeze file $freeze" >&2; exit 1; }
  echo "setup_peers: creating $PEER_VENVS/$n from $freeze" >&2
  "$PYTHON" -m venv "$PEER_VENVS/$n"
  "$PEER_VENVS/$n/bin/pip" install -q -U pip
  "$PEER_VENVS/$n/bin/pip" install -q -r "$freeze"
done
