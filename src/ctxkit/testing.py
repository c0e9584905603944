"""Helpers for tests that talk to real components: a llama.cpp OpenAI-compatible server on loopback.

``with llama_server() as base_url:`` starts llama-cpp-python's server through
``python -m ctxkit.llama_server`` (the same extra-buffer-type decision as every other
llama.cpp model ctxkit loads, so quantized models do not crash it on AMX hosts) on 127.0.0.1
on a free port (the default local model unless ``model`` is given), waits until
``/v1/models`` answers, yields ``http://127.0.0.1:<port>/v1``, and stops it after.
Needs the ``local`` extra and ``llama-cpp-python[server]``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike

from ctxkit.errors import ResourceError

__all__ = ["free_port", "llama_server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(
    model: str | PathLike[str] | None = None,
    *,
    n_ctx: int = 2048,
    chat_format: str | None = None,
    alias: str | None = None,
    n_threads: int | None = None,
    extra_bufts: bool | None = None,
    ready_timeout_s: float = 300.0,
) -> Iterator[str]:
    """Run a real llama.cpp server on loopback for the duration of the block; yields its ``/v1`` URL.

    ``extra_bufts`` forces llama.cpp's extra buffer types on or off (default: ctxkit decides,
    see :func:`ctxkit.gguf.extra_bufts_decision`; a first decision may run a probe, hence the
    generous ``ready_timeout_s``).
    """
    from ctxkit._optional import require

    require("llama_cpp.server.app", feature="the llama.cpp server", extra="local", package="llama-cpp-python[server]")
    from ctxkit.tokenizers._gguf import default_gguf_path

    port = free_port()
    cmd = [sys.executable, "-m", "ctxkit.llama_server", "--model", str(model or default_gguf_path())]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    if chat_format:
        cmd += ["--chat_format", chat_format]
    if alias:
        cmd += ["--model_alias", alias]
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    if extra_bufts is not None:
        cmd += ["--extra_bufts", "on" if extra_bufts else "off"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise ResourceError(f"ctxkit.llama_server exited with code {proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ResourceError(f"ctxkit.llama_server did not answer on {base} within {ready_timeout_s:.0f} s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
