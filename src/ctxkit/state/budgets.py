"""Shared workflow budgets: reserve a call's worst-case cost before sending it, settle to the real cost after.

A :class:`BudgetStore` keeps, per workflow, the money already spent (settled charges)
and the money held by calls in flight (reservations). :meth:`BudgetStore.reserve`
checks *and* holds in one atomic step: if the settled charges in each limit's window plus
every live reservation plus this one would cross a limit, it raises
:class:`BudgetRefusedError` and nothing is held -- the call is refused before any token is
spent. :meth:`~BudgetStore.settle` replaces the hold by the real cost;
:meth:`~BudgetStore.release` drops it (the call failed before it cost anything). A
reservation whose holder died is reclaimed once its ``timeout_s`` has passed.

Backends, one interface: :class:`InProcessBudgetStore` (threads of one process),
:class:`SQLiteBudgetStore` (processes of one machine; WAL, ``BEGIN IMMEDIATE``) and
:class:`RedisBudgetStore` (many machines; one Lua script per operation). Money is
:class:`~decimal.Decimal` at the surface and whole nano-dollars (1e-9 USD, rounded up) inside.

Windows: ``total`` (forever), ``day`` (the UTC calendar day of the settlement) and
``rolling_hour`` (at one-minute resolution: a charge counts for 60 to 61 minutes, never less).
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import ConfigDict, Field, field_validator

from ctxkit._model import CtxkitModel
from ctxkit._optional import require
from ctxkit.errors import InvalidInputError, ResourceError
from ctxkit.secrets import redact_text
from ctxkit.telemetry.budgets import WorkflowBudget, WorkflowBudgetExceededError

__all__ = [
    "BudgetLimit",
    "BudgetRefusedError",
    "BudgetStore",
    "InProcessBudgetStore",
    "RedisBudgetStore",
    "Reservation",
    "SQLiteBudgetStore",
    "Window",
    "limits_from_budget",
]

Window = Literal["total", "day", "rolling_hour"]
_NANO = Decimal("1e-9")
_MINUTES = 61  # the rolling hour: this minute and the 60 before it


def to_nanos(amount: Decimal | int | str) -> int:
    """``amount`` USD as whole nano-dollars, rounded up (a hold or a charge is never under-counted)."""
    d = Decimal(amount)
    if not d.is_finite() or d < 0:
        raise InvalidInputError(f"an amount of money must be a finite number >= 0, not {amount!r}")
    return int((d / _NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nanos(n: int) -> Decimal:
    return (Decimal(n) * _NANO).normalize() if n else Decimal(0)


class BudgetLimit(CtxkitModel):
    """A cap on what one workflow (``"*"``: each workflow) may spend in a window."""

    model_config = ConfigDict(frozen=True)

    workflow: str = Field(min_length=1)
    limit: Decimal = Field(gt=0, description="USD")
    window: Window = "total"

    @field_validator("limit", mode="before")
    @classmethod
    def _exact(cls, value: object) -> object:
        return Decimal(repr(value)) if isinstance(value, float) else value

    def applies_to(self, workflow: str) -> bool:
        return self.workflow in ("*", workflow)


def limits_from_budget(budget: WorkflowBudget) -> list[BudgetLimit]:
    """The shared limits of a :class:`~ctxkit.telemetry.WorkflowBudget` (its ``max_cost_per_day``)."""
    if budget.max_cost_per_day is None:
        return []
    return [BudgetLimit(workflow=budget.workflow, limit=budget.max_cost_per_day, window="day")]


class Reservation(CtxkitModel):
    """Money held for one call in flight, until :meth:`BudgetStore.settle` or :meth:`BudgetStore.release`."""

    model_config = ConfigDict(frozen=True)

    id: str
    workflow: str
    amount: Decimal
    expires_at: float = Field(description="POSIX seconds; after this the hold may be reclaimed")


class BudgetRefusedError(WorkflowBudgetExceededError):
    """A call was refused before it was sent: its worst-case cost would cross a shared limit.

    ``limit`` (USD), ``window``, ``spent`` (settled in the window), ``reserved`` (held by calls in
    flight) and ``amount`` (this call's hold) say why; nothing was held and nothing was spent.
    """

    def __init__(self, workflow: str, limit: BudgetLimit, spent: Decimal, reserved: Decimal, amount: Decimal) -> None:
        self.violation = None  # type: ignore[assignment]
        self.record = None  # type: ignore[assignment]
        self.workflow = workflow
        kinds = {"total": "cost_total", "day": "cost_per_day", "rolling_hour": "cost_per_rolling_hour"}
        self.kind = kinds[limit.window]  # type: ignore[assignment]
        self.window = limit.window
        self.limit = limit.limit
        self.spent = spent
        self.reserved = reserved
        self.amount = amount
        self.value = spent + reserved + amount
        window = {"total": "total", "day": "per-day (UTC)", "rolling_hour": "rolling-hour"}[limit.window]
        msg = (
            f"workflow {workflow!r} refused before sending: its {window} budget is {limit.limit} USD, "
            f"{spent} USD is spent and {reserved} USD is held by calls in flight, so this call's worst case of "
            f"{amount} USD does not fit. Lower max_tokens or the prompt, route to a cheaper model, wait for "
            "the window to roll over, or raise the limit."
        )
        Exception.__init__(self, redact_text(msg))


def _buckets(now: float) -> tuple[str, str, str]:
    """The buckets a charge at ``now`` goes to: total, its UTC day, its minute."""
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    return "total", f"d:{day}", f"m:{int(now // 60):010d}"


def _window_buckets(window: Window, now: float) -> list[str]:
    total, day, _ = _buckets(now)
    if window == "total":
        return [total]
    if window == "day":
        return [day]
    minute = int(now // 60)
    return [f"m:{m:010d}" for m in range(minute - _MINUTES + 1, minute + 1)]


def _check_args(workflow: Any, amount: Any, timeout_s: Any) -> tuple[str, int, float]:
    if not isinstance(workflow, str) or not workflow:
        raise InvalidInputError(f"workflow must be a non-empty string, not {workflow!r}")
    if isinstance(amount, float):
        amount = Decimal(repr(amount))
    if not isinstance(amount, Decimal | int | str) or isinstance(amount, bool):
        raise InvalidInputError(f"amount must be a Decimal number of USD, not {type(amount).__name__}")
    try:
        nanos = to_nanos(amount)
    except ArithmeticError as exc:
        raise InvalidInputError(f"amount must be a number of USD, not {amount!r}") from exc
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s):
        raise InvalidInputError(f"timeout_s must be a number of seconds > 0, not {timeout_s!r}")
    if timeout_s <= 0:
        raise InvalidInputError(f"timeout_s must be > 0 seconds, not {timeout_s!r}")
    return workflow, nanos, float(timeout_s)


def _limit_list(limits: Any) -> list[BudgetLimit]:
    if isinstance(limits, BudgetLimit | WorkflowBudget):
        limits = [limits]
    if isinstance(limits, str | bytes) or not isinstance(limits, Iterable):
        raise InvalidInputError(f"limits must be a list of BudgetLimit, not {type(limits).__name__}")
    out: list[BudgetLimit] = []
    for item in limits:
        if isinstance(item, WorkflowBudget):
            out += limits_from_budget(item)
        elif isinstance(item, BudgetLimit):
            out.append(item)
        else:
            raise InvalidInputError(f"limits must be BudgetLimit objects, got {type(item).__name__}")
    return out


@runtime_checkable
class BudgetStore(Protocol):
    """Reserve-then-settle budgets; every backend has this interface (sync and async)."""

    limits: tuple[BudgetLimit, ...]

    def reserve(self, workflow: str, amount: Decimal, *, timeout_s: float = ...) -> Reservation: ...
    def settle(self, reservation: Reservation, actual: Decimal) -> None: ...
    def release(self, reservation: Reservation) -> None: ...
    def spent(self, workflow: str, window: Window = "total") -> Decimal: ...
    def reserved(self, workflow: str) -> Decimal: ...
    async def areserve(self, workflow: str, amount: Decimal, *, timeout_s: float = ...) -> Reservation: ...
    async def asettle(self, reservation: Reservation, actual: Decimal) -> None: ...
    async def arelease(self, reservation: Reservation) -> None: ...
    def close(self) -> None: ...


class _BaseStore:
    """What every backend shares: limits, argument checks, refusals, async twins (run in a worker thread)."""

    default_timeout_s = 600.0

    def __init__(self, limits: Iterable[BudgetLimit] | BudgetLimit = (), *, clock: Any = time.time) -> None:
        self.limits: tuple[BudgetLimit, ...] = tuple(_limit_list(limits))
        self._clock = clock

    def _applicable(self, workflow: str) -> list[BudgetLimit]:
        return [lim for lim in self.limits if lim.applies_to(workflow)]

    def _refuse(self, workflow: str, limit: BudgetLimit, spent: int, reserved: int, amount: int) -> BudgetRefusedError:
        return BudgetRefusedError(workflow, limit, from_nanos(spent), from_nanos(reserved), from_nanos(amount))

    def reserve(self, workflow: str, amount: Decimal, *, timeout_s: float | None = None) -> Reservation:
        """Hold ``amount`` USD for a call of ``workflow``; raises :class:`BudgetRefusedError` if it cannot fit."""
        wf, nanos, t = _check_args(workflow, amount, self.default_timeout_s if timeout_s is None else timeout_s)
        rid = uuid.uuid4().hex
        now = float(self._clock())
        self._reserve(wf, rid, nanos, now, now + t)
        return Reservation(id=rid, workflow=wf, amount=from_nanos(nanos), expires_at=now + t)

    def settle(self, reservation: Reservation, actual: Decimal) -> None:
        """Replace the hold by the call's real cost (charged even if the hold had already expired)."""
        if not isinstance(reservation, Reservation):
            raise InvalidInputError(f"settle takes the Reservation that reserve returned, not {reservation!r}")
        _, nanos, _ = _check_args(reservation.workflow, actual, 1.0)
        self._settle(reservation, nanos, float(self._clock()))

    def release(self, reservation: Reservation) -> None:
        """Drop the hold: the call was not made or cost nothing."""
        if not isinstance(reservation, Reservation):
            raise InvalidInputError(f"release takes the Reservation that reserve returned, not {reservation!r}")
        self._release(reservation)

    def spent(self, workflow: str, window: Window = "total") -> Decimal:
        """Settled charges of ``workflow`` in ``window`` (now)."""
        if window not in ("total", "day", "rolling_hour"):
            raise InvalidInputError(f"window must be 'total', 'day' or 'rolling_hour', not {window!r}")
        return from_nanos(self._spent(workflow, _window_buckets(window, float(self._clock()))))

    def reserved(self, workflow: str) -> Decimal:
        """Money held now by live (unexpired) reservations of ``workflow``."""
        return from_nanos(self._reserved(workflow, float(self._clock())))

    async def areserve(self, workflow: str, amount: Decimal, *, timeout_s: float | None = None) -> Reservation:
        return await asyncio.to_thread(self.reserve, workflow, amount, timeout_s=timeout_s)

    async def asettle(self, reservation: Reservation, actual: Decimal) -> None:
        await asyncio.to_thread(self.settle, reservation, actual)

    async def arelease(self, reservation: Reservation) -> None:
        await asyncio.to_thread(self.release, reservation)

    def close(self) -> None:
        """Close this process's connections (a later call opens them again)."""
        return None

    # backends implement these, atomically
    def _reserve(self, workflow: str, rid: str, nanos: int, now: float, expires: float) -> None:
        raise NotImplementedError

    def _settle(self, reservation: Reservation, nanos: int, now: float) -> None:
        raise NotImplementedError

    def _release(self, reservation: Reservation) -> None:
        raise NotImplementedError

    def _spent(self, workflow: str, buckets: Sequence[str]) -> int:
        raise NotImplementedError

    def _reserved(self, workflow: str, now: float) -> int:
        raise NotImplementedError


class InProcessBudgetStore(_BaseStore):
    """Budgets shared by the threads (and event loops) of one process."""

    def __init__(self, limits: Iterable[BudgetLimit] | BudgetLimit = (), *, clock: Any = time.time) -> None:
        super().__init__(limits, clock=clock)
        self._lock = threading.Lock()
        self._charges: dict[tuple[str, str], int] = {}
        self._holds: dict[str, tuple[str, int, float]] = {}

    def __repr__(self) -> str:
        return f"InProcessBudgetStore(limits={len(self.limits)})"

    def _live(self, workflow: str, now: float) -> int:
        for rid in [r for r, (_, _, exp) in self._holds.items() if exp <= now]:
            del self._holds[rid]
        return sum(n for wf, n, _ in self._holds.values() if wf == workflow)

    def _reserve(self, workflow: str, rid: str, nanos: int, now: float, expires: float) -> None:
        with self._lock:
            held = self._live(workflow, now)
            for lim in self._applicable(workflow):
                spent = sum(self._charges.get((workflow, b), 0) for b in _window_buckets(lim.window, now))
                if spent + held + nanos > to_nanos(lim.limit):
                    raise self._refuse(workflow, lim, spent, held, nanos)
            self._holds[rid] = (workflow, nanos, expires)

    def _settle(self, reservation: Reservation, nanos: int, now: float) -> None:
        with self._lock:
            self._holds.pop(reservation.id, None)
            for b in _buckets(now):
                key = (reservation.workflow, b)
                self._charges[key] = self._charges.get(key, 0) + nanos
            old = f"m:{int(now // 60) - _MINUTES:010d}"
            for key in [k for k in self._charges if k[1].startswith("m:") and k[1] < old]:
                del self._charges[key]

    def _release(self, reservation: Reservation) -> None:
        with self._lock:
            self._holds.pop(reservation.id, None)

    def _spent(self, workflow: str, buckets: Sequence[str]) -> int:
        with self._lock:
            return sum(self._charges.get((workflow, b), 0) for b in buckets)

    def _reserved(self, workflow: str, now: float) -> int:
        with self._lock:
            return self._live(workflow, now)


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ctxkit_budget_charges (
    workflow TEXT NOT NULL, bucket TEXT NOT NULL, nanos INTEGER NOT NULL, PRIMARY KEY (workflow, bucket)
);
CREATE TABLE IF NOT EXISTS ctxkit_budget_holds (
    id TEXT PRIMARY KEY, workflow TEXT NOT NULL, nanos INTEGER NOT NULL, expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ctxkit_budget_holds_wf ON ctxkit_budget_holds (workflow, expires);
"""


class _SQLiteConnections:
    """One connection per thread and process (sqlite3 connections must not cross threads or forks)."""

    def __init__(self, path: Path, schema: str, *, busy_timeout_s: float, shared: bool = False) -> None:
        self.path = path
        self.shared = shared  # one connection for the process, used under ``lock``
        self.lock = threading.RLock()
        self._shared: tuple[sqlite3.Connection, int] | None = None
        self._schema = schema
        self._busy_ms = int(busy_timeout_s * 1000)
        self._local = threading.local()
        self.get()  # create the file, the WAL and the tables now: a bad path fails here

    def get(self) -> sqlite3.Connection:
        if self.shared:
            if self._shared is None or self._shared[1] != os.getpid():
                self._shared = (self._open(), os.getpid())
            return self._shared[0]
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = self._open()
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        with self.lock:
            if self._shared is not None and self._shared[1] == os.getpid():
                self._shared[0].close()
            self._shared = None
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.conn = None

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=self._busy_ms / 1000, check_same_thread=not self.shared
            )
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(self._schema)
        except sqlite3.Error as exc:
            raise ResourceError(f"cannot open the SQLite database {str(self.path)!r}: {exc}") from exc
        return conn


def _sqlite_path(path: Any, what: str) -> Path:
    if not isinstance(path, str | os.PathLike) or not str(path).strip():
        raise InvalidInputError(f"{what} takes a database file path, not {path!r}")
    p = Path(path)
    if not p.parent.is_dir():
        raise InvalidInputError(f"the folder of {str(p)!r} does not exist; create it first or pass another path")
    if p.is_dir():
        raise InvalidInputError(f"{str(p)!r} is a folder; pass a file path such as state.db")
    return p


class SQLiteBudgetStore(_BaseStore):
    """Budgets shared by the processes of one machine through one SQLite file (WAL mode).

    Every operation is one ``BEGIN IMMEDIATE`` transaction, so check-and-hold is atomic across
    processes; the file may sit on a local disk only (not NFS).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        limits: Iterable[BudgetLimit] | BudgetLimit = (),
        *,
        busy_timeout_s: float = 60.0,
        clock: Any = time.time,
    ) -> None:
        super().__init__(limits, clock=clock)
        self.path = _sqlite_path(path, "SQLiteBudgetStore")
        self._db = _SQLiteConnections(self.path, _SQLITE_SCHEMA, busy_timeout_s=busy_timeout_s)

    def __repr__(self) -> str:
        return f"SQLiteBudgetStore({self.path.name!r}, limits={len(self.limits)})"

    def close(self) -> None:
        self._db.close()

    def _tx(self, fn: Any) -> Any:
        conn = self._db.get()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out
        except sqlite3.Error as exc:
            raise ResourceError(f"the budget database {str(self.path)!r} failed: {exc}") from exc

    @staticmethod
    def _held(conn: sqlite3.Connection, workflow: str, now: float) -> int:
        conn.execute("DELETE FROM ctxkit_budget_holds WHERE workflow = ? AND expires <= ?", (workflow, now))
        row = conn.execute("SELECT COALESCE(SUM(nanos), 0) FROM ctxkit_budget_holds WHERE workflow = ?", (workflow,))
        return int(row.fetchone()[0])

    @staticmethod
    def _charged(conn: sqlite3.Connection, workflow: str, buckets: Sequence[str]) -> int:
        marks = ",".join("?" * len(buckets))
        row = conn.execute(
            f"SELECT COALESCE(SUM(nanos), 0) FROM ctxkit_budget_charges WHERE workflow = ? AND bucket IN ({marks})",
            (workflow, *buckets),
        )
        return int(row.fetchone()[0])

    def _reserve(self, workflow: str, rid: str, nanos: int, now: float, expires: float) -> None:
        def go(conn: sqlite3.Connection) -> None:
            held = self._held(conn, workflow, now)
            for lim in self._applicable(workflow):
                spent = self._charged(conn, workflow, _window_buckets(lim.window, now))
                if spent + held + nanos > to_nanos(lim.limit):
                    raise self._refuse(workflow, lim, spent, held, nanos)
            conn.execute("INSERT INTO ctxkit_budget_holds VALUES (?, ?, ?, ?)", (rid, workflow, nanos, expires))

        self._tx(go)

    def _settle(self, reservation: Reservation, nanos: int, now: float) -> None:
        def go(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM ctxkit_budget_holds WHERE id = ?", (reservation.id,))
            conn.executemany(
                "INSERT INTO ctxkit_budget_charges VALUES (?, ?, ?) "
                "ON CONFLICT (workflow, bucket) DO UPDATE SET nanos = nanos + excluded.nanos",
                [(reservation.workflow, b, nanos) for b in _buckets(now)],
            )
            old = f"m:{int(now // 60) - _MINUTES:010d}"
            conn.execute(
                "DELETE FROM ctxkit_budget_charges WHERE workflow = ? AND bucket >= 'm:' AND bucket < ?",
                (reservation.workflow, old),
            )

        self._tx(go)

    def _release(self, reservation: Reservation) -> None:
        self._tx(lambda conn: conn.execute("DELETE FROM ctxkit_budget_holds WHERE id = ?", (reservation.id,)))

    def _spent(self, workflow: str, buckets: Sequence[str]) -> int:
        return int(self._charged(self._db.get(), workflow, buckets))

    def _reserved(self, workflow: str, now: float) -> int:
        row = self._db.get().execute(
            "SELECT COALESCE(SUM(nanos), 0) FROM ctxkit_budget_holds WHERE workflow = ? AND expires > ?",
            (workflow, now),
        )
        return int(row.fetchone()[0])


# KEYS: holds hash, expiry zset, then the charge keys of every limit's window in order.
# ARGV: now, id, nanos, expires, n_limits, then per limit: limit_nanos, number of its charge keys.
_LUA_RESERVE = """
local now = tonumber(ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, rid in ipairs(gone) do redis.call('HDEL', KEYS[1], rid) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local held = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do held = held + tonumber(v) end
local nanos = tonumber(ARGV[3])
local k = 3
local a = 6
for i = 1, tonumber(ARGV[5]) do
  local limit = tonumber(ARGV[a])
  local nkeys = tonumber(ARGV[a + 1])
  a = a + 2
  local spent = 0
  for j = 1, nkeys do
    local v = redis.call('GET', KEYS[k])
    if v then spent = spent + tonumber(v) end
    k = k + 1
  end
  if spent + held + nanos > limit then
    return {0, i, tostring(spent), tostring(held)}
  end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
return {1, 0, '0', '0'}
"""

# KEYS: holds hash, expiry zset, total key, day key, minute key. ARGV: id, nanos, minute-key ttl seconds.
_LUA_SETTLE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCRBY', KEYS[3], ARGV[2])
redis.call('INCRBY', KEYS[4], ARGV[2])
redis.call('INCRBY', KEYS[5], ARGV[2])
redis.call('EXPIRE', KEYS[5], ARGV[3])
return 1
"""

_LUA_RELEASE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: holds hash, expiry zset. ARGV: now.
_LUA_HELD = """
local held = 0
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
for _, rid in ipairs(live) do
  local v = redis.call('HGET', KEYS[1], rid)
  if v then held = held + tonumber(v) end
end
return tostring(held)
"""


class RedisBudgetStore(_BaseStore):
    """Budgets shared by processes on many machines through one Redis server (extra ``state``).

    Each operation is one Lua script, so check-and-hold is atomic on the server. The keys of one
    workflow share a hash tag (``{workflow}``), so the scripts also run on Redis Cluster. Holds expire
    by the clients' clocks: keep them in sync (NTP) or give reservations a margin in ``timeout_s``.
    """

    def __init__(
        self,
        url: str,
        limits: Iterable[BudgetLimit] | BudgetLimit = (),
        *,
        prefix: str = "ctxkit:budget",
        clock: Any = time.time,
        client: Any = None,
    ) -> None:
        super().__init__(limits, clock=clock)

        redis = require("redis", feature="the Redis budget store", extra="state")
        if not isinstance(url, str) or "://" not in url:
            raise InvalidInputError("RedisBudgetStore takes a redis:// URL")
        self._url = url
        self.prefix = prefix
        self._client = client if client is not None else redis.Redis.from_url(url)
        self._areserve_client: Any = None
        self._scripts = {
            name: self._client.register_script(src)
            for name, src in (("reserve", _LUA_RESERVE), ("settle", _LUA_SETTLE), ("release", _LUA_RELEASE))
        }
        self._held_script = self._client.register_script(_LUA_HELD)
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise ResourceError(f"cannot reach Redis at {redact_text(url)}: {type(exc).__name__}") from None

    def __repr__(self) -> str:
        return f"RedisBudgetStore({redact_text(self._url)!r}, limits={len(self.limits)})"

    def _key(self, workflow: str, part: str) -> str:
        return f"{self.prefix}:{{{workflow}}}:{part}"

    def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        import redis

        try:
            return self._scripts[name](keys=keys, args=args)
        except redis.RedisError as exc:
            raise ResourceError(f"the Redis budget store failed: {type(exc).__name__}: {exc}") from None

    def _reserve(self, workflow: str, rid: str, nanos: int, now: float, expires: float) -> None:
        keys = [self._key(workflow, "holds"), self._key(workflow, "expiry")]
        limits = self._applicable(workflow)
        args: list[Any] = [repr(now), rid, nanos, repr(expires), len(limits)]
        for lim in limits:
            buckets = _window_buckets(lim.window, now)
            keys += [self._key(workflow, b) for b in buckets]
            args += [to_nanos(lim.limit), len(buckets)]
        ok, index, spent, held = self._call("reserve", keys, args)
        if int(ok) != 1:
            raise self._refuse(workflow, limits[int(index) - 1], int(spent), int(held), nanos)

    def _settle(self, reservation: Reservation, nanos: int, now: float) -> None:
        wf = reservation.workflow
        keys = [self._key(wf, "holds"), self._key(wf, "expiry"), *(self._key(wf, b) for b in _buckets(now))]
        self._call("settle", keys, [reservation.id, nanos, (_MINUTES + 2) * 60])

    def _release(self, reservation: Reservation) -> None:
        wf = reservation.workflow
        self._call("release", [self._key(wf, "holds"), self._key(wf, "expiry")], [reservation.id])

    def _spent(self, workflow: str, buckets: Sequence[str]) -> int:
        values = self._client.mget([self._key(workflow, b) for b in buckets])
        return sum(int(v) for v in values if v is not None)

    def _reserved(self, workflow: str, now: float) -> int:
        keys = [self._key(workflow, "holds"), self._key(workflow, "expiry")]
        return int(self._held_script(keys=keys, args=[repr(now)]))

    def close(self) -> None:
        self._client.close()
