"""A scripted OpenAI-compatible chat-completions server on loopback, for bench/faults.py.

The server runs its own asyncio loop in a daemon thread, so the engine under test cannot
slow it down. For every ``POST .../chat/completions`` it asks its ``script`` what to do
(an :class:`Action`) and logs the request with its arrival time (``time.monotonic()``,
the clock Convoy's breakers use) and which session it carried (``sess-N`` in the body).

Actions: ``ok`` answers a valid ``chat.completion`` whose content is the smallest JSON
value satisfying the request's ``response_format`` schema, with usage; ``status`` answers
an HTTP error (500, 503, 429 with ``Retry-After``, 400 with an error ``code``); ``hang``
never answers (the connection stays open until the client gives up); ``badjson`` answers 200
with a body that is not JSON; :func:`held` answers once an event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_SESSION = re.compile(rb"sess-(\d+)")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # "ok" | "status" | "hang" | "badjson"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    code: str | None = None  # the error's ``code`` in the body (``context_length_exceeded``)
    hold: threading.Event | None = None  # answer only once this is set (requests in flight)

    @property
    def label(self) -> str:
        return str(self.status) if self.kind == "status" else self.kind


OK = Action("ok")
HANG = Action("hang")
BADJSON = Action("badjson")


def error(status: int, retry_after: float | None = None, code: str | None = None) -> Action:
    headers = (("Retry-After", f"{retry_after:g}"),) if retry_after is not None else ()
    return Action("status", status, headers, code)


def held(release: threading.Event) -> Action:
    """A valid answer, sent once ``release`` is set: keeps a request in flight."""
    return Action("ok", hold=release)


@dataclass(slots=True)
class Logged:
    t: float
    action: str
    session: int | None
    auth: str | None = None  # the Authorization header


@dataclass
class FaultServer:
    """``script(now) -> Action`` decides each answer; ``log`` has every request."""

    script: Callable[[float], Action]
    hang_cap: float = 300.0
    log: list[Logged] = field(default_factory=list)
    served: set[int] = field(default_factory=set)  # sessions answered with a valid 200
    port: int = 0

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._ids = 0

    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultServer:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            tasks = asyncio.all_tasks(loop)  # connections still open (keep-alive, hangs)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                body = await reader.readexactly(n) if n else b""
                if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
                    self._send(writer, 404, json.dumps({"error": {"message": "not found"}}))
                    await writer.drain()
                    continue
                action = self.script(time.monotonic())
                m = _SESSION.search(body)
                session = int(m.group(1)) if m else None
                self.log.append(Logged(time.monotonic(), action.label, session,
                                       headers.get("authorization")))
                if action.hold is not None:
                    await asyncio.to_thread(action.hold.wait, self.hang_cap)
                if action.kind == "hang":  # never answer; wait for the client to give up
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reader.read(), self.hang_cap)
                    return
                if action.kind == "badjson":
                    self._send(writer, 200, '{"id": "chatcmpl-broken", "choices": [{"mess')
                elif action.kind == "status":
                    msg = {"error": {"message": f"scripted HTTP {action.status}",
                                     "type": "server_error", "code": action.code}}
                    self._send(writer, action.status, json.dumps(msg), action.headers)
                else:
                    reply = json.dumps(self._completion(json.loads(body)))
                    if session is not None:  # (before the answer: a client that has it may
                        self.served.add(session)  # look at once, from another thread)
                    self._send(writer, 200, reply)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError,
                asyncio.CancelledError):  # CancelledError: the server is stopping
            return
        finally:
            writer.close()

    def _send(self, writer: asyncio.StreamWriter, status: int, text: str,
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = text.encode()
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                "Content-Type: application/json", f"Content-Length: {len(data)}",
                "Connection: keep-alive", *(f"{k}: {v}" for k, v in headers)]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)

    def _completion(self, req: dict[str, Any]) -> dict[str, Any]:
        rf = req.get("response_format") or {}
        schema = None
        if rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema")
        elif rf.get("type") == "json_object":
            schema = rf.get("schema") or {"type": "object"}
        content = json.dumps(minimal(schema, schema)) if schema is not None else "ok"
        prompt = sum(len(str(m.get("content") or "")) for m in req.get("messages", ())) // 4 + 1
        completion = len(content) // 4 + 1
        self._ids += 1
        return {"id": f"chatcmpl-{self._ids}", "object": "chat.completion",
                "created": int(time.time()), "model": req.get("model", "fault"),
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}


def minimal(schema: Any, root: Any) -> Any:
    """The smallest value that satisfies a (pydantic-generated) JSON schema."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return minimal(node, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return minimal(schema[key][0], root)
    if "default" in schema:
        return schema["default"]
    t = schema.get("type", "object")
    if isinstance(t, list):
        t = t[0]
    if t == "object":
        props = schema.get("properties", {})
        return {k: minimal(props[k], root) for k in schema.get("required", ()) if k in props}
    if t == "array":
        return [minimal(schema.get("items", {}), root)
                for _ in range(schema.get("minItems", 0))]
    if t == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if t in ("integer", "number"):
        return schema.get("minimum", 0)
    if t == "boolean":
        return False
    return None
