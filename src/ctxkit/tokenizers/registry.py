"""Resolve tokenizer specs and model names to tokenizers, lazily, once each.

Specs:

* ``tiktoken:<encoding>`` — exact OpenAI encodings (``cl100k_base``, ``o200k_base``), offline;
* ``hf:<path to tokenizer.json or its folder>`` — a Hugging Face tokenizer (extra ``hf``);
* ``gguf:<path.gguf>`` or ``gguf:default`` — a GGUF model's own vocabulary (extra ``local``);
* ``estimate:claude`` — an estimate with a stated margin, for models with no public tokenizer;
* a model name (``gpt-4o``, ``claude-sonnet-4``, ``smollm2-135m-instruct``) — that model's tokenizer.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from ctxkit._model_table import BUILTIN_ROWS
from ctxkit.errors import InvalidInputError, UnknownNameError
from ctxkit.tokenizers.base import Tokenizer

__all__ = ["count_tokens", "get_tokenizer", "register_tokenizer", "specs_of"]

_lock = threading.RLock()
_instances: dict[str, Tokenizer] = {}
_factories: dict[str, Callable[[str], Tokenizer]] = {}

#: tokenizer specs of the built-in OpenAI models by exact name, read from the model table
#: (:mod:`ctxkit._model_table`, plain data), so counting for ``gpt-4o`` does not import the model
#: registry (and pydantic with it). Only consulted while ``ctxkit.models`` is not imported: until then
#: nobody can have registered or replaced a model. ``tests/test_first_count.py`` checks it against the registry.
_BUILTIN_SPECS: dict[str, str] = {
    row.name: row.tokenizer for row in BUILTIN_ROWS if row.tokenizer.startswith("tiktoken:")
}


def _tiktoken(arg: str) -> Tokenizer:
    from ctxkit.tokenizers._tiktoken import TiktokenTokenizer  # lazy: the first count stays cheap

    return TiktokenTokenizer(arg)


def _hf(arg: str) -> Tokenizer:
    from ctxkit.tokenizers._hf import HFTokenizer  # lazy: optional dependency

    return HFTokenizer.from_file(arg)


def _gguf(arg: str) -> Tokenizer:
    from ctxkit.tokenizers._gguf import GGUFTokenizer  # lazy: optional dependency

    return GGUFTokenizer.from_path(None if arg in ("", "default") else arg)


def _estimate(arg: str) -> Tokenizer:
    if arg != "claude":
        raise UnknownNameError("estimator", arg, ["claude"])
    from ctxkit.tokenizers._estimate import EstimatingTokenizer  # lazy: the first count stays cheap

    return EstimatingTokenizer(get_tokenizer("tiktoken:cl100k_base"), name="estimate:claude")


_factories.update({"tiktoken": _tiktoken, "hf": _hf, "gguf": _gguf, "llamacpp": _gguf, "estimate": _estimate})


def register_tokenizer(kind: str, factory: Callable[[str], Tokenizer]) -> None:
    """Teach :func:`get_tokenizer` a new spec prefix, ``kind:<argument>``."""
    with _lock:
        _factories[kind] = factory


def get_tokenizer(spec: str | Tokenizer) -> Tokenizer:
    """A tokenizer for a spec or model name, created on first use and shared after."""
    if not isinstance(spec, str):
        if isinstance(spec, Tokenizer):
            return spec
        raise InvalidInputError(
            f"a tokenizer is a model name, a spec like 'tiktoken:o200k_base', or a Tokenizer; not {type(spec).__name__}"
        )
    with _lock:
        tok = _instances.get(spec)
        if tok is not None:
            return tok
        kind, sep, arg = spec.partition(":")
        if sep and kind in _factories:
            tok = _factories[kind](arg)
        elif spec in _BUILTIN_SPECS and "ctxkit.models" not in sys.modules:
            tok = get_tokenizer(_BUILTIN_SPECS[spec])
        else:
            from ctxkit.models import get_model, known_models

            try:
                info = get_model(spec)
            except UnknownNameError as exc:
                raise UnknownNameError(
                    "tokenizer or model",
                    spec,
                    [f"{k}:..." for k in _factories] + known_models(),
                    hint="Pass a spec such as 'tiktoken:o200k_base' or a known model name.",
                ) from exc
            tok = get_tokenizer(info.tokenizer)
        _instances[spec] = tok
        return tok


def specs_of(tokenizer: Tokenizer) -> list[str]:
    """The specs and model names :func:`get_tokenizer` has resolved to this very ``tokenizer`` in this process.

    ``kind:argument`` specs come first, then model names, each group sorted. Empty for a tokenizer built by
    hand: no spec names it, so another process could not rebuild it with :func:`get_tokenizer`.
    """
    with _lock:
        specs = [spec for spec, tok in _instances.items() if tok is tokenizer]
    return sorted(specs, key=lambda spec: (":" not in spec, spec))


def count_tokens(text: str, model: str = "gpt-4o") -> int:
    """Tokens of ``text`` for ``model`` (or a tokenizer spec); cached by content."""
    if not isinstance(text, str):
        raise InvalidInputError(f"count_tokens counts a str, not {type(text).__name__}; join or str() it first")
    return get_tokenizer(model).count(text)
