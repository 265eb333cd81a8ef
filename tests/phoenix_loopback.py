"""Start Arize Phoenix (``phoenix serve``) with every listener on loopback.

``PHOENIX_HOST`` binds Phoenix's HTTP server only: its OTLP/gRPC receiver binds
``[::]:PHOENIX_GRPC_PORT``, every interface, whatever it says (Phoenix 20's
``phoenix/server/grpc_server.py``), and Phoenix has no setting for it. The tests keep every
server they start on loopback, so this runs Phoenix with ``grpc.aio.server``'s ports bound
to 127.0.0.1 instead. Run with the Python that has arize-phoenix:

    .venv-phoenix/bin/python tests/phoenix_loopback.py
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

import grpc.aio  # type: ignore[import-not-found, unused-ignore]

_server = grpc.aio.server


def _loopback_server(*args: Any, **kwargs: Any) -> Any:
    server = _server(*args, **kwargs)
    insecure, secure = server.add_insecure_port, server.add_secure_port
    server.add_insecure_port = lambda address: insecure(_loopback(address))
    server.add_secure_port = lambda address, creds: secure(_loopback(address), creds)
    return server


def _loopback(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("[::]", "0.0.0.0", "") else address


grpc.aio.server = _loopback_server
if __name__ == "__main__":
    sys.argv = ["phoenix", "serve"]
    runpy.run_module("phoenix.server.main", run_name="__main__", alter_sys=True)
