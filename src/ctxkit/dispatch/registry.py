"""Resolve backend specs and user-built clients to backends, lazily.

Specs are ``kind:argument``:

* ``llamacpp:default`` — SmolLM2-135M-Instruct in process (extra ``local``);
* ``llamacpp:/path/to/model.gguf`` — any GGUF chat model in process;
* ``openai:<model>`` — OpenAI (``OPENAI_API_KEY``/``OPENAI_BASE_URL`` from the environment);
* ``anthropic:<model>`` — Anthropic (``ANTHROPIC_API_KEY``).

In-process models are loaded once per path and shared. Users add kinds with
:func:`register_backend`. Clients already built (``llama_cpp.Llama``,
``openai.OpenAI``/``AsyncOpenAI``, ``anthropic.Anthropic``/``AsyncAnthropic``) are
wrapped by :func:`get_backend` too.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import Any

from ctxkit.dispatch.backends.anthropic import AnthropicBackend
from ctxkit.dispatch.backends.base import Backend
from ctxkit.dispatch.backends.llamacpp import LlamaCppBackend
from ctxkit.dispatch.backends.openai import OpenAIBackend
from ctxkit.errors import InvalidInputError, UnknownNameError

__all__ = ["get_backend", "known_backend_kinds", "register_backend"]

_lock = threading.RLock()
_factories: dict[str, Callable[[str], Backend]] = {}
_local_cache: dict[str, Backend] = {}


def _llamacpp(arg: str) -> Backend:
    key = arg or "default"
    with _lock:
        hit = _local_cache.get(key)
        if hit is None:
            hit = LlamaCppBackend.from_path(None if key == "default" else key)
            _local_cache[key] = hit
        return hit


def _openai(arg: str) -> Backend:
    return OpenAIBackend(arg)


def _anthropic(arg: str) -> Backend:
    return AnthropicBackend(arg)


@atexit.register
def _close_local_models() -> None:
    """Free shared in-process models before interpreter shutdown tears down llama.cpp's bindings."""
    with _lock:
        for backend in _local_cache.values():
            close = getattr(getattr(backend, "llama", None), "close", None)
            if close is not None:
                close()
        _local_cache.clear()


_factories.update({"llamacpp": _llamacpp, "openai": _openai, "anthropic": _anthropic})


def register_backend(kind: str, factory: Callable[[str], Backend]) -> None:
    """Teach :func:`get_backend` a new spec kind: ``factory(argument)`` builds the backend."""
    if not kind or ":" in kind:
        raise InvalidInputError(f"a backend kind is a plain word like 'vllm', not {kind!r}")
    with _lock:
        _factories[kind] = factory


def known_backend_kinds() -> list[str]:
    with _lock:
        return sorted(_factories)


def get_backend(spec: Any, *, model: str | None = None) -> Backend:
    """A backend from a spec string, a client the user built, or a backend (returned as is).

    Clients of OpenAI and Anthropic need ``model=``; a ``llama_cpp.Llama`` does not.
    """
    if isinstance(spec, str):
        kind, sep, arg = spec.partition(":")
        if not sep:
            raise InvalidInputError(
                f"backend spec {spec!r} needs a kind: one of {', '.join(f'{k}:...' for k in known_backend_kinds())}"
            )
        with _lock:
            factory = _factories.get(kind)
        if factory is None:
            raise UnknownNameError(
                "backend kind", kind, known_backend_kinds(), hint="Add one with ctxkit.dispatch.register_backend()."
            )
        if not arg and kind != "llamacpp":
            raise InvalidInputError(f"backend spec {spec!r} needs a model name after '{kind}:'")
        return factory(arg)
    if isinstance(spec, Backend):
        return spec
    module = type(spec).__module__.split(".")[0]
    if module == "llama_cpp":
        return LlamaCppBackend.from_llama(spec, model=model)
    if module in ("openai", "anthropic"):
        if not model:
            raise InvalidInputError(
                f"wrapping a {type(spec).__name__} needs the model name: get_backend(client, model=...)"
            )
        if module == "openai":
            return OpenAIBackend.from_client(spec, model)

        return AnthropicBackend.from_client(spec, model)
    raise InvalidInputError(
        f"cannot make a backend from a {type(spec).__name__}; pass a spec like 'llamacpp:default' or "
        "'openai:gpt-4o-mini', a llama_cpp.Llama, an openai/anthropic client, or a Backend"
    )
