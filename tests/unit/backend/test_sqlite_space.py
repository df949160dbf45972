"""Giving a SQLite file's freed pages back (db/sqlite_space.py), on real files."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from webui_backend.db.sqlite_space import reclaim_space

_ROW = "x" * 4000
_ROWS = 2000  # about 8 MB


def _database(path: Path, *, incremental: bool) -> Path:
    """A WAL file holding `_ROWS` rows of which three quarters are deleted again."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        if incremental:
            connection.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the header exists
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO t (body) VALUES (?)", [(_ROW,)] * _ROWS)
        connection.execute("COMMIT")
        connection.execute("DELETE FROM t WHERE id % 4 <> 0")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _pragma(path: Path, name: str) -> int:
    with closing(sqlite3.connect(path)) as connection:
        return int(connection.execute(f"PRAGMA {name}").fetchone()[0])


def test_an_incremental_file_gives_its_free_pages_back(tmp_path: Path) -> None:
    path = _database(tmp_path / "a.db", incremental=True)
    size_before = path.stat().st_size
    free_before = _pragma(path, "freelist_count") * _pragma(path, "page_size")
    assert free_before > 5_000_000

    report = reclaim_space(path, busy_timeout_ms=1000, full_vacuum_min_free_bytes=0)

    assert report.method == "incremental"
    assert report.bytes_reclaimed >= free_before
    assert report.free_bytes == 0
    assert _pragma(path, "freelist_count") == 0
    assert path.stat().st_size == report.file_bytes <= size_before - free_before
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("SELECT count(*) FROM t").fetchone()[0] == _ROWS // 4


def test_an_older_file_is_vacuumed_once_when_much_is_free_and_is_incremental_after(
    tmp_path: Path,
) -> None:
    path = _database(tmp_path / "b.db", incremental=False)
    assert _pragma(path, "auto_vacuum") == 0
    size_before = path.stat().st_size

    report = reclaim_space(path, busy_timeout_ms=1000, full_vacuum_min_free_bytes=1_000_000)

    assert report.method == "full"
    assert report.bytes_reclaimed > 5_000_000
    assert path.stat().st_size < size_before - 5_000_000
    assert _pragma(path, "auto_vacuum") == 2  # INCREMENTAL from now on
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("DELETE FROM t WHERE id % 8 = 0")
    assert reclaim_space(path, busy_timeout_ms=1000, full_vacuum_min_free_bytes=0).method == (
        "incremental"
    )
    assert _pragma(path, "freelist_count") == 0


def test_an_older_file_keeps_its_size_below_the_threshold_or_when_full_vacuum_is_off(
    tmp_path: Path,
) -> None:
    path = _database(tmp_path / "c.db", incremental=False)
    size_before = path.stat().st_size
    free_before = _pragma(path, "freelist_count")

    for threshold in (0, 100_000_000):
        report = reclaim_space(path, busy_timeout_ms=1000, full_vacuum_min_free_bytes=threshold)
        assert report.method == "none"
        assert report.bytes_reclaimed == 0
        assert path.stat().st_size == size_before
        assert _pragma(path, "freelist_count") == free_before
