"""SQLAlchemy's aiosqlite adapter, with statements that cannot wait for a lock run at once on the event loop.

aiosqlite runs each sqlite3 call on a thread of its own and hands every call there and back through a queue: the
stock adapter makes a cursor, executes, fetches and closes it in four such round trips, each waking the event loop
and each trading the GIL between the two threads. Here a statement is executed, fetched and its cursor closed in
one function (`_run`), and where that function cannot wait for another connection's lock it runs on the event
loop's own thread, with no hand-off at all:

- inside a transaction begun with BEGIN IMMEDIATE (every transaction but the read-only lookups, see
  tenants.persistence.sqlite_begin_immediate), which holds SQLite's write lock: its statements and its COMMIT
  never wait for another connection under WAL;
- a SELECT inside any transaction: WAL readers read their snapshot and take no lock that a writer holds;
- BEGIN itself: DEFERRED takes no lock, and IMMEDIATE is tried with no busy timeout, so it either takes the write
  lock at once or fails at once.

What can wait goes to SQLite's thread as before (one hand-off per statement): a BEGIN IMMEDIATE that found the write
lock held by another process (the command line, say), which queues for it there for up to the busy timeout, and
anything outside a transaction. A statement that runs at once takes as long on the event loop as it would have held
the process's one connection (gateway.db.create_engine), while every other request waited for that connection
anyway. Only what SQLAlchemy reads of a cursor afterwards is kept (description, rows, rowcount, lastrowid).
Server-side cursors are not used on SQLite and keep the stock class.

aiosqlite has no public call for "run this on the connection's thread": `Connection._execute` and `_conn` are what
its own methods use (aiosqlite is pinned to a range in pyproject.toml; the tests run every statement through this).
The sqlite3 connection is opened with `check_same_thread=False` (gateway.db.create_engine), since both threads use
it, one at a time: a statement runs at once only while no hand-off on the connection is under way.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

from tenants.persistence import SQLITE_BUSY_TIMEOUT_MS


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> tuple[Any, ...]:
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


async def _run_now(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> tuple[Any, ...]:
    return _run(connection, operation, parameters, many)


def _runs_at_once(adapt_connection: OneHopConnection, connection: sqlite3.Connection, operation: str) -> bool:
    """True when `operation` cannot wait for another connection's lock (see the module's docstring)."""
    if adapt_connection._execute_mutex.locked() or not connection.in_transaction:
        return False
    return adapt_connection.holds_write_lock or operation.lstrip()[:6].upper() == "SELECT"


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statement runs, is fetched and closed in one call on aiosqlite's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # No driver cursor of its own: each statement makes and closes one on the connection's thread.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        if operation.startswith("BEGIN"):
            if not self._begin_at_once(operation):
                super().execute(operation, parameters)
            self._note_begin(operation)
        elif not self._run_at_once(operation, parameters, many=False):
            super().execute(operation, parameters)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        if not self._run_at_once(operation, seq_of_parameters, many=True):
            super().executemany(operation, seq_of_parameters)

    def _run_at_once(self, operation: str, parameters: Any, *, many: bool) -> bool:
        adapt_connection: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        connection: sqlite3.Connection = self._connection._conn
        if not _runs_at_once(adapt_connection, connection, operation):
            return False
        try:
            # Through await_ even so: SQLAlchemy's AsyncConnection insists that a statement awaited something, and
            # a coroutine that never suspends costs two greenlet switches, not a turn of the event loop.
            self._keep(*await_(_run_now(connection, operation, parameters, many)))
        except Exception as error:
            adapt_connection._handle_exception(error)
        return True

    def _begin_at_once(self, operation: str) -> bool:
        """BEGIN on the event loop unless it would wait: BEGIN DEFERRED takes no lock, and BEGIN IMMEDIATE is tried
        with no busy timeout. False when another connection (another process) holds the write lock: the BEGIN then
        waits for it on SQLite's thread, with the busy timeout, while the event loop goes on."""
        adapt_connection: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        connection: sqlite3.Connection = self._connection._conn
        if adapt_connection._execute_mutex.locked() or connection.in_transaction:
            return False
        try:
            if operation != "BEGIN IMMEDIATE":
                connection.execute(operation)
                return True
            connection.execute("PRAGMA busy_timeout=0")
            try:
                connection.execute(operation)
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                return False
            finally:
                connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        except Exception as error:
            adapt_connection._handle_exception(error)
        return True

    def _note_begin(self, operation: str) -> None:
        adapt_connection: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        adapt_connection.holds_write_lock = operation == "BEGIN IMMEDIATE"

    def _keep(self, description: Any, rows: list[Any] | None, rowcount: int, lastrowid: int | None) -> None:
        self._description, self._rowcount, self._lastrowid = description, rowcount, lastrowid
        self._rows = collections.deque(rows or ())

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        return await self._hand_off(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._hand_off(operation, seq_of_parameters, many=True)

    async def _hand_off(self, operation: str, parameters: Any, *, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            self._keep(
                *await connection._execute(  # type: ignore[no-untyped-call]  # aiosqlite leaves it unannotated
                    _run, connection._conn, operation, parameters, many
                )
            )

    async def _async_soft_close(self) -> None:
        return None  # the driver cursor was closed on the thread already

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None

    def nextset(self) -> None:
        return None


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("holds_write_lock",)
    _cursor_cls = OneHopCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.holds_write_lock = False  # the transaction under way began with BEGIN IMMEDIATE

    def commit(self) -> None:
        if not self._end_at_once(sqlite3.Connection.commit):
            super().commit()

    def rollback(self) -> None:
        if not self._end_at_once(sqlite3.Connection.rollback):
            super().rollback()

    def _end_at_once(self, end: Callable[[sqlite3.Connection], None]) -> bool:
        """COMMIT or ROLLBACK on the event loop when the transaction holds the write lock (nothing to wait for);
        False when it must go to SQLite's thread, as the stock adapter sends it."""
        writing, self.holds_write_lock = self.holds_write_lock, False
        connection = self._connection
        if not writing or self._execute_mutex.locked() or not connection._connection:
            return False
        try:
            end(connection._conn)
        except Exception as error:
            self._handle_exception(error)
        return True


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module SQLAlchemy's aiosqlite dialect is given (`create_async_engine(..., module=...)`)."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        creator = kw.pop("async_creator_fn", None)
        connection = creator(*arg, **kw) if creator else self.aiosqlite.connect(*arg, **kw)
        # aiosqlite runs the connection on a thread; a daemon one, so a stuck statement never holds up exit.
        connection._thread.daemon = True
        return OneHopConnection(self, await_(connection))


def one_hop_dbapi() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)


__all__: Sequence[str] = ["OneHopDBAPI", "one_hop_dbapi"]
