"""Real telemetry backends on loopback, started from the project's own files: Prometheus
(Debian's ``prometheus``, which ``make test`` installs) scraping a ``/metrics`` endpoint,
and Arize Phoenix (in ``.venv-phoenix``, which ``make phoenix`` creates: its dependencies
stay out of the project's environment) receiving OTLP traces.

Both are waited for by polling their health endpoints, never by sleeping a fixed time."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOENIX_PYTHON = Path(os.environ.get("CONVOY_PHOENIX_PYTHON")
                      or ROOT / ".venv-phoenix" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses TCP sockets listen on at ``port`` (``/proc/net/tcp`` and ``tcp6``;
    an IPv4-mapped IPv6 address as its IPv4 one)."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                addr, _, hex_port = fields[1].rpartition(":")
                if fields[3] != "0A" or int(hex_port, 16) != port:  # (0A: LISTEN)
                    continue
                # (the address is in 32-bit words, each in the host's order: little-endian)
                raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1]
                               for i in range(0, len(addr), 8))
                ip = ipaddress.ip_address(raw)
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                found.append(ip)
    return found


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes] | None,
               log: Path | None, limit: float = 120.0) -> None:
    """Poll ``check`` until it holds; fail with the server's log if the server died or the
    limit passed (a limit for a broken setup, not a timing the test relies on)."""
    deadline = time.monotonic() + limit
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            pytest.fail(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            pytest.fail(f"{what} was not ready after {limit:.0f} s:\n{tail}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- Prometheus ------------------------------------------------------------------------------

@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = get_json(f"{self.url}/api/v1/query?query={urllib.parse.quote(expr)}")
        assert data["status"] == "success", data
        return list(data["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus"
                                           if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        pytest.fail("Prometheus is not installed: 'make prometheus' (or apt-get install "
                    "prometheus) installs Debian's package; 'make test' does it first")
    return found


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], Prometheus]]:
    """Start Prometheus scraping ``127.0.0.1:<port>/metrics`` every 0.5 s."""
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start(target_port: int) -> Prometheus:
        port = free_port()
        conf = tmp_path / "prometheus.yml"
        conf.write_text(
            "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n"
            "scrape_configs:\n  - job_name: convoy\n    scrape_timeout: 400ms\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
        log = tmp_path / "prometheus.log"
        logs.append(log.open("wb"))
        proc = subprocess.Popen(
            [prometheus_binary(), f"--config.file={conf}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=logs[-1], stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                return r.status == 200

        wait_until("prometheus", ready, proc, log)
        return Prometheus(url)

    yield start
    for p in procs:
        stop(p)
    for f in logs:
        f.close()


# -- Arize Phoenix ---------------------------------------------------------------------------

@dataclass
class Phoenix:
    url: str
    otlp: str  # the OTLP/HTTP traces endpoint

    def spans(self, project: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = get_json(f"{self.url}/v1/projects/{urllib.parse.quote(project)}/spans"
                            f"?limit=1000{'&cursor=' + cursor if cursor else ''}")
            out += page["data"]
            cursor = page.get("next_cursor") or ""
            if not cursor:
                return out


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """Arize Phoenix on loopback (about 10-40 s to start on a shared 2-core machine)."""
    if not PHOENIX_PYTHON.exists():
        pytest.fail(f"Arize Phoenix is not installed at {PHOENIX_PYTHON}: 'make phoenix' "
                    "creates .venv-phoenix ('make test' does it first), or set "
                    "CONVOY_PHOENIX_PYTHON to a Python that has arize-phoenix")
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))},
           "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(grpc_port), "PHOENIX_WORKING_DIR": str(work),
           "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = work / "phoenix.log"
    out = log.open("wb")
    # (its OTLP/gRPC receiver would bind every interface: see tests/phoenix_loopback.py)
    proc = subprocess.Popen([str(PHOENIX_PYTHON), str(ROOT / "tests" / "phoenix_loopback.py")],
                            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
            return r.status == 200

    try:
        wait_until("phoenix", ready, proc, log, limit=240.0)
        wait_until("phoenix's gRPC receiver", lambda: bool(listening(grpc_port)), proc, log)
        exposed = [str(a) for p in (port, grpc_port) for a in listening(p)
                   if not a.is_loopback]
        assert not exposed, f"Phoenix listens beyond loopback: {exposed}"
        yield Phoenix(url, f"{url}/v1/traces")
    finally:
        stop(proc)
        out.close()


__all__ = ["Phoenix", "Prometheus", "free_port", "phoenix", "prometheus", "wait_until"]
