"""The ``openai:`` adapter: any OpenAI-compatible chat-completions endpoint.

Works against OpenAI itself and against local servers that speak the same protocol
(llama.cpp's ``llama_cpp.server``, vLLM, Ollama, ...). The SDK's own retries are off
(``max_retries=0``): Convoy's resilience interceptors retry, using the ``retryable``,
``status_code`` and ``retry_after`` this adapter puts on :class:`~convoy.ModelError`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from convoy._errors import ContentPolicyViolation, ContextWindowExceeded, ModelError, UserError
from convoy._text import quoted
from convoy.models._base import Model
from convoy.models._messages import Message, ModelRequest, ModelResponse, ToolCall, Usage
from convoy.security._spotlight import spotlight

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

StructuredOutput = Literal["json_schema", "json_object", "none"]

_LOCAL_KEY = "sk-local"
# How OpenAI, Azure OpenAI, vLLM and llama.cpp's server say a request is too long, or was
# refused by a content filter (error code, type or message; matched in lower case).
_CONTEXT_WINDOW = ("context_length_exceeded", "exceed_context_size", "maximum context length",
                   "context window", "exceeds the available context size")
_CONTENT_POLICY = ("content_policy_violation", "content_filter", "content management policy",
                   "content policy")


def _import_openai() -> ModuleType:
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UserError(
            "the 'openai:' models need the openai SDK: pip install 'convoy[openai]'"
        ) from exc
    return openai


def _is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str, where: str) -> None:
    """A base URL the client can call: ``http(s)://host[:port][/path]``."""
    try:
        parts = urlsplit(base_url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and \
            base_url == base_url.strip()  # (the client does not strip it)
        parts.port  # noqa: B018  (raises ValueError for a port that is not one)
    except ValueError:
        ok = False
    if not ok:
        shown = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", base_url)  # no password
        raise UserError(f"{where} {quoted(shown, 200)} is not an http(s) URL; give the "
                        "server's API root, without spaces around it, e.g. "
                        "http://127.0.0.1:8080/v1")


def _endpoint(base_url: str) -> str:
    """``host:port/path`` of a base URL: no scheme, credentials or query, so an endpoint's
    name can go into breaker keys, metrics and logs."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{host}{port}{parts.path.rstrip('/')}"


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def message_to_openai(m: Message) -> dict[str, Any]:
    # Content is never null: llama.cpp's server rejects null and its chat templates need
    # the key even beside tool_calls; OpenAI accepts "" there.
    out: dict[str, Any] = {"role": m.role, "content": m.content or ""}
    if m.role == "assistant" and m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id or ""
    return out
    out["content"] = m.content or ""
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id or ""
    return out


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


class OpenAIModel(Model):
    """A chat-completions endpoint reached through the official ``openai`` SDK.

    ``structured_output`` chooses how an ``output_schema`` is requested: ``"json_schema"``
    (OpenAI's ``response_format``), ``"json_object"`` (llama.cpp style: a JSON object
    constrained by ``schema``), or ``"none"`` (the prompt alone asks for JSON).
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        structured_output: StructuredOutput = "json_schema",
        timeout: float = 60.0,
        client: AsyncOpenAI | None = None,
    ) -> None:
        if structured_output not in ("json_schema", "json_object", "none"):
            raise UserError(
                f"structured_output must be 'json_schema', 'json_object' or 'none', "
                f"not {quoted(str(structured_output), 40)}"
            )
        self._openai = _import_openai()
        self.model = model
        self.name = f"openai:{model}"
        self.structured_output: StructuredOutput = structured_output
        self.timeout = timeout
        if client is None:
            from_env = not base_url and bool(os.environ.get("OPENAI_BASE_URL"))
            base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
            if base_url is not None:
                _check_base_url(base_url, "$OPENAI_BASE_URL" if from_env else "base_url")
            api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
            if api_key is None:
                if base_url is not None and _is_loopback(base_url):
                    api_key = _LOCAL_KEY
                else:
                    raise UserError(
                        f"model {quoted(self.name, 120)} needs an API key: set OPENAI_API_KEY "
                        "(or pass api_key=..., or a loopback base_url for a local server)"
                    )
            client = self._openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout
            )
        if base_url is not None:
            # One model behind two base URLs is two deployments: breakers, rate limits and
            # metrics must not be shared between them.
            self.deployment = f"{self.name}@{_endpoint(base_url)}"
        self._client: AsyncOpenAI = client

    def _response_format(self, request: ModelRequest) -> dict[str, Any] | None:
        schema = request.output_schema
        if schema is None or self.structured_output == "none":
            return None
        if self.structured_output == "json_object":
            return {"type": "json_object", "schema": schema}
        name = "".join(ch if ch.isalnum() or ch in "_-" else "_"
                       for ch in (request.output_name or "output"))[:64]
        return {"type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": False}}

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        s = request.settings
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [message_to_openai(m) for m in spotlight(request)],
            "timeout": s.timeout if s.timeout is not None else self.timeout,
        }
        if request.tools:
            params["tools"] = [
                {"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools
            ]
            # OpenAI's default with tools; local servers (llama.cpp) ignore tools without it.
            params["tool_choice"] = "auto"
        response_format = self._response_format(request)
        if response_format is not None:
            params["response_format"] = response_format
        if s.temperature is not None:
            params["temperature"] = s.temperature
        if s.max_tokens is not None:
            params["max_tokens"] = s.max_tokens
        if s.seed is not None:
            params["seed"] = s.seed
        return params

    async def request(self, request: ModelRequest) -> ModelResponse:
        params = self._params(request)
        # Every failure of the call becomes a classified ModelError: the SDK's own errors,
        # and a body the SDK cannot decode or we cannot read (HTTP 200 with an HTML page
        # or a cut-off JSON document), which would otherwise escape untyped, unretried
        # and uncounted by breakers. Cancellation is a BaseException and passes through.
        try:
            completion: ChatCompletion = await self._client.chat.completions.create(**params)
            return self._to_response(completion)
        except ModelError:
            raise
        except Exception as exc:
            raise self._map_error(exc) from exc

    def _to_response(self, completion: ChatCompletion) -> ModelResponse:
        usage = Usage()
        if completion.usage is not None:
            usage = Usage(completion.usage.prompt_tokens or 0,
                          completion.usage.completion_tokens or 0)
        if not completion.choices:
            return ModelResponse(usage=usage, model=self.name, finish_reason=None)
        choice = completion.choices[0]
        if choice.finish_reason == "content_filter" and not choice.message.content and \
                not choice.message.tool_calls:
            raise ContentPolicyViolation(f"model {self.name!r}: the answer was withheld by "
                                         "the content filter (finish_reason content_filter)")
        calls: list[ToolCall] = []
        for i, tc in enumerate(choice.message.tool_calls or ()):
            fn = getattr(tc, "function", None)
            if fn is None:  # a custom (non-function) tool call: not a Convoy concept
                continue
            args = fn.arguments
            if not isinstance(args, str):
                args = json.dumps(args)
            calls.append(ToolCall(tc.id or f"call_{i}", fn.name, args or "{}"))
        return ModelResponse(
            text=choice.message.content,
            tool_calls=calls,
            usage=usage,
            model=self.name,
            finish_reason=choice.finish_reason,
        )

    def _map_error(self, exc: Exception) -> ModelError:
        oa = self._openai
        where = f"model {self.name!r}"
        if isinstance(exc, ValueError | AttributeError | TypeError | KeyError | IndexError
                      | oa.APIResponseValidationError):
            # JSONDecodeError is a ValueError; the others come from a body of the wrong
            # shape. A garbled answer is usually a transient fault of the endpoint or a
            # proxy in front of it: trying again may help.
            return ModelError(f"{where}: invalid response body: {type(exc).__name__}: "
                              f"{_short(exc)}", retryable=True)
        if isinstance(exc, TimeoutError):
            return ModelError(f"{where}: request timed out", timeout=True)
        if isinstance(exc, OSError):
            return ModelError(f"{where}: connection failed: {exc}", retryable=True)
        if isinstance(exc, oa.APITimeoutError):
            return ModelError(f"{where}: request timed out", timeout=True)
        if isinstance(exc, oa.APIConnectionError):
            cause = exc.__cause__ or exc
            return ModelError(f"{where}: connection failed: {cause}", retryable=True)
        if isinstance(exc, oa.APIStatusError):
            status = int(exc.status_code)
            detail = getattr(exc, "message", None) or str(exc)
            code = f"{getattr(exc, 'code', None) or ''} {getattr(exc, 'type', None) or ''}"
            if status == 429:
                if "insufficient_quota" in code:  # billing, not flow control: no retry helps
                    return ModelError(f"{where}: quota exhausted (HTTP 429): {detail}",
                                      retryable=False, status_code=status)
                wait = _retry_after(exc.response.headers)
                hint = f", retry after {wait:g}s" if wait is not None else ""
                return ModelError(f"{where}: rate limited (HTTP 429{hint}): {detail}",
                                  retryable=True, status_code=status, retry_after=wait)
            if 400 <= status < 500:
                said = f"{code} {detail}".lower()
                if any(k in said for k in _CONTEXT_WINDOW):
                    return ContextWindowExceeded(f"{where}: context window exceeded (HTTP "
                                                 f"{status}): {detail}", status_code=status)
                if any(k in said for k in _CONTENT_POLICY):
                    return ContentPolicyViolation(f"{where}: refused by the content policy "
                                                  f"(HTTP {status}): {detail}",
                                                  status_code=status)
            if status >= 500 or status in (408, 409):
                return ModelError(f"{where}: server error (HTTP {status}): {detail}",
                                  retryable=True, status_code=status,
                                  retry_after=_retry_after(exc.response.headers))
            what = {400: "bad request", 401: "authentication failed",
                    403: "permission denied", 404: "not found (check the model name and "
                    "base_url)", 422: "unprocessable request"}.get(status, "request rejected")
            return ModelError(f"{where}: {what} (HTTP {status}): {detail}",
                              retryable=False, status_code=status)
        return ModelError(f"{where}: {type(exc).__name__}: {_short(exc)}", retryable=False)

    async def aclose(self) -> None:
        await self._client.close()
