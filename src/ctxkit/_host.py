"""What this machine is, and what ctxkit measured on it once.

* :func:`cpu_identity`: the CPU model and feature flags, the key of every per-machine verdict;
* :func:`native_bf16`: whether the CPU multiplies bfloat16 natively (AMX tiles or AVX512-BF16);
* :func:`read_verdicts` / :func:`remember_verdict`: a small JSON file per kind of verdict in the
  user cache directory (llama.cpp's extra buffer types, the faster scoring engine), written
  atomically, so a measurement runs once per machine rather than once per process.
"""

from __future__ import annotations

import json
import logging
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

from ctxkit.paths import atomic_write, user_cache_dir

__all__ = ["cpu_identity", "native_bf16", "read_verdicts", "remember_verdict"]

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _cpuinfo() -> str | None:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def cpu_identity() -> str:
    """The CPU model and feature flags (Linux ``/proc/cpuinfo``; elsewhere what ``platform`` knows)."""
    text = _cpuinfo()
    if text is None:
        return f"{platform.machine()}|{platform.processor()}"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name in ("model name", "flags", "Features", "CPU implementer", "CPU part") and name not in fields:
            fields[name] = " ".join(sorted(value.split())) if name in ("flags", "Features") else value.strip()
    return f"{platform.machine()}|" + "|".join(f"{k}={v}" for k, v in sorted(fields.items()))


def native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AMX or AVX512-BF16), from ``/proc/cpuinfo``."""
    flags = set((_cpuinfo() or "").split())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _path(name: str) -> Path:
    return user_cache_dir() / name


def read_verdicts(name: str) -> dict[str, Any]:
    """The verdicts kept in ``<user cache dir>/<name>`` (empty when there is none or it is unreadable)."""
    try:
        data = json.loads(_path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember_verdict(name: str, key: str, entry: dict[str, Any], *, what: str) -> None:
    """Add ``entry`` under ``key`` to ``<user cache dir>/<name>``, atomically.

    A read-only cache directory only costs a measurement per process: it is logged (naming ``what``), not raised.
    """
    entries = read_verdicts(name)
    entries[key] = entry
    try:
        _path(name).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(_path(name)) as f:
            f.write(json.dumps(entries, indent=1, sort_keys=True).encode())
    except OSError as exc:
        logger.warning("could not cache %s: %s", what, exc)
