"""Where ctxkit keeps what it computes once and reuses: converted models, embedding caches."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "fsync_dir", "remove_stale_temporaries", "user_cache_dir"]

_TMP_SUFFIX = re.compile(r"(\d+)-(\d+)")
_active: set[Path] = set()  # temporaries being written by this process right now
_active_lock = threading.Lock()


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


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (True when it cannot be told)."""
    if os.name == "nt":  # os.kill would terminate it there; leave Windows temporaries alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists but belongs to another user
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the temporaries a killed writer of ``target`` left behind; returns what was removed.

    :func:`atomic_write` names its temporary ``.<name>.tmp-<pid>-<thread>`` beside the
    target. A writer that is killed (SIGKILL, power loss) cannot remove it, and it is as
    big as the file it was writing. Such a temporary is stale when its process is no
    longer running, or when it carries this process's id but no write of this process
    is using it (a dead writer whose id was reused). Temporaries of live writers are kept.
    Called before every :func:`atomic_write` and by the loaders of ctxkit's files.
    """
    prefix = f".{target.name}.tmp-"
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except OSError:  # no folder yet, or not readable: nothing to clean
        return removed
    me = os.getpid()
    for entry in entries:
        m = _TMP_SUFFIX.fullmatch(entry.name[len(prefix) :])
        if m is None:
            continue
        pid = int(m.group(1))
        path = Path(entry.path)
        if pid == me:
            with _active_lock:
                if path in _active:
                    continue
        elif _pid_alive(pid):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:  # another process cleaned it first
            continue
        except OSError:  # pragma: no cover - not ours to remove (permissions): leave it
            continue
        removed.append(path)
    return removed


@contextmanager
def atomic_write(target: Path) -> Iterator[IO[bytes]]:
    """Write ``target`` through a temporary sibling that is fsynced and renamed into place.

    If the block raises, the temporary file is removed and ``target`` is left as it was,
    so a reader never sees a half-written file. A process killed mid-write cannot remove
    its temporary; the next :func:`atomic_write` of the same target (or a ctxkit loader of
    it) does, see :func:`remove_stale_temporaries`.
    """
    remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with _active_lock:
        _active.add(tmp)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        with _active_lock:
            _active.discard(tmp)
    fsync_dir(target.parent)
