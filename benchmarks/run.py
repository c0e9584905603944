"""Run ctxkit benchmarks: ``python benchmarks/run.py [--quick] [name ...]``.

Each benchmark is a module ``benchmarks/<name>.py`` exposing
``main(argv: list[str]) -> dict[str, object]``. With no name, every module in this folder
whose name does not start with ``_`` (and is not ``run``) is run, in alphabetical order.
Options (``--quick`` for a small-size run, or any other ``--flag``) are passed through
to each ``main``.

The last line printed is ``RESULT `` followed by one JSON object: the benchmark's result
when one name is given, else ``{name: result, ...}`` for all of them (a benchmark that
raised appears as ``{"error": "..."}`` and makes the exit status 1).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the benchmark modules present in this folder."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "run")


def run_one(name: str, argv: list[str]) -> dict[str, object]:
    """Import ``benchmarks/<name>.py`` and return ``main(argv)``."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    module = importlib.import_module(name)
    result = module.main(list(argv))
    if not isinstance(result, dict):
        raise TypeError(f"benchmarks/{name}.py main() returned {type(result).__name__}, not a dict")
    return result


def main(args: list[str]) -> int:
    names = [a for a in args if not a.startswith("-")]
    passthrough = [a for a in args if a.startswith("-")]
    known = available()
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {known}", file=sys.stderr)
        return 2
    selected = names or known
    results: dict[str, object] = {}
    status = 0
    for name in selected:
        print(f"== {name} {' '.join(passthrough)}".rstrip(), flush=True)
        start = time.perf_counter()
        try:
            results[name] = run_one(name, passthrough)
        except Exception as exc:  # report and go on with the other benchmarks
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            status = 1
        print(f"== {name} done in {time.perf_counter() - start:.1f} s", flush=True)
        if len(selected) > 1:
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    final = results[selected[0]] if len(selected) == 1 else results
    print("RESULT " + json.dumps(final), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
