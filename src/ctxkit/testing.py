"""Helpers for tests that talk to real components: a llama.cpp OpenAI-compatible server on loopback.

``with llama_server() as base_url:`` starts ``python -m llama_cpp.server`` on 127.0.0.1
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
    ready_timeout_s: float = 120.0,
) -> Iterator[str]:
    """Run a real llama.cpp server on loopback for the duration of the block; yields its ``/v1`` URL."""
    from ctxkit._optional import require

    require("llama_cpp.server.app", feature="the llama.cpp server", extra="local", package="llama-cpp-python[server]")
    from ctxkit.tokenizers._gguf import default_gguf_path

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model or default_gguf_path())]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    if chat_format:
        cmd += ["--chat_format", chat_format]
    if alias:
        cmd += ["--model_alias", alias]
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
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
                raise ResourceError(f"llama_cpp.server exited with code {proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ResourceError(f"llama_cpp.server did not answer on {base} within {ready_timeout_s:.0f} s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
