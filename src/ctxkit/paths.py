"""Where ctxkit keeps what it computes once and reuses: converted models, embedding caches."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["user_cache_dir"]


def user_cache_dir() -> Path:
    """ctxkit's cache directory: ``$CTXKIT_CACHE_DIR``, ``$XDG_CACHE_HOME/ctxkit`` or ``~/.cache/ctxkit``."""
    if os.environ.get("CTXKIT_CACHE_DIR"):
        return Path(os.environ["CTXKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ctxkit"
