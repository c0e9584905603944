"""Where ctxkit keeps what it computes once and reuses: converted models, embedding caches."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "fsync_dir", "user_cache_dir"]


def user_cache_dir() -> Path:
    """ctxkit's cache directory: ``$CTXKIT_CACHE_DIR``, ``$XDG_CACHE_HOME/ctxkit`` or ``~/.cache/ctxkit``."""
    if os.environ.get("CTXKIT_CACHE_DIR"):
        return Path(os.environ["CTXKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ctxkit"


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(target: Path) -> Iterator[IO[bytes]]:
    """Write ``target`` through a temporary sibling that is fsynced and renamed into place.

    If the block raises, the temporary file is removed and ``target`` is left as it was,
    so a reader never sees a half-written file.
    """
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
