"""Issue 14: one ledger file appended to by several processes, each with several threads, loses nothing.

Every record is one ``write`` of one JSON line to a file opened for appending, so lines
from different writers never interleave. This pins that behaviour: all records come back,
each once, each whole, with exact costs that add up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import ctxkit
from ctxkit.telemetry import Ledger

_WRITER = textwrap.dedent(
    """
    import sys, threading
    from decimal import Decimal
    from ctxkit.telemetry import Ledger
    from ctxkit.usage import Usage

    path, proc = sys.argv[1], int(sys.argv[2])
    ledger = Ledger(path=path)

    def write(thread):
        for i in range(150):
            ledger.record(
                model="gpt-4o",
                workflow=f"p{proc}",
                usage=Usage(input_tokens=1000 + i, output_tokens=10),
                cost=Decimal("0.000123"),
                route=f"p{proc}-t{thread}-{i}",
            )

    threads = [threading.Thread(target=write, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(len(ledger), flush=True)
    """
)


def test_processes_and_threads_appending_to_one_ledger_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(ctxkit.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen([sys.executable, str(script), str(path), str(p)], stdout=subprocess.PIPE, text=True, env=env)
        for p in range(4)
    ]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0] and outs == ["450"] * 4
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 * 3 * 150
    ledger = Ledger.from_jsonl(path)  # every line parses as a whole record
    routes = [r.route for r in ledger.records]
    assert len(set(routes)) == len(routes) == 1800
    assert {f"p{p}-t{t}-{i}" for p in range(4) for t in range(3) for i in range(150)} == set(routes)
    assert len({r.id for r in ledger.records}) == 1800
    assert ledger.total_cost() == Decimal("0.000123") * 1800
    for p in range(4):
        assert ledger.total_usage(workflow=f"p{p}").input_tokens == 3 * sum(1000 + i for i in range(150))
