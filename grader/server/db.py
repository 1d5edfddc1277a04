"""A thin database layer: SQLite (WAL, inside COURSE_DIR) or PostgreSQL, one schema, plain SQL.

    Database.open(url)           sqlite:///path | path | postgresql://...
        │  migrate()             migrations/NNN_*.sql in order; `schema_version` says how far
        ▼
    db.transaction() as tx       tx.all / tx.one / tx.run / tx.new_id - `?` placeholders in
                                 every query (turned into %s for psycopg)

Ids come from a `counters` table (`UPDATE ... RETURNING`), so the SQL is the same on both.
Each call opens its own short transaction; a connection is per thread (SQLite) or taken from a
small pool of idle connections (PostgreSQL), so the web handlers and the queue worker never
share one. Reads (`db.all/one/value`, `transaction(write=False)`) never take SQLite's write
lock: WAL readers see the last commit while the queue writes, so a page never waits on a grade.

Everything the database writes is its owner's only: course.db, its -wal and -shm are 0600
(SQLite gives the WAL and shared-memory files the database file's mode).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ServerDatabaseError

__all__ = ["Database", "ServerDatabaseError", "SCHEMA_VERSION"]


def migrations() -> list[tuple[int, str]]:
    """(number, SQL) of every migration shipped with learn, in order."""
    folder = resources.files("grader.server") / "migrations"
    out = []
    for item in folder.iterdir():
        match = re.match(r"^(\d+)_.*\.sql$", item.name)
        if match:
            out.append((int(match.group(1)), item.read_text()))
    return sorted(out)


SCHEMA_VERSION = max(n for n, _ in migrations())


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class Tx:
    """One transaction: `?` placeholders, rows as dicts."""

    def __init__(self, cursor, postgres: bool):
        self.cursor, self.postgres = cursor, postgres

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def run(self, sql: str, *params: Any) -> int:
        self.cursor.execute(self._sql(sql), params)
        return self.cursor.rowcount

    def all(self, sql: str, *params: Any) -> list[dict]:
        self.cursor.execute(self._sql(sql), params)
        names = [d[0] for d in self.cursor.description]
        return [dict(zip(names, row)) for row in self.cursor.fetchall()]

    def one(self, sql: str, *params: Any) -> dict | None:
        rows = self.all(sql, *params)
        return rows[0] if rows else None

    def value(self, sql: str, *params: Any) -> Any:
        row = self.one(sql, *params)
        return next(iter(row.values())) if row else None

    def new_id(self, table: str) -> int:
        if self.run("UPDATE counters SET value = value + 1 WHERE name = ?", table) == 0:
            self.run("INSERT INTO counters (name, value) VALUES (?, 1)", table)
        return int(self.value("SELECT value FROM counters WHERE name = ?", table))


class Database:
    """The course database (see module docstring)."""

    def __init__(self, url: str):
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._local = threading.local()
        if not self.postgres:
            if "://" in url and not url.startswith("sqlite:///"):
                raise ServerDatabaseError(f"unsupported database URL {url.split('://')[0]}://...: use postgresql://... or a SQLite path")
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            private_file(self.path)
        self._idle: queue.SimpleQueue = queue.SimpleQueue()  # PostgreSQL connections between transactions

    @classmethod
    def open(cls, url: str) -> Database:
        db = cls(url)
        db.migrate()
        return db

    def _connect(self):
        if self.postgres:
            while True:  # an idle connection that still works, else a new one
                try:
                    conn = self._idle.get_nowait()
                except queue.Empty:
                    break
                if not conn.closed and not conn.broken:
                    return conn
            try:
                import psycopg
            except ImportError:
                raise ServerDatabaseError("--db postgresql://... needs psycopg: pip install 'learn-grader[server]'") from None
            try:
                return psycopg.connect(self.url, connect_timeout=10)
            except psycopg.Error as exc:
                raise ServerDatabaseError(f"cannot connect to the course database: {exc}") from None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as exc:
                raise ServerDatabaseError(f"{self.path}: not a usable SQLite database ({exc})") from None
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        """A transaction; one opened inside another on the same thread joins it. `write=False`
        (reads only) does not wait for SQLite's write lock."""
        outer = getattr(self._local, "tx", None)
        if outer is not None:
            yield outer
            return
        with self._begin(write) as tx:
            self._local.tx = tx
            try:
                yield tx
            finally:
                self._local.tx = None

    @contextlib.contextmanager
    def _begin(self, write: bool = True) -> Iterator[Tx]:
        conn = self._connect()
        if self.postgres:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield Tx(cur, True)
            finally:
                if conn.broken or conn.closed or self._idle.qsize() >= POOL_IDLE:
                    conn.close()
                else:
                    self._idle.put(conn)
            return
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Tx(cur, False)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            cur.close()

    # shorthands: one transaction each (reads do not take the write lock)
    def all(self, sql: str, *params: Any) -> list[dict]:
        with self.transaction(write=False) as tx:
            return tx.all(sql, *params)

    def one(self, sql: str, *params: Any) -> dict | None:
        with self.transaction(write=False) as tx:
            return tx.one(sql, *params)

    def value(self, sql: str, *params: Any) -> Any:
        with self.transaction(write=False) as tx:
            return tx.value(sql, *params)

    def run(self, sql: str, *params: Any) -> int:
        with self.transaction() as tx:
            return tx.run(sql, *params)

    def version(self) -> int:
        with self.transaction() as tx:
            tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            return int(tx.value("SELECT MAX(version) FROM schema_version") or 0)

    def migrate(self) -> int:
        """Apply the migrations this database lacks, each in its own transaction. Returns the version."""
        current = self.version()
        if current > SCHEMA_VERSION:
            raise ServerDatabaseError(
                f"the course database is at schema {current}, newer than this learn ({SCHEMA_VERSION}): upgrade learn"
            )
        for number, sql in migrations():
            if number <= current:
                continue
            with self.transaction() as tx:
                if (tx.value("SELECT MAX(version) FROM schema_version") or 0) >= number:
                    continue  # another process migrated meanwhile
                for statement in _statements(sql):
                    tx.run(statement)
                tx.run("INSERT INTO schema_version (version) VALUES (?)", number)
        return SCHEMA_VERSION

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break


POOL_IDLE = 8  # PostgreSQL connections kept open between transactions


def private_file(path: Path) -> None:
    """Create `path` (if missing) readable and writable by its owner only, and make it so if it
    exists; the same for SQLite's -wal and -shm files next to it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(p, 0o600)
