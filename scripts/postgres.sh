#!/usr/bin/env bash
# A private PostgreSQL cluster for Convoy's tests and benchmarks: on loopback, on a free port,
# under a directory of its own, as the unprivileged `postgres` user when run as root
# (initdb and the server refuse to run as root).
#
#   scripts/postgres.sh install            install the Debian `postgresql` package if no
#                                          server binaries are found (needs root and apt)
#   scripts/postgres.sh start DIR [PORT]   create a cluster under DIR (if new) and start it on
#                                          127.0.0.1:PORT (default: a free port); prints its
#                                          URL, postgresql://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop DIR           stop the cluster under DIR (fast shutdown)
#   scripts/postgres.sh bindir             print the directory of the server binaries
#
# The cluster trusts local connections on 127.0.0.1 only (no password): it is a throwaway
# for tests, never a server for data. fsync and synchronous_commit keep PostgreSQL's
# defaults (on), so the figures measured on it are those of a durable server.
# Environment: PG_BINDIR (the server binaries; default: the newest /usr/lib/postgresql/*/bin,
# or wherever pg_ctl is on PATH), PG_WAIT (seconds to wait for the server, default 60),
# PG_SERVER_OPTIONS (more server options for `start`, e.g. "-c fsync=off" for a test run
# that never crashes the server itself).
set -euo pipefail

find_bindir() {
    if [[ -n "${PG_BINDIR:-}" ]]; then
        [[ -x "$PG_BINDIR/pg_ctl" ]] && { echo "$PG_BINDIR"; return 0; }
        return 1
    fi
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$d/pg_ctl" && -x "$d/initdb" ]] && { echo "$d"; return 0; }
    done
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

# Run a server binary as `postgres` when we are root; as ourselves otherwise.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 - <<'EOF'
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
EOF
}

cmd="${1:-}"
case "$cmd" in
install)
    if find_bindir >/dev/null; then
        exit 0
    fi
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "postgres.sh: no PostgreSQL server binaries found; install the 'postgresql'" \
             "package (Debian/Ubuntu: sudo apt-get install -y postgresql) or set PG_BINDIR" >&2
        exit 1
    fi
    echo "postgres.sh: installing the Debian 'postgresql' package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    find_bindir >/dev/null || { echo "postgres.sh: still no server binaries after apt-get" >&2; exit 1; }
    ;;
bindir)
    find_bindir || { echo "postgres.sh: no PostgreSQL server binaries (run: $0 install)" >&2; exit 1; }
    ;;
start)
    dir="${2:?usage: postgres.sh start DIR [PORT]}"
    port="${3:-$(free_port)}"
    bin=$(find_bindir) || { echo "postgres.sh: no PostgreSQL server binaries (run: $0 install)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || { echo "postgres.sh: running as root needs a 'postgres' user (the Debian package creates it)" >&2; exit 1; }
        chown postgres "$dir"
        chmod 700 "$dir"
        runuser -u postgres -- test -w "$dir" || { echo "postgres.sh: the 'postgres' user cannot reach $dir (a parent directory is closed to it); use a directory under /tmp" >&2; exit 1; }
    fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
            --no-instructions >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
        cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 300
EOF
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t "${PG_WAIT:-60}" \
        -o "-p $port ${PG_SERVER_OPTIONS:-}" start >/dev/null \
        || { tail -n 30 "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    dir="${2:?usage: postgres.sh stop DIR}"
    bin=$(find_bindir) || exit 0
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
*)
    echo "usage: postgres.sh install | start DIR [PORT] | stop DIR | bindir" >&2
    exit 2
    ;;
esac
