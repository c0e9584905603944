"""Durable ledger sinks: JSONL, SQLite, PostgreSQL; reading back for reports; kill -9 during write bursts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ctxkit import testing
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.state import JSONLSink, LedgerSink, PostgresSink, SQLiteSink
from ctxkit.telemetry import Ledger

WORKER = Path(__file__).with_name("_state_worker.py")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with testing.postgres_server() as url:
        yield url


@pytest.fixture(params=["jsonl", "sqlite", pytest.param("postgres", marks=pytest.mark.server)])
def make_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], LedgerSink]:
    table = f"t{time.monotonic_ns()}"

    def make() -> LedgerSink:
        if request.param == "jsonl":
            return JSONLSink(tmp_path / "calls.jsonl")
        if request.param == "sqlite":
            return SQLiteSink(tmp_path / "calls.db")
        return PostgresSink(request.getfixturevalue("postgres_url"), table=table)

    return make


def test_records_round_trip_and_reports_read_any_sink(make_sink: Callable[[], LedgerSink]) -> None:
    ledger = Ledger(sink=make_sink())
    a = ledger.record(model="gpt-4o-mini", workflow="qa", usage={"input_tokens": 1000, "output_tokens": 100})
    b = ledger.record(model="gpt-4o", workflow="chat", usage={"input_tokens": 50, "output_tokens": 5}, latency_s=0.5)
    back = Ledger.from_sink(make_sink())  # a new sink object: what another process would see
    assert [r.id for r in back.records] == [a.id, b.id]
    assert back.records == ledger.records
    assert back.total_cost() == ledger.total_cost()
    assert back.total_cost() == a.cost + b.cost  # type: ignore[operator]
    assert [r.id for r in Ledger.from_sink(make_sink(), workflow="chat").records] == [b.id]
    rows = back.report().rows
    assert {(r.workflow, r.model) for r in rows} == {("qa", "gpt-4o-mini"), ("chat", "gpt-4o")}
    c = back.record(model="gpt-4o-mini", workflow="qa", usage={"input_tokens": 1, "output_tokens": 1})
    assert [r.id for r in make_sink().read()] == [a.id, b.id, c.id]


def test_concurrent_writers_are_group_committed_without_loss(make_sink: Callable[[], LedgerSink]) -> None:
    ledger = Ledger(sink=make_sink())
    ids: list[str] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(25):
            rec = ledger.record(model="gpt-4o-mini", workflow=f"w{k}", usage={"input_tokens": i, "output_tokens": 1})
            with lock:
                ids.append(rec.id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [r.id for r in make_sink().read()]
    assert sorted(stored) == sorted(ids)
    assert len(stored) == 200


def test_a_record_written_twice_is_kept_once(make_sink: Callable[[], LedgerSink]) -> None:
    sink = make_sink()
    rec = Ledger().record(model="gpt-4o-mini", usage={"input_tokens": 3, "output_tokens": 1})
    sink.write([rec])
    sink.write([rec])
    assert [r.id for r in sink.read()] == [rec.id]


def test_a_sink_that_cannot_write_keeps_nothing(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    sink = SQLiteSink(db)
    ledger = Ledger(sink=sink)
    ledger.record(model="gpt-4o-mini", usage={"input_tokens": 3, "output_tokens": 1})
    conn = sink._db.get()
    conn.execute("DROP TABLE ctxkit_ledger")
    with pytest.raises(ResourceError, match="cannot write to the ledger database"):
        ledger.record(model="gpt-4o-mini", usage={"input_tokens": 3, "output_tokens": 1})
    assert len(ledger) == 1


def test_bad_sinks_and_urls_are_typed_errors_without_secrets(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="ledger sink"):
        Ledger(sink="calls.db")
    with pytest.raises(InvalidInputError, match="does not exist"):
        SQLiteSink(tmp_path / "nope" / "calls.db")
    with pytest.raises(InvalidInputError, match="postgresql://"):
        PostgresSink("mysql://x")
    with pytest.raises(ResourceError) as info:
        PostgresSink("postgresql://app:hunter2secret@127.0.0.1:1/db")
    assert "hunter2secret" not in str(info.value)


@pytest.mark.server
def test_postgres_sink_repr_hides_the_password(postgres_url: str) -> None:
    url = postgres_url.replace("postgres@", "postgres:hunter2secret@")
    sink = PostgresSink(url)
    assert "hunter2secret" not in repr(sink)
    sink.close()


# ---------------------------------------------------------------------- kill -9 during a burst
@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_every_call_that_returned_survives_kill_9(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ids_file = tmp_path / "returned.txt"
    table_spec: dict[str, Any]
    if kind == "postgres":
        table_spec = {"backend": "postgres", "url": request.getfixturevalue("postgres_url")}
        PostgresSink(table_spec["url"]).close()  # the table exists before the workers race to create it
    else:
        table_spec = {"backend": "sqlite", "path": str(tmp_path / "burst.db")}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "ledger",
                json.dumps({**table_spec, "ids_file": str(ids_file), "threads": 4}),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 60
    while (not ids_file.exists() or ids_file.read_text().count("\n") < 600) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL
    returned = [line for line in ids_file.read_text().split("\n") if len(line) == 36]
    assert len(returned) >= 600
    sink = PostgresSink(table_spec["url"]) if kind == "postgres" else SQLiteSink(table_spec["path"])
    stored = {r.id for r in sink.read(workflow="burst")}
    missing = set(returned) - stored
    assert not missing, f"{len(missing)} records whose record() returned are not in the {kind} sink"
    assert all(r.cost is not None and r.cost > Decimal(0) for r in sink.read(workflow="burst")[:10])
    sink.close()


def test_jsonl_sink_skips_a_line_still_being_written(tmp_path: Path) -> None:
    sink = JSONLSink(tmp_path / "calls.jsonl")
    rec = Ledger().record(model="gpt-4o-mini", usage={"input_tokens": 3, "output_tokens": 1})
    sink.write([rec])
    with (tmp_path / "calls.jsonl").open("a") as fh:
        fh.write(rec.model_dump_json()[:20])  # another process is half-way through its append
    assert [r.id for r in sink.read()] == [rec.id]
