"""Durable ledger sinks: where :class:`~ctxkit.telemetry.Ledger` records go, and where reports read them back.

A :class:`LedgerSink` writes records so that they are durable when :meth:`~LedgerSink.write`
returns (the ledger's ``record()`` returns after that), and reads them back for reports and
exports (``Ledger.from_sink(sink)``). Concurrent writers of one sink object are group-committed:
the first thread to arrive writes every record queued so far in one transaction while the
others wait for it, so batching never holds a record in memory after its ``record()`` returned.

* :class:`JSONLSink` -- one JSON line per record, appended (one machine, one file);
* :class:`SQLiteSink` -- a table in an SQLite file (WAL), safe for many processes of one machine;
* :class:`PostgresSink` -- a table on a PostgreSQL server, for many machines (extra ``state``).

Records are stored whole (JSON, exact costs as strings) with their id as the primary key, so a
record written twice is kept once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.secrets import redact_text
from ctxkit.state.budgets import _sqlite_path, _SQLiteConnections
from ctxkit.telemetry.ledger import _ledger_path
from ctxkit.telemetry.record import CallRecord

__all__ = ["JSONLSink", "LedgerSink", "PostgresSink", "SQLiteSink"]


@runtime_checkable
class LedgerSink(Protocol):
    """Durable storage of call records: ``write`` returns once they are stored; ``read`` returns them in order."""

    def write(self, records: Sequence[CallRecord]) -> None: ...
    def read(self, *, workflow: str | None = None, since: datetime | None = None) -> list[CallRecord]: ...
    def close(self) -> None: ...


class _GroupCommit:
    """Group commit: callers queue records; one of them (the leader) flushes the whole queue; all wait for theirs."""

    def __init__(self, flush: Callable[[list[CallRecord]], None]) -> None:
        self._flush = flush
        self._cv = threading.Condition()
        self._pending: list[CallRecord] = []
        self._busy = False
        self._next = 0  # the batch that queued records join
        self._done = 0  # batches below this one are finished
        self._failed: dict[int, BaseException] = {}

    def submit(self, records: Sequence[CallRecord]) -> None:
        with self._cv:
            self._pending.extend(records)
            mine = self._next
            while self._busy and self._done <= mine:
                self._cv.wait()
            if self._done > mine:
                err = self._failed.get(mine)
                if err is not None:
                    raise err
                return
            batch, self._pending = self._pending, []
            self._next += 1
            self._busy = True
        error: BaseException | None = None
        try:
            self._flush(batch)
        except BaseException as exc:
            error = exc
        with self._cv:
            self._busy = False
            self._done = mine + 1
            self._failed = {mine: error} if error is not None else {}
            self._cv.notify_all()
        if error is not None:
            raise error


def _filter(records: list[CallRecord], workflow: str | None, since: datetime | None) -> list[CallRecord]:
    return [
        r for r in records if (workflow is None or r.workflow == workflow) and (since is None or r.timestamp >= since)
    ]


def _parse(line: str, where: str) -> CallRecord:
    try:
        return CallRecord.model_validate_json(line)
    except (ValidationError, InvalidInputError) as exc:
        raise InvalidInputError(f"{where} is not a call record: {exc}") from None


class JSONLSink:
    """Records appended to a JSON-lines file: one ``write`` per batch, flushed to the OS before it returns.

    A whole batch goes out in one ``O_APPEND`` write, so processes appending to the same file do not
    interleave lines. ``fsync=True`` also survives power loss (slower).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        p = _ledger_path(path)
        assert p is not None
        self.path: Path = p
        self.fsync = bool(fsync)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"

    def write(self, records: Sequence[CallRecord]) -> None:
        data = "".join(r.model_dump_json() + "\n" for r in records).encode("utf-8")
        if not data:
            return
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise ResourceError(
                    f"cannot append to the ledger file {str(self.path)!r} ({exc.strerror}); the call was not "
                    "recorded. Free space or fix the permissions, then record it again."
                ) from exc

    def read(self, *, workflow: str | None = None, since: datetime | None = None) -> list[CallRecord]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read the ledger file {str(self.path)!r}: {exc}") from exc
        lines = text.split("\n")
        if lines and lines[-1] and not text.endswith("\n"):
            lines = lines[:-1]  # a line still being written by another process
        out: dict[str, CallRecord] = {}
        for n, line in enumerate(lines, 1):
            if line.strip():
                rec = _parse(line, f"line {n} of {self.path.name}")
                out.setdefault(rec.id, rec)  # a record written twice is read once, as in the database sinks
        return _filter(list(out.values()), workflow, since)

    def close(self) -> None:
        return None


_SQLITE_LEDGER = """
CREATE TABLE IF NOT EXISTS ctxkit_ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, workflow TEXT NOT NULL,
    ts TEXT NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ctxkit_ledger_wf ON ctxkit_ledger (workflow, ts);
"""


class SQLiteSink:
    """Records in an SQLite file (WAL); many processes of one machine may write the same file.

    ``synchronous="NORMAL"`` (default) keeps every committed record when a process is killed;
    ``"FULL"`` also keeps it through power loss.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL", busy_timeout_s: float = 60.0
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise InvalidInputError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.path = _sqlite_path(path, "SQLiteSink")
        self._sync = synchronous.upper()
        self._db = _SQLiteConnections(self.path, _SQLITE_LEDGER, busy_timeout_s=busy_timeout_s, shared=True)
        self._group = _GroupCommit(self._flush)

    def __repr__(self) -> str:
        return f"SQLiteSink({str(self.path)!r})"

    def _conn(self) -> Any:
        conn = self._db.get()
        conn.execute(f"PRAGMA synchronous={self._sync}")
        return conn

    def _flush(self, records: list[CallRecord]) -> None:
        with self._db.lock:
            self._flush_locked(records)

    def _flush_locked(self, records: list[CallRecord]) -> None:
        import sqlite3

        rows = [(r.id, r.workflow, r.timestamp.isoformat(), r.model_dump_json()) for r in records]
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO ctxkit_ledger (id, workflow, ts, record) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING",
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ResourceError(f"cannot write to the ledger database {str(self.path)!r}: {exc}") from exc

    def write(self, records: Sequence[CallRecord]) -> None:
        if records:
            self._group.submit(records)

    def read(self, *, workflow: str | None = None, since: datetime | None = None) -> list[CallRecord]:
        sql, args = "SELECT record FROM ctxkit_ledger", []
        if workflow is not None:
            sql, args = sql + " WHERE workflow = ?", [workflow]
        with self._db.lock:
            rows = self._conn().execute(sql + " ORDER BY seq", args).fetchall()
        return _filter([_parse(r[0], f"a row of {self.path.name}") for r in rows], None, since)

    def close(self) -> None:
        self._db.close()


class PostgresSink:
    """Records in a PostgreSQL table (extra ``state``): many processes on many machines write one ledger.

    ``url`` is a ``postgresql://`` URL; its password never appears in reprs, errors or logs.
    Each batch is one transaction, committed before ``write`` returns.
    """

    def __init__(self, url: str, *, table: str = "ctxkit_ledger") -> None:
        require("psycopg", feature="the PostgreSQL ledger sink", extra="state")
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise InvalidInputError("PostgresSink takes a postgresql:// URL")
        if not table.replace("_", "").isalnum():
            raise InvalidInputError(f"table must be a plain identifier (letters, digits, _), not {table!r}")
        self._url = url
        self.table = table
        self._lock = threading.RLock()
        self._conn_pid: tuple[Any, int] | None = None
        self._group = _GroupCommit(self._flush)
        with self._lock, self._conn().transaction():
            self._conn().execute(
                f"CREATE TABLE IF NOT EXISTS {table} (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                "workflow TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL, record TEXT NOT NULL)"
            )
            self._conn().execute(f"CREATE INDEX IF NOT EXISTS {table}_wf ON {table} (workflow, ts)")

    def __repr__(self) -> str:
        return f"PostgresSink({redact_text(self._url)!r}, table={self.table!r})"

    def _conn(self) -> Any:
        import psycopg

        if self._conn_pid is not None and self._conn_pid[1] == os.getpid() and not self._conn_pid[0].closed:
            return self._conn_pid[0]
        try:
            conn = psycopg.connect(self._url, autocommit=True)
        except psycopg.Error as exc:
            raise ResourceError(
                f"cannot connect to PostgreSQL at {redact_text(self._url)}: {redact_text(str(exc))}"
            ) from None
        self._conn_pid = (conn, os.getpid())
        return conn

    def _flush(self, records: list[CallRecord]) -> None:
        import psycopg

        rows = [(r.id, r.workflow, r.timestamp, r.model_dump_json()) for r in records]
        try:
            with self._lock, self._conn().transaction(), self._conn().cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {self.table} (id, workflow, ts, record) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    rows,
                )
        except psycopg.Error as exc:
            raise ResourceError(
                f"cannot write to the PostgreSQL ledger: {redact_text(str(exc))}; the call was not recorded"
            ) from None

    def write(self, records: Sequence[CallRecord]) -> None:
        if records:
            self._group.submit(records)

    def read(self, *, workflow: str | None = None, since: datetime | None = None) -> list[CallRecord]:
        sql, args = f"SELECT record FROM {self.table}", []  # the table name is checked in __init__
        if workflow is not None:
            sql, args = sql + " WHERE workflow = %s", [workflow]
        with self._lock:
            rows = self._conn().execute(sql + " ORDER BY seq", args).fetchall()
        return _filter([_parse(r[0], "a row of the PostgreSQL ledger") for r in rows], None, since)

    def close(self) -> None:
        with self._lock:
            if self._conn_pid is not None and self._conn_pid[1] == os.getpid():
                self._conn_pid[0].close()
            self._conn_pid = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()


def _check_sink(sink: Any) -> Any:
    if not all(callable(getattr(sink, m, None)) for m in ("write", "read")):
        raise InvalidInputError(
            f"sink must be a ledger sink (JSONLSink, SQLiteSink, PostgresSink), not {type(sink).__name__}"
        )
    return sink
